//! The decision function, alone: no bus, no store, no wasm, no clock. Each test feeds events
//! to `decide` and checks the saga and the effects it asks for. Most end with an `insta`
//! snapshot of the saga's story (its history, times relative to the start, then each
//! instance), so a reviewer reads what happened in one file: `tests/snapshots/`.
//!
//! After an intended change, `INSTA_UPDATE=always cargo test -p baton --test decide` rewrites
//! the snapshots; review the diff.

use std::path::Path;

use baton::model::{HistoryEvent, Phase, Saga, SagaStatus, StepStatus};
use baton::orchestrator::decide::TIMEOUT_GRACE_MS;
use baton::orchestrator::{Effect, Event, decide, new_saga, pending_timers};
use baton::protocol::{CommandMessage, Failure, Outcome, ResultMessage};
use baton::workflow::{self, Workflow};
use serde_json::{Value, json};

const T0: u64 = 1_000_000;

/// A saga driven by hand at a virtual time, with the commands it has out.
struct Harness {
    wf: Workflow,
    saga: Saga,
    now: u64,
    /// Commands sent and not answered yet, oldest first.
    out: Vec<CommandMessage>,
    /// Every command sent.
    sent: Vec<CommandMessage>,
    history: Vec<(u64, HistoryEvent)>,
}

impl Harness {
    fn new(text: &str, input: Value) -> Harness {
        let wf = workflow::parse(Path::new("test.toml"), text, None).unwrap_or_else(|e| panic!("{e}"));
        let saga = new_saga("s".into(), &wf, input, T0);
        let mut h = Harness { wf, saga, now: T0, out: vec![], sent: vec![], history: vec![] };
        assert!(h.feed(Event::Start));
        h
    }

    fn feed(&mut self, event: Event) -> bool {
        let d = decide(&self.wf, &mut self.saga, &event, self.now);
        assert!(
            d.changed || (d.history.is_empty() && d.effects.is_empty()),
            "an event that changes nothing does nothing"
        );
        self.history.extend(d.history.into_iter().map(|e| (self.now, e)));
        for e in d.effects {
            if let Effect::Dispatch(c) = e {
                self.out.retain(|o| o.meta.idempotency_key != c.meta.idempotency_key);
                self.out.push(c.clone());
                self.sent.push(c);
            }
        }
        d.changed
    }

    /// The outstanding command of the instance at `path`.
    fn pending(&self, path: &str) -> CommandMessage {
        self.out.iter().rev().find(|c| c.meta.step == path).cloned().unwrap_or_else(|| {
            panic!("no command out for {path}; out: {:?}", self.out.iter().map(|c| &c.meta.step).collect::<Vec<_>>())
        })
    }

    fn answer(&mut self, path: &str, outcome: Outcome) -> bool {
        let c = self.pending(path);
        self.out.retain(|o| o.meta.correlation_id != c.meta.correlation_id);
        self.now += 10;
        self.feed(Event::Result(ResultMessage { command: c.name, meta: c.meta, outcome }))
    }

    fn ok(&mut self, path: &str, v: Value) -> bool {
        self.answer(path, Outcome::Ok(v))
    }

    fn fail(&mut self, path: &str, code: &str, retryable: bool) -> bool {
        self.answer(path, Outcome::Err(Failure { code: code.into(), message: format!("{code}!"), retryable }))
    }

    fn signal(&mut self, name: &str, payload: Value) -> bool {
        self.now += 10;
        self.feed(Event::Signal { name: name.into(), payload })
    }

    /// Move the clock on by `ms` and fire every timer due by then, earliest first.
    fn advance(&mut self, ms: u64) {
        self.now += ms;
        loop {
            let mut due: Vec<(u64, Event)> =
                pending_timers(&self.saga).into_iter().filter(|(at, _)| *at <= self.now).collect();
            due.sort_by_key(|(at, _)| *at);
            let Some((_, event)) = due.into_iter().next() else { break };
            assert!(self.feed(event));
        }
    }

