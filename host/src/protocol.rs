//! The messages exchanged between the orchestrator and workers, whatever carries them.
//!
//! A [`CommandMessage`] asks a worker to do one step; a [`ResultMessage`] carries back its
//! [`Outcome`]. Both carry [`Meta`]: the saga (`transaction_id`), the attempt
//! (`correlation_id`) and the step's `idempotency_key`, which stays the same across retries.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Identifies a command: which saga, which attempt, which step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The saga instance.
    pub transaction_id: String,
    /// Unique per attempt; pairs a command with its result.
    pub correlation_id: String,
    /// Stable for one step (or its compensation) of one saga, across retries and redeliveries.
    pub idempotency_key: String,
    /// The workflow step that sent the command.
    pub step: String,
    /// 1 for the first try.
    pub attempt: u32,
    /// W3C trace context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A request to perform one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandMessage {
    /// Command name, e.g. `payment.charge`.
    pub name: String,
    /// The command's input.
    pub payload: Value,
    pub meta: Meta,
    /// How long the worker may take, in milliseconds (the step's timeout).
    pub timeout_ms: u64,
    /// When the orchestrator stops waiting for this attempt (ms since the epoch; 0: never).
    /// A worker never starts a command at or after its deadline (it answers
    /// [`codes::EXPIRED`]) and stops a run that reaches it, so that an attempt the saga has
    /// given up on never takes effect unseen.
    #[serde(default)]
    pub deadline_ms: u64,
    /// When the step has a `queue_timeout`: the latest a worker may start the command (ms
    /// since the epoch; 0: until `deadline_ms`). Then `timeout_ms` bounds the run alone.
    #[serde(default)]
    pub start_by_ms: u64,
}

impl CommandMessage {
    /// Whether it is too late at `now` (ms since the epoch) to start the command: its
    /// `start_by_ms` or its deadline has passed.
    pub fn expired_at(&self, now: u64) -> bool {
        (self.start_by_ms != 0 && now >= self.start_by_ms) || (self.deadline_ms != 0 && now >= self.deadline_ms)
    }
}

/// The failure codes the host itself gives a command, a contract that workflows branch on
/// (and, with grammar v2, `catch`). A worker's own codes (`card_declined`) sit beside them.
/// Whether each is retried is fixed here, so it never depends on the wording of a message.
pub mod codes {
    /// No result within the step's timeout (a plugin still running is stopped). Retryable.
    pub const TIMEOUT: &str = "timeout";
    /// The command reached a worker after its deadline and was not started (the attempt had
    /// been given up on). Retryable: the next attempt has a deadline of its own.
    pub const EXPIRED: &str = "expired";
    /// The plugin went past its memory limit. Permanent.
    pub const OUT_OF_MEMORY: &str = "out_of_memory";
    /// The plugin panicked; the message says where and why. Permanent.
    pub const PLUGIN_PANICKED: &str = "plugin_panicked";
    /// The plugin trapped another way (unreachable, a bad memory access...). Permanent.
    pub const PLUGIN_TRAPPED: &str = "plugin_trapped";
    /// Every instance slot of the host was in use. Retryable.
    pub const HOST_BUSY: &str = "host_busy";
    /// The payload does not fit the handler's input. Permanent.
    pub const INVALID_INPUT: &str = "invalid_input";
    /// The plugin returned something that is not JSON. Permanent.
    pub const INVALID_OUTPUT: &str = "invalid_output";
    /// No plugin handles the command. Permanent.
    pub const UNKNOWN_COMMAND: &str = "unknown_command";

    /// Every code above with whether a retry can help, for documentation and tests.
    pub const ALL: &[(&str, bool)] = &[
        (TIMEOUT, true),
        (EXPIRED, true),
        (OUT_OF_MEMORY, false),
        (PLUGIN_PANICKED, false),
        (PLUGIN_TRAPPED, false),
        (HOST_BUSY, true),
        (INVALID_INPUT, false),
        (INVALID_OUTPUT, false),
        (UNKNOWN_COMMAND, false),
    ];
}

/// Why a command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub code: String,
    pub message: String,
    /// True when trying again may succeed.
    pub retryable: bool,
}

impl Failure {
    /// A failure a retry may fix.
    pub fn retryable(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), retryable: true }
    }

    /// A failure no retry can fix.
    pub fn permanent(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), retryable: false }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// What became of a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok(Value),
    Err(Failure),
}

impl Outcome {
    /// Terminal outcomes are recorded for idempotency; retryable failures are not, so that
    /// a retry really runs again.
    pub fn is_terminal(&self) -> bool {
        match self {
            Outcome::Ok(_) => true,
            Outcome::Err(f) => !f.retryable,
        }
    }
}

/// The answer to a [`CommandMessage`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultMessage {
    /// The command that produced it.
    pub command: String,
    pub meta: Meta,
    pub outcome: Outcome,
}

/// A signal for a saga, sent on the bus by any process (a `baton.signal.v1` CloudEvent): the
/// same as `POST /v1/sagas/{id}/signals/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalMessage {
    /// The saga (`transactionid`).
    pub saga_id: String,
    /// The signal's name (`subject`).
    pub name: String,
    /// Its JSON payload (`data`).
    pub payload: Value,
    /// The event's id, for logs.
    pub id: String,
}
