//! The saga record: everything the orchestrator knows about one saga, serialisable as is.
//!
//! It is what the stores keep, what `baton run` prints and what the API returns. A saga is a
//! tree of *block runs* (the main block, each branch of a `parallel`, each iteration of a
//! `for_each`) holding *step instances*; both live in flat lists that refer to each other by
//! index, in the order they began, so the record reads top-down as the story of the saga.
//!
//! Times are milliseconds since the epoch in memory and RFC 3339 in JSON (see [`super::time`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a saga is in its life. The last three are terminal: a saga ends in exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    /// Running its steps forward (or waiting for a signal or a timer).
    Running,
    /// A step failed for good, or an operator cancelled: undoing what was done.
    Compensating,
    /// The main block completed.
    Completed,
    /// Everything done was undone.
    Compensated,
    /// A compensation failed for good: an operator must look (and may `retry`).
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

/// The state of a step instance, a block run, or a compensation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Not begun (a compensation queued again by an operator's retry).
    Pending,
    /// Under way: a command out, a retry's backoff, a wait, a sleep, blocks running.
    Running,
    Completed,
    /// Failed for good.
    Failed,
    /// Stopped before its end (the saga was cancelled).
    Cancelled,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Completed => "completed",
            StepStatus::Failed => "failed",
            StepStatus::Cancelled => "cancelled",
        }
    }
}

/// A failure as recorded on an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub code: String,
    pub message: String,
}

/// The saga-level error: which instance failed for good (or `cancel`), and why. Also what a
/// catch target reads as `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaError {
    /// The instance's path.
    pub step: String,
    pub code: String,
    pub message: String,
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

/// What an instance waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitOn {
    /// The result of a command (its deadline is the timer).
    Result,
    /// The end of a retry's backoff.
    Backoff,
    /// A signal (the timer, if any, is the wait's timeout).
    Signal,
    /// The end of a sleep.
    Sleep,
}

/// What an instance is waiting for, and the timer that ends the wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub on: WaitOn,
    pub phase: Phase,
    /// The attempt in flight (or the one that failed, during a backoff); 0 for waits and sleeps.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
    /// The correlation id of the attempt (commands), or the id of the wait's or sleep's timer.
    /// Results and timer events name it; one that names anything else is stale.
    pub id: String,
    /// When the timer fires; `None`: no timer (a wait without a timeout).
    #[serde(default, with = "super::time::option", skip_serializing_if = "Option::is_none")]
    pub due_at: Option<u64>,
    /// The signal a wait waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The compensation of one instance: what it was sent, what it returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compensation {
    pub command: String,
    pub status: StepStatus,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(default, with = "super::time::option", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    #[serde(default, with = "super::time::option", skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<u64>,
}

/// One instance of one step: a visit of a step by its block run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Deterministic, unique in the saga (see [`super`]): `charge`, `reserve/reserve_one#2`.
    pub path: String,
    /// The step's name in the workflow.
    pub name: String,
    /// The step's kind: `command`, `choice`, `parallel`, `for_each`, `wait`, `sleep`,
    /// `sleep_until`, `fail`.
    pub kind: String,
    /// The block run it belongs to (an index into [`Saga::blocks`]).
    pub block: usize,
    pub status: StepStatus,
    /// Attempts made (commands).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// The command sent (command steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// What it was given: a command's payload, a for_each's list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The last failure: the one that ended it, or the one being retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(with = "super::time")]
    pub started_at: u64,
    #[serde(default, with = "super::time::option", skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<u64>,
    /// An attempt got no answer in time, or its result was refused as `invalid_output`: it
    /// may have taken effect. A failed step that is uncertain is compensated with the rest
    /// (its compensation gets the step's input).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uncertain: bool,
    /// Its place in the compensation log: set when a step with a compensation completes.
    /// Compensation undoes the log from the highest number down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Present once its compensation has begun.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<Compensation>,
    /// What it waits for now, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// The block runs it started (parallel branches, for_each iterations), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<usize>,
    /// A `workflow` step: the id of the child saga its latest attempt runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child: Option<String>,
}

