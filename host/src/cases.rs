//! Workflow tests with time skipped: `baton test`.
//!
//! A case file (`<workflows>/tests/*.test.toml`) holds cases for one workflow: an input, what
//! each command answers (or that it never answers), the signals to send and when, and what to
//! expect. [`run_case`] drives the pure [`decide`] with a virtual clock: nothing sleeps, so a
//! `48h` approval timeout takes microseconds, and no plugin, store or bus is needed. With a
//! [`Runtime`] the real plugins answer instead of the recorded results (the clock is still
//! virtual for timers).
//!
//! ```toml
//! workflow = "order"            # default: the file's name before `.test.toml`
//!
//! [[case]]
//! name = "a declined card undoes the reservation"
//! input = { order_id = "o-1", customer = "ada", items = [{ sku = "A-1", qty = 1, price = 5.0 }] }
//! [case.results]
//! "*" = { ok = {} }                                    # any command not named below
//! "payment.charge" = { err = { code = "card_declined", message = "no" } }
//! "shipping.ship" = [{ hang = true }, { ok = { tracking_number = "T-1" } }]   # per attempt
//! [[case.signals]]
//! name = "approved"
//! payload = { approved = true }
//! at = "1h"                                            # after the start, virtual
//! [case.expect]
//! status = "compensated"
//! error = "card_declined"
//! compensations = ["reserve/reserve_item#1"]           # in the order they ran
//! steps = { notify = "not_begun" }                     # status by instance path
//! ```
//!
//! A command's answer is looked up by the instance path of its step (`"settle/charge"`), then
//! by command name, then `"*"`; a compensation's by command name, then `"*"`. A list gives
//! one answer per attempt (the last one repeats). `after = "2s"` delays an answer; `hang =
//! true` never answers, so the step's timeout fires. A `workflow` step's child is answered as
//! the command `saga:<workflow>`.

use std::collections::{BTreeMap, BinaryHeap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::{HistoryEntry, HistoryEvent, Phase, Saga};
use crate::orchestrator::{Effect, Event, decide, new_saga};
use crate::protocol::{CommandMessage, Failure, Outcome, ResultMessage};
use crate::runtime::Runtime;
use crate::workflow::{Catalog, Workflow};

/// Most events one case may take: a workflow that loops on its timers without end stops.
const MAX_EVENTS: usize = 100_000;

/// Where virtual time starts when a case does not say (`start = "..."`).
const DEFAULT_START: &str = "2026-01-01T09:00:00Z";

/// One `*.test.toml` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub workflow: Option<String>,
    #[serde(rename = "case", default)]
    pub cases: Vec<Case>,
}

/// One case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    #[serde(default)]
    pub input: Value,
    /// The saga's id (default `test-1`).
    pub id: Option<String>,
    /// When virtual time starts (RFC 3339; default 2026-01-01T09:00:00Z).
    pub start: Option<String>,
    #[serde(default)]
    pub results: BTreeMap<String, Answers>,
    #[serde(default)]
    pub signals: Vec<SignalAt>,
    #[serde(default)]
    pub expect: Expect,
}

/// One answer, or one per attempt.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Answers {
    One(Answer),
    PerAttempt(Vec<Answer>),
}

/// What a command answers.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    pub ok: Option<Value>,
    pub err: Option<ErrAnswer>,
    /// Never answer: the step's timeout fires.
    #[serde(default)]
    pub hang: bool,
    /// How long after the command the answer comes (virtual; default at once).
    pub after: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrAnswer {
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub retryable: bool,
}

/// A signal, `at` after the start.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalAt {
    pub name: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default = "zero")]
    pub at: String,
}

fn zero() -> String {
    "0s".into()
}

/// What a case expects; each key is checked only when given.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub status: Option<String>,
    pub output: Option<Value>,
    /// The saga's error code.
    pub error: Option<String>,
    /// The instance paths whose compensations ran, in the order they began.
    pub compensations: Option<Vec<String>>,
    /// The commands sent, in order (first attempts and retries alike).
    pub commands: Option<Vec<String>>,
    /// Status by instance path.
    #[serde(default)]
    pub steps: BTreeMap<String, String>,
}

/// How one case went.
#[derive(Debug)]
pub struct Report {
    pub name: String,
    /// What did not match, one line each; empty when the case passed.
    pub mismatches: Vec<String>,
    /// The saga as it ended (or got stuck), and its history.
    pub saga: Option<Saga>,
    pub history: Vec<HistoryEntry>,
    /// Virtual time from the start to the end.
    pub virtual_time: Duration,
    pub took: Duration,
}

/// The case files under `dir` (`*.test.toml`), sorted.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with(".test.toml")))
        .collect();
    out.sort();
    Ok(out)
}