    fn status(&self, path: &str) -> StepStatus {
        self.saga.steps.iter().find(|s| s.path == path).unwrap_or_else(|| panic!("no instance {path}")).status
    }

    /// The story: the history, then the instances and the saga's end.
    fn story(&self) -> String {
        let mut out = String::new();
        for (at, e) in &self.history {
            let mut v = serde_json::to_value(e).unwrap();
            if let Some(due) = v.get("due_at").and_then(Value::as_str) {
                let due = baton::model::time::parse(due).unwrap();
                v["due_at"] = json!(format!("+{}ms", due - T0));
            }
            out.push_str(&format!("+{}ms {v}\n", at - T0));
        }
        out.push_str("--\n");
        for s in &self.saga.steps {
            out.push_str(&format!("{} [{}] {}", s.path, s.kind, s.status.as_str()));
            if s.attempts > 0 {
                out.push_str(&format!(" attempts={}", s.attempts));
            }
            if let Some(seq) = s.seq {
                out.push_str(&format!(" seq={seq}"));
            }
            if let Some(o) = &s.output {
                out.push_str(&format!(" output={o}"));
            }
            if let Some(e) = &s.error {
                out.push_str(&format!(" error={}", e.code));
            }
            if let Some(c) = &s.compensation {
                out.push_str(&format!(" compensation={}:{}", c.command, c.status.as_str()));
            }
            out.push('\n');
        }
        out.push_str(&format!("saga: {}", self.saga.status));
        if let Some(o) = &self.saga.output {
            out.push_str(&format!(" output={o}"));
        }
        if let Some(e) = &self.saga.error {
            out.push_str(&format!(" error={}@{}", e.code, e.step));
        }
        out.push('\n');
        out
    }
}

const SEQUENCE: &str = r#"
name = "order"
[defaults]
timeout = "5s"
retry = { attempts = 3, backoff = "100ms", max_backoff = "1s" }

[[step]]
name = "reserve"
command = "inventory.reserve"
compensate = "inventory.release"

[[step]]
name = "charge"
command = "payment.charge"
compensate = "payment.refund"
compensate_input = "{ 'payment_id': steps.charge.payment_id, 'order': input.order_id }"

[[step]]
name = "log"
command = "audit.log"
input = "{ 'order': input.order_id, 'paid': steps.charge.amount }"

[[step]]
name = "ship"
command = "shipping.ship"
compensate = "shipping.cancel"
"#;

#[test]
fn a_v1_sequence_dispatches_with_deterministic_ids_and_a_deadline() {
    let h = Harness::new(SEQUENCE, json!({"order_id": "o-1", "total": 30}));
    let c = h.pending("reserve");
    assert_eq!(c.name, "inventory.reserve");
    assert_eq!(c.payload, json!({"order_id": "o-1", "total": 30}), "no input expression: the saga input");
    assert_eq!(c.meta.transaction_id, "s");
    assert_eq!(c.meta.correlation_id, "s/reserve/forward/1");
    assert_eq!(c.meta.idempotency_key, "s/reserve/forward");
    assert_eq!(c.timeout_ms, 5_000);
    assert_eq!(c.deadline_ms, T0 + 5_000, "a worker never starts it after this");
    assert_eq!(
        pending_timers(&h.saga),
        [(T0 + 5_000 + TIMEOUT_GRACE_MS, Event::Timer { id: "s/reserve/forward/1".into() })]
    );
    assert_eq!(h.saga.timer_due(), Some(T0 + 5_000 + TIMEOUT_GRACE_MS), "the store indexes the earliest timer");
    let mut again = h.saga.clone();
    assert!(!decide(&h.wf, &mut again, &Event::Start, T0).changed, "a second start changes nothing");
}