/// One run of a block: the main block, a parallel branch, a for_each iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockRun {
    /// The block's name (`main` for the main block).
    pub block: String,
    /// The instance (a parallel or for_each step) that started it; `None` for the main block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<usize>,
    /// The path prefix of its instances (empty for the main block).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// For a for_each iteration: its index in the list, and the element (`index`, `item`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Value>,
    pub status: StepStatus,
    /// The instance running now (an index into [`Saga::steps`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<usize>,
    /// The failure that ended it, or the one a catch took (readable as `error` after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SagaError>,
}

impl BlockRun {
    /// A block run that begins now: `block` started by instance `owner` (none for the main
    /// block), its instances' paths under `prefix`.
    pub fn new(block: String, owner: Option<usize>, prefix: String) -> BlockRun {
        BlockRun {
            block,
            owner,
            prefix,
            index: None,
            item: None,
            status: StepStatus::Running,
            current: None,
            error: None,
        }
    }
}

/// Where a result goes: the command a saga answers (a `workflow` step's, or one a `handles`
/// workflow serves), as the command's metadata named it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyTo {
    /// The command's name.
    pub command: String,
    pub correlation_id: String,
    pub idempotency_key: String,
    /// The caller's step (instance path) and attempt.
    pub step: String,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The deployment (bus prefix) the command came from, when it is not this one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// What started a sub-saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    /// The parent saga's id (the calling command's transaction id).
    pub saga: String,
    /// The parent's step (instance path) that started it.
    pub step: String,
    /// The command this saga answers when it ends; `None` when a worker started it with
    /// `start-saga` (the worker waits on the record, not on a message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<ReplyTo>,
    /// When the parent stops waiting (the calling attempt's deadline): a saga still running
    /// then is cancelled, with code `timeout`.
    #[serde(default, with = "super::time::option", skip_serializing_if = "Option::is_none")]
    pub deadline: Option<u64>,
    /// How deep in the tree: 1 for a child of a root saga.
    #[serde(default)]
    pub depth: u32,
}

/// A signal that came before any wait took it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub name: String,
    pub payload: Value,
    #[serde(with = "super::time")]
    pub received_at: u64,
}

/// Something that happened to a saga, as its history records it. Written by the orchestrator in
/// the same atomic commit as the transition it describes, so the history never disagrees with
/// the record: an operator (or a test) reads it to see every attempt, failure, signal and
/// timeout. `step` is always an instance path.
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
    /// The next attempt is due at `due_at`.
    RetryScheduled {
        step: String,
        phase: Phase,
        attempt: u32,
        #[serde(with = "super::time")]
        due_at: u64,
    },
    /// A result came for an attempt the saga no longer waits on (it timed out, or the saga
    /// moved on): kept here, never dropped. `outcome` is `ok` or the failure's code.
    LateResult {
        step: String,
        phase: Phase,
        attempt: u32,
        outcome: String,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        message: String,
    },
    /// A step other than a command began (a wait, a sleep, a parallel, a for_each, a choice).
    Entered { step: String, kind: String },
    /// A step other than a command completed.
    Completed { step: String },
    /// A choice picked where to go (`end`, or a step name).
    Chose { step: String, next: String },
    /// A step failed for good with an error its catch takes: the block goes on at `next`.
    Caught { step: String, code: String, next: String },
    /// A step other than a command failed for good (a wait's timeout, a fail step, a
    /// for_each over something not a list, a branch's failure).
    StepFailed { step: String, code: String, message: String },
    /// A step that only waited (a wait, a sleep, a retry's backoff) was stopped because a
    /// sibling branch or iteration failed.
    Stopped { step: String },
    /// A signal was accepted: taken by a waiting step (`by`), or kept in the inbox.
    SignalReceived {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// A wait took a signal from the inbox.
    SignalTaken { step: String, name: String },
    /// An operator cancelled the saga: what ran is stopped and what completed is undone.
    /// (Also a sub-saga whose parent compensates, or whose parent's deadline passed.)
    Cancelled { reason: String },
    /// The parent of this completed sub-saga compensates: its own compensations run.
    UndoRequested { by: String },
    /// A command handler of this saga started a sub-saga (a `workflow` step's child is in
    /// its `dispatched` entry).
    ChildStarted { id: String, step: String },
    /// An operator asked a failed saga to try its failed compensations again.
    RetryRequested { compensations: Vec<String> },
    /// Undoing begins.
    CompensationStarted,
    /// The saga reached its terminal state.
    Finished { status: SagaStatus },
}

