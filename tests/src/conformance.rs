//! The behaviour every [`SagaStore`] must have, whatever keeps the data. Each store's test
//! calls [`saga_store`] on a fresh, empty store.

use std::sync::Arc;

use baton::orchestrator::saga::{Saga, SagaStatus};
use baton::protocol::{Failure, Outcome};
use baton::store::{Created, SagaStore, StoreError};
use baton::workflow;
use serde_json::json;

fn saga(id: &str, created_at: u64) -> Saga {
    let wf = workflow::parse(
        std::path::Path::new("w.toml"),
        "name = \"w\"\n[[step]]\nname = \"a\"\ncommand = \"x.y\"\n",
        None,
    )
    .expect("valid workflow");
    Saga::new(id.to_owned(), &wf, json!({"n": id}), created_at)
}

/// Run every check against `store`, which must start empty.
pub async fn saga_store(store: Arc<dyn SagaStore>) {
    create_and_load(store.as_ref()).await;
    optimistic_concurrency(store.as_ref()).await;
    concurrent_writers_one_wins(store.clone()).await;
    list_by_status(store.as_ref()).await;
    outcomes_first_record_wins(store.as_ref()).await;
}

async fn create_and_load(store: &dyn SagaStore) {
    assert!(store.load("c-1").await.unwrap().is_none());
    let s = saga("c-1", 10);
    assert!(matches!(store.create(&s).await.unwrap(), Created::New));
    assert_eq!(store.load("c-1").await.unwrap().as_ref(), Some(&s));
    // A retried create returns what is stored and changes nothing.
    let mut again = saga("c-1", 99);
    again.input = json!("other");
    match store.create(&again).await.unwrap() {
        Created::Existing(existing) => assert_eq!(*existing, s),
        Created::New => panic!("a second create of the same id must not succeed"),
    }
    assert_eq!(store.load("c-1").await.unwrap().unwrap().input, json!({"n": "c-1"}));
}

async fn optimistic_concurrency(store: &dyn SagaStore) {
    let mut s = saga("o-1", 20);
    store.create(&s).await.unwrap();
    s.revision = 1;
    s.status = SagaStatus::Compensating;
    store.commit(&s, 0).await.unwrap();
    assert_eq!(store.load("o-1").await.unwrap().unwrap().revision, 1);
    // A writer that read revision 0 lost the race.
    let mut stale = saga("o-1", 20);
    stale.revision = 1;
    let err = store.commit(&stale, 0).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { expected: 0, .. }), "{err}");
    assert_eq!(store.load("o-1").await.unwrap().unwrap().status, SagaStatus::Compensating);
    let missing = saga("nobody", 0);
    assert!(matches!(store.commit(&missing, 0).await.unwrap_err(), StoreError::NotFound(_)));
}

async fn concurrent_writers_one_wins(store: Arc<dyn SagaStore>) {
    let s = saga("r-1", 30);
    store.create(&s).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let store = store.clone();
        let mut next = s.clone();
        next.revision = 1;
        next.input = json!(i);
        tasks.push(tokio::spawn(async move { store.commit(&next, 0).await.is_ok() }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1, "exactly one of eight writers of revision 0 may commit");
}

async fn list_by_status(store: &dyn SagaStore) {
    for (i, status) in
        [SagaStatus::Completed, SagaStatus::Running, SagaStatus::Completed, SagaStatus::Failed].into_iter().enumerate()
    {
        let mut s = saga(&format!("l-{i}"), 1_000 + i as u64);
        store.create(&s).await.unwrap();
        if status != SagaStatus::Running {
            s.status = status;
            s.revision = 1;
            store.commit(&s, 0).await.unwrap();
        }
    }
    let completed: Vec<String> =
        store.list(Some(SagaStatus::Completed), 100).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(completed, ["l-2", "l-0"], "newest first, only that status");
    let failed = store.list(Some(SagaStatus::Failed), 100).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert!(store.list(Some(SagaStatus::Compensated), 100).await.unwrap().is_empty());
    let newest_two: Vec<String> = store.list(None, 2).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(newest_two, ["l-3", "l-2"]);
    // The index follows status changes: running -> completed.
    let mut s = store.load("l-1").await.unwrap().unwrap();
    let rev = s.revision;
    s.status = SagaStatus::Completed;
    s.revision = rev + 1;
    store.commit(&s, rev).await.unwrap();
    assert_eq!(store.list(Some(SagaStatus::Completed), 100).await.unwrap().len(), 3);
    assert!(store.list(Some(SagaStatus::Running), 100).await.unwrap().iter().all(|s| !s.id.starts_with("l-")));
}

async fn outcomes_first_record_wins(store: &dyn SagaStore) {
    assert_eq!(store.outcome("pay.charge", "k").await.unwrap(), None);
    let ok = Outcome::Ok(json!({"payment_id": "p-1"}));
    store.record_outcome("pay.charge", "k", &ok).await.unwrap();
    store.record_outcome("pay.charge", "k", &Outcome::Err(Failure::fatal("late", "second"))).await.unwrap();
    assert_eq!(store.outcome("pay.charge", "k").await.unwrap(), Some(ok));
    // Keyed by command and key together.
    assert_eq!(store.outcome("pay.refund", "k").await.unwrap(), None);
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
    routes_by_command_name(bus.as_ref()).await;
    results_round_trip(bus.as_ref()).await;
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
