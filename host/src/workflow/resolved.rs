//! Stage 3: the resolved workflow, as the orchestrator reads it. Immutable, shared behind an
//! `Arc`; every name is resolved to an index, every duration and default is applied, every
//! expression is compiled.

use std::path::PathBuf;
use std::time::Duration;

use super::expr::Expr;
use super::schema::Schema;

/// The index of the main block (the root `[[step]]` list) in [`Workflow::blocks`].
pub const MAIN: usize = 0;

/// A validated, resolved workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    pub name: String,
    pub version: u32,
    pub description: Option<String>,
    /// The file it was read from, for messages.
    pub source: PathBuf,
    /// `sha256:` and 16 hex digits of the file's text: which definition a saga runs.
    pub hash: String,
    /// The file's text, kept by the store under `hash` so a saga runs to its end on the
    /// definition it started with.
    pub text: std::sync::Arc<str>,
    /// The main block first ([`MAIN`]), then the named blocks in file order.
    pub blocks: Vec<Block>,
    /// The saga's output; `None`: the main block's output.
    pub output: Option<Expr>,
    /// A JSON Schema the saga input must satisfy, checked at start.
    pub input_schema: Option<Schema>,
    /// The command this workflow answers on the bus (`handles`).
    pub handles: Option<String>,
    /// The commands it declares as served outside the host, by name.
    pub external: std::collections::BTreeMap<String, super::external::External>,
}

/// A list of steps run in order (with jumps).
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// `main` for the main block.
    pub name: String,
    pub steps: Vec<Step>,
}

/// One step of a block.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
    /// Where the block goes when the step completes.
    pub next: Next,
    /// Where it goes when the step fails for good, by failure code (first match wins).
    pub catch: Vec<Catch>,
    /// Line of the step in the source, for messages.
    pub line: usize,
}

/// A jump target inside a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The step after this one in the block (or the end of the block after the last).
    Following,
    /// The step at this index of the same block.
    Step(usize),
    /// `"end"`: the block ends.
    End,
}

/// One entry of a `catch` list.
#[derive(Debug, Clone, PartialEq)]
pub struct Catch {
    /// Failure codes it takes; empty: every code.
    pub errors: Vec<String>,
    pub next: Next,
}

impl Catch {
    pub fn takes(&self, code: &str) -> bool {
        self.errors.is_empty() || self.errors.iter().any(|e| e == code)
    }
}

/// What a step does. One variant per step kind; the orchestrator runs each in
/// `orchestrator/steps/<kind>.rs`.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    Command(Command),
    Choice(Choice),
    Parallel(Parallel),
    ForEach(ForEach),
    Wait(Wait),
    Sleep(Sleep),
    Fail(Fail),
    /// `workflow = "NAME"`: a sub-saga. Run as a command to the host that runs `NAME` (see
    /// [`sub_saga_command`]), so that retries, deadlines and the compensation log treat it as
    /// they treat any command.
    Workflow(Command),
}

/// The command a `workflow` step sends to run (and, as its compensation, to undo) a saga of
/// `workflow`: `saga:NAME`. The `:` keeps it apart from every authored command name.
pub fn sub_saga_command(workflow: &str) -> String {
    format!("{SUB_SAGA_PREFIX}{workflow}")
}

/// What [`sub_saga_command`] puts before the workflow's name.
pub const SUB_SAGA_PREFIX: &str = "saga:";

impl StepKind {
    /// The kind's name, as the grammar spells it.
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Command(_) => "command",
            StepKind::Choice(_) => "choice",
            StepKind::Parallel(_) => "parallel",
            StepKind::ForEach(_) => "for_each",
            StepKind::Wait(_) => "wait",
            StepKind::Sleep(Sleep::For(_)) => "sleep",
            StepKind::Sleep(Sleep::Until(_)) => "sleep_until",
            StepKind::Fail(_) => "fail",
            StepKind::Workflow(_) => "workflow",
        }
    }

    /// The blocks the step runs (parallel, for_each).
    pub fn blocks(&self) -> &[usize] {
        match self {
            StepKind::Parallel(p) => &p.blocks,
            StepKind::ForEach(f) => std::slice::from_ref(&f.block),
            _ => &[],
        }
    }
}

