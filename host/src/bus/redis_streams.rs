//! The default distributed transport: Redis Streams with consumer groups.
//!
//! - `<p>:cmd:<command>`: one stream per command; the group `workers` shares it among all
//!   worker processes that handle the command.
//! - `<p>:results`: one stream; the group `orchestrators` shares it among orchestrators.
//! - `<p>:signals`: `baton.signal.v1` events for sagas, from anyone; the group
//!   `orchestrators` shares it too.
//!
//! At-least-once: an entry stays in its group's pending list until acknowledged. A consumer
//! that dies leaves its entries pending; after the visibility timeout any other consumer of
//! the group claims them (`XAUTOCLAIM`) and handles them again (the idempotency record makes
//! the second run a lookup). Acknowledged entries are deleted (`XACK` + `XDEL` in one
//! pipeline), so streams hold only what is in flight.
//!
//! Writes of a batch go in one pipelined round trip; reads take up to `max` entries at once.
//! Each consumer holds a connection of its own, because a blocking `XREADGROUP` would stall
//! every other command sharing a multiplexed connection.
//!
//! An entry that is not a valid Baton event is logged with its id and removed, so one bad
//! message cannot wedge a consumer forever.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::streams::{StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply};
use redis::{AsyncCommands, AsyncConnectionConfig};

use super::cloudevents;
use super::{AckToken, Acker, BusError, Consumer, Delivery, EventBus};
use crate::protocol::{CommandMessage, ResultMessage, SignalMessage};

const WORKERS: &str = "workers";
const ORCHESTRATORS: &str = "orchestrators";
/// The field of a stream entry that holds the CloudEvents JSON.
pub const FIELD: &str = "event";

/// The stream that carries `command` under `prefix`. The Redis store writes commands there
/// itself, in the same script as the transition that emits them (see [`crate::store::redis`]).
pub fn command_stream(prefix: &str, command: &str) -> String {
    format!("{prefix}:cmd:{command}")
}

/// How the Redis store's outbox writes a command so that this transport reads it: the
/// command's stream under `prefix`, and the command as CloudEvents JSON (the store appends it
/// under the entry field [`FIELD`]).
pub fn outbox_encoder(prefix: &str) -> crate::store::redis::OutboxEncoder {
    use crate::store::redis::Outgoing;
    let prefix = prefix.to_owned();
    std::sync::Arc::new(move |out: Outgoing<'_>| match out {
        Outgoing::Command(c) => (command_stream(&prefix, &c.name), cloudevents::encode_command(c)),
        Outgoing::Reply(r) => {
            (results_stream(r.prefix.as_deref().unwrap_or(&prefix)), cloudevents::encode_result(&r.result))
        }
    })
}

/// The stream that carries the results of the deployment under `prefix`.
pub fn results_stream(prefix: &str) -> String {
    format!("{prefix}:results")
}

/// Tuning of the Redis Streams transport.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// How long an entry may stay unacknowledged before another consumer takes it over.
    /// Longer than the slowest command, shorter than you are willing to wait after a crash.
    pub visibility_timeout: Duration,
    /// How long one blocking read waits before checking for abandoned entries again.
    pub block: Duration,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self { visibility_timeout: Duration::from_secs(30), block: Duration::from_secs(1) }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct RedisStreamsBus {
    client: redis::Client,
    con: ConnectionManager,
    prefix: String,
    config: StreamsConfig,
    /// Names this process's consumers, unique across processes.
    consumer_id: String,
    /// The streams this process's consumers read, and their group: what
    /// [`EventBus::backlog`] reports.
    watched: Arc<std::sync::Mutex<std::collections::BTreeMap<String, &'static str>>>,
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

impl RedisStreamsBus {
    /// Connect to `url`, keeping every stream under `prefix`.
    pub async fn connect(url: &str, prefix: &str, config: StreamsConfig) -> anyhow::Result<RedisStreamsBus> {
        let (client, con) = crate::redis_conn::connect(url).await?;
        let salt =
            std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), std::process::id());
        let consumer_id = format!("{}-{:08x}", std::process::id(), salt as u32);
        Ok(RedisStreamsBus { client, con, prefix: prefix.to_owned(), config, consumer_id, watched: Arc::default() })
    }

    fn command_stream(&self, name: &str) -> String {
        command_stream(&self.prefix, name)
    }

    fn results_stream(&self) -> String {
        results_stream(&self.prefix)
    }

    async fn append(&self, entries: Vec<(String, String)>) -> Result<(), BusError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (stream, event) in &entries {
            pipe.xadd(stream, "*", &[(FIELD, event)]).ignore();
        }
        pipe.query_async::<()>(&mut self.con.clone()).await.map_err(unavailable)
    }

    async fn consumer<T: Send + 'static>(
        &self,
        streams: Vec<String>,
        group: &'static str,
        decode: fn(&str) -> Result<T, BusError>,
    ) -> Result<StreamConsumer<T>, BusError> {
        // The read blocks for `block`; give the answer that much time and more.
        let config =
            AsyncConnectionConfig::new().set_response_timeout(Some(self.config.block + Duration::from_secs(5)));
        let mut con = self.client.get_multiplexed_async_connection_with_config(&config).await.map_err(unavailable)?;
        create_groups(&mut con, &streams, group).await?;
        self.watched.lock().expect("watched lock poisoned").extend(streams.iter().map(|s| (s.clone(), group)));
        let nonce = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), &streams);
        Ok(StreamConsumer {
            client: self.client.clone(),
            config,
            con: Some(con),
            acker: Arc::new(StreamAcker { con: self.con.clone(), group }),
            streams,
            group,
            consumer: format!("{}-{:04x}", self.consumer_id, nonce as u16),
            decode,
            visibility: self.config.visibility_timeout,
            block: self.config.block,
            last_claim: None,
        })
    }
}