#[test]
fn a_v1_sequence_completes_and_maps_inputs() {
    let mut h = Harness::new(SEQUENCE, json!({"order_id": "o-1"}));
    h.ok("reserve", json!({"reservation_id": "r-1"}));
    h.ok("charge", json!({"payment_id": "p-1", "amount": 30}));
    assert_eq!(h.pending("log").payload, json!({"order": "o-1", "paid": 30}));
    h.ok("log", json!({}));
    h.ok("ship", json!({"tracking": "T"}));
    assert_eq!(h.saga.status, SagaStatus::Completed);
    assert_eq!(h.saga.output, Some(json!({"tracking": "T"})), "default output: the main block's last step's");
    insta::assert_snapshot!(h.story());
}

#[test]
fn retries_then_compensates_in_reverse_with_compensate_input() {
    let mut h = Harness::new(SEQUENCE, json!({"order_id": "o-1"}));
    h.ok("reserve", json!({"reservation_id": "r-1"}));
    h.ok("charge", json!({"payment_id": "p-1", "amount": 30}));
    h.ok("log", json!({}));
    h.fail("ship", "busy", true);
    assert!(h.out.is_empty(), "a backoff, not a dispatch");
    h.advance(1_000);
    h.fail("ship", "no_carrier", false);
    assert_eq!(h.pending("charge").payload, json!({"payment_id": "p-1", "order": "o-1"}));
    h.ok("charge", json!({"refunded": "p-1"}));
    assert_eq!(h.pending("reserve").payload, json!({"reservation_id": "r-1"}), "the step's output by default");
    h.ok("reserve", json!({}));
    assert_eq!(h.saga.status, SagaStatus::Compensated);
    insta::assert_snapshot!(h.story());
}

#[test]
fn a_step_whose_last_attempt_timed_out_is_undone_with_the_rest() {
    let mut h = Harness::new(SEQUENCE, json!({"order_id": "o-1"}));
    h.ok("reserve", json!({"reservation_id": "r-1"}));
    h.ok("charge", json!({"payment_id": "p-1", "amount": 30}));
    h.ok("log", json!({}));
    // Three attempts, no answer: the parcel may or may not have been booked.
    for _ in 0..10 {
        if h.saga.status == SagaStatus::Compensating {
            break;
        }
        h.advance(6_000);
    }
    let ship = h.saga.steps.iter().find(|s| s.path == "ship").unwrap();
    assert_eq!((ship.status, ship.uncertain, ship.attempts), (StepStatus::Failed, true, 3));
    assert_eq!(ship.seq, Some(3), "in the log after charge");
    let cancel = h.pending("ship");
    assert_eq!(cancel.name, "shipping.cancel", "undone first: it came last");
    assert_eq!(cancel.payload, json!({"order_id": "o-1"}), "what the step was sent, since it never answered");
    h.ok("ship", json!({"cancelled": false}));
    assert_eq!(h.pending("charge").name, "payment.refund");
    h.ok("charge", json!({}));
    h.ok("reserve", json!({}));
    assert_eq!(h.saga.status, SagaStatus::Compensated);
}

#[test]
fn stale_results_and_timers_change_nothing() {
    let mut h = Harness::new(SEQUENCE, json!({"order_id": "o-1"}));
    let first = h.pending("reserve");
    h.advance(5_000 + TIMEOUT_GRACE_MS);
    assert_eq!(h.saga.steps[0].error.as_ref().unwrap().code, "timeout");
    h.advance(1_000);
    assert_eq!(h.saga.steps[0].attempts, 2);
    assert!(h.saga.steps[0].uncertain, "the first attempt timed out: it may have taken effect");
    let late = ResultMessage { command: first.name.clone(), meta: first.meta.clone(), outcome: Outcome::Ok(json!({})) };
    let waiting = h.saga.steps[0].waiting.clone();
    let sent = h.sent.len();
    // The first attempt's late result is kept in the history, and changes nothing else.
    assert!(h.feed(Event::Result(late)));
    assert_eq!(
        h.history.last().map(|(_, e)| e.clone()),
        Some(HistoryEvent::LateResult {
            step: "reserve".into(),
            phase: Phase::Forward,
            attempt: 1,
            outcome: "ok".into(),
            message: String::new()
        })
    );
    assert_eq!((&h.saga.steps[0].waiting, h.saga.steps[0].attempts, h.sent.len()), (&waiting, 2, sent));
    assert!(!h.feed(Event::Timer { id: "s/reserve/forward/1".into() }), "its timer is stale");
    assert!(h.ok("reserve", json!({"reservation_id": "r"})));
    assert!(!h.saga.steps[0].uncertain, "an answer to a later attempt ends the doubt");
}

