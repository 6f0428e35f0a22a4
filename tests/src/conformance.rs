//! The behaviour every [`SagaStore`] and every [`EventBus`] must have, whatever keeps the data
//! or carries the messages. Each implementation's test calls [`saga_store`] on a fresh, empty
//! store, or [`event_bus`] on a fresh bus.

use std::sync::Arc;

use baton::model::{HistoryEntry, HistoryEvent, Instance, Phase, Saga, SagaStatus, StepStatus, WaitOn, Waiting};
use baton::protocol::{Failure, Outcome, SignalMessage};
use baton::store::{Committed, Created, SagaStore, Transition};
use baton::workflow;
use serde_json::json;

fn saga(id: &str, created_at: u64) -> Saga {
    let wf = workflow::parse(
        std::path::Path::new("w.toml"),
        "name = \"w\"\n[[step]]\nname = \"a\"\ncommand = \"x.y\"\n",
        None,
    )
    .expect("valid workflow");
    baton::orchestrator::new_saga(id.to_owned(), &wf, json!({"n": id}), created_at)
}

/// `saga` waiting on one timer, due at `due`.
fn with_timer(mut saga: Saga, due: u64) -> Saga {
    saga.steps = vec![Instance {
        path: "a".into(),
        name: "a".into(),
        kind: "command".into(),
        block: 0,
        status: StepStatus::Running,
        attempts: 1,
        command: Some("x.y".into()),
        input: None,
        output: None,
        error: None,
        started_at: saga.created_at,
        ended_at: None,
        uncertain: false,
        seq: None,
        compensation: None,
        waiting: Some(Waiting {
            on: WaitOn::Result,
            phase: Phase::Forward,
            attempt: 1,
            id: format!("{}/a/forward/1", saga.id),
            due_at: Some(due),
            signal: None,
        }),
        children: Vec::new(),
        child: None,
    }];
    saga
}

/// `saga` as a freshly started one, at revision 1.
fn started(id: &str, created_at: u64) -> Transition {
    let mut s = saga(id, created_at);
    s.revision = 1;
    Transition::bare(s, 0)
}

/// The next revision of `s`, with `status`.
fn next(s: &Saga, status: SagaStatus) -> Transition {
    let mut n = s.clone();
    n.revision = s.revision + 1;
    n.status = status;
    Transition::bare(n, s.revision)
}

async fn commit_one(store: &dyn SagaStore, t: &Transition) -> Committed {
    store.commit(std::slice::from_ref(t)).await.expect("commit")[0]
}

/// Run every check against `store`, which must start empty.
pub async fn saga_store(store: Arc<dyn SagaStore>) {
    store.ping().await.expect("a store that works answers its ping (GET /readyz)");
    create_and_load(store.as_ref()).await;
    optimistic_concurrency(store.as_ref()).await;
    concurrent_writers_one_wins(store.clone()).await;
    a_batch_answers_each_transition(store.as_ref()).await;
    list_by_status(store.as_ref()).await;
    history_is_appended_with_each_commit(store.as_ref()).await;
    timers_are_indexed_by_due_time(store.as_ref()).await;
    outcomes_first_record_wins(store.as_ref()).await;
    retention_deletes_finished_sagas_with_their_outcomes(store.as_ref()).await;
}

async fn create_and_load(store: &dyn SagaStore) {
    assert!(store.load("c-1").await.unwrap().is_none());
    let t = started("c-1", 10);
    assert!(matches!(store.create(&t).await.unwrap(), Created::New));
    assert_eq!(store.load("c-1").await.unwrap().as_ref(), Some(&*t.saga));
    // A retried create returns what is stored and changes nothing.
    let mut again = started("c-1", 99);
    Arc::make_mut(&mut again.saga).input = json!("other");
    match store.create(&again).await.unwrap() {
        Created::Existing(existing) => assert_eq!(*existing, *t.saga),
        Created::New => panic!("a second create of the same id must not succeed"),
    }
    assert_eq!(store.load("c-1").await.unwrap().unwrap().input, json!({"n": "c-1"}));
    let both = store.load_many(&["c-1", "nobody"]).await.unwrap();
    assert_eq!(both, vec![Some(Saga::clone(&t.saga)), None], "load_many answers in order, None for a missing id");
}

