"""The wire format (docs/PROTOCOL.md): CloudEvents 1.0 in structured JSON mode.

A command is a ``baton.command.v1`` event; a worker answers with a ``baton.result.v1`` event
that copies its extension attributes. Times in ``data`` are RFC 3339 UTC (``deadline``,
``start_by``); milliseconds since the epoch are read too. Unknown attributes and ``data``
fields are ignored, as the protocol asks of every reader.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from typing import Any, Dict, Optional

from .handlers import Context

COMMAND_TYPE = "baton.command.v1"
RESULT_TYPE = "baton.result.v1"
SIGNAL_TYPE = "baton.signal.v1"

#: The failure code of a command that reached the worker too late to be started. Retryable:
#: the next attempt has a deadline of its own.
EXPIRED = "expired"

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class ProtocolError(ValueError):
    """An event that is not a valid Baton command (the message says what is wrong)."""


def now_ms() -> int:
    """The wall clock, in milliseconds since the epoch."""
    return int(time.time() * 1000)


def parse_time(value: Any, field: str = "time") -> int:
    """An RFC 3339 time (or milliseconds since the epoch) as milliseconds since the epoch."""
    if isinstance(value, bool):
        raise ProtocolError(f"{field} must be an RFC 3339 time, not {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ProtocolError(f"{field} {value} is before 1970")
        return value
    if not isinstance(value, str):
        raise ProtocolError(f"{field} must be an RFC 3339 time such as 2026-12-01T11:45:09.123Z, not {value!r}")
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    # Python before 3.11 reads fractions of 3 or 6 digits only: pad or cut to 6.
    if "." in text:
        head, rest = text.split(".", 1)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, zone = rest[:digits], rest[digits:]
        text = f"{head}.{(frac + '000000')[:6]}{zone}"
    try:
        t = datetime.datetime.fromisoformat(text.replace("t", "T"))
    except ValueError:
        raise ProtocolError(f"{field} {value!r} is not an RFC 3339 time (e.g. 2026-12-01T11:45:09.123Z)") from None
    if t.tzinfo is None:
        raise ProtocolError(f"{field} {value!r} has no offset: RFC 3339 times end in Z or +HH:MM")
    ms = (t - _EPOCH) // datetime.timedelta(milliseconds=1)
    if ms < 0:
        raise ProtocolError(f"{field} {value!r} is before 1970")
    return ms


def format_time(ms: int) -> str:
    """Milliseconds since the epoch as RFC 3339, UTC, to the millisecond (as Baton writes)."""
    t = _EPOCH + datetime.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _datetime(ms: Optional[int]) -> Optional[datetime.datetime]:
    return None if ms is None else _EPOCH + datetime.timedelta(milliseconds=ms)


@dataclasses.dataclass(frozen=True)
class Command:
    """A decoded ``baton.command.v1`` event."""

    name: str
    payload: Any
    transaction_id: str
    correlation_id: str
    idempotency_key: str
    step: str
    attempt: int
    timeout_ms: int
    deadline_ms: Optional[int] = None
    start_by_ms: Optional[int] = None
    traceparent: Optional[str] = None

    def expired_at(self, now: int) -> bool:
        """Whether it is too late at ``now`` (ms) to start it: past ``start_by`` or past
        ``deadline``, whichever is set."""
        return (self.start_by_ms is not None and now >= self.start_by_ms) or (
            self.deadline_ms is not None and now >= self.deadline_ms
        )

    def context(self) -> Context:
        return Context(
            command=self.name,
            transaction_id=self.transaction_id,
            correlation_id=self.correlation_id,
            idempotency_key=self.idempotency_key,
            step=self.step,
            attempt=self.attempt,
            traceparent=self.traceparent,
            timeout_ms=self.timeout_ms,
            deadline=_datetime(self.deadline_ms),
            start_by=_datetime(self.start_by_ms),
        )


def _string(event: Dict[str, Any], key: str, where: str = "") -> str:
    v = event.get(key)
    if not isinstance(v, str):
        raise ProtocolError(f"{where}{key} must be a string (got {v!r})")
    return v


def _count(data: Dict[str, Any], key: str) -> int:
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ProtocolError(f"data.{key} must be a whole number, 0 or more (got {v!r})")
    return v


def decode_command(text: Any) -> Command:
    """A command from its JSON text; :class:`ProtocolError` says what is wrong."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        raise ProtocolError("no event: the stream entry has no 'event' field")
    try:
        event = json.loads(text)
    except ValueError as e:
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(event, dict):
        raise ProtocolError("not a CloudEvent: the JSON is not an object")
    if event.get("type") != COMMAND_TYPE:
        raise ProtocolError(f"event type {event.get('type')!r} is not {COMMAND_TYPE}")
    for key in ("specversion", "id", "source", "datacontenttype"):
        _string(event, key)
    data = event.get("data")
    if not isinstance(data, dict):
        raise ProtocolError("data must be an object with payload, step, attempt and timeout_ms")
    if "payload" not in data:
        raise ProtocolError("data.payload is missing (it may be null, but it must be there)")
    traceparent = event.get("traceparent")
    if traceparent is not None and not isinstance(traceparent, str):
        raise ProtocolError("traceparent must be a string when present")
    times = {}
    for key in ("deadline", "start_by"):
        v = data.get(key)
        times[key] = None if v is None else parse_time(v, f"data.{key}")
    return Command(
        name=_string(event, "subject"),
        payload=data["payload"],
        transaction_id=_string(event, "transactionid"),
        correlation_id=_string(event, "correlationid"),
        idempotency_key=_string(event, "idempotencykey"),
        step=_string(data, "step", "data."),
        attempt=_count(data, "attempt"),
        timeout_ms=_count(data, "timeout_ms"),
        deadline_ms=times["deadline"],
        start_by_ms=times["start_by"],
        traceparent=traceparent,
    )


