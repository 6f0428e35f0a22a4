//! `sleep = "10m"` and `sleep_until = "expr"` (an RFC 3339 time): a durable timer. A time
//! already past completes at once. The output is `null`.

use super::super::decide::{Ctx, complete, fail};
use crate::model::{self, ErrorInfo, Phase, Saga, WaitOn, Waiting};
use crate::protocol::codes;
use crate::workflow::Sleep;

pub(crate) fn enter(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize, sleep: &Sleep) {
    let until = match sleep {
        Sleep::For(d) => cx.now.saturating_add(d.as_millis() as u64),
        Sleep::Until(e) => {
            let Some(v) = super::eval(cx, saga, i, "sleep_until", e) else { return };
            match v.as_str().map(model::time::parse) {
                Some(Ok(at)) => at,
                Some(Err(message)) => {
                    return fail(cx, saga, i, ErrorInfo { code: codes::INVALID_INPUT.into(), message }, true);
                }
                None => {
                    let message =
                        format!("sleep_until `{e}` gave {v}, not an RFC 3339 time such as \"2026-12-01T09:00:00Z\"");
                    return fail(cx, saga, i, ErrorInfo { code: codes::INVALID_INPUT.into(), message }, true);
                }
            }
        }
    };
    if until <= cx.now {
        return complete(cx, saga, i, Some(serde_json::Value::Null), None);
    }
    let id = model::timer_id(&saga.id, &saga.steps[i].path);
    saga.steps[i].waiting =
        Some(Waiting { on: WaitOn::Sleep, phase: Phase::Forward, attempt: 0, id, due_at: Some(until), signal: None });
}

pub(crate) fn on_over(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize) {
    complete(cx, saga, i, Some(serde_json::Value::Null), None);
}
