//! The pure decision function: `decide(workflow, saga, event, now) -> effects`.
//!
//! No I/O, no clock, no randomness: the time comes in as `now`, the jitter of retry delays is
//! a hash of the attempt's correlation id, and ids are derived from the saga id. The same
//! inputs always give the same saga and the same effects, which is what makes every
//! transition testable without a broker and replayable after a crash.

use serde_json::Value;

use super::saga::{
    CompensationRecord, Cursor, ErrorInfo, HistoryEvent, Phase, Saga, SagaError, SagaStatus, StepStatus,
};
use crate::protocol::{CommandMessage, Failure, Meta, Outcome, ResultMessage, codes};
use crate::workflow::expr::Scope;
use crate::workflow::{Workflow, duration};

/// How long after a step's timeout the orchestrator gives up on the attempt. The worker
/// enforces the timeout itself and reports a precise error (which plugin, which deadline);
/// this grace lets that report arrive first. The orchestrator's own timer is the backstop
/// for a result that never comes (a lost message, a dead worker).
pub const TIMEOUT_GRACE_MS: u64 = 250;

/// Something that happened to a saga.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Begin the saga.
    Start,
    /// A worker answered.
    Result(ResultMessage),
    /// The deadline of the attempt with this correlation id passed.
    Timeout { correlation_id: String },
    /// The backoff after the failed attempt with this correlation id is over.
    RetryDue { correlation_id: String },
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

/// Apply `event` to `saga` (which must be an instance of `wf`) at time `now`.
pub fn decide(wf: &Workflow, saga: &mut Saga, event: &Event, now: u64) -> Decision {
    let mut d = Decision::default();
    match (event, &saga.cursor) {
        (Event::Start, Cursor::Idle) => {
            d.history.push(HistoryEvent::Started);
            begin_forward(wf, saga, 0, now, &mut d);
        }
        (Event::Result(r), Cursor::Awaiting { step, phase, attempt, correlation_id, .. })
            if *correlation_id == r.meta.correlation_id =>
        {
            let (step, phase, attempt) = (*step, *phase, *attempt);
            on_outcome(wf, saga, step, phase, attempt, &r.outcome, now, &mut d);
        }
        (Event::Timeout { correlation_id: cid }, Cursor::Awaiting { step, phase, attempt, correlation_id, .. })
            if cid == correlation_id =>
        {
            let (step, phase, attempt) = (*step, *phase, *attempt);
            let timeout = duration::format(wf.steps[step].timeout);
            let failure =
                Failure::retryable(codes::TIMEOUT, format!("no result within the step's timeout of {timeout}"));
            on_outcome(wf, saga, step, phase, attempt, &Outcome::Err(failure), now, &mut d);
        }
        (Event::RetryDue { correlation_id: cid }, Cursor::Backoff { step, phase, attempt, correlation_id, .. })
            if cid == correlation_id =>
        {
            let (step, phase, attempt) = (*step, *phase, *attempt);
            dispatch(wf, saga, step, phase, attempt + 1, now, &mut d);
        }
        _ => return d,
    }
    d.changed = true;
    saga.updated_at = now;
    d
}

fn begin_forward(wf: &Workflow, saga: &mut Saga, step: usize, now: u64, d: &mut Decision) {
    if step >= wf.steps.len() {
        finish(saga, SagaStatus::Completed, d);
    } else {
        dispatch(wf, saga, step, Phase::Forward, 1, now, d);
    }
}

/// Compensate the nearest completed step below `below` that has a compensation, or finish.
fn continue_compensation(wf: &Workflow, saga: &mut Saga, below: usize, now: u64, d: &mut Decision) {
    let next =
        (0..below).rev().find(|&i| saga.steps[i].status == StepStatus::Completed && wf.steps[i].compensate.is_some());
    match next {
        Some(i) => dispatch(wf, saga, i, Phase::Compensate, 1, now, d),
        None => {
            let any_failed =
                saga.steps.iter().any(|s| s.compensation.as_ref().is_some_and(|c| c.status == StepStatus::Failed));
            finish(saga, if any_failed { SagaStatus::Failed } else { SagaStatus::Compensated }, d);
        }
    }
}