#[test]
fn a_missing_key_fails_the_step_as_invalid_input_and_a_catch_can_take_it() {
    let wf = r#"
name = "t"
[[step]]
name = "a"
command = "x.a"
input = "{ 'v': input.nope }"
catch = [{ errors = ["invalid_input"], next = "b" }]
[[step]]
name = "never"
command = "x.never"
[[step]]
name = "b"
command = "x.b"
input = "{ 'why': error.code }"
"#;
    let mut h = Harness::new(wf, json!({}));
    assert_eq!(h.pending("b").payload, json!({"why": "invalid_input"}));
    h.ok("b", json!("done"));
    assert_eq!(h.saga.status, SagaStatus::Completed);
    insta::assert_snapshot!(h.story());
}

const ORDER: &str = r#"
name = "order"
[defaults]
timeout = "5s"
retry = { attempts = 1 }

[[step]]
name = "reserve"
for_each = "input.items"
run = "reserve_item"
concurrency = 2

[[step]]
name = "review"
choice = [{ when = "input.total > 1000.0", next = "approval" }]
otherwise = "settle"

[[step]]
name = "approval"
wait = "approved"
timeout = "48h"
catch = [{ errors = ["timeout"], next = "reject" }]

[[step]]
name = "settle"
parallel = ["pay", "ship"]

[[step]]
name = "notify"
command = "notification.send"
input = "{ 'tracking': steps.ship.tracking }"
next = "end"

[[step]]
name = "reject"
fail = { code = "rejected", message = "nobody approved the order in time" }

[[block.reserve_item]]
name = "reserve_one"
command = "inventory.reserve"
compensate = "inventory.release"
input = "{ 'sku': item.sku, 'n': index }"

[[block.pay]]
name = "charge"
command = "payment.charge"
compensate = "payment.refund"

[[block.ship]]
name = "ship"
command = "shipping.ship"
compensate = "shipping.cancel"
"#;

fn items(n: usize, total: f64) -> Value {
    json!({ "total": total, "items": (0..n).map(|i| json!({"sku": format!("S{i}")})).collect::<Vec<_>>() })
}

#[test]
fn for_each_runs_iterations_with_bounded_concurrency_in_list_order() {
    let mut h = Harness::new(ORDER, items(3, 10.0));
    assert_eq!(h.out.len(), 2, "concurrency = 2");
    assert_eq!(h.pending("reserve/reserve_one").payload, json!({"sku": "S0", "n": 0}));
    assert_eq!(h.pending("reserve/reserve_one#2").payload, json!({"sku": "S1", "n": 1}));
    h.ok("reserve/reserve_one#2", json!("r1"));
    assert_eq!(h.pending("reserve/reserve_one#3").payload, json!({"sku": "S2", "n": 2}), "the next starts as one ends");
    h.ok("reserve/reserve_one#3", json!("r2"));
    h.ok("reserve/reserve_one", json!("r0"));
    let reserve = h.saga.steps.iter().find(|s| s.path == "reserve").unwrap();
    assert_eq!(reserve.output, Some(json!(["r0", "r1", "r2"])), "outputs in list order, not completion order");
    // Small order: no approval; pay and ship side by side.
    assert_eq!(h.out.len(), 2);
    h.ok("settle/ship", json!({"tracking": "T-1"}));
    h.ok("settle/charge", json!({"payment_id": "p"}));
    assert_eq!(
        h.pending("notify").payload,
        json!({"tracking": "T-1"}),
        "a step after the parallel reads a branch's step"
    );
    h.ok("notify", json!({"sent": true}));
    assert_eq!(h.saga.status, SagaStatus::Completed);
    insta::assert_snapshot!(h.story());
}

