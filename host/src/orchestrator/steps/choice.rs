//! `choice`: the first case whose `when` holds picks the next step; none: `otherwise` (the
//! following step by default). Completes at once, with no output of its own (the block's
//! output stays its previous step's).

use super::super::decide::{Ctx, SagaScope, complete, fail};
use crate::model::{ErrorInfo, HistoryEvent, Saga};
use crate::protocol::codes;
use crate::workflow::{Choice, Next};

pub(crate) fn enter(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize, choice: &Choice) {
    let mut picked = choice.otherwise;
    for (when, next) in &choice.cases {
        match when.eval_bool(&SagaScope { saga, run: saga.steps[i].block }) {
            Ok(true) => {
                picked = *next;
                break;
            }
            Ok(false) => {}
            Err(message) => {
                let message = format!("choice.when `{when}`: {message}");
                return fail(cx, saga, i, ErrorInfo { code: codes::INVALID_INPUT.into(), message }, true);
            }
        }
    }
    let b = super::super::decide::block_of(cx.wf, saga, saga.steps[i].block);
    let next = match picked {
        Next::Step(j) => cx.wf.blocks[b].steps[j].name.clone(),
        Next::End => "end".to_owned(),
        Next::Following => {
            let index = cx.wf.blocks[b].steps.iter().position(|s| s.name == saga.steps[i].name).unwrap_or(0);
            cx.wf.blocks[b].steps.get(index + 1).map_or_else(|| "end".to_owned(), |s| s.name.clone())
        }
    };
    cx.out.history.push(HistoryEvent::Chose { step: saga.steps[i].path.clone(), next });
    complete(cx, saga, i, None, Some(picked));
}
