//! `fail = { code, message }`: the step fails for good at once, with that error. A catch on it
//! can take it like any other; uncaught, it ends the block (and, in the main block, starts
//! compensation).

use super::super::decide::{Ctx, fail};
use crate::model::{ErrorInfo, Saga};
use crate::workflow::Fail;

pub(crate) fn enter(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize, f: &Fail) {
    fail(cx, saga, i, ErrorInfo { code: f.code.clone(), message: f.message.clone() }, true);
}