#[test]
fn a_failure_in_one_branch_lets_the_other_finish_then_undoes_all_in_reverse_completion_order() {
    let mut h = Harness::new(ORDER, items(2, 10.0));
    h.ok("reserve/reserve_one#2", json!("r1"));
    h.ok("reserve/reserve_one", json!("r0"));
    h.fail("settle/charge", "card_declined", false);
    assert_eq!(h.saga.status, SagaStatus::Running, "the ship branch is still in flight");
    h.ok("settle/ship", json!({"tracking": "T"}));
    assert_eq!(h.saga.status, SagaStatus::Compensating);
    // Undone latest first, one at a time: ship, then r0 (completed second), then r1.
    h.ok("settle/ship", json!({}));
    h.ok("reserve/reserve_one", json!({}));
    h.ok("reserve/reserve_one#2", json!({}));
    assert_eq!(h.saga.status, SagaStatus::Compensated);
    let undone: Vec<&str> =
        h.sent.iter().filter(|c| c.meta.idempotency_key.ends_with("/compensate")).map(|c| c.name.as_str()).collect();
    assert_eq!(undone, ["shipping.cancel", "inventory.release", "inventory.release"]);
    insta::assert_snapshot!(h.story());
}

#[test]
fn a_failed_iteration_stops_new_ones_and_fails_the_for_each() {
    let mut h = Harness::new(ORDER, items(4, 10.0));
    h.fail("reserve/reserve_one", "out_of_stock", false);
    assert!(h.out.iter().all(|c| c.meta.step != "reserve/reserve_one#3"), "no new iteration after a failure");
    h.ok("reserve/reserve_one#2", json!("r1"));
    assert_eq!(h.saga.status, SagaStatus::Compensating);
    h.ok("reserve/reserve_one#2", json!({}));
    assert_eq!(h.saga.status, SagaStatus::Compensated);
    assert_eq!(h.saga.error.as_ref().unwrap().code, "out_of_stock");
    insta::assert_snapshot!(h.story());
}

#[test]
fn a_big_order_waits_for_a_signal_that_may_come_first() {
    let mut h = Harness::new(ORDER, items(1, 5000.0));
    assert!(h.signal("approved", json!({"by": "maria"})), "a signal before its wait is kept");
    assert_eq!(h.saga.inbox.len(), 1);
    h.ok("reserve/reserve_one", json!("r0"));
    assert!(h.saga.inbox.is_empty(), "the wait took it from the inbox");
    assert_eq!(h.status("approval"), StepStatus::Completed);
    assert_eq!(h.out.len(), 2, "pay and ship went on at once");
    insta::assert_snapshot!(h.story());
}

#[test]
fn an_unanswered_wait_times_out_into_its_catch() {
    let mut h = Harness::new(ORDER, items(1, 5000.0));
    h.ok("reserve/reserve_one", json!("r0"));
    assert_eq!(h.saga.timer_due(), Some(h.now + 48 * 3_600_000));
    h.advance(48 * 3_600_000);
    assert_eq!(h.status("approval"), StepStatus::Failed);
    assert_eq!(h.status("reject"), StepStatus::Failed);
    assert_eq!(h.saga.status, SagaStatus::Compensating);
    h.ok("reserve/reserve_one", json!({}));
    assert_eq!(h.saga.error.as_ref().unwrap().code, "rejected");
    insta::assert_snapshot!(h.story());
}

