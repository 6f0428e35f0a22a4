//! The pure decision function: `decide(workflow, saga, event, now) -> effects`.
//!
//! No I/O, no clock, no randomness: the time comes in as `now`, the jitter of retry delays is
//! a hash of the attempt's correlation id, and ids are derived from the saga id and instance
//! paths. The same inputs always give the same saga and the same effects, which is what makes
//! every transition testable without a broker and replayable after a crash.
//!
//! # Shape
//!
//! This file holds what every step kind shares: the events, the [`Ctx`] a decision carries,
//! starting and finishing instances and block runs, catches, and compensation. Each kind lives
//! in its own file under [`super::steps`], dispatched from the one match in [`enter`]; adding a
//! kind is adding a file there and a variant to [`StepKind`].
//!
//! Work inside one decision goes through a queue of [`Action`]s instead of recursion, so a
//! long chain of steps that complete at once (choices, sleeps already over, waits whose
//! signal is in the inbox) never deepens the stack, and a loop that never waits is cut off by
//! [`MAX_ACTIONS`].

use std::collections::VecDeque;

use serde_json::Value;

use super::steps;
use crate::model::{
    self, BlockRun, Compensation, ErrorInfo, HistoryEvent, Instance, Phase, ReplyTo, Saga, SagaError, SagaStatus,
    StepStatus, WaitOn,
};
use crate::protocol::{CommandMessage, ResultMessage};
use crate::workflow::expr::Scope;
use crate::workflow::{MAIN, Next, StepKind, Workflow};

/// Something that happened to a saga.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Begin the saga.
    Start,
    /// A worker answered.
    Result(ResultMessage),
    /// A timer fired: a command's deadline, the end of a backoff, a wait's timeout, the end
    /// of a sleep. `id` names it (see [`crate::model::Waiting::id`]).
    Timer { id: String },
    /// A signal came (its payload is JSON).
    Signal { name: String, payload: Value },
    /// An operator stops the saga: what runs is stopped and what completed is undone.
    Cancel { reason: String },
    /// An operator asks a `failed` saga to try its failed compensations again.
    Retry,
    /// The parent of this sub-saga compensates the step that ran it: a running saga is
    /// cancelled, a completed one runs its compensations. `reply`: the compensation command
    /// to answer once that is done.
    Undo { reply: Option<ReplyTo> },
    /// A command handler of this saga started sub-saga `id` from step `step`.
    ChildStarted { id: String, step: String },
}

/// What the caller must do after a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send this command to the workers.
    Dispatch(CommandMessage),
    /// Deliver `event` to this saga at `at` (ms since the epoch).
    Schedule { at: u64, event: Event },
}

/// The result of [`decide`].
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    /// False when the event was stale or a duplicate: nothing to commit.
    pub changed: bool,
    pub effects: Vec<Effect>,
    /// What happened, in order, for the saga's history (committed with the saga).
    pub history: Vec<HistoryEvent>,
}

/// How long after a step's timeout the orchestrator gives up on the attempt. The worker
/// enforces the timeout itself and reports a precise error (which plugin, which deadline);
/// this grace lets that report arrive first. The orchestrator's own timer is the backstop
/// for a result that never comes (a lost message, a dead worker).
pub const TIMEOUT_GRACE_MS: u64 = 250;

/// Most actions one decision carries out. A workflow that loops without ever waiting (a
/// choice that jumps back to itself) would otherwise spin for ever inside one decision; past
/// this the block fails with `too_many_steps`.
pub const MAX_ACTIONS: usize = 10_000;

/// Most step instances one saga may have. Each is kept in the record; a loop that runs for
/// ever must not grow it without bound.
pub const MAX_INSTANCES: usize = 10_000;

/// Failure code of a block cut off by [`MAX_ACTIONS`] or [`MAX_INSTANCES`].
pub const TOO_MANY_STEPS: &str = "too_many_steps";
/// Failure code of a cancelled saga.
pub const CANCELLED: &str = "cancelled";

