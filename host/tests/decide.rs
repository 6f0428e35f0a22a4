//! The decision function, alone: no bus, no store, no wasm, no clock. Each test feeds events
//! to `decide` and checks the saga and the effects it asks for.

use std::path::Path;

use baton::orchestrator::saga::{Cursor, HistoryEvent, Phase, Saga, SagaStatus, StepStatus};
use baton::orchestrator::{Effect, Event, decide};
use baton::protocol::{CommandMessage, Failure, Outcome, ResultMessage};
use baton::workflow::{self, Workflow};
use serde_json::{Value, json};

const WF: &str = r#"
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
input = "{ 'order': input.order_id, 'paid': steps.charge.amount, 'missing': input.nope }"

[[step]]
name = "ship"
command = "shipping.ship"
compensate = "shipping.cancel"
"#;

fn wf() -> Workflow {
    workflow::parse(Path::new("order.toml"), WF, None).expect("valid workflow")
}

/// A saga and the commands it has sent, driven at a fixed time.
struct Harness {
    wf: Workflow,
    saga: Saga,
    now: u64,
    sent: Vec<CommandMessage>,
    scheduled: Vec<(u64, Event)>,
    history: Vec<HistoryEvent>,
}

impl Harness {
    fn new() -> Self {
        let wf = wf();
        let saga = Saga::new("s-1".into(), &wf, json!({"order_id": "o-1", "total": 30}), 1_000);
        Harness { wf, saga, now: 1_000, sent: vec![], scheduled: vec![], history: vec![] }
    }

    fn feed(&mut self, event: Event) -> bool {
        let d = decide(&self.wf, &mut self.saga, &event, self.now);
        assert!(d.changed || d.history.is_empty(), "an event that changes nothing leaves no history");
        self.history.extend(d.history);
        for e in d.effects {
            match e {
                Effect::Dispatch(c) => self.sent.push(c),
                Effect::Schedule { at, event } => self.scheduled.push((at, event)),
            }
        }
        d.changed
    }

    fn last(&self) -> &CommandMessage {
        self.sent.last().expect("a command was sent")
    }

    /// Answer the last command sent.
    fn answer(&mut self, outcome: Outcome) -> bool {
        let cmd = self.last().clone();
        self.feed(Event::Result(ResultMessage { command: cmd.name, meta: cmd.meta, outcome }))
    }

    fn ok(&mut self, v: Value) -> bool {
        self.answer(Outcome::Ok(v))
    }

    fn fail(&mut self, retryable: bool) -> bool {
        self.answer(Outcome::Err(Failure { code: "boom".into(), message: "it broke".into(), retryable }))
    }

    fn commands(&self) -> Vec<&str> {
        self.sent.iter().map(|c| c.name.as_str()).collect()
    }

    fn step(&self, name: &str) -> &baton::orchestrator::saga::StepRecord {
        self.saga.steps.iter().find(|s| s.name == name).unwrap()
    }

    /// Fire the most recent retry timer.
    fn retry_due(&mut self) -> bool {
        let (at, ev) = self.scheduled.iter().rev().find(|(_, e)| matches!(e, Event::RetryDue { .. })).cloned().unwrap();
        self.now = at;
        self.feed(ev)
    }
}

#[test]
fn start_dispatches_the_first_step_with_its_ids_and_a_deadline() {
    let mut h = Harness::new();
    assert!(h.feed(Event::Start));
    let c = h.last();
    assert_eq!(c.name, "inventory.reserve");
    assert_eq!(c.payload, json!({"order_id": "o-1", "total": 30}), "no input expression: the saga input");
    assert_eq!(c.meta.transaction_id, "s-1");
    assert_eq!(c.meta.correlation_id, "s-1/reserve/forward/1");
    assert_eq!(c.meta.idempotency_key, "s-1/reserve/forward");
    assert_eq!(c.meta.attempt, 1);
    assert_eq!(c.timeout_ms, 5_000);
    let deadline = 1_000 + 5_000 + baton::orchestrator::decide::TIMEOUT_GRACE_MS;
    assert_eq!(h.scheduled, vec![(deadline, Event::Timeout { correlation_id: "s-1/reserve/forward/1".into() })]);
    assert_eq!(h.step("reserve").status, StepStatus::Running);
    assert_eq!(h.saga.status, SagaStatus::Running);
    assert!(!h.feed(Event::Start), "a second start changes nothing");
}

#[test]
fn every_step_succeeding_completes_the_saga_and_maps_inputs() {
    let mut h = Harness::new();
    h.feed(Event::Start);
    h.ok(json!({"reservation_id": "r-1"}));
    h.ok(json!({"payment_id": "p-1", "amount": 30}));
    assert_eq!(h.last().payload, json!({"order": "o-1", "paid": 30}), "undefined fields are left out");
    h.ok(json!({}));
    h.ok(json!({"tracking": "T"}));
    assert_eq!(h.commands(), ["inventory.reserve", "payment.charge", "audit.log", "shipping.ship"]);
    assert_eq!(h.saga.status, SagaStatus::Completed);
    assert_eq!(h.saga.cursor, Cursor::Done);
    assert!(h.saga.steps.iter().all(|s| s.status == StepStatus::Completed && s.attempts == 1));
    assert_eq!(h.step("charge").output, Some(json!({"payment_id": "p-1", "amount": 30})));
}

