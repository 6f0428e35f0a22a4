//! Redis Pub/Sub as a transport (`baton serve --redis URL --transport redis-pubsub`).
//!
//! Channels: `<p>:cmd:<command>`, `<p>:results` and `<p>:signals`, carrying the same CloudEvents JSON as the
//! Streams transport.
//!
//! **What it does not guarantee, and why the whole path is still at-least-once.** Pub/Sub
//! keeps nothing: a message published while nobody is subscribed is gone, one in flight when
//! a subscriber disconnects is gone, and there is no acknowledgement or redelivery. Every
//! subscriber gets every message: with several worker hosts, each runs every command (the
//! idempotency record answers a duplicate that arrives after the first run finished, not one
//! that runs at the same moment). What makes the path at-least-once regardless is the
//! orchestrator: every command has a step timeout, durably recorded, and a command whose
//! result does not arrive in time is sent again (same idempotency key) until the retry policy
//! runs out. Losing a message costs a timeout's worth of latency and one attempt of the retry
//! budget, never a saga.
//!
//! Choose it for the lowest latency on a single host or a handful, when step timeouts are
//! short; prefer Redis Streams (the default) otherwise.

use async_trait::async_trait;
use futures_util::StreamExt as _;
use redis::aio::ConnectionManager;

use super::cloudevents;
use super::{AckToken, Acker, BusError, Consumer, Delivery, EventBus, NoAck};
use crate::protocol::{CommandMessage, ResultMessage, SignalMessage};

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

/// See the module documentation.
#[derive(Clone)]
pub struct RedisPubSubBus {
    client: redis::Client,
    con: ConnectionManager,
    prefix: String,
}

impl RedisPubSubBus {
    /// Connect to `url`, with every channel under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<RedisPubSubBus> {
        let (client, con) = crate::redis_conn::connect(url).await?;
        Ok(RedisPubSubBus { client, con, prefix: prefix.to_owned() })
    }

    async fn publish(&self, messages: Vec<(String, String)>) -> Result<(), BusError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (channel, event) in &messages {
            pipe.publish(channel, event).ignore();
        }
        pipe.query_async::<()>(&mut self.con.clone()).await.map_err(unavailable)
    }

    async fn subscriber<T: Send + 'static>(
        &self,
        channels: Vec<String>,
        decode: fn(&str) -> Result<T, BusError>,
    ) -> Result<PubSubConsumer<T>, BusError> {
        let mut consumer = PubSubConsumer { client: self.client.clone(), channels, decode, stream: None };
        consumer.connect().await?;
        Ok(consumer)
    }
}

struct PubSubConsumer<T> {
    client: redis::Client,
    channels: Vec<String>,
    decode: fn(&str) -> Result<T, BusError>,
    /// `None` after the connection broke: the next call subscribes again.
    stream: Option<redis::aio::PubSubStream>,
}

impl<T> PubSubConsumer<T> {
    async fn connect(&mut self) -> Result<(), BusError> {
        let mut pubsub = self.client.get_async_pubsub().await.map_err(unavailable)?;
        for c in &self.channels {
            pubsub.subscribe(c).await.map_err(unavailable)?;
        }
        self.stream = Some(pubsub.into_on_message());
        Ok(())
    }

    fn decode(&self, msg: &redis::Msg) -> Option<T> {
        let text: String = msg.get_payload().ok()?;
        match (self.decode)(&text) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!(channel = msg.get_channel_name(), "dropping a message that is not a Baton event: {e}");
                crate::observe::metrics::dropped(super::cloudevents::drop_reason(&text));
                None
            }
        }
    }
}

#[async_trait]
impl<T: Send + 'static> Consumer<T> for PubSubConsumer<T> {
    async fn recv(&mut self, max: usize) -> Result<Vec<Delivery<T>>, BusError> {
        if self.channels.is_empty() {
            std::future::pending::<()>().await;
        }
        loop {
            if self.stream.is_none() {
                self.connect().await?;
            }
            let stream = self.stream.as_mut().expect("connected above");
            let Some(first) = stream.next().await else {
                // The connection closed; what was published meanwhile is lost (see above).
                self.stream = None;
                return Err(BusError::Unavailable("the Pub/Sub connection closed".into()));
            };
            let mut out = Vec::new();
            out.extend(self.decode(&first));
            // Take what is already here, without waiting, up to `max`.
            while out.len() < max.max(1) {
                let stream = self.stream.as_mut().expect("connected");
                match futures_util::FutureExt::now_or_never(stream.next()) {
                    Some(Some(msg)) => out.extend(self.decode(&msg)),
                    _ => break,
                }
            }
            if !out.is_empty() {
                return Ok(out
                    .into_iter()
                    .map(|message| Delivery { message, token: AckToken(String::new()) })
                    .collect());
            }
        }
    }

    /// Nothing to acknowledge: Pub/Sub forgets a message once it is delivered.
    fn acker(&self) -> std::sync::Arc<dyn Acker> {
        std::sync::Arc::new(NoAck)
    }
}

#[async_trait]
impl EventBus for RedisPubSubBus {
    async fn send_commands(&self, commands: Vec<CommandMessage>) -> Result<(), BusError> {
        let msgs = commands
            .iter()
            .map(|c| (format!("{}:cmd:{}", self.prefix, c.name), cloudevents::encode_command(c)))
            .collect();
        self.publish(msgs).await
    }

    async fn send_results(&self, results: Vec<ResultMessage>) -> Result<(), BusError> {
        let channel = format!("{}:results", self.prefix);
        self.publish(results.iter().map(|r| (channel.clone(), cloudevents::encode_result(r))).collect()).await
    }

    async fn command_consumer(&self, commands: &[String]) -> Result<Box<dyn Consumer<CommandMessage>>, BusError> {
        let channels = commands.iter().map(|c| format!("{}:cmd:{c}", self.prefix)).collect();
        Ok(Box::new(self.subscriber(channels, cloudevents::decode_command).await?))
    }

    async fn result_consumer(&self) -> Result<Box<dyn Consumer<ResultMessage>>, BusError> {
        Ok(Box::new(self.subscriber(vec![format!("{}:results", self.prefix)], cloudevents::decode_result).await?))
    }

    async fn send_signals(&self, signals: Vec<SignalMessage>) -> Result<(), BusError> {
        let channel = format!("{}:signals", self.prefix);
        self.publish(signals.iter().map(|s| (channel.clone(), cloudevents::encode_signal(s))).collect()).await
    }

    async fn signal_consumer(&self) -> Result<Box<dyn Consumer<SignalMessage>>, BusError> {
        Ok(Box::new(self.subscriber(vec![format!("{}:signals", self.prefix)], cloudevents::decode_signal).await?))
    }

    /// Pub/Sub keeps nothing.
    fn durable(&self) -> bool {
        false
    }

    /// Anyone with the Redis URL and the prefix subscribes and publishes.
    fn reaches_outside(&self) -> bool {
        true
    }

    /// `PING` on the connection messages are published on.
    async fn ping(&self) -> Result<(), BusError> {
        redis::cmd("PING").query_async::<()>(&mut self.con.clone()).await.map_err(unavailable)
    }
}