/// Work left to do inside one decision.
#[derive(Debug)]
pub(crate) enum Action {
    /// Begin step `index` of block run `run`.
    Enter { run: usize, index: usize },
    /// Block run `run` ended (completed, failed or cancelled): tell its owner.
    BlockDone { run: usize },
}

/// What a decision works with: the definition, the time, what it has decided so far.
pub(crate) struct Ctx<'a> {
    pub wf: &'a Workflow,
    pub now: u64,
    pub out: &'a mut Decision,
    pub queue: VecDeque<Action>,
}

/// Apply `event` to `saga` (which must be an instance of `wf`) at time `now`.
pub fn decide(wf: &Workflow, saga: &mut Saga, event: &Event, now: u64) -> Decision {
    let mut d = Decision::default();
    let mut cx = Ctx { wf, now, out: &mut d, queue: VecDeque::new() };
    let changed = match event {
        Event::Start if !saga.is_started() => {
            cx.out.history.push(HistoryEvent::Started);
            saga.blocks.push(BlockRun::new(wf.blocks[MAIN].name.clone(), None, String::new()));
            cx.queue.push_back(Action::Enter { run: 0, index: 0 });
            true
        }
        Event::Result(r) => match waiting(saga, WaitOn::Result, &r.meta.correlation_id) {
            Some(i) => steps::command::on_result(&mut cx, saga, i, &r.outcome),
            None => steps::command::on_late_result(&mut cx, saga, r),
        },
        Event::Timer { id } if id == Saga::deadline_timer() => {
            let due = saga.parent.as_ref().and_then(|p| p.deadline);
            if saga.status == SagaStatus::Running && due.is_some_and(|d| d <= now) {
                let reason = "the parent step's deadline passed before this sub-saga ended".to_owned();
                cancel(&mut cx, saga, &reason, crate::protocol::codes::TIMEOUT);
                true
            } else {
                false
            }
        }
        Event::Timer { id } => match saga.steps.iter().position(|s| s.waiting.as_ref().is_some_and(|w| w.id == *id)) {
            Some(i) => on_timer(&mut cx, saga, i),
            None => false,
        },
        Event::Signal { name, payload } if !saga.status.is_terminal() => {
            steps::wait::on_signal(&mut cx, saga, name, payload);
            true
        }
        Event::Cancel { reason } if saga.status == SagaStatus::Running => {
            cancel(&mut cx, saga, reason, CANCELLED);
            true
        }
        Event::Undo { reply } => undo(&mut cx, saga, reply.as_ref()),
        Event::ChildStarted { id, step } if !saga.children.contains(id) => {
            saga.children.push(id.clone());
            cx.out.history.push(HistoryEvent::ChildStarted { id: id.clone(), step: step.clone() });
            true
        }
        Event::Retry if saga.status == SagaStatus::Failed => retry(&mut cx, saga),
        _ => false,
    };
    if changed {
        run_queue(&mut cx, saga);
        d.changed = true;
        saga.updated_at = now;
    }
    d
}

/// The instance waiting on `on` under `id`.
fn waiting(saga: &Saga, on: WaitOn, id: &str) -> Option<usize> {
    saga.steps.iter().position(|s| s.waiting.as_ref().is_some_and(|w| w.on == on && w.id == id))
}

fn on_timer(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize) -> bool {
    let Some(w) = saga.steps[i].waiting.clone() else { return false };
    match w.on {
        WaitOn::Result => steps::command::on_deadline(cx, saga, i),
        WaitOn::Backoff => steps::command::on_backoff_over(cx, saga, i),
        WaitOn::Signal => steps::wait::on_timeout(cx, saga, i),
        WaitOn::Sleep => {
            steps::sleep::on_over(cx, saga, i);
            true
        }
    }
}