/// One entry of a saga's history: when, what, and the revision the change produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    #[serde(with = "super::time")]
    pub at: u64,
    /// The saga's revision after the commit that wrote this entry.
    pub revision: u64,
    #[serde(flatten)]
    pub event: HistoryEvent,
}

/// The id of a sub-saga's deadline timer (timer ids are per saga).
const DEADLINE_TIMER: &str = "deadline";

/// One saga instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saga {
    pub id: String,
    pub workflow: String,
    pub workflow_version: u32,
    /// The content hash of the definition it runs (see [`super::digest_text`]).
    #[serde(default)]
    pub workflow_hash: String,
    pub status: SagaStatus,
    pub input: Value,
    /// The saga's output, once it completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why the saga compensated, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SagaError>,
    /// Every step instance, in the order they began.
    pub steps: Vec<Instance>,
    /// Every block run, in the order they began; the first is the main block.
    #[serde(default)]
    pub blocks: Vec<BlockRun>,
    /// Signals no wait has taken yet, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbox: Vec<Signal>,
    /// The last number given out in the compensation log.
    #[serde(default)]
    pub log_seq: u64,
    #[serde(with = "super::time")]
    pub created_at: u64,
    #[serde(with = "super::time")]
    pub updated_at: u64,
    /// Bumped on every committed change; stores use it for optimistic concurrency.
    pub revision: u64,
    /// When a finished saga's record, history and outcome records are deleted: its end plus
    /// the host's `--retain`. Absent while it runs, or kept forever.
    #[serde(default, with = "super::time::option", skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// What started it, when it is a sub-saga.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    /// The sub-sagas it started, in order: its `workflow` steps' children (every attempt's)
    /// and those its command handlers started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    /// The W3C trace context the saga was started in: its trace id and the span its root
    /// span hangs under (all zeros for a root of its own). Set when the start came with a
    /// `traceparent` (an API call, a parent saga's step, a worker's `run-saga`) or when the
    /// starting host exports traces; absent otherwise, and then nothing is traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

impl Saga {
    /// Whether the saga has begun (a saga is created and started in one commit; a record
    /// that has not is one a crash left between the two in an older version).
    pub fn is_started(&self) -> bool {
        !self.blocks.is_empty()
    }

    /// Every timer the saga waits on: (due, timer id). A running sub-saga whose parent has a
    /// deadline waits on it too (its id is [`Saga::deadline_timer`]).
    pub fn timers(&self) -> impl Iterator<Item = (u64, &str)> {
        let deadline = match &self.parent {
            Some(Parent { deadline: Some(at), .. }) if self.status == SagaStatus::Running => {
                Some((*at, DEADLINE_TIMER))
            }
            _ => None,
        };
        self.steps
            .iter()
            .filter_map(|s| s.waiting.as_ref())
            .filter_map(|w| Some((w.due_at?, w.id.as_str())))
            .chain(deadline)
    }

    /// The id of the timer of a sub-saga's deadline.
    pub fn deadline_timer() -> &'static str {
        DEADLINE_TIMER
    }

    /// When its earliest timer is due. Stores index sagas by it, so that timers whose host
    /// died are found without scanning every saga.
    pub fn timer_due(&self) -> Option<u64> {
        if self.status.is_terminal() {
            return None;
        }
        self.timers().map(|(due, _)| due).min()
    }

    /// The output of block run `run`: that of its latest completed step with one. Read off the
    /// instances rather than kept beside them, so that no commit writes an output twice.
    pub fn block_output(&self, run: usize) -> Option<&Value> {
        self.steps
            .iter()
            .rev()
            .find(|s| s.block == run && s.status == StepStatus::Completed && s.output.is_some())
            .and_then(|s| s.output.as_ref())
    }

    /// The latest completed output of the step named `name`.
    pub fn output_of(&self, name: &str) -> Option<&Value> {
        self.steps
            .iter()
            .rev()
            .find(|s| s.name == name && s.status == StepStatus::Completed)
            .and_then(|s| s.output.as_ref())
    }
}
