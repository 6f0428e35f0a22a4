"""The wire format, checked against docs/PROTOCOL.md's own examples (which a Rust test checks
against Baton's encoder and decoder), and the record and answer rules of sections 6 and 7."""

import json
import os
import re
import tempfile
import unittest

from baton_worker import Failure, Registry, protocol, runner
from baton_worker.record import MemoryRecord, SqliteRecord, open_record

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "docs", "PROTOCOL.md")


def examples(kind):
    """The JSON of the doc's examples of `kind`, with the attributes left free."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    out = []
    for m in re.finditer(r"<!-- protocol-example: (\w+)(?:; free: ([^>]*))? -->\n```json\n(.*?)\n```", text, re.S):
        if m.group(1) == kind:
            free = [f.strip() for f in (m.group(2) or "").split(",") if f.strip()]
            out.append((json.loads(m.group(3)), free))
    return out


def ms(text):
    return protocol.parse_time(text)


class WireTest(unittest.TestCase):
    def test_the_documented_commands_decode_and_encode_back_the_same(self):
        commands = examples("command")
        self.assertGreaterEqual(len(commands), 2)
        for event, _ in commands:
            cmd = protocol.decode_command(json.dumps(event))
            self.assertEqual(json.loads(protocol.encode_command(cmd)), event)
        first = protocol.decode_command(json.dumps(commands[0][0]))
        self.assertEqual((first.name, first.attempt, first.timeout_ms), ("fraud.score", 1, 10000))
        self.assertEqual(first.deadline_ms, ms("2026-12-01T11:45:14.123Z"))
        self.assertIsNone(first.start_by_ms)
        c = first.context()
        self.assertEqual((c.command, c.idempotency_key, c.step), ("fraud.score", "o-7/fraud_check/forward", "fraud_check"))
        self.assertEqual(c.deadline.isoformat(), "2026-12-01T11:45:14.123000+00:00")

    def test_the_documented_results_are_what_this_library_writes(self):
        commands = {e["correlationid"]: protocol.decode_command(json.dumps(e)) for e, _ in examples("command")}
        results = examples("result")
        self.assertGreaterEqual(len(results), 3)
        for event, free in results:
            cmd = commands[event["correlationid"]]
            mine = json.loads(protocol.encode_result(cmd, event["data"]["outcome"], source=event["source"]))
            for key in free:
                mine.pop(key, None)
                event.pop(key, None)
            self.assertEqual(mine, event)

    def test_the_documented_expired_answer_is_what_this_library_says(self):
        [refusal] = [e for e, _ in examples("result") if e["data"]["outcome"].get("err", {}).get("code") == "expired"]
        cmd = protocol.decode_command(json.dumps([e for e, _ in examples("command")][1]))
        self.assertTrue(cmd.expired_at(ms("2026-12-01T11:45:36.200Z")))
        self.assertFalse(cmd.expired_at(ms("2026-12-01T11:45:34.999Z")))
        self.assertEqual(protocol.expired(cmd, ms("2026-12-01T11:45:36.200Z"), "pay-1"), refusal["data"]["outcome"])

    def test_times(self):
        self.assertEqual(protocol.format_time(1796125509123), "2026-12-01T11:45:09.123Z")
        for text in ("2026-12-01T11:45:09.123Z", "2026-12-01T12:45:09.123+01:00", "2026-12-01T11:45:09.1234567Z"):
            self.assertEqual(protocol.parse_time(text), 1796125509123, text)
        self.assertEqual(protocol.parse_time("2026-12-01T11:45:09Z"), 1796125509000)
        self.assertEqual(protocol.parse_time(1796125509123), 1796125509123)
        for bad in ("2026-12-01T11:45:09", "soon", True, -1, None):
            with self.assertRaises(protocol.ProtocolError):
                protocol.parse_time(bad)

    def test_what_is_refused_and_what_is_ignored(self):
        event = examples("command")[0][0]
        event["futureattribute"] = "ignored"
        event["data"]["futurefield"] = 1
        protocol.decode_command(json.dumps(event))
        for mutate, says in [
            (lambda e: e.update(type="baton.result.v1"), "is not baton.command.v1"),
            (lambda e: e.pop("idempotencykey"), "idempotencykey must be a string"),
            (lambda e: e["data"].pop("payload"), "data.payload is missing"),
            (lambda e: e["data"].update(attempt="1"), "data.attempt must be a whole number"),
            (lambda e: e["data"].update(deadline="tomorrow"), "data.deadline 'tomorrow' is not an RFC 3339 time"),
        ]:
            e = json.loads(json.dumps(examples("command")[0][0]))
            mutate(e)
            with self.assertRaises(protocol.ProtocolError) as caught:
                protocol.decode_command(json.dumps(e))
            self.assertIn(says, str(caught.exception))
        for junk in (None, "", "{", "[]"):
            with self.assertRaises(protocol.ProtocolError):
                protocol.decode_command(junk)


def command(attempt=1, deadline=None, start_by=None, key="o-7/s/forward"):
    return protocol.Command(
        name="fraud.score",
        payload={"order_id": "o-7"},
        transaction_id="o-7",
        correlation_id=f"{key}/{attempt}",
        idempotency_key=key,
        step="s",
        attempt=attempt,
        timeout_ms=1000,
        deadline_ms=deadline,
        start_by_ms=start_by,
    )


class RecordTest(unittest.TestCase):
    def records(self):
        d = tempfile.mkdtemp()
        return [MemoryRecord(), SqliteRecord(os.path.join(d, "outcomes.sqlite"))]

    def test_the_first_terminal_outcome_wins_and_replaces_an_expired_one(self):
        expired = protocol.expired(command(deadline=5), 10, "w")
        for r in self.records():
            self.assertIsNone(r.get("c", "k"))
            r.put("c", "k", expired)
            self.assertEqual(r.get("c", "k"), expired)
            r.put("c", "k", {"ok": 1})
            r.put("c", "k", {"ok": 2})
            r.put("c", "k", expired)
            self.assertEqual(r.get("c", "k"), {"ok": 1}, type(r).__name__)
            self.assertIsNone(r.get("other", "k"), "keyed by command and key")
            r.forget("c", "k")
            self.assertIsNone(r.get("c", "k"))

    def test_a_sqlite_record_survives_a_reopen(self):
        path = os.path.join(tempfile.mkdtemp(), "r.sqlite")
        SqliteRecord(path).put("c", "k", {"ok": {"a": [1]}})
        self.assertEqual(SqliteRecord(path).get("c", "k"), {"ok": {"a": [1]}})
        self.assertEqual(SqliteRecord(path).prune(-1), 1)

    def test_open_record(self):
        self.assertIsInstance(open_record(None), MemoryRecord)
        self.assertIsNone(open_record(False))
        self.assertIsInstance(open_record(os.path.join(tempfile.mkdtemp(), "x.db")), SqliteRecord)
        with self.assertRaises(TypeError):
            open_record(42)


class AnswerTest(unittest.TestCase):
    """Section 7's rule, case by case."""

    def setUp(self):
        self.runs = []
        self.r = Registry()

        @self.r.command("fraud.score")
        def score(req, ctx):
            self.runs.append(ctx.attempt)
            if req.get("busy"):
                raise Failure.retryable("busy", "later")
            return {"score": 0.5, "attempt": ctx.attempt}

        self.record = MemoryRecord()

    def answer(self, cmd, now):
        return runner.answer(cmd, self.r, self.record, now=lambda: now, worker="w")

    def test_a_duplicate_is_answered_from_the_record_and_runs_once(self):
        first = self.answer(command(deadline=100), 10)
        self.assertEqual((first.how, first.outcome), ("ran", {"ok": {"score": 0.5, "attempt": 1}}))
        again = self.answer(command(deadline=100), 20)
        self.assertEqual((again.how, again.outcome), ("recorded", first.outcome))
        # A later attempt of the same key, even past its deadline, gets the recorded answer.
        late = self.answer(command(attempt=2, deadline=100), 500)
        self.assertEqual((late.how, late.outcome), ("recorded", first.outcome))
        self.assertEqual(self.runs, [1])

    def test_past_the_deadline_or_start_by_nothing_runs(self):
        for cmd, now in [(command(deadline=100), 100), (command(deadline=1000, start_by=50), 60)]:
            self.record = MemoryRecord()
            a = self.answer(cmd, now)
            self.assertEqual(a.how, "expired")
            self.assertEqual((a.outcome["err"]["code"], a.outcome["err"]["retryable"]), ("expired", True))
            self.assertTrue(a.outcome["err"]["message"].startswith("not started"), a.outcome)
            self.assertEqual(self.record.get("fraud.score", "o-7/s/forward"), a.outcome, "expired is recorded")
        self.assertEqual(self.runs, [])

    def test_a_recorded_expired_answers_only_a_late_command(self):
        refused = self.answer(command(deadline=100), 150)
        redelivered = self.answer(command(deadline=100), 300)
        self.assertEqual((redelivered.how, redelivered.outcome), ("recorded", refused.outcome))
        # The next attempt, in time, runs, and its outcome replaces the refusal.
        later = self.answer(command(attempt=2, deadline=1000), 400)
        self.assertEqual(later.how, "ran")
        self.assertEqual(self.record.get("fraud.score", "o-7/s/forward"), later.outcome)
        self.assertEqual(self.answer(command(attempt=2, deadline=1000), 500).how, "recorded")
        self.assertEqual(self.runs, [2])

    def test_retryable_failures_are_not_recorded(self):
        busy = protocol.Command(**{**command(deadline=100).__dict__, "payload": {"busy": True}})
        self.assertEqual(self.answer(busy, 10).outcome["err"]["code"], "busy")
        self.assertIsNone(self.record.get("fraud.score", "o-7/s/forward"))
        self.assertEqual(self.answer(busy, 20).how, "ran")
        self.assertEqual(self.runs, [1, 1])

    def test_without_a_record_every_delivery_runs(self):
        for _ in range(2):
            self.assertEqual(runner.answer(command(deadline=100), self.r, None, now=lambda: 10).how, "ran")
        self.assertEqual(self.runs, [1, 1])


if __name__ == "__main__":
    unittest.main()