fn run_queue(cx: &mut Ctx<'_>, saga: &mut Saga) {
    let mut done = 0;
    while let Some(action) = cx.queue.pop_front() {
        done += 1;
        match action {
            Action::Enter { run, .. } if done > MAX_ACTIONS || saga.steps.len() >= MAX_INSTANCES => {
                let message = format!(
                    "the saga ran more than {} steps without waiting, or has more than {MAX_INSTANCES} step instances: a loop that never waits? Give it a way out",
                    MAX_ACTIONS
                );
                end_run(
                    cx,
                    saga,
                    run,
                    Err(SagaError { step: saga.blocks[run].prefix.clone(), code: TOO_MANY_STEPS.into(), message }),
                );
            }
            Action::Enter { run, index } => enter(cx, saga, run, index),
            Action::BlockDone { run } => block_done(cx, saga, run),
        }
    }
}

/// The index in the workflow of the block that block run `run` runs.
pub(crate) fn block_of(wf: &Workflow, saga: &Saga, run: usize) -> usize {
    let name = &saga.blocks[run].block;
    wf.blocks.iter().position(|b| b.name == *name).unwrap_or(MAIN)
}

/// Begin step `index` of block run `run`: a new instance, then the kind's own start.
fn enter(cx: &mut Ctx<'_>, saga: &mut Saga, run: usize, index: usize) {
    let b = block_of(cx.wf, saga, run);
    let wf = cx.wf;
    let Some(step) = wf.blocks[b].steps.get(index) else {
        return end_run(cx, saga, run, Ok(()));
    };
    if stopping(saga, run) {
        return end_cancelled(cx, saga, run);
    }
    let prefix = &saga.blocks[run].prefix;
    let n = 1 + saga.steps.iter().filter(|s| s.name == step.name && saga.blocks[s.block].prefix == *prefix).count();
    let path = model::instance_path(prefix, &step.name, n);
    let i = saga.steps.len();
    saga.steps.push(Instance {
        path,
        name: step.name.clone(),
        kind: step.kind.name().to_owned(),
        block: run,
        status: StepStatus::Running,
        attempts: 0,
        command: None,
        input: None,
        output: None,
        error: None,
        started_at: cx.now,
        ended_at: None,
        uncertain: false,
        seq: None,
        compensation: None,
        waiting: None,
        children: Vec::new(),
        child: None,
    });
    saga.blocks[run].current = Some(i);
    if !matches!(step.kind, StepKind::Command(_) | StepKind::Workflow(_)) {
        cx.out
            .history
            .push(HistoryEvent::Entered { step: saga.steps[i].path.clone(), kind: step.kind.name().to_owned() });
    }
    match &step.kind {
        StepKind::Command(c) => steps::command::enter(cx, saga, i, c),
        StepKind::Choice(c) => steps::choice::enter(cx, saga, i, c),
        StepKind::Parallel(p) => steps::parallel::enter(cx, saga, i, p),
        StepKind::ForEach(f) => steps::for_each::enter(cx, saga, i, f),
        StepKind::Wait(w) => steps::wait::enter(cx, saga, i, w),
        StepKind::Sleep(s) => steps::sleep::enter(cx, saga, i, s),
        StepKind::Fail(f) => steps::fail::enter(cx, saga, i, f),
        StepKind::Workflow(w) => steps::workflow::enter(cx, saga, i, w),
    }
}

/// Whether new work in block run `run` must not start: a parallel or for_each it runs under
/// has a branch or iteration that failed, or the saga is no longer running forward.
fn stopping(saga: &Saga, mut run: usize) -> bool {
    if saga.status != SagaStatus::Running {
        return true;
    }
    while let Some(owner) = saga.blocks[run].owner {
        let o = &saga.steps[owner];
        if o.children.iter().any(|&c| saga.blocks[c].status == StepStatus::Failed) {
            return true;
        }
        run = o.block;
    }
    false
}

