//! How commands and results travel: the [`EventBus`] trait and its implementations.
//!
//! - [`memory`]: in-process queues, for embedded mode and tests.
//! - [`redis_streams`]: Redis Streams with consumer groups, the default distributed transport.
//! - [`redis_pubsub`]: Redis Pub/Sub: lowest latency, no persistence (read its caveats).
//! - [`cloudevents`]: the wire format of the brokered transports.
//!
//! Delivery is at-least-once: a consumer acknowledges what it has handled, and a bus that can
//! (Redis Streams) redelivers what was never acknowledged. Consumers of one command compete:
//! each command goes to one of them.

pub mod cloudevents;
pub mod memory;
pub mod redis_pubsub;
pub mod redis_streams;

use async_trait::async_trait;

use crate::protocol::{CommandMessage, ResultMessage, SignalMessage};

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker failed; retrying later may help.
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// A message could not be read: it is damaged, or not one of ours. Retrying cannot help.
    #[error("{what}: {source}")]
    Corrupt {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BusError {
    /// True when trying the same operation again later may succeed; false when it is
    /// permanent.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BusError::Unavailable(_))
    }

    /// A [`BusError::Corrupt`]: `what` could not be read because of `source`.
    pub fn corrupt(what: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> BusError {
        BusError::Corrupt { what: what.into(), source: source.into() }
    }
}

/// Identifies one delivery for [`Consumer::ack`]; opaque to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckToken(pub String);

/// A message as a consumer receives it.
#[derive(Debug)]
pub struct Delivery<T> {
    pub message: T,
    pub token: AckToken,
}

/// Acknowledges the deliveries of one consumer. Shared, and usable from any task while the
/// consumer itself waits in [`Consumer::recv`]: a message is acknowledged the moment it is
/// handled, not when its consumer next comes round (a consumer that waits for new traffic
/// would otherwise leave the last messages unacknowledged until they are redelivered).
#[async_trait]
pub trait Acker: Send + Sync {
    /// Mark deliveries as handled, so they are not delivered again.
    async fn ack(&self, tokens: &[AckToken]) -> Result<(), BusError>;
}

/// An [`Acker`] for buses that do not redeliver: acknowledging is a no-op.
pub struct NoAck;

#[async_trait]
impl Acker for NoAck {
    async fn ack(&self, _tokens: &[AckToken]) -> Result<(), BusError> {
        Ok(())
    }
}

/// Reads one kind of message.
#[async_trait]
pub trait Consumer<T>: Send {
    /// Wait until at least one message is there; return up to `max` of them.
    async fn recv(&mut self, max: usize) -> Result<Vec<Delivery<T>>, BusError>;

    /// The acknowledger of this consumer's deliveries.
    fn acker(&self) -> std::sync::Arc<dyn Acker>;

    /// Mark deliveries as handled, so they are not delivered again.
    async fn ack(&mut self, tokens: &[AckToken]) -> Result<(), BusError> {
        self.acker().ack(tokens).await
    }
}

/// The transport between orchestrators and workers.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Send commands to the workers that handle them (one round trip for the batch).
    async fn send_commands(&self, commands: Vec<CommandMessage>) -> Result<(), BusError>;

    /// Send results to the orchestrators.
    async fn send_results(&self, results: Vec<ResultMessage>) -> Result<(), BusError>;

    /// A consumer of the commands named in `commands`, competing with other consumers of them.
    async fn command_consumer(&self, commands: &[String]) -> Result<Box<dyn Consumer<CommandMessage>>, BusError>;

    /// A consumer of results, competing with other orchestrators.
    async fn result_consumer(&self) -> Result<Box<dyn Consumer<ResultMessage>>, BusError>;

    /// Send signals to the orchestrators (what `baton.signal` events carry).
    async fn send_signals(&self, signals: Vec<SignalMessage>) -> Result<(), BusError>;

    /// A consumer of signals, competing with other orchestrators.
    async fn signal_consumer(&self) -> Result<Box<dyn Consumer<SignalMessage>>, BusError>;

    /// True when a message, once sent, survives the death of this process and of its
    /// consumers until someone acknowledges it (Redis Streams). When false, a restarted
    /// orchestrator sends again the command each unfinished saga waits on.
    fn durable(&self) -> bool;

    /// True when processes other than this one send and receive on this bus (Redis), so that
    /// a worker outside the host can serve the commands a workflow declares external
    /// (docs/PROTOCOL.md). False for the in-process bus: a saga that needs an external
    /// command is refused at start there.
    fn reaches_outside(&self) -> bool;

    /// Whether the bus answers now: `Ok` when messages can be sent, the reason otherwise.
    /// Cheap (one round trip at most): `GET /readyz` calls it. The caller bounds how long it
    /// may take.
    async fn ping(&self) -> Result<(), BusError>;

    /// Events waiting on each stream this process reads (`baton_bus_backlog`), when the
    /// transport can tell; empty otherwise.
    async fn backlog(&self) -> Result<Vec<(String, u64)>, BusError> {
        Ok(Vec::new())
    }
}
