//! `parallel = ["a", "b"]`: the blocks run side by side, each in a block run of its own whose
//! instances are prefixed with this step's path. The output is `{ a: <a's output>, ... }`.
//! When a branch fails, the others start no new step, and what only waits in them (a wait, a
//! sleep, a backoff) is stopped; once the commands still out have answered, the step fails
//! with the first failure (in the order the blocks are listed).

use serde_json::{Map, Value};

use super::super::decide::{Action, Ctx, cancel_owner, complete, fail, stop_idle_under};
use crate::model::{BlockRun, ErrorInfo, Saga, StepStatus};
use crate::workflow::Parallel;

pub(crate) fn enter(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize, p: &Parallel) {
    for &b in &p.blocks {
        let run = saga.blocks.len();
        saga.blocks.push(BlockRun::new(cx.wf.blocks[b].name.clone(), Some(i), saga.steps[i].path.clone()));
        saga.steps[i].children.push(run);
        cx.queue.push_back(Action::Enter { run, index: 0 });
    }
}

/// One of the branches of instance `i` ended.
pub(crate) fn child_done(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize) {
    let children = saga.steps[i].children.clone();
    if children.iter().any(|&c| saga.blocks[c].status == StepStatus::Failed) {
        stop_idle_under(cx, saga, i);
    }
    if children.iter().any(|&c| saga.blocks[c].status == StepStatus::Running) {
        return;
    }
    if let Some(e) = children
        .iter()
        .find_map(|&c| saga.blocks[c].error.as_ref().filter(|_| saga.blocks[c].status == StepStatus::Failed))
    {
        let error = ErrorInfo { code: e.code.clone(), message: format!("{}: {}", e.step, e.message) };
        return fail(cx, saga, i, error, true);
    }
    if children.iter().any(|&c| saga.blocks[c].status == StepStatus::Cancelled) {
        return cancel_owner(cx, saga, i);
    }
    let mut out = Map::with_capacity(children.len());
    for &c in &children {
        let r = &saga.blocks[c];
        out.insert(r.block.clone(), saga.block_output(c).cloned().unwrap_or(Value::Null));
    }
    complete(cx, saga, i, Some(Value::Object(out)), None);
}