#[test]
fn a_signal_to_a_finished_saga_changes_nothing() {
    let mut h = Harness::new(ORDER, items(0, 1.0));
    h.ok("settle/charge", json!({}));
    h.ok("settle/ship", json!({"tracking": "T"}));
    h.ok("notify", json!({}));
    assert_eq!(h.saga.status, SagaStatus::Completed);
    assert_eq!(h.status("reserve"), StepStatus::Completed, "an empty for_each completes at once");
    assert!(!h.signal("approved", json!({})));
}

const CONVERSATION: &str = r#"
name = "chat"
[[step]]
name = "ask"
command = "chat.say"
input = "{ 'text': has(steps.listen) ? 'again?' : 'hello?' }"
[[step]]
name = "listen"
wait = "message"
timeout = "1m"
catch = [{ errors = ["timeout"], next = "nap" }]
[[step]]
name = "enough"
choice = [{ when = "steps.listen.text != 'bye'", next = "ask" }]
otherwise = "end"
[[step]]
name = "nap"
sleep = "10s"
[[step]]
name = "later"
sleep_until = "'1970-01-01T00:20:00Z'"
[[step]]
name = "give_up"
fail = { code = "no_reply", message = "silence" }
"#;

#[test]
fn a_loop_through_a_wait_gives_each_visit_its_own_path() {
    let mut h = Harness::new(CONVERSATION, json!({}));
    h.ok("ask", json!({}));
    h.signal("message", json!({"text": "hi"}));
    assert_eq!(h.pending("ask#2").payload, json!({"text": "again?"}));
    h.ok("ask#2", json!({}));
    h.signal("message", json!({"text": "bye"}));
    assert_eq!(h.saga.status, SagaStatus::Completed);
    assert_eq!(h.saga.output, Some(json!({"text": "bye"})), "the block's output: its last output (a choice adds none)");
    insta::assert_snapshot!(h.story());
}

#[test]
fn silence_sleeps_then_fails_and_sleep_until_in_the_past_is_over_at_once() {
    let mut h = Harness::new(CONVERSATION.replace("1970-01-01T00:20:00Z", "1970-01-01T00:00:01Z").as_str(), json!({}));
    h.ok("ask", json!({}));
    h.advance(60_000);
    assert_eq!(h.status("nap"), StepStatus::Running);
    h.advance(10_000);
    assert_eq!(h.status("later"), StepStatus::Completed, "a time already past");
    assert_eq!(h.saga.status, SagaStatus::Compensated, "nothing to undo");
    assert_eq!(h.saga.error.as_ref().unwrap().code, "no_reply");
    insta::assert_snapshot!(h.story());
}

#[test]
fn a_catch_inside_a_branch_keeps_the_parallel_going() {
    let wf = r#"
name = "t"
[[step]]
name = "both"
parallel = ["a", "b"]
[[block.a]]
name = "try"
command = "x.try"
retry = { attempts = 1 }
catch = [{ next = "fallback" }]
[[block.a]]
name = "skipped"
command = "x.skipped"
next = "end"
[[block.a]]
name = "fallback"
command = "x.fallback"
input = "{ 'after': error.step }"
[[block.b]]
name = "other"
command = "x.other"
"#;
    let mut h = Harness::new(wf, json!({}));
    h.fail("both/try", "boom", false);
    assert_eq!(h.pending("both/fallback").payload, json!({"after": "both/try"}));
    h.ok("both/fallback", json!("plan b"));
    h.ok("both/other", json!("b"));
    assert_eq!(h.saga.output, Some(json!({"a": "plan b", "b": "b"})));
    insta::assert_snapshot!(h.story());
}

