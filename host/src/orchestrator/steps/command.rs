//! `command = "..."`: send a command to a worker, retry it with backoff while the policy and
//! the failure allow, and (as the compensation log asks) send its compensation.
//!
//! An attempt waits on its result with a deadline (the step's timeout plus
//! [`TIMEOUT_GRACE_MS`]); a result or timer of any other attempt is stale and changes
//! nothing. A failed attempt that may be retried waits out a jittered backoff.

use serde_json::Value;

use super::super::decide::Effect;
use super::super::decide::{
    Ctx, SagaScope, TIMEOUT_GRACE_MS, compensation_record, complete, continue_compensation, fail, step_of,
};
use crate::model::{self, ErrorInfo, HistoryEvent, Phase, Saga, StepStatus, WaitOn, Waiting};
use crate::protocol::{CommandMessage, Failure, Meta, Outcome, codes};
use crate::workflow::{Command, StepKind, Workflow, duration};

pub(crate) fn enter(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize, c: &Command) {
    // Without an `input`, the step is given the saga's input: not copied into the record
    // (every commit writes the record whole), read from the saga when the command is built.
    let payload = match &c.input {
        Some(e) => match super::eval(cx, saga, i, "input", e) {
            Some(v) => Some(v),
            None => return,
        },
        None => None,
    };
    saga.steps[i].command = Some(c.command.clone());
    saga.steps[i].input = payload;
    dispatch(cx, saga, i, Phase::Forward, 1);
}

fn definition<'w>(wf: &'w Workflow, saga: &Saga, i: usize) -> Option<&'w Command> {
    match &step_of(wf, saga, i)?.1.kind {
        StepKind::Command(c) | StepKind::Workflow(c) => Some(c),
        _ => None,
    }
}

/// The command of attempt `attempt` of instance `i` in `phase`, from what the record holds
/// (the payload was computed when the phase began), with the attempt's `deadline_ms`.
fn command_for(
    wf: &Workflow,
    saga: &Saga,
    i: usize,
    phase: Phase,
    attempt: u32,
    deadline_ms: u64,
) -> Option<CommandMessage> {
    let def = definition(wf, saga, i)?;
    let inst = &saga.steps[i];
    let (name, payload) = match phase {
        Phase::Forward => (def.command.clone(), inst.input.as_ref().unwrap_or(&saga.input).clone()),
        Phase::Compensate => {
            let c = inst.compensation.as_ref()?;
            (c.command.clone(), c.input.clone().unwrap_or(Value::Null))
        }
    };
    let idempotency_key = model::idempotency_key(&saga.id, &inst.path, phase);
    let correlation_id = model::correlation_id(&idempotency_key, attempt);
    Some(CommandMessage {
        name,
        payload,
        meta: Meta {
            transaction_id: saga.id.clone(),
            traceparent: crate::observe::trace::command_context(saga.trace.as_deref(), &correlation_id),
            correlation_id,
            idempotency_key,
            step: inst.path.clone(),
            attempt,
        },
        timeout_ms: def.timeout.as_millis() as u64,
        deadline_ms,
        // The attempt's deadline is dispatch + queue_timeout + timeout (see `dispatch`).
        start_by_ms: match def.queue_timeout {
            Some(_) if deadline_ms != 0 => deadline_ms.saturating_sub(def.timeout.as_millis() as u64).max(1),
            _ => 0,
        },
    })
}

/// The command instance `i` waits on, if it waits on one.
pub(crate) fn pending(wf: &Workflow, saga: &Saga, i: usize) -> Option<CommandMessage> {
    let w = saga.steps[i].waiting.as_ref().filter(|w| w.on == WaitOn::Result)?;
    let deadline = w.due_at.map_or(0, |due| due.saturating_sub(TIMEOUT_GRACE_MS).max(1));
    command_for(wf, saga, i, w.phase, w.attempt, deadline)
}