fn finish(saga: &mut Saga, status: SagaStatus, d: &mut Decision) {
    saga.status = status;
    saga.cursor = Cursor::Done;
    d.history.push(HistoryEvent::Finished { status });
}

/// The ids of one attempt, derived from the saga id so that a replayed decision produces the
/// same command. The idempotency key leaves out the attempt: it is the same for every retry.
fn ids(saga_id: &str, step: &str, phase: Phase, attempt: u32) -> (String, String) {
    let key = format!("{saga_id}/{step}/{}", phase.as_str());
    (format!("{key}/{attempt}"), key)
}

struct SagaScope<'a>(&'a Saga);

impl Scope for SagaScope<'_> {
    fn input(&self) -> &Value {
        &self.0.input
    }
    fn step_output(&self, step: &str) -> Option<&Value> {
        self.0.steps.iter().find(|s| s.name == step)?.output.as_ref()
    }
}

/// The command of attempt `attempt` of `step` in `phase`, built from the saga as it is now.
/// Deterministic: the same saga gives the same command, ids included.
fn command_for(wf: &Workflow, saga: &Saga, step: usize, phase: Phase, attempt: u32) -> CommandMessage {
    let def = &wf.steps[step];
    let (command, payload) = match phase {
        Phase::Forward => {
            let payload = match &def.input {
                Some(e) => e.eval(&SagaScope(saga)).unwrap_or(Value::Null),
                None => saga.input.clone(),
            };
            (def.command.clone(), payload)
        }
        Phase::Compensate => {
            let payload = match &def.compensate_input {
                Some(e) => e.eval(&SagaScope(saga)).unwrap_or(Value::Null),
                None => saga.steps[step].output.clone().unwrap_or(Value::Null),
            };
            (def.compensate.clone().unwrap_or_default(), payload)
        }
    };
    let (correlation_id, idempotency_key) = ids(&saga.id, &def.name, phase, attempt);
    CommandMessage {
        name: command,
        payload,
        meta: Meta {
            transaction_id: saga.id.clone(),
            correlation_id,
            idempotency_key,
            step: def.name.clone(),
            attempt,
            traceparent: None,
        },
        timeout_ms: def.timeout.as_millis() as u64,
    }
}

/// The command the saga is waiting on, rebuilt from the saga, for re-sending it after a
/// restart (a transport that lost it). It has the same ids as the original, so a worker that
/// already ran it answers from its idempotency record.
pub fn pending_command(wf: &Workflow, saga: &Saga) -> Option<CommandMessage> {
    match &saga.cursor {
        Cursor::Awaiting { step, phase, attempt, .. } if *step < wf.steps.len() => {
            Some(command_for(wf, saga, *step, *phase, *attempt))
        }
        _ => None,
    }
}