/// Read a case file: its workflow's name and its cases.
pub fn read(path: &Path) -> anyhow::Result<(String, Vec<Case>)> {
    let text = std::fs::read_to_string(path)?;
    let file: File = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let workflow = match file.workflow {
        Some(w) => w,
        None => path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".test.toml"))
            .unwrap_or_default()
            .to_owned(),
    };
    if file.cases.is_empty() {
        anyhow::bail!("{}: no [[case]] in it", path.display());
    }
    Ok((workflow, file.cases))
}

/// Something scheduled on the virtual clock (an answer or a signal): when, and its index in
/// the list of scheduled events (which is also the order they were scheduled in). The heap
/// pops the earliest; of two at the same time, the first scheduled.
#[derive(PartialEq, Eq)]
struct Due {
    at: u64,
    index: usize,
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.index).cmp(&(self.at, self.index))
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Run `case` of `workflow` in `catalog`; `plugins` answer the commands when given.
pub async fn run_case(catalog: &Catalog, workflow: &str, case: &Case, plugins: Option<&Runtime>) -> Report {
    let began = Instant::now();
    let mut out = Report {
        name: case.name.clone(),
        mismatches: Vec::new(),
        saga: None,
        history: Vec::new(),
        virtual_time: Duration::ZERO,
        took: Duration::ZERO,
    };
    let Some(wf) = catalog.get(workflow) else {
        out.mismatches.push(format!("no workflow {workflow:?} (loaded: {})", catalog.names().join(", ")));
        return out;
    };
    match drive(wf, case, plugins, &mut out).await {
        Ok(()) => {}
        Err(e) => out.mismatches.push(e),
    }
    if let Some(saga) = &out.saga {
        out.mismatches.extend(compare(&case.expect, saga, &out.history));
    }
    out.took = began.elapsed();
    out
}

async fn drive(wf: &Workflow, case: &Case, plugins: Option<&Runtime>, out: &mut Report) -> Result<(), String> {
    let start =
        crate::model::time::parse(case.start.as_deref().unwrap_or(DEFAULT_START)).map_err(|e| format!("start: {e}"))?;
    if let Some(schema) = &wf.input_schema {
        let violations = schema.violations(&case.input);
        if !violations.is_empty() {
            return Err(format!("the input does not fit the workflow's input_schema: {}", violations.join("; ")));
        }
    }
    let mut saga = new_saga(case.id.clone().unwrap_or_else(|| "test-1".into()), wf, case.input.clone(), start);
    let mut now = start;
    let mut heap: BinaryHeap<Due> = BinaryHeap::new();
    let mut events: Vec<Option<Event>> = Vec::new();
    let push = |heap: &mut BinaryHeap<Due>, events: &mut Vec<Option<Event>>, at: u64, event: Event| {
        let index = events.len();
        events.push(Some(event));
        heap.push(Due { at, index });
    };
    for s in &case.signals {
        let at = crate::workflow::duration::parse(&s.at).map_err(|e| format!("signal {:?}: at: {e}", s.name))?;
        push(
            &mut heap,
            &mut events,
            start + at.as_millis() as u64,
            Event::Signal { name: s.name.clone(), payload: s.payload.clone() },
        );
    }
    let mut next = Some(Event::Start);
    let mut revision = 0;
    for _ in 0..MAX_EVENTS {
        let Some(event) = next.take() else { break };
        let d = decide(wf, &mut saga, &event, now);
        if d.changed {
            revision += 1;
            saga.revision = revision;
            out.history.extend(d.history.into_iter().map(|event| HistoryEntry { at: now, revision, event }));
        }
        for effect in d.effects {
            if let Effect::Dispatch(cmd) = effect
                && let Some((after, outcome)) = answer(case, &cmd, plugins, now).await?
            {
                let result = ResultMessage { command: cmd.name.clone(), meta: cmd.meta.clone(), outcome };
                push(&mut heap, &mut events, now + after, Event::Result(result));
            }
        }
        if saga.status.is_terminal() {
            break;
        }
        // The next thing to happen: an answer or a signal, or the saga's earliest timer.
        let timer = saga.timers().min_by_key(|(due, _)| *due).map(|(due, id)| (due, id.to_owned()));
        let queued = heap.peek().map(|d| d.at);
        next = match (queued, timer) {
            (Some(q), Some((t, _))) if q <= t => take(&mut heap, &mut events, &mut now),
            (Some(_), None) => take(&mut heap, &mut events, &mut now),
            (_, Some((t, id))) => {
                now = now.max(t);
                Some(Event::Timer { id })
            }
            (None, None) => None,
        };
    }
    out.virtual_time = Duration::from_millis(now.saturating_sub(start));
    let stuck = !saga.status.is_terminal();
    out.saga = Some(saga);
    if stuck && case.expect.status.as_deref().is_none_or(|s| s != "running") {
        return Err("the saga did not end: it waits for something the case never sends (a signal, or an answer to a command that hangs with no timeout)".into());
    }
    Ok(())
}