fn dispatch(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize, phase: Phase, attempt: u32) {
    let Some(def) = definition(cx.wf, saga, i) else { return };
    // Saturating: a deadline past the end of time is a deadline that never comes, not one that
    // wraps round to the past.
    // With a queue timeout, the attempt may wait that long for a worker, then run for its
    // timeout; without, it must be started and done within its timeout.
    let queue = def.queue_timeout.map_or(0, |q| q.as_millis() as u64);
    let deadline = cx.now.saturating_add(queue).saturating_add(def.timeout.as_millis() as u64);
    let Some(cmd) = command_for(cx.wf, saga, i, phase, attempt, deadline) else { return };
    if let Some(error) = external_input_error(cx.wf, &cmd) {
        return refuse(cx, saga, i, phase, error);
    }
    let deadline_at = deadline.saturating_add(TIMEOUT_GRACE_MS);
    if def.workflow.is_some() && phase == Phase::Forward {
        let child = model::sub_saga_id(&cmd.meta.idempotency_key, attempt);
        if !saga.children.contains(&child) {
            saga.children.push(child.clone());
        }
        saga.steps[i].child = Some(child);
    }
    let inst = &mut saga.steps[i];
    match phase {
        Phase::Forward => inst.attempts = attempt,
        Phase::Compensate => {
            if let Some(c) = inst.compensation.as_mut() {
                c.status = StepStatus::Running;
                c.attempts = attempt;
            }
        }
    }
    inst.waiting = Some(Waiting {
        on: WaitOn::Result,
        phase,
        attempt,
        id: cmd.meta.correlation_id.clone(),
        due_at: Some(deadline_at),
        signal: None,
    });
    cx.out.history.push(HistoryEvent::Dispatched {
        step: inst.path.clone(),
        phase,
        attempt,
        command: cmd.name.clone(),
    });
    let timer = super::super::Event::Timer { id: cmd.meta.correlation_id.clone() };
    cx.out.effects.push(Effect::Dispatch(cmd));
    cx.out.effects.push(Effect::Schedule { at: deadline_at, event: timer });
}

/// Begin undoing instance `i` (the compensation log's latest entry).
pub(crate) fn begin_compensation(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize) {
    let Some(def) = definition(cx.wf, saga, i) else {
        // The definition no longer has the step: nothing to send; mark it and go on.
        let c = compensation_record(saga, i, "");
        c.status = StepStatus::Failed;
        c.error =
            Some(ErrorInfo { code: "unknown_step".into(), message: "the workflow no longer defines this step".into() });
        return continue_compensation(cx, saga);
    };
    let command = def.compensate.clone().unwrap_or_default();
    let input = match &def.compensate_input {
        // A sub-saga is undone by its id: the host that runs it compensates it.
        None if def.workflow.is_some() => Ok(serde_json::json!({ "saga": saga.steps[i].child })),
        Some(e) => e.eval(&SagaScope { saga, run: saga.steps[i].block }),
        // A command whose result never came (cancelled while out) gets what it was sent.
        None => Ok(match (&saga.steps[i].output, &saga.steps[i].input) {
            (Some(output), _) => output.clone(),
            (None, Some(input)) => input.clone(),
            (None, None) => saga.input.clone(),
        }),
    };
    let now = cx.now;
    let c = compensation_record(saga, i, &command);
    c.started_at.get_or_insert(now);
    match input {
        Ok(v) => {
            c.input = Some(v);
            let attempt = c.attempts + 1;
            dispatch(cx, saga, i, Phase::Compensate, attempt);
        }
        Err(message) => {
            c.status = StepStatus::Failed;
            c.ended_at = Some(now);
            c.error =
                Some(ErrorInfo { code: codes::INVALID_INPUT.into(), message: format!("compensate_input: {message}") });
            continue_compensation(cx, saga);
        }
    }
}

/// A worker answered the attempt instance `i` waits on. An answer ends the doubt a timed-out
/// earlier attempt left: had that one taken effect, its outcome would be recorded under the
/// idempotency key, and this attempt would have been answered with it.
pub(crate) fn on_result(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize, outcome: &Outcome) -> bool {
    if saga.steps[i].waiting.as_ref().is_some_and(|w| w.phase == Phase::Forward) {
        saga.steps[i].uncertain = false;
    }
    match external_output_error(cx.wf, saga, i, outcome) {
        Some(refused) => on_outcome(cx, saga, i, &refused),
        None => on_outcome(cx, saga, i, outcome),
    }
}