/// Instance `i` (a parallel or a for_each) ends cancelled because one of its block runs was
/// stopped: an enclosing step failed, or the saga was cancelled. Its own block run stops too.
pub(crate) fn cancel_owner(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize) {
    let inst = &mut saga.steps[i];
    inst.status = StepStatus::Cancelled;
    inst.ended_at = Some(cx.now);
    let run = inst.block;
    end_cancelled(cx, saga, run);
}

/// Whether instance `i` runs inside a block run started by instance `owner`, at any depth.
fn under(saga: &Saga, i: usize, owner: usize) -> bool {
    let mut run = saga.steps[i].block;
    while let Some(o) = saga.blocks[run].owner {
        if o == owner {
            return true;
        }
        run = saga.steps[o].block;
    }
    false
}

/// A branch or iteration of `owner` failed: stop what waits under it without doing anything
/// (a wait, a sleep, a retry's backoff), so the step fails once the commands still out have
/// answered, instead of waiting for a signal or a timer that no longer matters.
pub(crate) fn stop_idle_under(cx: &mut Ctx<'_>, saga: &mut Saga, owner: usize) {
    for i in 0..saga.steps.len() {
        let idle = saga.steps[i].status == StepStatus::Running
            && saga.steps[i].waiting.as_ref().is_some_and(|w| w.on != WaitOn::Result);
        if idle && under(saga, i, owner) {
            let inst = &mut saga.steps[i];
            inst.status = StepStatus::Cancelled;
            inst.ended_at = Some(cx.now);
            inst.waiting = None;
            cx.out.history.push(HistoryEvent::Stopped { step: inst.path.clone() });
            let run = inst.block;
            end_cancelled(cx, saga, run);
        }
    }
}

/// The workflow step of instance `i`.
pub(crate) fn step_of<'w>(wf: &'w Workflow, saga: &Saga, i: usize) -> Option<(usize, &'w crate::workflow::Step)> {
    let b = block_of(wf, saga, saga.steps[i].block);
    wf.blocks[b].steps.iter().enumerate().find(|(_, s)| s.name == saga.steps[i].name)
}

/// Instance `i` completed with `output` (or, for a choice, with none): record it and go on
/// to `next` (the step's own `next` when `None`).
pub(crate) fn complete(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize, output: Option<Value>, next: Option<Next>) {
    let Some((index, step)) = step_of(cx.wf, saga, i) else { return };
    let compensable = matches!(&step.kind, StepKind::Command(c) | StepKind::Workflow(c) if c.compensate.is_some());
    let inst = &mut saga.steps[i];
    inst.status = StepStatus::Completed;
    inst.ended_at = Some(cx.now);
    inst.waiting = None;
    inst.error = None;
    if !matches!(step.kind, StepKind::Command(_) | StepKind::Workflow(_) | StepKind::Choice(_)) {
        cx.out.history.push(HistoryEvent::Completed { step: inst.path.clone() });
    }
    if compensable {
        saga.log_seq += 1;
        saga.steps[i].seq = Some(saga.log_seq);
    }
    let run = saga.steps[i].block;
    if let Some(output) = output {
        saga.steps[i].output = Some(output);
    }
    go(cx, saga, run, index, next.unwrap_or(step.next));
}

/// Continue block run `run` after its step `index`.
fn go(cx: &mut Ctx<'_>, saga: &mut Saga, run: usize, index: usize, next: Next) {
    saga.blocks[run].current = None;
    match next {
        Next::Following => cx.queue.push_back(Action::Enter { run, index: index + 1 }),
        Next::Step(j) => cx.queue.push_back(Action::Enter { run, index: j }),
        Next::End => end_run(cx, saga, run, Ok(())),
    }
}