/// Create the consumer group of each stream (and the stream), unless it exists.
async fn create_groups(con: &mut MultiplexedConnection, streams: &[String], group: &str) -> Result<(), BusError> {
    for stream in streams {
        // From "0": commands sent before any worker existed are not lost.
        let created: redis::RedisResult<()> = con.xgroup_create_mkstream(stream, group, "0").await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            return Err(unavailable(e));
        }
    }
    Ok(())
}

/// Acknowledges a group's entries over the bus's shared, reconnecting connection: not the
/// consumer's own, which a blocking read may hold for a second.
struct StreamAcker {
    con: ConnectionManager,
    group: &'static str,
}

#[async_trait]
impl Acker for StreamAcker {
    /// `XACK` and `XDEL` in one pipeline: a handled entry leaves the pending list and the
    /// stream, so streams hold only what is in flight.
    async fn ack(&self, tokens: &[AckToken]) -> Result<(), BusError> {
        if tokens.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for AckToken(t) in tokens {
            let Some((stream, id)) = t.split_once('\u{1f}') else { continue };
            pipe.xack(stream, self.group, &[id]).ignore().xdel(stream, &[id]).ignore();
        }
        pipe.query_async::<()>(&mut self.con.clone()).await.map_err(unavailable)
    }
}

/// Reads one group's share of some streams.
struct StreamConsumer<T> {
    client: redis::Client,
    config: AsyncConnectionConfig,
    /// `None` after an error: the next call reconnects (Redis restarted, the network blinked).
    con: Option<MultiplexedConnection>,
    acker: Arc<StreamAcker>,
    streams: Vec<String>,
    group: &'static str,
    consumer: String,
    decode: fn(&str) -> Result<T, BusError>,
    visibility: Duration,
    block: Duration,
    last_claim: Option<Instant>,
}

/// `stream` and entry id in one token.
fn token(stream: &str, id: &str) -> AckToken {
    AckToken(format!("{stream}\u{1f}{id}"))
}

impl<T> StreamConsumer<T> {
    /// The connection, reconnecting (and recreating the groups, which a Redis that lost its
    /// data no longer has) when the last call failed.
    async fn con(&mut self) -> Result<&mut MultiplexedConnection, BusError> {
        if self.con.is_none() {
            let mut con =
                self.client.get_multiplexed_async_connection_with_config(&self.config).await.map_err(unavailable)?;
            create_groups(&mut con, &self.streams, self.group).await?;
            tracing::info!(consumer = %self.consumer, "reconnected to Redis");
            self.con = Some(con);
        }
        Ok(self.con.as_mut().expect("connected above"))
    }

    /// Forget a connection that failed, so the next call makes a new one.
    fn failed(&mut self, e: redis::RedisError) -> BusError {
        self.con = None;
        unavailable(e)
    }