/// `command = "..."`: send a command to a worker. (Also a `workflow` step's, whose command
/// and compensation are [`sub_saga_command`].)
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub command: String,
    /// A `workflow` step: the workflow its sub-saga runs.
    pub workflow: Option<String>,
    /// The command that undoes this step, run when the saga compensates.
    pub compensate: Option<String>,
    /// The payload of `command`; the saga input when absent.
    pub input: Option<Expr>,
    /// The payload of `compensate`; this step's output when absent.
    pub compensate_input: Option<Expr>,
    /// How long an attempt may take once a worker started it.
    pub timeout: Duration,
    /// How long an attempt may wait for a worker to start it; `None`: as long as its
    /// `timeout` allows (the attempt's deadline is then its dispatch plus `timeout`).
    pub queue_timeout: Option<Duration>,
    pub retry: RetryPolicy,
}

/// `choice = [{ when, next }, ...]`, `otherwise`.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub cases: Vec<(Expr, Next)>,
    /// Where to go when no case matches (default: the following step).
    pub otherwise: Next,
}

/// `parallel = ["block", ...]`: the blocks side by side; output `{ block: output, ... }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Parallel {
    /// Indexes into [`Workflow::blocks`].
    pub blocks: Vec<usize>,
}

/// `for_each = "expr"`, `run = "block"`, `concurrency = N`.
#[derive(Debug, Clone, PartialEq)]
pub struct ForEach {
    /// Gives the list to iterate over.
    pub items: Expr,
    /// Index into [`Workflow::blocks`].
    pub block: usize,
    /// Iterations running at once, at least 1.
    pub concurrency: usize,
}

/// `wait = "signal"`: until the signal comes; its payload is the output.
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    pub signal: String,
    /// The payload must fit it: a signal that does not is refused when it is sent.
    pub schema: Option<Schema>,
    /// Fails with `timeout` when no signal came in time; `None`: waits for ever.
    pub timeout: Option<Duration>,
}

/// `sleep = "duration"` or `sleep_until = "expr"` (an RFC 3339 time).
#[derive(Debug, Clone, PartialEq)]
pub enum Sleep {
    For(Duration),
    Until(Expr),
}

/// `fail = { code, message }`: the step fails for good with this error.
#[derive(Debug, Clone, PartialEq)]
pub struct Fail {
    pub code: String,
    pub message: String,
}

/// How often and how patiently a failed command is tried again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first included: 1 means no retry.
    pub attempts: u32,
    /// Delay before the first retry.
    pub backoff: Duration,
    /// Cap of the delay.
    pub max_backoff: Duration,
    /// Factor between successive delays.
    pub multiplier: f64,
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (1-based), before jitter:
    /// `backoff * multiplier^(attempt-1)`, capped at `max_backoff`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.multiplier.powi(attempt.saturating_sub(1).min(64) as i32);
        let ms = (self.backoff.as_millis() as f64 * exp).min(self.max_backoff.as_millis() as f64);
        Duration::from_millis(ms as u64)
    }
}

impl Workflow {
    /// What is wrong with `payload` as signal `name`: the violations of each `wait` step on
    /// that signal that declares a `schema` ("step NAME: /pointer: what"). Empty when every
    /// such schema takes it, or none is declared.
    pub fn signal_violations(&self, name: &str, payload: &serde_json::Value) -> Vec<String> {
        let mut out = Vec::new();
        for (_, step) in self.all_steps() {
            if let StepKind::Wait(Wait { signal, schema: Some(schema), .. }) = &step.kind
                && signal == name
            {
                out.extend(schema.violations(payload).into_iter().map(|v| format!("step {}: {v}", step.name)));
            }
        }
        out
    }

    /// The step named `name`, with its block's index.
    pub fn step(&self, name: &str) -> Option<(usize, &Step)> {
        self.blocks
            .iter()
            .enumerate()
            .find_map(|(b, block)| block.steps.iter().find(|s| s.name == name).map(|s| (b, s)))
    }

    /// Every step of every block, with its block's index.
    pub fn all_steps(&self) -> impl Iterator<Item = (usize, &Step)> {
        self.blocks.iter().enumerate().flat_map(|(b, block)| block.steps.iter().map(move |s| (b, s)))
    }

    /// Every command the workflow sends, compensations included, with the step that sends it.
    pub fn commands(&self) -> impl Iterator<Item = (&'static str, &str, &Step)> {
        self.all_steps().flat_map(|(_, s)| {
            let mut out = Vec::new();
            if let StepKind::Command(c) = &s.kind {
                out.push(("command", c.command.as_str(), s));
                if let Some(comp) = &c.compensate {
                    out.push(("compensation", comp.as_str(), s));
                }
            }
            out
        })
    }
}
