"""The WebAssembly side of the SDK: the ``worker`` export of ``baton:saga``'s ``worker-plugin``
world, served by the functions registered with :func:`baton_worker.command`.

componentize-py wants the component's entry module to define a class ``Worker`` for the
exported ``worker`` interface; ``python -m baton_worker.build`` writes that entry module, which
imports the user's module (registering its commands) and then this class. It delegates to the
default :data:`baton_worker.registry`:

- ``describe`` is :meth:`Registry.describe`, as the WIT ``command-spec`` records;
- ``handle`` makes a :class:`Context` of the command's ``meta``, runs
  :meth:`Registry.handle_text` (which parses the JSON payload and catches everything) and
  returns the result as JSON text, or raises ``Err(failure)`` (componentize-py's way of
  returning the ``err`` case). ``baton_worker.testing`` runs the same method, without the
  bindings.

Nothing escapes as an exception other than that ``Err``: an uncaught Python exception would
trap the instance, so whatever goes wrong, here or in the handler, becomes the permanent
failure ``internal`` with its traceback. This module imports the bindings componentize-py
generates (``wit_world``, ``componentize_py_types``), so it is importable only inside a
component build; the rest of ``baton_worker`` does not import it.
"""

from __future__ import annotations

from typing import Any, Dict, List

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

from .handlers import INVALID_INPUT, Context, internal  # noqa: F401 (INVALID_INPUT: its old home)
from .handlers import registry as default_registry


def _context(cmd: types.Command) -> Context:
    """The handler's :class:`Context` of a WIT command. The contract carries no deadline:
    ``timeout_ms`` is 0 and ``deadline`` ``None`` (the host enforces the step's timeout)."""
    m = cmd.meta
    return Context(
        command=cmd.name,
        transaction_id=m.transaction_id,
        correlation_id=m.correlation_id,
        idempotency_key=m.idempotency_key,
        step=m.step,
        attempt=int(m.attempt),
        traceparent=m.traceparent,
    )


def _result(outcome: Dict[str, Any]) -> str:
    """The ``ok`` JSON text of a :meth:`Registry.handle_text` outcome, or raise its ``Err``."""
    if "ok" in outcome:
        return outcome["ok"]
    err = outcome["err"]
    raise Err(types.Failure(code=err["code"], message=err["message"], retryable=bool(err["retryable"])))


class Worker(exports.Worker):
    """The ``worker`` export, serving the default registry (see the module)."""

    def describe(self) -> List[types.CommandSpec]:
        """The registered commands with their schemas (JSON text)."""
        return [
            types.CommandSpec(name=s["name"], input_schema=s["input_schema"], output_schema=s["output_schema"])
            for s in default_registry.describe()
        ]

    def handle(self, cmd: types.Command) -> str:
        """Run the handler of ``cmd.name`` once: its result as JSON text, or ``Err(failure)``."""
        try:
            outcome = default_registry.handle_text(cmd.name, cmd.payload, _context(cmd))
        except BaseException as e:  # noqa: BLE001 (a trap would lose the message; SystemExit too)
            outcome = internal(f"{type(e).__name__}: {e} (in baton_worker.component, handling {cmd.name})")
        return _result(outcome)
