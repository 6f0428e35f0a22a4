//! `wait = "signal"`: the step waits for a signal of that name; its payload is the output. A
//! signal that came first waits in the saga's inbox and is taken at once, oldest first. With
//! a `timeout`, no signal in time fails the step with `timeout` (a catch can send a reminder
//! and wait again).

use serde_json::Value;

use super::super::decide::{Ctx, complete, fail};
use crate::model::{self, ErrorInfo, HistoryEvent, Phase, Saga, Signal, StepStatus, WaitOn, Waiting};
use crate::protocol::codes;
use crate::workflow::{Wait, duration};

pub(crate) fn enter(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize, wait: &Wait) {
    if let Some(pos) = saga.inbox.iter().position(|s| s.name == wait.signal) {
        let signal = saga.inbox.remove(pos);
        cx.out.history.push(HistoryEvent::SignalTaken { step: saga.steps[i].path.clone(), name: signal.name });
        return complete(cx, saga, i, Some(signal.payload), None);
    }
    let id = model::timer_id(&saga.id, &saga.steps[i].path);
    let due_at = wait.timeout.map(|t| cx.now.saturating_add(t.as_millis() as u64));
    saga.steps[i].waiting = Some(Waiting {
        on: WaitOn::Signal,
        phase: Phase::Forward,
        attempt: 0,
        id,
        due_at,
        signal: Some(wait.signal.clone()),
    });
}

/// A signal came: the longest-waiting step that waits for it takes it; else the inbox keeps it.
pub(crate) fn on_signal(cx: &mut Ctx<'_>, saga: &mut Saga, name: &str, payload: &Value) {
    let waiter = saga.steps.iter().position(|s| {
        s.status == StepStatus::Running
            && s.waiting.as_ref().is_some_and(|w| w.on == WaitOn::Signal && w.signal.as_deref() == Some(name))
    });
    match waiter {
        Some(i) if saga.status == model::SagaStatus::Running => {
            cx.out
                .history
                .push(HistoryEvent::SignalReceived { name: name.to_owned(), by: Some(saga.steps[i].path.clone()) });
            complete(cx, saga, i, Some(payload.clone()), None);
        }
        _ => {
            cx.out.history.push(HistoryEvent::SignalReceived { name: name.to_owned(), by: None });
            saga.inbox.push(Signal { name: name.to_owned(), payload: payload.clone(), received_at: cx.now });
        }
    }
}

pub(crate) fn on_timeout(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize) -> bool {
    let Some((_, step)) = super::super::decide::step_of(cx.wf, saga, i) else { return false };
    let crate::workflow::StepKind::Wait(wait) = &step.kind else { return false };
    let after = wait.timeout.map(duration::format).unwrap_or_default();
    let message = format!("no {:?} signal within the wait's timeout of {after}", wait.signal);
    fail(cx, saga, i, ErrorInfo { code: codes::TIMEOUT.into(), message }, true);
    true
}