#[test]
fn a_fatal_failure_compensates_completed_steps_in_reverse_order() {
    let mut h = Harness::new();
    h.feed(Event::Start);
    h.ok(json!({"reservation_id": "r-1"}));
    h.ok(json!({"payment_id": "p-1", "amount": 30}));
    h.ok(json!({}));
    h.fail(false); // ship fails for good
    assert_eq!(h.saga.status, SagaStatus::Compensating);
    assert_eq!(h.step("ship").status, StepStatus::Failed);
    assert_eq!(h.saga.error.as_ref().unwrap().step, "ship");
    // `log` has no compensation and is skipped; charge is undone first, with its mapping.
    let refund = h.last().clone();
    assert_eq!(refund.name, "payment.refund");
    assert_eq!(refund.payload, json!({"payment_id": "p-1", "order": "o-1"}));
    assert_eq!(refund.meta.idempotency_key, "s-1/charge/compensate");
    h.ok(json!({}));
    let release = h.last().clone();
    assert_eq!(release.name, "inventory.release");
    assert_eq!(release.payload, json!({"reservation_id": "r-1"}), "default compensation input: the step's output");
    h.ok(json!({}));
    assert_eq!(
        h.commands(),
        ["inventory.reserve", "payment.charge", "audit.log", "shipping.ship", "payment.refund", "inventory.release"]
    );
    assert_eq!(h.saga.status, SagaStatus::Compensated);
    assert!(h.step("ship").compensation.is_none(), "a failed step is not compensated");
    assert!(h.step("log").compensation.is_none());
    assert_eq!(h.step("reserve").compensation.as_ref().unwrap().status, StepStatus::Completed);
}

#[test]
fn a_failing_first_step_has_nothing_to_compensate() {
    let mut h = Harness::new();
    h.feed(Event::Start);
    h.fail(false);
    assert_eq!(h.saga.status, SagaStatus::Compensated);
    assert_eq!(h.commands(), ["inventory.reserve"]);
}

#[test]
fn retryable_failures_back_off_with_bounded_jitter_then_retry_under_the_same_key() {
    let mut h = Harness::new();
    h.feed(Event::Start);
    h.fail(true);
    let Cursor::Backoff { attempt: 1, due_at, .. } = h.saga.cursor.clone() else { panic!("{:?}", h.saga.cursor) };
    // Equal jitter on 100ms: between 50 and 100ms from now.
    assert!((1_050..=1_100).contains(&due_at), "{due_at}");
    assert_eq!(h.step("reserve").status, StepStatus::Running);
    assert_eq!(h.step("reserve").error.as_ref().unwrap().code, "boom");
    assert!(h.retry_due());
    let c = h.last().clone();
    assert_eq!(c.meta.attempt, 2);
    assert_eq!(c.meta.correlation_id, "s-1/reserve/forward/2");
    assert_eq!(c.meta.idempotency_key, "s-1/reserve/forward", "the key is stable across retries");
    h.fail(true);
    let Cursor::Backoff { due_at, .. } = h.saga.cursor.clone() else { panic!() };
    assert!((h.now + 100..=h.now + 200).contains(&due_at), "the delay doubled: {due_at}");
    h.retry_due();
    h.ok(json!({}));
    assert_eq!(h.step("reserve").attempts, 3);
    assert_eq!(h.step("reserve").status, StepStatus::Completed);
    assert!(h.step("reserve").error.is_none());
}

#[test]
fn retries_run_out_and_the_step_fails_for_good() {
    let mut h = Harness::new();
    h.feed(Event::Start);
    h.ok(json!({"reservation_id": "r-1"}));
    for _ in 0..2 {
        h.fail(true);
        h.retry_due();
    }
    h.fail(true); // third attempt of three
    assert_eq!(h.step("charge").status, StepStatus::Failed);
    assert_eq!(h.step("charge").attempts, 3);
    assert_eq!(h.last().name, "inventory.release");
}

#[test]
fn a_timeout_is_a_retryable_failure_and_late_results_are_ignored() {
    let mut h = Harness::new();
    h.feed(Event::Start);
    let first = h.last().clone();
    h.now += 6_000;
    assert!(h.feed(Event::Timeout { correlation_id: first.meta.correlation_id.clone() }));
    assert_eq!(h.step("reserve").error.as_ref().unwrap().code, "timeout");
    h.retry_due();
    // The first attempt answers late: stale, changes nothing.
    let late = ResultMessage { command: first.name.clone(), meta: first.meta.clone(), outcome: Outcome::Ok(json!({})) };
    assert!(!h.feed(Event::Result(late)));
    assert_eq!(h.step("reserve").status, StepStatus::Running);
    // A timer of an earlier attempt is stale too.
    assert!(!h.feed(Event::Timeout { correlation_id: first.meta.correlation_id }));
    h.ok(json!({}));
    assert_eq!(h.step("reserve").status, StepStatus::Completed);
    assert_eq!(h.step("reserve").attempts, 2);
}

