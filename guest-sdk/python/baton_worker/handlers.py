"""The handler API, independent of how commands arrive: commands, failures, their context.

A handler is ``fn(payload, ctx) -> result``: ``payload`` is the command's JSON input (a dict
for the usual object), ``ctx`` a :class:`Context`, and the result any JSON value. It fails by
raising :class:`Failure`; any other exception becomes the permanent failure ``internal`` with
its traceback. :meth:`Registry.handle` turns one call into an *outcome*, the wire form of
``data.outcome`` in a ``baton.result.v1`` event: ``{"ok": value}`` or
``{"err": {"code", "message", "retryable"}}``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import traceback
from typing import Any, Callable, Dict, List, Optional

#: The code of an uncaught exception. Permanent: a bug fails the same way on a retry (raise
#: ``Failure.retryable`` for what may pass later, a service that is away).
INTERNAL = "internal"
#: The code of a result that is not JSON. Permanent.
INVALID_OUTPUT = "invalid_output"
#: The code of a command no registered function handles. Permanent.
UNKNOWN_COMMAND = "unknown_command"
#: The code of a payload that is not JSON text. Permanent (the host sends JSON; this guards
#: against a host that does not).
INVALID_INPUT = "invalid_input"

#: Most characters of a failure message (a traceback is cut to fit, its end kept).
MAX_MESSAGE = 16 * 1024

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


class Failure(Exception):
    """Why a command did not succeed: a ``code`` workflows branch on (``catch``), a
    ``message`` for people, and whether a retry may help.

    ``Failure.retryable(code, message)``: trying again may succeed (a busy service); the step
    is retried as its workflow's retry policy says. ``Failure.fatal(code, message)`` (or
    ``Failure.permanent``): it never will (a declined card); the step fails for good at once.
    On an instance, ``retryable`` is the flag.
    """

    def __init__(self, code: str, message: str, retryable: bool = False):
        if not isinstance(code, str) or not _NAME.match(code):
            raise ValueError(f"failure code {code!r}: use letters, digits, '.', '_' and '-', e.g. 'card_declined'")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = str(message)
        self.retryable = bool(retryable)

    @classmethod
    def retryable(cls, code: str, message: str) -> "Failure":  # noqa: F811 (the instance has the flag)
        """A failure a retry may fix."""
        return cls(code, message, retryable=True)

    @classmethod
    def fatal(cls, code: str, message: str) -> "Failure":
        """A failure no retry can fix: the step fails for good (a ``catch`` may take it,
        otherwise the saga compensates)."""
        return cls(code, message, retryable=False)

    #: The Rust SDK's name for :meth:`fatal`.
    permanent = fatal

    def outcome(self) -> Dict[str, Any]:
        """As ``data.outcome`` of a result event."""
        return {"err": {"code": self.code, "message": self.message, "retryable": self.retryable}}


@dataclasses.dataclass(frozen=True)
class Context:
    """What a handler knows about the command it performs (the command event's attributes)."""

    #: The command name, e.g. ``fraud.score``.
    command: str
    #: The saga (``transactionid``).
    transaction_id: str
    #: Pairs this attempt with its result; new for every attempt.
    correlation_id: str
    #: The same for every attempt of this step's command: pass it to the services you call
    #: as their idempotency key, so a retry never does the work twice.
    idempotency_key: str
    #: The path of the step instance that sent it, e.g. ``settle/charge``.
    step: str
    #: 1 for the first try, 2 for the first retry, and so on.
    attempt: int
    #: W3C trace context, when the sender set one.
    traceparent: Optional[str] = None
    #: How long the run may take, in milliseconds (the step's timeout).
    timeout_ms: int = 0
    #: When the saga stops waiting for this attempt (UTC); ``None``: never.
    deadline: Optional[datetime.datetime] = None
    #: The latest time the command may be started (a step with a ``queue_timeout``).
    start_by: Optional[datetime.datetime] = None

    def remaining(self) -> Optional[float]:
        """Seconds left before the deadline (negative once past); ``None`` without one. A
        long handler should check it and stop in time: its answer after the deadline is
        only kept in the saga's history."""
        if self.deadline is None:
            return None
        return (self.deadline - datetime.datetime.now(datetime.timezone.utc)).total_seconds()


Handler = Callable[[Any, Context], Any]


@dataclasses.dataclass
class _Entry:
    fn: Handler
    input_schema: Optional[dict]
    output_schema: Optional[dict]


class Registry:
    """Command name -> handler. Most code uses the module's default, through
    :func:`command`; a registry of its own suits tests and hosts of several services."""

    def __init__(self) -> None:
        self._entries: Dict[str, _Entry] = {}

    def command(
        self, name: str, *, input_schema: Optional[dict] = None, output_schema: Optional[dict] = None
    ) -> Callable[[Handler], Handler]:
        """Register the decorated function as the handler of command ``name``. The schemas
        are what :meth:`describe` reports; the bus runner does not check them (declare them
        on the workflow's ``[commands."NAME"]`` table for the orchestrator to)."""

        def register(fn: Handler) -> Handler:
            self.add(name, fn, input_schema=input_schema, output_schema=output_schema)
            return fn

        return register

    def add(
        self, name: str, fn: Handler, *, input_schema: Optional[dict] = None, output_schema: Optional[dict] = None
    ) -> None:
        """Register ``fn`` as the handler of command ``name``."""
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"command name {name!r}: use letters, digits, '.', '_' and '-', e.g. 'fraud.score'")
        if not callable(fn):
            raise TypeError(f"the handler of {name} must be a function, not {type(fn).__name__}")
        if name in self._entries:
            other = getattr(self._entries[name].fn, "__qualname__", repr(self._entries[name].fn))
            raise ValueError(f"command {name} is already registered (to {other}): register each command once")
        self._entries[name] = _Entry(fn, input_schema, output_schema)

    def names(self) -> List[str]:
        """The registered command names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def describe(self) -> List[Dict[str, Optional[str]]]:
        """Every command with its schemas as JSON text: the ``command-spec`` list of the WIT
        contract's ``describe``."""
        text = lambda s: None if s is None else json.dumps(s, separators=(",", ":"))  # noqa: E731
        return [
            {"name": n, "input_schema": text(e.input_schema), "output_schema": text(e.output_schema)}
            for n, e in sorted(self._entries.items())
        ]

    def handle(self, name: str, payload: Any, ctx: Context) -> Dict[str, Any]:
        """Run the handler of ``name`` once and return its outcome; never raises (but lets
        ``KeyboardInterrupt`` and ``SystemExit`` through)."""
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(self.names()) or "none"
            return Failure.fatal(
                UNKNOWN_COMMAND, f"no function handles command {name!r} here (registered: {known})"
            ).outcome()
        try:
            result = entry.fn(payload, ctx)
        except Failure as f:
            return f.outcome()
        except Exception as e:  # noqa: BLE001 (every bug becomes a failure, never a crash)
            return internal(f"{type(e).__name__}: {e} (uncaught in the handler of {name})")
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as e:
            return Failure.fatal(
                INVALID_OUTPUT, f"the handler of {name} returned something that is not JSON: {e}"
            ).outcome()
        return {"ok": result}

    def handle_text(self, name: str, payload: str, ctx: Context) -> Dict[str, Any]:
        """What the WebAssembly component answers: :meth:`handle` of the JSON ``payload``
        text, its ``ok`` as JSON text; a payload that is not JSON is ``invalid_input``. Never
        raises: ``SystemExit`` and ``KeyboardInterrupt`` too become ``internal`` (in a
        component they would trap the instance and lose the message)."""
        try:
            try:
                value = json.loads(payload)
            except ValueError as e:
                return Failure.fatal(INVALID_INPUT, f"the payload of {name} is not JSON text: {e}").outcome()
            outcome = self.handle(name, value, ctx)
            if "ok" in outcome:
                return {"ok": json.dumps(outcome["ok"], allow_nan=False, separators=(",", ":"))}
            return outcome
        except BaseException as e:  # noqa: BLE001 (a trap would lose the message; SystemExit too)
            return internal(f"{type(e).__name__}: {e} (in baton_worker.component, handling {name})")


def internal(head: str) -> Dict[str, Any]:
    """The outcome ``internal`` for the exception being handled: ``head``, then its
    traceback, cut to :data:`MAX_MESSAGE` with the traceback's end kept."""
    trace = traceback.format_exc()
    head = f"{head}\n"
    body = trace if len(head) + len(trace) <= MAX_MESSAGE else "...\n" + trace[-(MAX_MESSAGE - len(head) - 4) :]
    return Failure.fatal(INTERNAL, head + body).outcome()


#: The registry :func:`command` registers into, and the bus runner serves by default.
registry = Registry()


def command(
    name: str, *, input_schema: Optional[dict] = None, output_schema: Optional[dict] = None
) -> Callable[[Handler], Handler]:
    """``@command("fraud.score")``: register the function as the handler of that command in
    the default :data:`registry`."""
    return registry.command(name, input_schema=input_schema, output_schema=output_schema)