/// The timer the saga is waiting on, if any: when it is due and the event it delivers.
pub fn pending_timer(saga: &Saga) -> Option<(u64, Event)> {
    match &saga.cursor {
        Cursor::Awaiting { correlation_id, deadline_at, .. } => {
            Some((*deadline_at, Event::Timeout { correlation_id: correlation_id.clone() }))
        }
        Cursor::Backoff { correlation_id, due_at, .. } => {
            Some((*due_at, Event::RetryDue { correlation_id: correlation_id.clone() }))
        }
        Cursor::Idle | Cursor::Done => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn dispatch(wf: &Workflow, saga: &mut Saga, step: usize, phase: Phase, attempt: u32, now: u64, d: &mut Decision) {
    let cmd = command_for(wf, saga, step, phase, attempt);
    // Saturating: a deadline past the end of time is a deadline that never comes, not one that
    // wraps round to the past.
    let deadline_at = now.saturating_add(cmd.timeout_ms).saturating_add(TIMEOUT_GRACE_MS);
    let record = &mut saga.steps[step];
    match phase {
        Phase::Forward => {
            record.status = StepStatus::Running;
            record.attempts = attempt;
        }
        Phase::Compensate => {
            let c = record.compensation.get_or_insert_with(|| CompensationRecord {
                command: cmd.name.clone(),
                status: StepStatus::Running,
                attempts: 0,
                error: None,
            });
            c.status = StepStatus::Running;
            c.attempts = attempt;
        }
    }
    d.history.push(HistoryEvent::Dispatched { step: cmd.meta.step.clone(), phase, attempt, command: cmd.name.clone() });
    let correlation_id = cmd.meta.correlation_id.clone();
    saga.cursor = Cursor::Awaiting { step, phase, attempt, correlation_id: correlation_id.clone(), deadline_at };
    d.effects.push(Effect::Dispatch(cmd));
    d.effects.push(Effect::Schedule { at: deadline_at, event: Event::Timeout { correlation_id } });
}

/// Equal jitter: half the delay fixed, half spread by a hash of the correlation id, so that
/// sagas failing together do not retry together, and a replay computes the same delay.
fn jittered(delay_ms: u64, correlation_id: &str) -> u64 {
    let half = delay_ms / 2;
    // FNV-1a: stable across processes and versions, unlike std's randomly keyed hasher.
    let h = correlation_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    half + h % (delay_ms - half + 1)
}

#[allow(clippy::too_many_arguments)]
fn on_outcome(
    wf: &Workflow,
    saga: &mut Saga,
    step: usize,
    phase: Phase,
    attempt: u32,
    outcome: &Outcome,
    now: u64,
    d: &mut Decision,
) {
    let def = &wf.steps[step];
    let name = || def.name.clone();
    match outcome {
        Outcome::Ok(_) => d.history.push(HistoryEvent::Succeeded { step: name(), phase, attempt }),
        Outcome::Err(f) => d.history.push(HistoryEvent::Failed {
            step: name(),
            phase,
            attempt,
            code: f.code.clone(),
            message: f.message.clone(),
            retryable: f.retryable,
        }),
    }
    match outcome {
        Outcome::Ok(output) => match phase {
            Phase::Forward => {
                let record = &mut saga.steps[step];
                record.status = StepStatus::Completed;
                record.output = Some(output.clone());
                record.error = None;
                begin_forward(wf, saga, step + 1, now, d);
            }
            Phase::Compensate => {
                if let Some(c) = saga.steps[step].compensation.as_mut() {
                    c.status = StepStatus::Completed;
                    c.error = None;
                }
                continue_compensation(wf, saga, step, now, d);
            }
        },
        Outcome::Err(failure) => {
            let error = ErrorInfo { code: failure.code.clone(), message: failure.message.clone() };
            let retry = failure.retryable && attempt < def.retry.attempts;
            match phase {
                Phase::Forward => saga.steps[step].error = Some(error.clone()),
                Phase::Compensate => {
                    if let Some(c) = saga.steps[step].compensation.as_mut() {
                        c.error = Some(error.clone());
                    }
                }
            }
            if retry {
                let Cursor::Awaiting { correlation_id, .. } = &saga.cursor else {
                    unreachable!("outcome without an attempt")
                };
                let correlation_id = correlation_id.clone();
                let due_at = now.saturating_add(jittered(def.retry.delay(attempt).as_millis() as u64, &correlation_id));
                saga.cursor = Cursor::Backoff { step, phase, attempt, correlation_id: correlation_id.clone(), due_at };
                d.history.push(HistoryEvent::RetryScheduled { step: name(), phase, attempt: attempt + 1, due_at });
                d.effects.push(Effect::Schedule { at: due_at, event: Event::RetryDue { correlation_id } });
                return;
            }
            match phase {
                Phase::Forward => {
                    saga.steps[step].status = StepStatus::Failed;
                    saga.error = Some(SagaError { step: def.name.clone(), code: error.code, message: error.message });
                    saga.status = SagaStatus::Compensating;
                    continue_compensation(wf, saga, step, now, d);
                }
                Phase::Compensate => {
                    if let Some(c) = saga.steps[step].compensation.as_mut() {
                        c.status = StepStatus::Failed;
                    }
                    // Keep undoing what can be undone; the saga will end `failed`.
                    continue_compensation(wf, saga, step, now, d);
                }
            }
        }
    }
}