/// Instance `i` failed for good. Its step's catch may take the error (the block goes on);
/// otherwise the block run fails. `history`: whether to record a [`HistoryEvent::StepFailed`]
/// (commands record their failed attempts already).
pub(crate) fn fail(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize, error: ErrorInfo, history: bool) {
    let inst = &mut saga.steps[i];
    inst.status = StepStatus::Failed;
    inst.ended_at = Some(cx.now);
    inst.waiting = None;
    inst.error = Some(error.clone());
    let path = inst.path.clone();
    let run = inst.block;
    if history {
        cx.out.history.push(HistoryEvent::StepFailed {
            step: path.clone(),
            code: error.code.clone(),
            message: error.message.clone(),
        });
    }
    let failure = SagaError { step: path.clone(), code: error.code, message: error.message };
    let Some((index, step)) = step_of(cx.wf, saga, i) else {
        return end_run(cx, saga, run, Err(failure));
    };
    match step.catch.iter().find(|c| c.takes(&failure.code)) {
        Some(c) if saga.status == SagaStatus::Running => {
            let next = match c.next {
                Next::Step(j) => cx.wf.blocks[block_of(cx.wf, saga, run)].steps[j].name.clone(),
                Next::End | Next::Following => "end".to_owned(),
            };
            cx.out.history.push(HistoryEvent::Caught { step: path, code: failure.code.clone(), next });
            saga.blocks[run].error = Some(failure);
            go(cx, saga, run, index, c.next);
        }
        _ => end_run(cx, saga, run, Err(failure)),
    }
}

/// Block run `run` ends: completed, or failed with `error`.
pub(crate) fn end_run(cx: &mut Ctx<'_>, saga: &mut Saga, run: usize, result: Result<(), SagaError>) {
    let r = &mut saga.blocks[run];
    if r.status != StepStatus::Running {
        return;
    }
    r.current = None;
    match result {
        Ok(()) => r.status = StepStatus::Completed,
        Err(e) => {
            r.status = StepStatus::Failed;
            r.error = Some(e);
        }
    }
    cx.queue.push_back(Action::BlockDone { run });
}

/// Block run `run` stops before its end (the saga or an enclosing step no longer needs it).
pub(crate) fn end_cancelled(cx: &mut Ctx<'_>, saga: &mut Saga, run: usize) {
    let r = &mut saga.blocks[run];
    if r.status == StepStatus::Running {
        r.status = StepStatus::Cancelled;
        r.current = None;
        cx.queue.push_back(Action::BlockDone { run });
    }
}

/// A block run ended: tell the step that started it, or end the saga.
fn block_done(cx: &mut Ctx<'_>, saga: &mut Saga, run: usize) {
    let Some(owner) = saga.blocks[run].owner else {
        return main_done(cx, saga);
    };
    if saga.steps[owner].status != StepStatus::Running {
        return;
    }
    match saga.steps[owner].kind.as_str() {
        "parallel" => steps::parallel::child_done(cx, saga, owner),
        "for_each" => steps::for_each::child_done(cx, saga, owner),
        _ => {}
    }
}

fn main_done(cx: &mut Ctx<'_>, saga: &mut Saga) {
    if saga.status != SagaStatus::Running {
        return;
    }
    let main = &saga.blocks[0];
    match main.status {
        StepStatus::Completed => {
            let output = match &cx.wf.output {
                None => Ok(saga.block_output(0).cloned().unwrap_or(Value::Null)),
                Some(e) => e.eval(&SagaScope { saga, run: 0 }),
            };
            match output {
                Ok(v) => {
                    saga.output = Some(v);
                    finish(cx, saga, SagaStatus::Completed);
                }
                Err(message) => {
                    saga.error = Some(SagaError {
                        step: String::new(),
                        code: crate::protocol::codes::INVALID_OUTPUT.into(),
                        message: format!("the workflow's output: {message}"),
                    });
                    begin_compensation(cx, saga);
                }
            }
        }
        _ => {
            saga.error = main.error.clone();
            begin_compensation(cx, saga);
        }
    }
}

