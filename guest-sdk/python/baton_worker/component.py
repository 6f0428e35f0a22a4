"""The WebAssembly side of the SDK: the ``worker`` export of ``baton:saga``'s ``worker-plugin``
world, served by the functions registered with :func:`baton_worker.command`.

componentize-py wants the component's entry module to define a class ``Worker`` for the
exported ``worker`` interface; ``python -m baton_worker.build`` writes that entry module, which
imports the user's module (registering its commands) and then this class. It delegates to the
default :data:`baton_worker.registry`:

- ``describe`` is :meth:`Registry.describe`, as the WIT ``command-spec`` records;
- ``handle`` parses the command's JSON payload, makes a :class:`Context` of its ``meta``, runs
  :meth:`Registry.handle` and returns the result as JSON text, or raises ``Err(failure)``
  (componentize-py's way of returning the ``err`` case).

Nothing escapes as an exception other than that ``Err``: an uncaught Python exception would
trap the instance, so whatever goes wrong, here or in the handler, becomes the permanent
failure ``internal`` with its traceback. This module imports the bindings componentize-py
generates (``wit_world``, ``componentize_py_types``), so it is importable only inside a
component build; the rest of ``baton_worker`` does not import it.
"""

from __future__ import annotations

import json
import traceback
from typing import Any, Dict, List

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

from .handlers import INTERNAL, MAX_MESSAGE, Context
from .handlers import registry as default_registry

#: The code of a payload that is not JSON text. Permanent (the host sends JSON; this guards
#: against a host that does not).
INVALID_INPUT = "invalid_input"


def _internal(what: str) -> types.Failure:
    """The failure ``internal`` for the exception being handled, with its traceback."""
    trace = traceback.format_exc()
    head = f"{what}\n"
    body = trace if len(head) + len(trace) <= MAX_MESSAGE else "...\n" + trace[-(MAX_MESSAGE - len(head) - 4) :]
    return types.Failure(code=INTERNAL, message=head + body, retryable=False)


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
    """The ``ok`` JSON text of an outcome, or raise its ``Err``."""
    if "ok" in outcome:
        return json.dumps(outcome["ok"], allow_nan=False, separators=(",", ":"))
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
            try:
                payload = json.loads(cmd.payload)
            except ValueError as e:
                raise Err(
                    types.Failure(
                        code=INVALID_INPUT,
                        message=f"the payload of {cmd.name} is not JSON text: {e}",
                        retryable=False,
                    )
                ) from None
            outcome = default_registry.handle(cmd.name, payload, _context(cmd))
            return _result(outcome)
        except Err:
            raise
        except BaseException as e:  # noqa: BLE001 (a trap would lose the message; SystemExit too)
            raise Err(_internal(f"{type(e).__name__}: {e} (in baton_worker.component, handling {cmd.name})")) from None