/// The error of an external command whose payload does not fit the `input_schema` its
/// workflow declares for it (`[commands."NAME"]`), naming each violation's JSON pointer.
fn external_input_error(wf: &Workflow, cmd: &CommandMessage) -> Option<ErrorInfo> {
    let schema = wf.external(&cmd.name)?.input_schema.as_ref()?;
    let violations = schema.violations(&cmd.payload);
    (!violations.is_empty()).then(|| ErrorInfo {
        code: codes::INVALID_INPUT.into(),
        message: format!(
            "not sent: the payload of {} does not fit the input_schema of [commands.{:?}]: {}",
            cmd.name,
            cmd.name,
            violations.join("; ")
        ),
    })
}

/// Fail instance `i`'s `phase` for good with `error` without sending anything: the same
/// payload would be refused again, so no retry.
fn refuse(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize, phase: Phase, error: ErrorInfo) {
    match phase {
        Phase::Forward => fail(cx, saga, i, error, true),
        Phase::Compensate => {
            let now = cx.now;
            let inst = &mut saga.steps[i];
            inst.waiting = None;
            // As a compensate_input that cannot be evaluated: the record keeps the error.
            if let Some(c) = inst.compensation.as_mut() {
                c.status = StepStatus::Failed;
                c.ended_at = Some(now);
                c.error = Some(error);
            }
            continue_compensation(cx, saga);
        }
    }
}

/// The failure that replaces a successful `outcome` of instance `i`'s attempt when its
/// command is external and the result does not fit the declared `output_schema`: permanent
/// `invalid_output`, since the same worker would answer the same again.
fn external_output_error(wf: &Workflow, saga: &Saga, i: usize, outcome: &Outcome) -> Option<Outcome> {
    let Outcome::Ok(value) = outcome else { return None };
    let inst = &saga.steps[i];
    let name = match inst.waiting.as_ref()?.phase {
        Phase::Forward => inst.command.as_deref()?,
        Phase::Compensate => inst.compensation.as_ref()?.command.as_str(),
    };
    let schema = wf.external(name)?.output_schema.as_ref()?;
    let violations = schema.violations(value);
    (!violations.is_empty()).then(|| {
        Outcome::Err(Failure::permanent(
            codes::INVALID_OUTPUT,
            format!(
                "the result of {name} does not fit the output_schema of [commands.{name:?}]: {}",
                violations.join("; ")
            ),
        ))
    })
}

/// The attempt's deadline passed without a result.
pub(crate) fn on_deadline(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize) -> bool {
    let limit = definition(cx.wf, saga, i)
        .map(|d| match d.queue_timeout {
            Some(q) => {
                format!("queue_timeout of {} plus its timeout of {}", duration::format(q), duration::format(d.timeout))
            }
            None => format!("timeout of {}", duration::format(d.timeout)),
        })
        .unwrap_or_default();
    let failure = Failure::retryable(codes::TIMEOUT, format!("no result within the step's {limit}"));
    // The attempt may still have run (a worker that died before answering, a reply lost).
    if saga.steps[i].waiting.as_ref().is_some_and(|w| w.phase == Phase::Forward) {
        saga.steps[i].uncertain = true;
    }
    on_outcome(cx, saga, i, &Outcome::Err(failure))
}

/// A result for an attempt nobody waits on any more: the attempt timed out, or the saga moved
/// on (a duplicate delivery lands here too). Kept in the history, so that an effect that came
/// late is seen; a late success of a failed step that is still to be undone gives its
/// compensation the step's real output.
pub(crate) fn on_late_result(cx: &mut Ctx<'_>, saga: &mut Saga, r: &crate::protocol::ResultMessage) -> bool {
    if r.meta.transaction_id != saga.id {
        return false;
    }
    let Some(i) = saga.steps.iter().position(|s| s.path == r.meta.step) else { return false };
    let phase =
        if r.meta.idempotency_key.ends_with(Phase::Compensate.as_str()) { Phase::Compensate } else { Phase::Forward };
    let (outcome, message) = match &r.outcome {
        Outcome::Ok(_) => ("ok".to_owned(), String::new()),
        Outcome::Err(f) => (f.code.clone(), f.message.clone()),
    };
    tracing::info!(
        transaction_id = %saga.id,
        step = %r.meta.step,
        attempt = r.meta.attempt,
        outcome = %outcome,
        "a result came after its step had moved on: kept in the history"
    );
    let inst = &mut saga.steps[i];
    if let (Outcome::Ok(output), Phase::Forward) = (&r.outcome, phase)
        && inst.status == StepStatus::Failed
        && inst.output.is_none()
        && inst.compensation.is_none()
    {
        inst.output = Some(output.clone());
    }
    cx.out.history.push(HistoryEvent::LateResult {
        step: r.meta.step.clone(),
        phase,
        attempt: r.meta.attempt,
        outcome,
        message,
    });
    true
}

