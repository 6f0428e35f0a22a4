"""The handler API: registration, failures, what an uncaught exception becomes."""

import json
import unittest

from baton_worker import Context, Failure, Registry


def ctx(name="fraud.score", attempt=1):
    return Context(
        command=name,
        transaction_id="o-7",
        correlation_id=f"o-7/s/forward/{attempt}",
        idempotency_key="o-7/s/forward",
        step="s",
        attempt=attempt,
    )


class FailureTest(unittest.TestCase):
    def test_the_two_kinds_and_their_wire_form(self):
        f = Failure.retryable("busy", "later")
        self.assertTrue(f.retryable)
        self.assertEqual(f.outcome(), {"err": {"code": "busy", "message": "later", "retryable": True}})
        g = Failure.fatal("no_order", "which order?")
        self.assertFalse(g.retryable)
        self.assertEqual(str(g), "no_order: which order?")
        self.assertFalse(Failure.permanent("x", "y").retryable)
        self.assertIsInstance(g, Exception)

    def test_a_code_is_a_name(self):
        with self.assertRaises(ValueError):
            Failure.fatal("no order", "spaces are not allowed in codes")


class RegistryTest(unittest.TestCase):
    def setUp(self):
        self.r = Registry()

    def test_a_handler_gets_the_payload_and_the_context(self):
        @self.r.command("fraud.score", input_schema={"type": "object"})
        def score(req, c):
            return {"score": 0.1, "order": req["order_id"], "attempt": c.attempt, "key": c.idempotency_key}

        self.assertEqual(
            self.r.handle("fraud.score", {"order_id": "o-7"}, ctx(attempt=2)),
            {"ok": {"score": 0.1, "order": "o-7", "attempt": 2, "key": "o-7/s/forward"}},
        )
        self.assertIn("fraud.score", self.r)
        self.assertEqual(
            self.r.describe(), [{"name": "fraud.score", "input_schema": '{"type":"object"}', "output_schema": None}]
        )
        # The decorator gives the function back, callable as before.
        self.assertEqual(score({"order_id": "x"}, ctx())["order"], "x")

    def test_failures_raised_are_outcomes(self):
        self.r.add("a.b", lambda req, c: (_ for _ in ()).throw(Failure.retryable("busy", "try later")))
        self.assertEqual(self.r.handle("a.b", {}, ctx()), {"err": {"code": "busy", "message": "try later", "retryable": True}})

    def test_an_uncaught_exception_is_internal_with_its_traceback(self):
        def broken(req, c):
            return {}["missing"]

        self.r.add("a.b", broken)
        out = self.r.handle("a.b", {}, ctx())
        err = out["err"]
        self.assertEqual((err["code"], err["retryable"]), ("internal", False))
        self.assertTrue(err["message"].startswith("KeyError: 'missing' (uncaught in the handler of a.b)"), err["message"])
        self.assertIn("Traceback (most recent call last)", err["message"])
        self.assertIn("in broken", err["message"])

    def test_a_huge_traceback_is_cut_and_keeps_its_end(self):
        def deep(n):
            return deep(n - 1) if n else 1 / 0

        self.r.add("a.b", lambda req, c: deep(400))
        err = self.r.handle("a.b", {}, ctx())["err"]
        self.assertLessEqual(len(err["message"]), 16 * 1024)
        self.assertTrue(err["message"].rstrip().endswith("ZeroDivisionError: division by zero"), err["message"][-200:])

    def test_a_result_that_is_not_json_is_invalid_output(self):
        self.r.add("a.b", lambda req, c: {"when": object()})
        self.r.add("a.c", lambda req, c: float("nan"))
        for name in ("a.b", "a.c"):
            err = self.r.handle(name, {}, ctx())["err"]
            self.assertEqual((err["code"], err["retryable"]), ("invalid_output", False))

    def test_an_unknown_command_and_names(self):
        self.r.add("a.b", lambda req, c: None)
        err = self.r.handle("x.y", {}, ctx())["err"]
        self.assertEqual((err["code"], err["retryable"]), ("unknown_command", False))
        self.assertIn("registered: a.b", err["message"])
        with self.assertRaises(ValueError):
            self.r.add("a.b", lambda req, c: None)
        with self.assertRaises(ValueError):
            self.r.add("no spaces", lambda req, c: None)
        self.assertEqual(self.r.handle("a.b", None, ctx()), {"ok": None})
        json.dumps(self.r.describe())

    def test_system_exit_is_not_swallowed(self):
        def leave(req, c):
            raise SystemExit(3)

        self.r.add("a.b", leave)
        with self.assertRaises(SystemExit):
            self.r.handle("a.b", {}, ctx())


if __name__ == "__main__":
    unittest.main()