async fn optimistic_concurrency(store: &dyn SagaStore) {
    let t = started("o-1", 20);
    store.create(&t).await.unwrap();
    assert_eq!(commit_one(store, &next(&t.saga, SagaStatus::Compensating)).await, Committed::Ok);
    assert_eq!(store.load("o-1").await.unwrap().unwrap().revision, 2);
    // A writer that read revision 1 lost the race.
    let stale = next(&t.saga, SagaStatus::Completed);
    assert_eq!(commit_one(store, &stale).await, Committed::Conflict);
    assert_eq!(store.load("o-1").await.unwrap().unwrap().status, SagaStatus::Compensating);
    assert_eq!(commit_one(store, &next(&saga("nobody", 0), SagaStatus::Completed)).await, Committed::NotFound);
}

async fn concurrent_writers_one_wins(store: Arc<dyn SagaStore>) {
    let t = started("r-1", 30);
    store.create(&t).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let store = store.clone();
        let mut n = next(&t.saga, SagaStatus::Running);
        Arc::make_mut(&mut n.saga).input = json!(i);
        tasks.push(tokio::spawn(async move { commit_one(store.as_ref(), &n).await == Committed::Ok }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1, "exactly one of eight writers of revision 1 may commit");
}

async fn a_batch_answers_each_transition(store: &dyn SagaStore) {
    let (a, b) = (started("b-1", 40), started("b-2", 41));
    store.create(&a).await.unwrap();
    store.create(&b).await.unwrap();
    let ok = next(&a.saga, SagaStatus::Completed);
    let mut stale = next(&b.saga, SagaStatus::Completed);
    stale.expected_revision = 7;
    let missing = next(&saga("b-none", 0), SagaStatus::Completed);
    let results = store.commit(&[ok, stale, missing]).await.unwrap();
    assert_eq!(results, [Committed::Ok, Committed::Conflict, Committed::NotFound]);
    assert_eq!(store.load("b-1").await.unwrap().unwrap().status, SagaStatus::Completed);
    assert_eq!(store.load("b-2").await.unwrap().unwrap().status, SagaStatus::Running, "a conflict writes nothing");
    assert!(store.commit(&[]).await.unwrap().is_empty());
}

async fn list_by_status(store: &dyn SagaStore) {
    for (i, status) in
        [SagaStatus::Completed, SagaStatus::Running, SagaStatus::Completed, SagaStatus::Failed].into_iter().enumerate()
    {
        let t = started(&format!("l-{i}"), 1_000 + i as u64);
        store.create(&t).await.unwrap();
        if status != SagaStatus::Running {
            assert_eq!(commit_one(store, &next(&t.saga, status)).await, Committed::Ok);
        }
    }
    let ours = |sagas: Vec<Saga>| -> Vec<String> {
        sagas.into_iter().map(|s| s.id).filter(|id| id.starts_with("l-")).collect()
    };
    let completed = ours(store.list(Some(SagaStatus::Completed), 100).await.unwrap());
    assert_eq!(completed, ["l-2", "l-0"], "newest first, only that status");
    assert_eq!(ours(store.list(Some(SagaStatus::Failed), 100).await.unwrap()), ["l-3"]);
    assert!(store.list(Some(SagaStatus::Compensated), 100).await.unwrap().is_empty());
    let newest_two: Vec<String> = store.list(None, 2).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(newest_two, ["l-3", "l-2"]);
    // The index follows status changes: running -> completed.
    let s = store.load("l-1").await.unwrap().unwrap();
    assert_eq!(commit_one(store, &next(&s, SagaStatus::Completed)).await, Committed::Ok);
    assert_eq!(ours(store.list(Some(SagaStatus::Completed), 100).await.unwrap()).len(), 3);
    assert!(store.list(Some(SagaStatus::Running), 100).await.unwrap().iter().all(|s| !s.id.starts_with("l-")));
}

fn entry(at: u64, revision: u64, event: HistoryEvent) -> HistoryEntry {
    HistoryEntry { at, revision, event }
}

async fn history_is_appended_with_each_commit(store: &dyn SagaStore) {
    let mut t = started("h-1", 50);
    t.history = vec![
        entry(50, 1, HistoryEvent::Started),
        entry(
            50,
            1,
            HistoryEvent::Dispatched { step: "a".into(), phase: Phase::Forward, attempt: 1, command: "x.y".into() },
        ),
    ];
    store.create(&t).await.unwrap();
    let mut n = next(&t.saga, SagaStatus::Completed);
    n.history = vec![
        entry(60, 2, HistoryEvent::Succeeded { step: "a".into(), phase: Phase::Forward, attempt: 1 }),
        entry(60, 2, HistoryEvent::Finished { status: SagaStatus::Completed }),
    ];
    assert_eq!(commit_one(store, &n).await, Committed::Ok);
    // A losing writer's history is not written.
    let mut lost = next(&t.saga, SagaStatus::Failed);
    lost.history = vec![entry(61, 2, HistoryEvent::Finished { status: SagaStatus::Failed })];
    assert_eq!(commit_one(store, &lost).await, Committed::Conflict);
    let mut want = t.history.clone();
    want.extend(n.history);
    assert_eq!(store.history("h-1").await.unwrap(), want, "in order, nothing from the conflict");
    assert!(store.history("nobody").await.unwrap().is_empty());
}

async fn timers_are_indexed_by_due_time(store: &dyn SagaStore) {
    let waiting = |id: &str, due: u64| {
        let mut t = started(id, 70);
        t.saga = Arc::new(with_timer(Saga::clone(&t.saga), due));
        t
    };
    for (id, due) in [("t-late", 9_000), ("t-early", 5_000), ("t-mid", 7_000)] {
        store.create(&waiting(id, due)).await.unwrap();
    }
    let ids = |page: Vec<(u64, String)>| page.into_iter().map(|(_, id)| id).collect::<Vec<_>>();
    assert_eq!(ids(store.due_timers(None, 4_999, 10).await.unwrap()), Vec::<String>::new());
    assert_eq!(
        store.due_timers(None, 7_000, 10).await.unwrap(),
        [(5_000, "t-early".to_owned()), (7_000, "t-mid".to_owned())],
        "earliest first, bound included"
    );
    assert_eq!(ids(store.due_timers(None, u64::MAX / 2, 1).await.unwrap()), ["t-early"], "at most `limit`");
    // Paging: strictly after the last entry seen, ties included.
    assert_eq!(ids(store.due_timers(Some((5_000, "t-early")), u64::MAX / 2, 10).await.unwrap()), ["t-mid", "t-late"]);
    assert_eq!(ids(store.due_timers(Some((7_000, "t-mid")), 8_999, 10).await.unwrap()), Vec::<String>::new());
    store.create(&waiting("t-mid2", 7_000)).await.unwrap();
    assert_eq!(ids(store.due_timers(Some((7_000, "t-mid")), 10_000, 10).await.unwrap()), ["t-mid2", "t-late"]);
    // An entry that has left the index still pages from its due time.
    assert_eq!(ids(store.due_timers(Some((6_000, "gone")), 10_000, 10).await.unwrap()), ["t-mid", "t-mid2", "t-late"]);
    let s = store.load("t-mid2").await.unwrap().unwrap();
    let done = next(&s, SagaStatus::Completed);
    assert_eq!(commit_one(store, &done).await, Committed::Ok);
    // A new timer moves the index; a finished saga has none.
    let s = store.load("t-early").await.unwrap().unwrap();
    let mut moved = next(&s, SagaStatus::Running);
    moved.saga = Arc::new(with_timer(Saga::clone(&moved.saga), 8_000));
    assert_eq!(commit_one(store, &moved).await, Committed::Ok);
    let s = store.load("t-mid").await.unwrap().unwrap();
    let done = next(&s, SagaStatus::Completed);
    assert_eq!(commit_one(store, &done).await, Committed::Ok);
    assert_eq!(ids(store.due_timers(None, 10_000, 10).await.unwrap()), ["t-early", "t-late"]);
}

async fn outcomes_first_record_wins(store: &dyn SagaStore) {
    assert_eq!(store.outcome("pay.charge", "k").await.unwrap(), None);
    let ok = Outcome::Ok(json!({"payment_id": "p-1"}));
    store.record_outcome("pay.charge", "k", &ok).await.unwrap();
    store.record_outcome("pay.charge", "k", &Outcome::Err(Failure::permanent("late", "second"))).await.unwrap();
    // A store may make records durable with its next commit: one commit flushes them.
    let t = started("flush", 80);
    store.create(&t).await.unwrap();
    assert_eq!(store.outcome("pay.charge", "k").await.unwrap(), Some(ok));
    // Keyed by command and key together.
    assert_eq!(store.outcome("pay.refund", "k").await.unwrap(), None);
    // Definitions by content hash: the first text stays.
    assert_eq!(store.definition("sha256:00").await.unwrap(), None);
    store.put_definition("sha256:00", "name = \"w\"").await.unwrap();
    store.put_definition("sha256:00", "name = \"w\"").await.unwrap();
    assert_eq!(store.definition("sha256:00").await.unwrap().as_deref(), Some("name = \"w\""));
    // Forgotten (an operator's retry), the key takes a new record.
    store.forget_outcomes(&[("pay.charge", "k"), ("never.recorded", "k")]).await.unwrap();
    assert_eq!(store.outcome("pay.charge", "k").await.unwrap(), None);
    let again = Outcome::Ok(json!({"payment_id": "p-2"}));
    store.record_outcome("pay.charge", "k", &again).await.unwrap();
    store.create(&started("flush-2", 81)).await.unwrap();
    assert_eq!(store.outcome("pay.charge", "k").await.unwrap(), Some(again));
}

/// Purge until `expected` sagas are gone (a store may index what it wrote a moment later,
/// as the embedded store's applier does), and never more.
async fn purge_until(store: &dyn SagaStore, now: u64, expected: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut total = 0;
    while total < expected {
        total += store.purge(now, 1).await.unwrap();
        assert!(std::time::Instant::now() < deadline, "purged {total} of {expected}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(total, expected);
}

/// Wait until saga `id` is gone (a store may delete a moment after it accepted the purge).
async fn gone(store: &dyn SagaStore, id: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.load(id).await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "{id} was purged but is still there");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn retention_deletes_finished_sagas_with_their_outcomes(store: &dyn SagaStore) {
    let finished = |id: &'static str, expires_at: Option<u64>| async move {
        let t = started(id, 90);
        store.create(&t).await.unwrap();
        store.record_outcome("x.y", &format!("{id}/a/forward"), &Outcome::Ok(json!(id))).await.unwrap();
        let mut done = next(&t.saga, SagaStatus::Completed);
        Arc::make_mut(&mut done.saga).expires_at = expires_at;
        assert_eq!(commit_one(store, &done).await, Committed::Ok);
    };
    // Times an hour ahead of the wall clock: Redis also expires the keys at `expires_at`.
    let base =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64 + 3_600_000;
    finished("ret-1", Some(base)).await;
    finished("ret-2", Some(base + 4_000)).await;
    finished("ret-forever", None).await;
    assert_eq!(store.purge(base - 1, 10).await.unwrap(), 0, "nothing has expired yet");
    purge_until(store, base, 1).await;
    gone(store, "ret-1").await;
    assert!(store.history("ret-1").await.unwrap().is_empty(), "and its history");
    assert_eq!(store.outcome("x.y", "ret-1/a/forward").await.unwrap(), None, "and its outcome records");
    assert!(!store.list(Some(SagaStatus::Completed), 100).await.unwrap().iter().any(|s| s.id == "ret-1"));
    assert!(store.load("ret-2").await.unwrap().is_some(), "ret-2 expires later");
    assert_eq!(store.outcome("x.y", "ret-2/a/forward").await.unwrap(), Some(Outcome::Ok(json!("ret-2"))));
    purge_until(store, base + 4_000, 1).await;
    gone(store, "ret-2").await;
    assert!(store.load("ret-forever").await.unwrap().is_some(), "kept forever");
    assert_eq!(store.outcome("x.y", "ret-forever/a/forward").await.unwrap(), Some(Outcome::Ok(json!("ret-forever"))));
    assert_eq!(store.purge(base + 10_000, 10).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------
// Event buses
// ---------------------------------------------------------------------------------------

use std::collections::BTreeSet;
use std::time::Duration;

use baton::bus::{Consumer, EventBus};
use baton::protocol::{CommandMessage, Meta, ResultMessage};

fn command(name: &str, n: usize) -> CommandMessage {
    CommandMessage {
        name: name.to_owned(),
        payload: json!({"n": n}),
        meta: Meta {
            transaction_id: format!("t-{n}"),
            correlation_id: format!("t-{n}/s/forward/1"),
            idempotency_key: format!("t-{n}/s/forward"),
            step: "s".into(),
            attempt: 1,
            traceparent: None,
        },
        timeout_ms: 1_000,
        deadline_ms: 0,
        start_by_ms: 0,
    }
}

/// Receive until `want` messages came, or fail after a few seconds.
async fn take<T: Send + 'static>(c: &mut Box<dyn Consumer<T>>, want: usize, ack: bool) -> Vec<T> {
    let mut got = Vec::new();
    while got.len() < want {
        let batch = tokio::time::timeout(Duration::from_secs(10), c.recv(want - got.len()))
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} messages arrived", got.len()))
            .expect("recv");
        assert!(!batch.is_empty(), "recv returns at least one message");
        assert!(batch.len() <= want - got.len() || want == 0, "recv returned more than asked for");
        if ack {
            let tokens: Vec<_> = batch.iter().map(|d| d.token.clone()).collect();
            c.ack(&tokens).await.expect("ack");
        }
        got.extend(batch.into_iter().map(|d| d.message));
    }
    got
}

/// Nothing more arrives within a short while.
async fn quiet<T: Send + 'static>(c: &mut Box<dyn Consumer<T>>) {
    if let Ok(batch) = tokio::time::timeout(Duration::from_millis(300), c.recv(10)).await {
        panic!("expected nothing, got {} message(s)", batch.map(|b| b.len()).unwrap_or(0));
    }
}

/// What a bus promises beyond routing; each transport states its own, and the suite checks
/// exactly those.
#[derive(Debug, Clone, Copy)]
pub struct Guarantees {
    /// A message sent before anyone reads is kept for the first reader.
    pub keeps_unread: bool,
    /// Consumers of one command share its messages: each goes to one of them.
    pub competing: bool,
    /// An unacknowledged message is handed to another consumer once its consumer is gone.
    pub redelivers: bool,
}

/// Run every check against `bus`, which must start empty.
pub async fn event_bus(bus: Arc<dyn EventBus>, g: Guarantees) {
    bus.ping().await.expect("a bus that works answers its ping (GET /readyz)");
    routes_by_command_name(bus.as_ref()).await;
    results_round_trip(bus.as_ref()).await;
    signals_round_trip(bus.as_ref()).await;
    if g.keeps_unread {
        nothing_sent_before_a_consumer_exists_is_lost(bus.as_ref()).await;
    }
    if g.competing {
        competing_consumers_share_without_duplicates(bus.as_ref()).await;
    }
    if g.redelivers {
        unacknowledged_messages_are_redelivered(bus.as_ref()).await;
    }
}

async fn routes_by_command_name(bus: &dyn EventBus) {
    let mut a = bus.command_consumer(&["a.x".into()]).await.unwrap();
    let mut bc = bus.command_consumer(&["b.y".into(), "c.z".into()]).await.unwrap();
    let sent = vec![command("a.x", 1), command("b.y", 2), command("c.z", 3), command("a.x", 4)];
    bus.send_commands(sent.clone()).await.unwrap();
    assert_eq!(take(&mut a, 2, true).await, vec![sent[0].clone(), sent[3].clone()], "in order, only a.x");
    let mut other = take(&mut bc, 2, true).await;
    other.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(other, vec![sent[1].clone(), sent[2].clone()]);
    quiet(&mut a).await;
}

async fn nothing_sent_before_a_consumer_exists_is_lost(bus: &dyn EventBus) {
    bus.send_commands((0..50).map(|n| command("early.cmd", n)).collect()).await.unwrap();
    let mut c = bus.command_consumer(&["early.cmd".into()]).await.unwrap();
    let got = take(&mut c, 50, true).await;
    assert_eq!(
        got.iter().map(|c| c.payload["n"].as_u64().unwrap() as usize).collect::<Vec<_>>(),
        (0..50).collect::<Vec<_>>()
    );
}

async fn competing_consumers_share_without_duplicates(bus: &dyn EventBus) {
    let mut c1 = bus.command_consumer(&["shared.cmd".into()]).await.unwrap();
    let mut c2 = bus.command_consumer(&["shared.cmd".into()]).await.unwrap();
    bus.send_commands((0..40).map(|n| command("shared.cmd", n)).collect()).await.unwrap();
    let mut seen = BTreeSet::new();
    let mut total = 0;
    while total < 40 {
        for c in [&mut c1, &mut c2] {
            if let Ok(batch) = tokio::time::timeout(Duration::from_millis(200), c.recv(7)).await {
                let batch = batch.unwrap();
                c.ack(&batch.iter().map(|d| d.token.clone()).collect::<Vec<_>>()).await.unwrap();
                for d in batch {
                    assert!(
                        seen.insert(d.message.meta.correlation_id.clone()),
                        "delivered twice: {}",
                        d.message.meta.correlation_id
                    );
                    total += 1;
                }
            }
        }
    }
    assert_eq!(seen.len(), 40);
}

async fn results_round_trip(bus: &dyn EventBus) {
    let mut r = bus.result_consumer().await.unwrap();
    let results: Vec<ResultMessage> = (0..3)
        .map(|n| {
            let c = command("r.cmd", n);
            let outcome =
                if n == 1 { Outcome::Err(Failure::retryable("busy", "later")) } else { Outcome::Ok(json!({"n": n})) };
            ResultMessage { command: c.name, meta: c.meta, outcome }
        })
        .collect();
    bus.send_results(results.clone()).await.unwrap();
    assert_eq!(take(&mut r, 3, true).await, results);
}

async fn signals_round_trip(bus: &dyn EventBus) {
    let mut s = bus.signal_consumer().await.unwrap();
    let signals: Vec<SignalMessage> = (0..3)
        .map(|n| SignalMessage {
            saga_id: format!("s-{n}"),
            name: "approved".into(),
            payload: json!({"n": n, "by": "maria"}),
            id: format!("sig-{n}"),
        })
        .collect();
    bus.send_signals(signals.clone()).await.unwrap();
    assert_eq!(take(&mut s, 3, true).await, signals);
}

async fn unacknowledged_messages_are_redelivered(bus: &dyn EventBus) {
    let mut first = bus.command_consumer(&["lost.cmd".into()]).await.unwrap();
    bus.send_commands(vec![command("lost.cmd", 7)]).await.unwrap();
    let got = take(&mut first, 1, false).await;
    drop(first); // died before acknowledging
    let mut second = bus.command_consumer(&["lost.cmd".into()]).await.unwrap();
    let again = take(&mut second, 1, true).await;
    assert_eq!(again, got, "the unacknowledged command is delivered again");
    quiet(&mut second).await;
}