/// A retry's backoff is over: the next attempt.
pub(crate) fn on_backoff_over(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize) -> bool {
    let Some(w) = saga.steps[i].waiting.clone() else { return false };
    dispatch(cx, saga, i, w.phase, w.attempt + 1);
    true
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

/// The attempt instance `i` waits on ended with `outcome`.
pub(crate) fn on_outcome(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize, outcome: &Outcome) -> bool {
    let Some(w) = saga.steps[i].waiting.clone() else { return false };
    let Some(def) = definition(cx.wf, saga, i) else { return false };
    let (phase, attempt) = (w.phase, w.attempt);
    let path = saga.steps[i].path.clone();
    match outcome {
        Outcome::Ok(_) => cx.out.history.push(HistoryEvent::Succeeded { step: path.clone(), phase, attempt }),
        Outcome::Err(f) => cx.out.history.push(HistoryEvent::Failed {
            step: path.clone(),
            phase,
            attempt,
            code: f.code.clone(),
            message: f.message.clone(),
            retryable: f.retryable,
        }),
    }
    let now = cx.now;
    match (outcome, phase) {
        (Outcome::Ok(output), Phase::Forward) => complete(cx, saga, i, Some(output.clone()), None),
        (Outcome::Ok(output), Phase::Compensate) => {
            let inst = &mut saga.steps[i];
            inst.waiting = None;
            if let Some(c) = inst.compensation.as_mut() {
                c.status = StepStatus::Completed;
                c.output = Some(output.clone());
                c.error = None;
                c.ended_at = Some(now);
            }
            continue_compensation(cx, saga);
        }
        (Outcome::Err(failure), _) => {
            let error = ErrorInfo { code: failure.code.clone(), message: failure.message.clone() };
            let inst = &mut saga.steps[i];
            match phase {
                Phase::Forward => inst.error = Some(error.clone()),
                Phase::Compensate => {
                    if let Some(c) = inst.compensation.as_mut() {
                        c.error = Some(error.clone());
                    }
                }
            }
            if failure.retryable && attempt < def.retry.attempts {
                let correlation_id = w.id;
                let due_at = now.saturating_add(jittered(def.retry.delay(attempt).as_millis() as u64, &correlation_id));
                let id = format!("{correlation_id}/retry");
                inst.waiting = Some(Waiting {
                    on: WaitOn::Backoff,
                    phase,
                    attempt,
                    id: id.clone(),
                    due_at: Some(due_at),
                    signal: None,
                });
                cx.out.history.push(HistoryEvent::RetryScheduled { step: path, phase, attempt: attempt + 1, due_at });
                cx.out.effects.push(Effect::Schedule { at: due_at, event: super::super::Event::Timer { id } });
                return true;
            }
            match phase {
                Phase::Forward => {
                    // A command whose result was refused for not fitting its output schema
                    // ran, and said it did its work: undo it as one that timed out.
                    if failure.code == codes::INVALID_OUTPUT {
                        inst.uncertain = true;
                    }
                    // An attempt that timed out may have taken effect: undo it with the rest
                    // if the saga compensates.
                    if inst.uncertain && def.compensate.is_some() && inst.seq.is_none() {
                        saga.log_seq += 1;
                        saga.steps[i].seq = Some(saga.log_seq);
                    }
                    fail(cx, saga, i, error, false)
                }
                Phase::Compensate => {
                    inst.waiting = None;
                    if let Some(c) = inst.compensation.as_mut() {
                        c.status = StepStatus::Failed;
                        c.ended_at = Some(now);
                    }
                    // Keep undoing what can be undone; the saga will end `failed`.
                    continue_compensation(cx, saga);
                }
            }
        }
    }
    true
}