/// Take the earliest scheduled event, moving the clock to it.
fn take(heap: &mut BinaryHeap<Due>, events: &mut [Option<Event>], now: &mut u64) -> Option<Event> {
    let due = heap.pop()?;
    *now = (*now).max(due.at);
    events[due.index].take()
}

/// What `cmd` gets, and how long after it was sent: from the case, or from a plugin; `None`
/// when it never answers.
async fn answer(
    case: &Case,
    cmd: &CommandMessage,
    plugins: Option<&Runtime>,
    now: u64,
) -> Result<Option<(u64, Outcome)>, String> {
    if let Some(runtime) = plugins
        && runtime.command_names().contains(&cmd.name)
    {
        return Ok(Some((0, runtime.invoke(cmd, now).await)));
    }
    let compensating = cmd.meta.idempotency_key.ends_with(Phase::Compensate.as_str());
    let answers = (!compensating)
        .then(|| case.results.get(&cmd.meta.step))
        .flatten()
        .or_else(|| case.results.get(&cmd.name))
        .or_else(|| case.results.get("*"))
        .ok_or_else(|| {
            format!(
                "the saga sent {} (step {}, attempt {}) and the case says nothing of it: add `\"{}\" = {{ ok = {{}} }}` (or `\"*\"`) under [case.results]",
                cmd.name, cmd.meta.step, cmd.meta.attempt, cmd.name
            )
        })?;
    let a = match answers {
        Answers::One(a) => a,
        Answers::PerAttempt(list) => {
            let i = (cmd.meta.attempt as usize).saturating_sub(1).min(list.len().saturating_sub(1));
            list.get(i).ok_or_else(|| format!("the answers of {} are an empty list", cmd.name))?
        }
    };
    if a.hang {
        return Ok(None);
    }
    let after = match &a.after {
        Some(t) => {
            crate::workflow::duration::parse(t).map_err(|e| format!("{}: after: {e}", cmd.name))?.as_millis() as u64
        }
        None => 0,
    };
    let outcome = match (&a.ok, &a.err) {
        (Some(v), None) => Outcome::Ok(v.clone()),
        (None, Some(e)) => {
            Outcome::Err(Failure { code: e.code.clone(), message: e.message.clone(), retryable: e.retryable })
        }
        _ => return Err(format!("the answer of {} must have exactly one of ok, err or hang", cmd.name)),
    };
    Ok(Some((after, outcome)))
}

/// What of `expect` `saga` and `history` do not match, one line each.
fn compare(expect: &Expect, saga: &Saga, history: &[HistoryEntry]) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(status) = &expect.status
        && status != saga.status.as_str()
    {
        let why =
            saga.error.as_ref().map(|e| format!(" ({} at {}: {})", e.code, e.step, e.message)).unwrap_or_default();
        out.push(format!("status: expected {status}, got {}{why}", saga.status.as_str()));
    }
    if let Some(code) = &expect.error {
        let got = saga.error.as_ref().map(|e| e.code.as_str());
        if got != Some(code.as_str()) {
            out.push(format!("error: expected {code}, got {}", got.unwrap_or("none")));
        }
    }
    if let Some(output) = &expect.output
        && saga.output.as_ref() != Some(output)
    {
        let got = saga.output.as_ref().map_or("none".to_owned(), Value::to_string);
        out.push(format!("output: expected {output}, got {got}"));
    }
    if let Some(want) = &expect.compensations {
        let got = compensations(history);
        if *want != got {
            out.push(format!("compensations: expected {want:?}, got {got:?}"));
        }
    }
    if let Some(want) = &expect.commands {
        let got: Vec<String> = history
            .iter()
            .filter_map(|e| match &e.event {
                HistoryEvent::Dispatched { command, .. } => Some(command.clone()),
                _ => None,
            })
            .collect();
        if *want != got {
            out.push(format!("commands: expected {want:?}, got {got:?}"));
        }
    }
    for (path, status) in &expect.steps {
        match saga.steps.iter().rev().find(|i| i.path == *path) {
            Some(i) if i.status.as_str() == status => {}
            Some(i) => out.push(format!("step {path}: expected {status}, got {}", i.status.as_str())),
            None if status == "not_begun" => {}
            None => out.push(format!(
                "step {path}: expected {status}, but it never began (instances: {})",
                saga.steps.iter().map(|i| i.path.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
    out
}

/// The instance paths whose compensations began, in order (each once).
fn compensations(history: &[HistoryEntry]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in history {
        if let HistoryEvent::Dispatched { step, phase: Phase::Compensate, .. } = &e.event
            && !out.contains(step)
        {
            out.push(step.clone());
        }
    }
    out
}

/// A case's history as the CLI prints it (`baton history` lines).
pub fn history_lines(history: &[HistoryEntry]) -> Vec<String> {
    history.iter().map(|e| crate::view::history_line(&json!(e))).collect()
}