    /// Decode entries; undecodable ones are logged and acknowledged away.
    async fn decode_entries(
        &mut self,
        stream: &str,
        entries: Vec<StreamId>,
        out: &mut Vec<Delivery<T>>,
    ) -> Result<(), BusError> {
        let mut poison = Vec::new();
        for entry in entries {
            let text = entry.get::<String>(FIELD);
            let decoded = text
                .as_deref()
                .ok_or_else(|| BusError::corrupt("a stream entry", format!("no {FIELD:?} field")))
                .and_then(|t| (self.decode)(t));
            match decoded {
                Ok(message) => out.push(Delivery { message, token: token(stream, &entry.id) }),
                Err(e) => {
                    tracing::error!(stream, id = %entry.id, "dropping an entry that is not a Baton event: {e}");
                    crate::observe::metrics::dropped(
                        text.as_deref().map_or("not_an_event", super::cloudevents::drop_reason),
                    );
                    poison.push(token(stream, &entry.id));
                }
            }
        }
        if !poison.is_empty() {
            self.acker.ack(&poison).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl<T: Send + 'static> Consumer<T> for StreamConsumer<T> {
    async fn recv(&mut self, max: usize) -> Result<Vec<Delivery<T>>, BusError> {
        let max = max.max(1);
        if self.streams.is_empty() {
            // Nothing to read (a worker with no plugins): wait like an idle consumer would.
            std::future::pending::<()>().await;
        }
        loop {
            let mut out = Vec::new();
            // Take over what a dead consumer left, every half visibility timeout.
            if self.last_claim.is_none_or(|t| t.elapsed() >= self.visibility / 2) {
                self.last_claim = Some(Instant::now());
                for stream in self.streams.clone() {
                    let (group, consumer, idle) =
                        (self.group, self.consumer.clone(), self.visibility.as_millis() as u64);
                    let options = StreamAutoClaimOptions::default().count(max);
                    let reply: redis::RedisResult<StreamAutoClaimReply> =
                        self.con().await?.xautoclaim_options(&stream, group, &consumer, idle, "0-0", options).await;
                    let reply = reply.map_err(|e| self.failed(e))?;
                    if !reply.claimed.is_empty() {
                        tracing::info!(stream, count = reply.claimed.len(), "reclaimed entries a dead consumer left");
                        crate::observe::metrics::redelivered(&stream, reply.claimed.len() as u64);
                    }
                    self.decode_entries(&stream, reply.claimed, &mut out).await?;
                }
                if !out.is_empty() {
                    return Ok(out);
                }
            }
            let ids = vec![">"; self.streams.len()];
            let options = StreamReadOptions::default()
                .group(self.group, &self.consumer)
                .count(max)
                .block(self.block.as_millis() as usize);
            let streams = self.streams.clone();
            let reply: redis::RedisResult<Option<StreamReadReply>> =
                self.con().await?.xread_options(&streams, &ids, &options).await;
            let reply = reply.map_err(|e| self.failed(e))?;
            for key in reply.map(|r| r.keys).unwrap_or_default() {
                self.decode_entries(&key.key, key.ids, &mut out).await?;
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }

    fn acker(&self) -> Arc<dyn Acker> {
        self.acker.clone()
    }
}

#[async_trait]
impl EventBus for RedisStreamsBus {
    async fn send_commands(&self, commands: Vec<CommandMessage>) -> Result<(), BusError> {
        self.append(commands.iter().map(|c| (self.command_stream(&c.name), cloudevents::encode_command(c))).collect())
            .await
    }

    async fn send_results(&self, results: Vec<ResultMessage>) -> Result<(), BusError> {
        let stream = self.results_stream();
        self.append(results.iter().map(|r| (stream.clone(), cloudevents::encode_result(r))).collect()).await
    }

    async fn command_consumer(&self, commands: &[String]) -> Result<Box<dyn Consumer<CommandMessage>>, BusError> {
        let streams = commands.iter().map(|c| self.command_stream(c)).collect();
        Ok(Box::new(self.consumer(streams, WORKERS, cloudevents::decode_command).await?))
    }

    async fn result_consumer(&self) -> Result<Box<dyn Consumer<ResultMessage>>, BusError> {
        Ok(Box::new(self.consumer(vec![self.results_stream()], ORCHESTRATORS, cloudevents::decode_result).await?))
    }

    async fn send_signals(&self, signals: Vec<SignalMessage>) -> Result<(), BusError> {
        let stream = format!("{}:signals", self.prefix);
        self.append(signals.iter().map(|s| (stream.clone(), cloudevents::encode_signal(s))).collect()).await
    }

    async fn signal_consumer(&self) -> Result<Box<dyn Consumer<SignalMessage>>, BusError> {
        let stream = format!("{}:signals", self.prefix);
        Ok(Box::new(self.consumer(vec![stream], ORCHESTRATORS, cloudevents::decode_signal).await?))
    }

    /// From `XINFO GROUPS`: the group's `lag` (entries not yet delivered) plus its `pending`
    /// (delivered, not acknowledged), per stream this process reads.
    async fn backlog(&self) -> Result<Vec<(String, u64)>, BusError> {
        let watched: Vec<(String, &'static str)> =
            self.watched.lock().expect("watched lock poisoned").iter().map(|(s, g)| (s.clone(), *g)).collect();
        let mut con = self.con.clone();
        let mut out = Vec::with_capacity(watched.len());
        for (stream, group) in watched {
            let groups: Vec<std::collections::HashMap<String, redis::Value>> =
                redis::cmd("XINFO").arg("GROUPS").arg(&stream).query_async(&mut con).await.map_err(unavailable)?;
            let number = |v: Option<&redis::Value>| match v {
                Some(redis::Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            };
            if let Some(g) = groups
                .iter()
                .find(|g| matches!(g.get("name"), Some(redis::Value::BulkString(n)) if n == group.as_bytes()))
            {
                out.push((stream, number(g.get("lag")) + number(g.get("pending"))));
            }
        }
        Ok(out)
    }

    /// Entries stay in their group until acknowledged.
    fn durable(&self) -> bool {
        true
    }

    /// Anyone with the Redis URL and the prefix reads and writes the streams.
    fn reaches_outside(&self) -> bool {
        true
    }

    /// `PING` on the connection commands and results are sent on.
    async fn ping(&self) -> Result<(), BusError> {
        redis::cmd("PING").query_async::<()>(&mut self.con.clone()).await.map_err(unavailable)
    }
}
