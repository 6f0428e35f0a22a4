"""The Python component of tests/tests/polyglot.rs: the greeter example's commands, and
commands that fail in each way a Python handler can.

- ``probe.crash``: an uncaught exception, raised two calls deep (its traceback names both);
- ``probe.decline``: ``Failure.fatal`` with the code and message of its input;
- ``probe.flaky``: ``Failure.retryable("busy", ...)`` until attempt ``succeed_on``, then its
  attempt and idempotency key (the same for every attempt);
- ``probe.echo``: its input, for the benchmark of the per-command cost (``benches/polyglot.rs``).
"""

import greeter  # noqa: F401 (its commands are this component's too)
from baton_worker import Context, Failure, command


def _divide(a: int, b: int) -> float:
    return a / b


def _ratio(req: dict) -> float:
    return _divide(req.get("numerator", 1), req.get("denominator", 0))


@command("probe.crash")
def crash(req: dict, ctx: Context) -> dict:
    """Divide by zero, uncaught."""
    return {"ratio": _ratio(req)}


@command("probe.decline")
def decline(req: dict, ctx: Context) -> dict:
    """Fail for good with the code and message asked for."""
    raise Failure.fatal(req["code"], req["message"])


@command("probe.flaky")
def flaky(req: dict, ctx: Context) -> dict:
    """Fail with a retryable ``busy`` before attempt ``succeed_on``."""
    if ctx.attempt < req["succeed_on"]:
        raise Failure.retryable("busy", f"attempt {ctx.attempt} of {ctx.step}: try again")
    return {"attempt": ctx.attempt, "idempotency_key": ctx.idempotency_key}


@command("probe.exit")
def exit_(req: dict, ctx: Context) -> dict:
    """``SystemExit``, which the registry lets through and the component's glue catches."""
    raise SystemExit(3)


@command("probe.echo")
def echo(req: dict, ctx: Context) -> dict:
    """The input, as it came: the per-command cost of the language (``benches/polyglot.rs``)."""
    return req