#[test]
fn parallel_inside_for_each_prefixes_paths_by_iteration() {
    let wf = r#"
name = "t"
[[step]]
name = "each"
for_each = "[1, 2]"
run = "one"
[[block.one]]
name = "both"
parallel = ["left", "right"]
[[block.left]]
name = "l"
command = "x.l"
input = "item"
[[block.right]]
name = "r"
command = "x.r"
input = "index"
"#;
    let mut h = Harness::new(wf, json!({}));
    h.ok("each/both/l", json!("l1"));
    h.ok("each/both/r", json!("r0"));
    assert_eq!(h.pending("each/both#2/l").payload, json!(2));
    h.ok("each/both#2/l", json!("l2"));
    h.ok("each/both#2/r", json!("r1"));
    assert_eq!(h.saga.output, Some(json!([{"left": "l1", "right": "r0"}, {"left": "l2", "right": "r1"}])));
    insta::assert_snapshot!(h.story());
}

#[test]
fn cancel_stops_what_runs_and_undoes_what_was_done_including_a_command_still_out() {
    let mut h = Harness::new(ORDER, items(1, 10.0));
    h.ok("reserve/reserve_one", json!("r0"));
    h.ok("settle/ship", json!({"tracking": "T"}));
    assert!(h.feed(Event::Cancel { reason: "customer called".into() }));
    assert_eq!(h.status("settle/charge"), StepStatus::Cancelled);
    // The charge may have happened: it is refunded with the rest, latest first.
    assert_eq!(h.pending("settle/charge").name, "payment.refund");
    h.ok("settle/charge", json!({}));
    h.ok("settle/ship", json!({}));
    h.ok("reserve/reserve_one", json!({}));
    assert_eq!(h.saga.status, SagaStatus::Compensated);
    assert_eq!(h.saga.error.as_ref().unwrap().code, "cancelled");
    assert!(!h.feed(Event::Cancel { reason: "again".into() }), "an ended saga cannot be cancelled");
    insta::assert_snapshot!(h.story());
}

#[test]
fn retry_resumes_a_failed_saga_from_the_compensation_that_failed() {
    let mut h = Harness::new(SEQUENCE, json!({"order_id": "o-1"}));
    h.ok("reserve", json!({"reservation_id": "r-1"}));
    h.fail("charge", "declined", false);
    h.fail("reserve", "db_down", false);
    assert_eq!(h.saga.status, SagaStatus::Failed);
    assert!(!h.feed(Event::Cancel { reason: "x".into() }));
    assert!(h.feed(Event::Retry));
    let again = h.pending("reserve");
    assert_eq!(again.meta.idempotency_key, "s/reserve/compensate", "the same key");
    assert_eq!(again.meta.attempt, 2, "a new attempt, so the old one's result stays stale");
    h.ok("reserve", json!({}));
    assert_eq!(h.saga.status, SagaStatus::Compensated);
    assert!(!h.feed(Event::Retry), "only a failed saga");
    insta::assert_snapshot!(h.story());
}

#[test]
fn a_loop_that_never_waits_is_cut_off() {
    let wf = r#"
name = "t"
[[step]]
name = "spin"
choice = [{ when = "true", next = "spin" }]
"#;
    let h = Harness::new(wf, json!({}));
    assert_eq!(h.saga.status, SagaStatus::Compensated);
    assert_eq!(h.saga.error.as_ref().unwrap().code, "too_many_steps");
    assert!(h.saga.steps.len() <= baton::orchestrator::decide::MAX_INSTANCES);
}

#[test]
fn the_workflow_output_expression_shapes_the_saga_output() {
    let wf = r#"
name = "t"
output = "{ 'sum': steps.a.n + steps.b.n }"
[[step]]
name = "a"
command = "x.a"
[[step]]
name = "b"
command = "x.b"
"#;
    let mut h = Harness::new(wf, json!({}));
    h.ok("a", json!({"n": 2}));
    h.ok("b", json!({"n": 3}));
    assert_eq!(h.saga.output, Some(json!({"sum": 5})));
}

#[test]
fn decide_is_deterministic() {
    let run = || {
        let mut h = Harness::new(ORDER, items(2, 5000.0));
        h.ok("reserve/reserve_one", json!("a"));
        h.fail("reserve/reserve_one#2", "busy", false);
        h.ok("reserve/reserve_one", json!({}));
        (h.saga, h.sent)
    };
    assert_eq!(run(), run());
}

