//! The saga record: everything the orchestrator knows about one saga, serialisable as is.
//!
//! It is what the store keeps, what `baton run` prints and what the API will return.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::workflow::Workflow;

/// Where a saga is in its life. The last three are terminal: a saga ends in exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    /// Running its steps forward.
    Running,
    /// A step failed for good; undoing the completed steps.
    Compensating,
    /// Every step completed.
    Completed,
    /// A step failed for good and every completed step was undone.
    Compensated,
    /// A compensation itself failed for good: an operator must look.
    Failed,
}

impl SagaStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SagaStatus::Running => "running",
            SagaStatus::Compensating => "compensating",
            SagaStatus::Completed => "completed",
            SagaStatus::Compensated => "compensated",
            SagaStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for SagaStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SagaStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "running" => Ok(SagaStatus::Running),
            "compensating" => Ok(SagaStatus::Compensating),
            "completed" => Ok(SagaStatus::Completed),
            "compensated" => Ok(SagaStatus::Compensated),
            "failed" => Ok(SagaStatus::Failed),
            other => {
                Err(format!("unknown status {other:?}: use running, compensating, completed, compensated or failed"))
            }
        }
    }
}

/// The state of one step, or of its compensation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not reached.
    Pending,
    /// A command is out (or waiting to be retried).
    Running,
    Completed,
    /// Failed for good.
    Failed,
}

/// A failure as recorded on a step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

/// The saga-level error: which step failed for good, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaError {
    pub step: String,
    pub code: String,
    pub message: String,
}

/// The compensation of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompensationRecord {
    pub command: String,
    pub status: StepStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

/// One step of one saga.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub command: String,
    pub status: StepStatus,
    pub attempts: u32,
    #[serde(default)]
    pub output: Option<Value>,
    /// The last failure: the one that ended the step, or the one being retried.
    #[serde(default)]
    pub error: Option<ErrorInfo>,
    /// Present once compensation of this step has begun.
    #[serde(default)]
    pub compensation: Option<CompensationRecord>,
}

/// Forward (doing) or compensating (undoing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Forward,
    Compensate,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Forward => "forward",
            Phase::Compensate => "compensate",
        }
    }
}

/// What the saga is waiting for. Timer events and results that do not match it are stale
/// (a late result of a timed-out attempt, a timer of a finished step) and change nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cursor {
    /// Created, not started.
    Idle,
    /// A command is out; its result (or the timeout at `deadline_at`) is awaited.
    Awaiting { step: usize, phase: Phase, attempt: u32, correlation_id: String, deadline_at: u64 },
    /// Attempt `attempt` failed and may be retried; the retry is due at `due_at`.
    Backoff { step: usize, phase: Phase, attempt: u32, correlation_id: String, due_at: u64 },
    /// Terminal.
    Done,
}

/// Something that happened to a saga, as its history records it. Written by the orchestrator in
/// the same atomic commit as the transition it describes, so the history never disagrees with
/// the record: an operator (or a test) reads it to see every attempt, failure and timeout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HistoryEvent {
    /// The saga began.
    Started,
    /// A command was sent for attempt `attempt` of `step`.
    Dispatched { step: String, phase: Phase, attempt: u32, command: String },
    /// The attempt succeeded.
    Succeeded { step: String, phase: Phase, attempt: u32 },
    /// The attempt failed (a missed deadline is code `timeout`); `retryable` failures are
    /// retried while the policy allows.
    Failed { step: String, phase: Phase, attempt: u32, code: String, message: String, retryable: bool },
    /// The next attempt is due at `due_at` (ms since the epoch).
    RetryScheduled { step: String, phase: Phase, attempt: u32, due_at: u64 },
    /// The saga reached its terminal state.
    Finished { status: SagaStatus },
}

/// One entry of a saga's history: when, what, and the revision the change produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Milliseconds since the Unix epoch.
    pub at: u64,
    /// The saga's revision after the commit that wrote this entry.
    pub revision: u64,
    #[serde(flatten)]
    pub event: HistoryEvent,
}

/// One saga instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saga {
    pub id: String,
    pub workflow: String,
    pub workflow_version: u32,
    pub status: SagaStatus,
    pub input: Value,
    pub steps: Vec<StepRecord>,
    /// Why the saga compensated, when it did.
    #[serde(default)]
    pub error: Option<SagaError>,
    pub cursor: Cursor,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    pub updated_at: u64,
    /// Bumped on every committed change; stores use it for optimistic concurrency.
    pub revision: u64,
    /// When a finished saga's record, history and outcome records are deleted (ms since the
    /// epoch): its end plus the host's `--retain`. Absent while it runs, or kept forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl Saga {
    /// When the timer the saga waits on is due (ms since the epoch): the deadline of the
    /// attempt in flight, or the end of a retry's backoff. Stores index sagas by it, so that
    /// timers whose host died are found without scanning every saga.
    pub fn timer_due(&self) -> Option<u64> {
        match &self.cursor {
            Cursor::Awaiting { deadline_at, .. } => Some(*deadline_at),
            Cursor::Backoff { due_at, .. } => Some(*due_at),
            Cursor::Idle | Cursor::Done => None,
        }
    }

    /// A new saga of `wf`, not yet started.
    pub fn new(id: String, wf: &Workflow, input: Value, now: u64) -> Saga {
        Saga {
            id,
            workflow: wf.name.clone(),
            workflow_version: wf.version,
            status: SagaStatus::Running,
            input,
            steps: wf
                .steps
                .iter()
                .map(|s| StepRecord {
                    name: s.name.clone(),
                    command: s.command.clone(),
                    status: StepStatus::Pending,
                    attempts: 0,
                    output: None,
                    error: None,
                    compensation: None,
                })
                .collect(),
            error: None,
            cursor: Cursor::Idle,
            created_at: now,
            updated_at: now,
            revision: 0,
            expires_at: None,
        }
    }
}
