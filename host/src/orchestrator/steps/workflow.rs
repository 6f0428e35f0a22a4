//! `workflow = "NAME"`: a sub-saga. The step sends the command `saga:NAME` (see
//! [`crate::workflow::sub_saga_command`]) with its input as the child's input; the host that
//! runs `NAME` starts the child under an id derived from the attempt
//! ([`crate::model::sub_saga_id`]), so a redelivered or re-sent command re-attaches, and
//! answers when the child ends: its output, or its error code once it has compensated
//! itself. Everything else is a command step's: the deadline, retries (each attempt is a
//! fresh child), the compensation log. Undoing the step sends `saga:NAME` again in the
//! compensate phase with `{"saga": id}`: a completed child runs its own compensations, a
//! running one is cancelled, and the answer comes when it ends.

use super::super::decide::Ctx;
use crate::model::Saga;
use crate::workflow::Command;

pub(crate) fn enter(cx: &mut Ctx<'_>, saga: &mut Saga, i: usize, c: &Command) {
    super::command::enter(cx, saga, i, c);
}