#[test]
fn a_failed_branch_stops_a_sibling_that_only_waits() {
    let wf = r#"
name = "t"
[[step]]
name = "both"
parallel = ["work", "ask"]
[[block.work]]
name = "charge"
command = "payment.charge"
compensate = "payment.refund"
[[block.work]]
name = "fail_after"
command = "x.fail"
retry = { attempts = 1 }
[[block.ask]]
name = "approve"
wait = "approved"
[[block.ask]]
name = "never"
command = "x.never"
"#;
    let mut h = Harness::new(wf, json!({}));
    h.ok("both/charge", json!({"payment_id": "p"}));
    h.fail("both/fail_after", "boom", false);
    assert_eq!(h.status("both/approve"), StepStatus::Cancelled, "no signal will ever matter now");
    assert_eq!(h.saga.status, SagaStatus::Compensating);
    h.ok("both/charge", json!({}));
    assert_eq!(h.saga.status, SagaStatus::Compensated);
    assert!(h.sent.iter().all(|c| c.name != "x.never"));
    insta::assert_snapshot!(h.story());
}

/// A `workflow` step is a command to the host that runs the child: `saga:NAME`, with the
/// child's input, whose id derives from the attempt. It completes with the child's output;
/// when the parent compensates, the child is undone by its id; a retry runs a fresh child;
/// a sub-saga whose parent's deadline passes cancels itself with `timeout`.
#[test]
fn a_workflow_step_runs_a_child_and_undoes_it_by_its_id() {
    let mut h = Harness::new(
        r#"name = "p"
[[step]]
name = "kid"
workflow = "kid"
input = "{ 'n': input.n }"
retry = { attempts = 2, backoff = "1s" }
[[step]]
name = "after"
command = "x.do"
"#,
        json!({"n": 7}),
    );
    let first = h.pending("kid");
    assert_eq!(first.name, "saga:kid");
    assert_eq!(first.payload, json!({"n": 7}));
    assert_eq!(first.timeout_ms, workflow::MAX_TIMEOUT.as_millis() as u64, "no timeout of its own: the longest");
    assert_eq!(h.saga.steps[0].child.as_deref(), Some("s.kid"));
    // The child compensated itself (a permanent failure would end the step); a timeout of
    // the child is retryable: the second attempt is a fresh child.
    h.fail("kid", "timeout", true);
    h.advance(2_000);
    assert_eq!(h.pending("kid").meta.attempt, 2);
    assert_eq!(h.saga.steps[0].child.as_deref(), Some("s.kid@2"));
    assert_eq!(h.saga.children, ["s.kid", "s.kid@2"]);
    assert!(h.ok("kid", json!({"done": 1})));
    assert_eq!(h.saga.steps[0].output, Some(json!({"done": 1})));
    assert!(h.fail("after", "nope", false));
    let undo = h.pending("kid");
    assert_eq!(undo.name, "saga:kid");
    assert!(undo.meta.idempotency_key.ends_with("/compensate"), "{undo:?}");
    assert_eq!(undo.payload, json!({"saga": "s.kid@2"}), "the child that completed is undone");
    assert!(h.ok("kid", json!({"saga": "s.kid@2", "status": "compensated"})));
    assert_eq!(h.saga.status, SagaStatus::Compensated);

    let mut child = Harness::new("name = \"kid\"\n[[step]]\nname = \"hold\"\nwait = \"go\"\n", json!({}));
    child.saga.parent = Some(baton::model::Parent {
        saga: "s".into(),
        step: "kid".into(),
        reply: None,
        deadline: Some(T0 + 5_000),
        depth: 1,
    });
    child.advance(5_000);
    assert_eq!(child.saga.status, SagaStatus::Compensated, "{}", child.story());
    assert_eq!(child.saga.error.as_ref().map(|e| e.code.as_str()), Some("timeout"));
}
