"""What a worker answers to one command, whatever carries it: from the record, ``expired``,
or the handler's outcome (docs/PROTOCOL.md, "Deadlines" and "Idempotency").

No I/O but the record's: the bus runner reads and writes Redis around it, and the tests call
it directly.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Dict

from . import protocol
from .handlers import Registry

log = logging.getLogger("baton_worker")


@dataclasses.dataclass
class Answer:
    """The outcome for one command, and how it was reached."""

    outcome: Dict[str, Any]
    #: ``"recorded"`` (a duplicate: from the record), ``"expired"`` (too late to start) or
    #: ``"ran"`` (the handler ran).
    how: str


def answer(
    cmd: protocol.Command,
    registry: Registry,
    record: Any,
    now: Callable[[], int] = protocol.now_ms,
    worker: str = "python",
) -> Answer:
    """Answer ``cmd``, recording the outcome (before the caller sends it) as the rule says:

    1. A recorded outcome answers the command without running anything, unless it is
       ``expired`` and the command itself is in time: that is a later attempt, which runs.
    2. A command past its ``start_by`` or ``deadline`` is not started: it is answered
       ``expired`` (retryable), and that is recorded.
    3. Otherwise the handler runs once; a terminal outcome (success, or a failure that is
       not retryable) is recorded, replacing an ``expired`` record.
    """
    recorded = record.get(cmd.name, cmd.idempotency_key) if record is not None else None
    at = now()
    late = cmd.expired_at(at)
    if recorded is not None and not (protocol.is_expired(recorded) and not late):
        log.info("%s %s: duplicate, answered from the record", cmd.name, cmd.correlation_id)
        return Answer(recorded, "recorded")
    if late:
        outcome = protocol.expired(cmd, at, worker)
        log.info("%s %s: %s", cmd.name, cmd.correlation_id, outcome["err"]["message"])
        if record is not None and recorded is None:
            record.put(cmd.name, cmd.idempotency_key, outcome)
        return Answer(outcome, "expired")
    outcome = registry.handle(cmd.name, cmd.payload, cmd.context())
    if "err" in outcome:
        err = outcome["err"]
        log.info("%s %s failed: %s (retryable: %s)", cmd.name, cmd.correlation_id, err["code"], err["retryable"])
    if record is not None and protocol.is_terminal(outcome):
        record.put(cmd.name, cmd.idempotency_key, outcome)
    return Answer(outcome, "ran")

