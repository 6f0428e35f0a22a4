"""``baton_worker.testing``: a command run as the component runs it, without a host."""

import sys
import unittest
from pathlib import Path

from baton_worker import Failure, Registry
from baton_worker.testing import call, call_text

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "plugins" / "python" / "greeter"))
import greeter  # noqa: E402,F401 (registers greeter.hello in the default registry)

reg = Registry()


@reg.command("t.context")
def context(req, ctx):
    return {"ctx": [ctx.command, ctx.transaction_id, ctx.correlation_id, ctx.idempotency_key, ctx.step, ctx.attempt, ctx.traceparent]}


@reg.command("t.fatal")
def fatal(req, ctx):
    raise Failure.fatal("card_declined", "declined")


@reg.command("t.retry")
def retry(req, ctx):
    raise Failure.retryable("busy", f"attempt {ctx.attempt}")


def _missing(table):
    return table["missing"]


@reg.command("t.crash")
def crash(req, ctx):
    return _missing({})


@reg.command("t.exit")
def exit_(req, ctx):
    raise SystemExit(2)


@reg.command("t.nan")
def nan(req, ctx):
    return {"x": float("nan")}


class CallTest(unittest.TestCase):
    def test_the_greeter_example_through_the_default_registry(self):
        out = call("greeter.hello", {"name": "Ada", "lang": "fr"}, attempt=2, transaction_id="o-1")
        self.assertEqual(out, {"ok": {"greeting": "Bonjour, Ada!", "saga": "o-1", "attempt": 2}})
        err = call("greeter.hello", {"name": " "})["err"]
        self.assertEqual((err["code"], err["retryable"]), ("no_name", False))

    def test_the_meta_is_defaulted_as_a_saga_would_send_it(self):
        out = call("t.context", {}, registry=reg, attempt=3)
        self.assertEqual(out["ok"]["ctx"], ["t.context", "test-saga", "test-saga/test/forward/3", "test-saga/test/forward", "test", 3, None])
        out = call("t.context", {}, registry=reg, step="screen", traceparent="00-ab-cd-01", idempotency_key="k")
        self.assertEqual(out["ok"]["ctx"][2:], ["k/1", "k", "screen", 1, "00-ab-cd-01"])
        with self.assertRaises(ValueError):
            call("t.context", {}, registry=reg, attempt=0)
        with self.assertRaises(TypeError):
            call("t.context", {}, registry=reg, attemps=2)

    def test_failures_keep_their_code_message_and_retryable(self):
        self.assertEqual(call("t.fatal", registry=reg), {"err": {"code": "card_declined", "message": "declined", "retryable": False}})
        self.assertEqual(call("t.retry", registry=reg, attempt=2), {"err": {"code": "busy", "message": "attempt 2", "retryable": True}})

    def test_an_exception_even_system_exit_is_internal_with_its_traceback(self):
        err = call("t.crash", registry=reg)["err"]
        self.assertEqual((err["code"], err["retryable"]), ("internal", False))
        self.assertTrue(err["message"].startswith("KeyError: 'missing' (uncaught in the handler of t.crash)"), err["message"])
        self.assertIn("in _missing", err["message"])
        err = call("t.exit", registry=reg)["err"]
        self.assertEqual(err["code"], "internal")
        self.assertIn("SystemExit: 2 (in baton_worker.component, handling t.exit)", err["message"])

    def test_json_in_and_out(self):
        err = call_text("t.context", "{nope", registry=reg)["err"]
        self.assertEqual(err["code"], "invalid_input")
        self.assertTrue(err["message"].startswith("the payload of t.context is not JSON text: "), err["message"])
        self.assertEqual(call("t.nan", registry=reg)["err"]["code"], "invalid_output")
        self.assertEqual(call("t.unknown", registry=reg)["err"]["code"], "unknown_command")


if __name__ == "__main__":
    unittest.main()
