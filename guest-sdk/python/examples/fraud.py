"""A fraud-scoring service: ``fraud.score`` for the ``order_fraud`` workflow, served outside
Baton over its Redis bus.

    PYTHONPATH=guest-sdk/python python3 -m baton_worker.bus \
        --module guest-sdk/python/examples/fraud.py --redis redis://127.0.0.1:6379

It has no model behind it: rules, so a demo or a test steers it with the order.

- The score is the order's total over 10,000 (at most 1): an order of 9,000 scores 0.9, and
  the workflow refuses it (``fraud_suspected``).
- A customer on the block list is refused for good: ``Failure.fatal("customer_blocked")``,
  so the step fails at once and the saga undoes what it did.
- A payment provider that is "down" (``FRAUD_PROVIDER_DOWN=1``) is a failure worth retrying:
  ``Failure.retryable``, and the workflow's retry policy tries again.
"""

import os

from baton_worker import Context, Failure, command

BLOCKED = {"mallory"}


@command("fraud.score")
def score(order: dict, ctx: Context) -> dict:
    if "order_id" not in order:
        raise Failure.fatal("no_order", "which order? the payload has no order_id")
    if os.environ.get("FRAUD_PROVIDER_DOWN") == "1":
        raise Failure.retryable("provider_down", f"the scoring provider did not answer (attempt {ctx.attempt})")
    customer = order.get("customer", "")
    if customer in BLOCKED:
        raise Failure.fatal("customer_blocked", f"customer {customer} is on the block list")
    total = sum(item["qty"] * item["price"] for item in order.get("items", []))
    return {"order_id": order["order_id"], "score": round(min(1.0, total / 10_000), 4)}