#[test]
fn duplicate_results_change_nothing() {
    let mut h = Harness::new();
    h.feed(Event::Start);
    let cmd = h.last().clone();
    let result =
        ResultMessage { command: cmd.name, meta: cmd.meta, outcome: Outcome::Ok(json!({"reservation_id": "r"})) };
    assert!(h.feed(Event::Result(result.clone())));
    let snapshot = h.saga.clone();
    assert!(!h.feed(Event::Result(result)));
    assert_eq!(h.saga, snapshot);
}

#[test]
fn a_compensation_failing_for_good_ends_the_saga_failed_after_undoing_the_rest() {
    let mut h = Harness::new();
    h.feed(Event::Start);
    h.ok(json!({"reservation_id": "r-1"}));
    h.ok(json!({"payment_id": "p-1"}));
    h.fail(false); // log fails
    assert_eq!(h.last().name, "payment.refund");
    h.fail(false); // the refund fails for good
    assert_eq!(h.step("charge").compensation.as_ref().unwrap().status, StepStatus::Failed);
    assert_eq!(h.last().name, "inventory.release", "the other compensations still run");
    assert_eq!(h.saga.status, SagaStatus::Compensating);
    h.ok(json!({}));
    assert_eq!(h.saga.status, SagaStatus::Failed);
}

#[test]
fn compensations_are_retried() {
    let mut h = Harness::new();
    h.feed(Event::Start);
    h.ok(json!({"reservation_id": "r-1"}));
    h.fail(false); // charge fails
    h.fail(true); // release fails, retryable
    let Cursor::Backoff { phase: Phase::Compensate, .. } = h.saga.cursor else { panic!("{:?}", h.saga.cursor) };
    h.retry_due();
    assert_eq!(h.last().meta.correlation_id, "s-1/reserve/compensate/2");
    h.ok(json!({}));
    assert_eq!(h.saga.status, SagaStatus::Compensated);
    assert_eq!(h.step("reserve").compensation.as_ref().unwrap().attempts, 2);
}

#[test]
fn the_same_events_replay_to_the_same_saga() {
    let run = || {
        let mut h = Harness::new();
        h.feed(Event::Start);
        h.ok(json!({"reservation_id": "r-1"}));
        h.fail(true);
        h.retry_due();
        h.fail(false);
        h.ok(json!({}));
        (h.saga, h.sent, h.scheduled)
    };
    assert_eq!(run(), run());
}

#[test]
fn the_history_tells_the_whole_story_in_order() {
    let mut h = Harness::new();
    h.feed(Event::Start);
    h.ok(json!({"reservation_id": "r-1"}));
    h.fail(true); // charge: retryable
    h.retry_due();
    h.fail(false); // charge again: for good
    h.ok(json!({})); // release
    let fwd = Phase::Forward;
    let (step, code, message) = (|s: &str| s.to_owned(), || "boom".to_owned(), || "it broke".to_owned());
    let due_at = match h.scheduled.iter().rev().find(|(_, e)| matches!(e, Event::RetryDue { .. })) {
        Some((at, _)) => *at,
        None => panic!("a retry was scheduled"),
    };
    assert_eq!(
        h.history,
        vec![
            HistoryEvent::Started,
            HistoryEvent::Dispatched {
                step: step("reserve"),
                phase: fwd,
                attempt: 1,
                command: "inventory.reserve".into()
            },
            HistoryEvent::Succeeded { step: step("reserve"), phase: fwd, attempt: 1 },
            HistoryEvent::Dispatched { step: step("charge"), phase: fwd, attempt: 1, command: "payment.charge".into() },
            HistoryEvent::Failed {
                step: step("charge"),
                phase: fwd,
                attempt: 1,
                code: code(),
                message: message(),
                retryable: true
            },
            HistoryEvent::RetryScheduled { step: step("charge"), phase: fwd, attempt: 2, due_at },
            HistoryEvent::Dispatched { step: step("charge"), phase: fwd, attempt: 2, command: "payment.charge".into() },
            HistoryEvent::Failed {
                step: step("charge"),
                phase: fwd,
                attempt: 2,
                code: code(),
                message: message(),
                retryable: false
            },
            HistoryEvent::Dispatched {
                step: step("reserve"),
                phase: Phase::Compensate,
                attempt: 1,
                command: "inventory.release".into()
            },
            HistoryEvent::Succeeded { step: step("reserve"), phase: Phase::Compensate, attempt: 1 },
            HistoryEvent::Finished { status: SagaStatus::Compensated },
        ]
    );
}
