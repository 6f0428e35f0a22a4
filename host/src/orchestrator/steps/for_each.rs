//! `for_each = "expr"`, `run = "block"`, `concurrency = N`: one block run per element of the
//! list, `item` and `index` in scope, at most N at once (one after the other by default),
//! started in list order. The output is the list of the iterations' outputs, in list order.
//! When an iteration fails, no new one starts and what only waits in the others (a wait, a
//! sleep, a backoff) is stopped; once the commands still out have answered, the step fails.

use serde_json::Value;

use super::super::decide::{Action, Ctx, cancel_owner, complete, fail, stop_idle_under};
use crate::model::{BlockRun, ErrorInfo, Saga, StepStatus};
use crate::protocol::codes;
use crate::workflow::ForEach;

/// Most elements a for_each takes: each iteration is kept in the saga record.
pub const MAX_ITEMS: usize = 1_000;

pub(crate) fn enter(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize, f: &ForEach) {
    let Some(items) = super::eval(cx, saga, i, "for_each", &f.items) else { return };
    let Value::Array(list) = &items else {
        let message = format!("for_each `{}` gave {}, not a list", f.items, kind_of(&items));
        return fail(cx, saga, i, ErrorInfo { code: codes::INVALID_INPUT.into(), message }, true);
    };
    if list.len() > MAX_ITEMS {
        let message = format!(
            "for_each `{}` gave {} elements; at most {MAX_ITEMS} are allowed (split the work)",
            f.items,
            list.len()
        );
        return fail(cx, saga, i, ErrorInfo { code: codes::INVALID_INPUT.into(), message }, true);
    }
    let len = list.len();
    saga.steps[i].input = Some(items);
    if len == 0 {
        return complete(cx, saga, i, Some(Value::Array(Vec::new())), None);
    }
    for _ in 0..f.concurrency.min(len) {
        start_next(cx, saga, i);
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Start the next iteration of instance `i`, if any is left.
fn start_next(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize) -> bool {
    let index = saga.steps[i].children.len();
    let Some(item) = saga.steps[i].input.as_ref().and_then(|v| v.get(index)).cloned() else { return false };
    let Some((_, step)) = super::super::decide::step_of(cx.wf, saga, i) else { return false };
    let crate::workflow::StepKind::ForEach(f) = &step.kind else { return false };
    let run = saga.blocks.len();
    let mut iteration = BlockRun::new(cx.wf.blocks[f.block].name.clone(), Some(i), saga.steps[i].path.clone());
    (iteration.index, iteration.item) = (Some(index), Some(item));
    saga.blocks.push(iteration);
    saga.steps[i].children.push(run);
    cx.queue.push_back(Action::Enter { run, index: 0 });
    true
}

/// One of the iterations of instance `i` ended.
pub(crate) fn child_done(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize) {
    let children = saga.steps[i].children.clone();
    let failed = children.iter().find(|&&c| saga.blocks[c].status == StepStatus::Failed).copied();
    if failed.is_none() && start_next(cx, saga, i) {
        return;
    }
    if failed.is_some() {
        stop_idle_under(cx, saga, i);
    }
    if children.iter().any(|&c| saga.blocks[c].status == StepStatus::Running) {
        return;
    }
    if let Some(c) = failed {
        let e = saga.blocks[c].error.clone().expect("a failed block run has an error");
        let index = saga.blocks[c].index.unwrap_or(0);
        let error = ErrorInfo { code: e.code, message: format!("iteration {index} ({}): {}", e.step, e.message) };
        return fail(cx, saga, i, error, true);
    }
    if children.iter().any(|&c| saga.blocks[c].status == StepStatus::Cancelled) {
        return cancel_owner(cx, saga, i);
    }
    let outputs: Vec<Value> = children.iter().map(|&c| saga.block_output(c).cloned().unwrap_or(Value::Null)).collect();
    complete(cx, saga, i, Some(Value::Array(outputs)), None);
}
