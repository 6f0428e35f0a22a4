"""Test a handler without a host: :func:`call` sends one command through what the
WebAssembly component runs (:meth:`Registry.handle_text`: the payload as JSON text and back,
the same catching), so a test sees what the host would get::

    from baton_worker.testing import call
    import greeter  # registers greeter.hello

    assert call("greeter.hello", {"name": "Ada"}, attempt=2)["ok"]["attempt"] == 2
    assert call("greeter.hello", {"name": " "}) == {"err": {"code": "no_name", ...}}

The same as ``baton-worker/testing`` of the JavaScript SDK.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from .handlers import Context, Registry
from .handlers import registry as default_registry


def _context(name: str, transaction_id: str, correlation_id: Optional[str], idempotency_key: Optional[str],
             step: str, attempt: int, traceparent: Optional[str]) -> Context:
    """The context of a call, its meta defaulted as a saga ``test-saga`` would send it from
    step ``test`` at attempt 1."""
    if not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"call({name!r}): attempt is 1 or more, not {attempt!r}")
    key = idempotency_key or f"{transaction_id}/{step}/forward"
    return Context(
        command=name,
        transaction_id=transaction_id,
        correlation_id=correlation_id or f"{key}/{attempt}",
        idempotency_key=key,
        step=step,
        attempt=attempt,
        traceparent=traceparent,
    )


def call_text(name: str, payload: str, *, transaction_id: str = "test-saga", correlation_id: Optional[str] = None,
              idempotency_key: Optional[str] = None, step: str = "test", attempt: int = 1,
              traceparent: Optional[str] = None, registry: Optional[Registry] = None) -> Dict[str, Any]:
    """As :func:`call`, with the payload as it arrives: JSON text, or anything else to see
    the failure ``invalid_input``."""
    ctx = _context(name, transaction_id, correlation_id, idempotency_key, step, attempt, traceparent)
    outcome = (registry or default_registry).handle_text(name, payload, ctx)
    if "ok" in outcome:
        return {"ok": json.loads(outcome["ok"])}
    return outcome


def call(name: str, payload: Any = None, **meta: Any) -> Dict[str, Any]:
    """Run command ``name`` with ``payload`` (any JSON value, sent as JSON text) as the host
    would: ``{"ok": result}`` or ``{"err": {"code", "message", "retryable"}}``. Keywords: the
    command's meta (``transaction_id``, ``correlation_id``, ``idempotency_key``, ``step``,
    ``attempt``, ``traceparent``; defaults: a first attempt of step ``test`` of saga
    ``test-saga``) and ``registry`` (default: the one :func:`baton_worker.command` registers
    into)."""
    return call_text(name, json.dumps(payload), **meta)