pub(crate) fn finish(cx: &mut Ctx<'_>, saga: &mut Saga, status: SagaStatus) {
    saga.status = status;
    cx.out.history.push(HistoryEvent::Finished { status });
}

fn begin_compensation(cx: &mut Ctx<'_>, saga: &mut Saga) {
    saga.status = SagaStatus::Compensating;
    cx.out.history.push(HistoryEvent::CompensationStarted);
    continue_compensation(cx, saga);
}

/// Undo the latest entry of the compensation log not undone yet, or finish.
pub(crate) fn continue_compensation(cx: &mut Ctx<'_>, saga: &mut Saga) {
    let next = saga
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.seq.is_some() && s.compensation.as_ref().is_none_or(|c| c.status == StepStatus::Pending))
        .max_by_key(|(_, s)| s.seq)
        .map(|(i, _)| i);
    match next {
        Some(i) => steps::command::begin_compensation(cx, saga, i),
        None => {
            let any_failed =
                saga.steps.iter().any(|s| s.compensation.as_ref().is_some_and(|c| c.status == StepStatus::Failed));
            finish(cx, saga, if any_failed { SagaStatus::Failed } else { SagaStatus::Compensated });
        }
    }
}

/// The parent compensates the step that ran this sub-saga: stop it and undo it. The reply
/// (the parent's compensation command) is answered when this saga ends again.
fn undo(cx: &mut Ctx<'_>, saga: &mut Saga, reply: Option<&ReplyTo>) -> bool {
    if let (Some(parent), Some(reply)) = (saga.parent.as_mut(), reply) {
        if parent.reply.as_ref() == Some(reply) {
            return false;
        }
        parent.reply = Some(reply.clone());
    }
    let by = saga.parent.as_ref().map(|p| p.saga.clone()).unwrap_or_default();
    match saga.status {
        SagaStatus::Running => cancel(cx, saga, &format!("its parent {by:?} compensates"), CANCELLED),
        SagaStatus::Completed => {
            cx.out.history.push(HistoryEvent::UndoRequested { by });
            saga.expires_at = None;
            begin_compensation(cx, saga);
        }
        // Already undoing, or undone: the reply goes out when it ends (or at once, by the
        // caller, for a saga that has ended).
        _ => {}
    }
    true
}

fn cancel(cx: &mut Ctx<'_>, saga: &mut Saga, reason: &str, code: &str) {
    cx.out.history.push(HistoryEvent::Cancelled { reason: reason.to_owned() });
    let wf = cx.wf;
    for i in 0..saga.steps.len() {
        if saga.steps[i].status != StepStatus::Running {
            continue;
        }
        // A command whose attempt is out may have had its effect: undo it with the rest.
        let uncertain = saga.steps[i].waiting.as_ref().is_some_and(|w| w.phase == Phase::Forward && w.attempt > 0)
            && step_of(wf, saga, i).is_some_and(
                |(_, s)| matches!(&s.kind, StepKind::Command(c) | StepKind::Workflow(c) if c.compensate.is_some()),
            );
        let inst = &mut saga.steps[i];
        inst.status = StepStatus::Cancelled;
        inst.ended_at = Some(cx.now);
        inst.waiting = None;
        if uncertain {
            saga.log_seq += 1;
            saga.steps[i].seq = Some(saga.log_seq);
        }
    }
    for r in &mut saga.blocks {
        if r.status == StepStatus::Running {
            r.status = StepStatus::Cancelled;
            r.current = None;
        }
    }
    saga.error = Some(SagaError { step: String::new(), code: code.into(), message: reason.to_owned() });
    begin_compensation(cx, saga);
}

