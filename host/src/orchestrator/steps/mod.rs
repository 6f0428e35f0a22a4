//! One file per step kind. Each has an `enter` (the step begins: called from the one match in
//! [`super::decide::enter`]) and the handlers of the events that kind waits for; what kinds
//! share (completing, failing, catches, compensation) is in [`super::decide`].
//!
//! | kind | file | waits for |
//! |---|---|---|
//! | `command` | [`command`] | a result, a deadline, a backoff; also runs compensations |
//! | `choice` | [`choice`] | nothing: picks where to go at once |
//! | `parallel` | [`parallel`] | its branches (block runs) to end |
//! | `for_each` | [`for_each`] | its iterations (block runs) to end |
//! | `wait` | [`wait`] | a signal, or its timeout |
//! | `sleep`, `sleep_until` | [`sleep`] | a timer |
//! | `fail` | [`fail`] | nothing: fails at once |
//! | `workflow` | [`workflow`] | its sub-saga's end (as a command's result) |
//!
//! To add a kind: its grammar in `workflow/` (authored, check, a [`crate::workflow::StepKind`]
//! variant), a file here, and its arm in `decide::enter`.

pub mod choice;
pub mod command;
pub mod fail;
pub mod for_each;
pub mod parallel;
pub mod sleep;
pub mod wait;
pub mod workflow;

use super::decide::{Ctx, SagaScope};
use crate::model::{ErrorInfo, Saga};
use crate::protocol::codes;
use crate::workflow::expr::Expr;

/// Evaluate `e` for instance `i`; an error fails the instance (`invalid_input`, permanent:
/// the same expression on the same data fails again) and gives `None`.
pub(crate) fn eval(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize, key: &str, e: &Expr) -> Option<serde_json::Value> {
    match e.eval(&SagaScope { saga, run: saga.steps[i].block }) {
        Ok(v) => Some(v),
        Err(message) => {
            let error = ErrorInfo { code: codes::INVALID_INPUT.into(), message: format!("{key} `{e}`: {message}") };
            super::decide::fail(cx, saga, i, error, true);
            None
        }
    }
}