def encode_command(cmd: Command) -> str:
    """A command as Baton's orchestrator writes it (for tests and tools)."""
    data: Dict[str, Any] = {
        "payload": cmd.payload,
        "step": cmd.step,
        "attempt": cmd.attempt,
        "timeout_ms": cmd.timeout_ms,
    }
    if cmd.deadline_ms is not None:
        data["deadline"] = format_time(cmd.deadline_ms)
    if cmd.start_by_ms is not None:
        data["start_by"] = format_time(cmd.start_by_ms)
    return json.dumps(_envelope(COMMAND_TYPE, "baton", cmd, data), separators=(",", ":"))


def _envelope(kind: str, source: str, cmd: Command, data: Dict[str, Any]) -> Dict[str, Any]:
    event: Dict[str, Any] = {
        "specversion": "1.0",
        "type": kind,
        "source": source,
        "id": cmd.correlation_id,
        "subject": cmd.name,
        "datacontenttype": "application/json",
        "transactionid": cmd.transaction_id,
        "correlationid": cmd.correlation_id,
        "idempotencykey": cmd.idempotency_key,
    }
    if cmd.traceparent is not None:
        event["traceparent"] = cmd.traceparent
    event["data"] = data
    return event


def encode_result(cmd: Command, outcome: Dict[str, Any], source: str = "baton-worker") -> str:
    """The ``baton.result.v1`` event that answers ``cmd`` with ``outcome`` (``{"ok": v}`` or
    ``{"err": {...}}``): the command's attributes copied, ``id`` its correlation id."""
    data = {"step": cmd.step, "attempt": cmd.attempt, "outcome": outcome}
    return json.dumps(_envelope(RESULT_TYPE, source, cmd, data), separators=(",", ":"), allow_nan=False)


def is_terminal(outcome: Dict[str, Any]) -> bool:
    """Success, or a failure no retry can fix: what is recorded under the idempotency key."""
    return "ok" in outcome or not outcome["err"]["retryable"]


def is_expired(outcome: Optional[Dict[str, Any]]) -> bool:
    """Whether ``outcome`` is the ``expired`` refusal."""
    return bool(outcome) and "err" in outcome and outcome["err"].get("code") == EXPIRED


def _span(ms: int) -> str:
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    return f"{ms // 60_000}m{ms % 60_000 // 1000}s"


def expired(cmd: Command, now: int, worker: str) -> Dict[str, Any]:
    """The ``expired`` outcome of ``cmd``, reached at ``now`` by ``worker``: it says which
    limit passed and by how much."""
    if cmd.start_by_ms is not None and now >= cmd.start_by_ms:
        message = (
            f"not started: it reached worker {worker} {_span(now - cmd.start_by_ms)} after the step's "
            f"queue_timeout ran out (start_by {format_time(cmd.start_by_ms)}); the next attempt, if any, queues again"
        )
    else:
        deadline = cmd.deadline_ms or 0
        message = (
            f"not started: it reached worker {worker} {_span(now - deadline)} after its deadline "
            f"{format_time(deadline)} (the saga had stopped waiting for this attempt)"
        )
    return {"err": {"code": EXPIRED, "message": message, "retryable": True}}