fn retry(cx: &mut Ctx<'_>, saga: &mut Saga) -> bool {
    let mut again = Vec::new();
    for s in &mut saga.steps {
        if let Some(c) = s.compensation.as_mut()
            && c.status == StepStatus::Failed
        {
            c.status = StepStatus::Pending;
            again.push(s.path.clone());
        }
    }
    if again.is_empty() {
        return false;
    }
    cx.out.history.push(HistoryEvent::RetryRequested { compensations: again });
    saga.status = SagaStatus::Compensating;
    continue_compensation(cx, saga);
    true
}

/// Start a compensation record for instance `i` (or reuse the one an operator's retry reset).
pub(crate) fn compensation_record<'a>(saga: &'a mut Saga, i: usize, command: &str) -> &'a mut Compensation {
    saga.steps[i].compensation.get_or_insert_with(|| Compensation {
        command: command.to_owned(),
        status: StepStatus::Running,
        attempts: 0,
        input: None,
        output: None,
        error: None,
        started_at: None,
        ended_at: None,
    })
}

/// What an expression evaluated for block run `run` reads.
pub(crate) struct SagaScope<'a> {
    pub saga: &'a Saga,
    pub run: usize,
}

impl SagaScope<'_> {
    /// `run`, then the block runs that contain it, up to the main block.
    fn chain(&self) -> impl Iterator<Item = &BlockRun> {
        let saga = self.saga;
        std::iter::successors(saga.blocks.get(self.run), move |r| r.owner.map(|o| &saga.blocks[saga.steps[o].block]))
    }
}

impl Scope for SagaScope<'_> {
    fn input(&self) -> &Value {
        &self.saga.input
    }

    /// The latest output of `step` in this block run or the runs around it (so an iteration
    /// reads its own steps), else the latest anywhere (a step after a parallel reads a
    /// branch's).
    fn step_output(&self, step: &str) -> Option<&Value> {
        let saga = self.saga;
        let mut run = Some(self.run);
        while let Some(r) = run {
            if let Some(out) = saga
                .steps
                .iter()
                .rev()
                .find(|s| s.block == r && s.name == step && s.status == StepStatus::Completed)
                .and_then(|s| s.output.as_ref())
            {
                return Some(out);
            }
            run = saga.blocks[r].owner.map(|o| saga.steps[o].block);
        }
        saga.output_of(step)
    }

    fn variable(&self, name: &str) -> Option<Value> {
        match name {
            "item" => self.chain().find_map(|r| r.item.clone()),
            "index" => self.chain().find_map(|r| r.index).map(Value::from),
            "error" => self
                .chain()
                .find_map(|r| r.error.as_ref())
                .map(|e| serde_json::json!({ "step": e.step, "code": e.code, "message": e.message })),
            _ => None,
        }
    }
}

/// The commands the saga is waiting on, rebuilt from the record, for sending them again after
/// a restart (a transport that lost them). They have the same ids as the originals, so a
/// worker that already ran one answers from its idempotency record.
pub fn pending_commands(wf: &Workflow, saga: &Saga) -> Vec<CommandMessage> {
    (0..saga.steps.len()).filter_map(|i| steps::command::pending(wf, saga, i)).collect()
}

/// The timers the saga waits on: when each is due and the event it delivers.
pub fn pending_timers(saga: &Saga) -> Vec<(u64, Event)> {
    saga.timers().map(|(at, id)| (at, Event::Timer { id: id.to_owned() })).collect()
}

/// A new saga of `wf`, not yet started.
pub fn new_saga(id: String, wf: &Workflow, input: Value, now: u64) -> Saga {
    Saga {
        id,
        workflow: wf.name.clone(),
        workflow_version: wf.version,
        workflow_hash: wf.hash.clone(),
        status: SagaStatus::Running,
        input,
        output: None,
        error: None,
        steps: Vec::new(),
        blocks: Vec::new(),
        inbox: Vec::new(),
        log_seq: 0,
        created_at: now,
        updated_at: now,
        revision: 0,
        expires_at: None,
        parent: None,
        children: Vec::new(),
        trace: None,
    }
}
