//! Every store passes the same conformance suite.

use std::sync::Arc;

use baton::orchestrator::saga::SagaStatus;
use baton::store::SagaStore;
use baton::store::embedded::EmbeddedStore;
use baton::store::memory::MemoryStore;
use baton_tests::conformance;

#[tokio::test]
async fn memory_store_conforms() {
    conformance::saga_store(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn embedded_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance::saga_store(Arc::new(EmbeddedStore::open(dir.path()).unwrap())).await;
}

#[tokio::test]
async fn embedded_store_keeps_everything_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        conformance::saga_store(Arc::new(store)).await;
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let reopened = EmbeddedStore::open(dir.path()).err();
    assert!(reopened.is_some(), "still locked while open");
    assert_eq!(store.list(Some(SagaStatus::Completed), 100).await.unwrap().len(), 8, "the purged sagas stay purged");
    assert!(store.outcome("pay.charge", "k").await.unwrap().is_some());
    assert_eq!(store.load("o-1").await.unwrap().unwrap().revision, 2);
    assert_eq!(store.history("h-1").await.unwrap().len(), 4);
    let due = store.due_timers(None, 10_000, 10).await.unwrap();
    assert_eq!(due.into_iter().map(|(_, id)| id).collect::<Vec<_>>(), ["t-early", "t-late"]);
}

#[tokio::test]
async fn a_second_process_cannot_open_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let _first = EmbeddedStore::open(dir.path()).unwrap();
    let err = EmbeddedStore::open(dir.path()).err().expect("the file is locked");
    assert!(format!("{err:#}").contains("only one process may"), "{err:#}");
}

#[tokio::test]
async fn redis_store_conforms() {
    let prefix = baton_tests::unique_prefix("redis_store_conforms");
    let store = baton::store::redis::RedisStore::connect(&baton_tests::redis_url(), &prefix).await.unwrap();
    conformance::saga_store(Arc::new(store)).await;
    baton_tests::delete_prefix(&prefix);
}

#[tokio::test]
async fn redis_store_keeps_deployments_apart_by_prefix() {
    let (a, b) = (baton_tests::unique_prefix("prefix_a"), baton_tests::unique_prefix("prefix_b"));
    let url = baton_tests::redis_url();
    let store_a = baton::store::redis::RedisStore::connect(&url, &a).await.unwrap();
    let store_b = baton::store::redis::RedisStore::connect(&url, &b).await.unwrap();
    conformance::saga_store(Arc::new(store_a.clone())).await;
    assert!(store_b.load("c-1").await.unwrap().is_none());
    assert!(store_b.list(None, 100).await.unwrap().is_empty());
    assert!(store_a.load("c-1").await.unwrap().is_some());
    baton_tests::delete_prefix(&a);
    baton_tests::delete_prefix(&b);
}

/// With the stream outbox, a transition's commands are appended to their streams by the
/// commit itself: present when it commits, absent when it loses a conflict.
#[tokio::test]
async fn redis_store_commits_commands_with_the_transition() {
    use baton::store::{Committed, Transition};
    let prefix = baton_tests::unique_prefix("redis_outbox");
    let url = baton_tests::redis_url();
    let store = baton::store::redis::RedisStore::connect(&url, &prefix)
        .await
        .unwrap()
        .with_outbox(baton::bus::redis_streams::outbox_encoder(&prefix));
    assert!(store.dispatches_commands());
    let wf = baton::workflow::parse(
        std::path::Path::new("w.toml"),
        "name = \"w\"\n[[step]]\nname = \"a\"\ncommand = \"x.y\"\n",
        None,
    )
    .unwrap();
    let mut saga = baton::orchestrator::new_saga("ob-1".into(), &wf, serde_json::json!({"n": 1}), 1);
    let decision = baton::orchestrator::decide(&wf, &mut saga, &baton::orchestrator::Event::Start, 1);
    let commands: Vec<_> = decision
        .effects
        .into_iter()
        .filter_map(|e| match e {
            baton::orchestrator::Effect::Dispatch(c) => Some(c),
            _ => None,
        })
        .collect();
    saga.revision = 1;
    let start = Transition {
        saga: Arc::new(saga.clone()),
        expected_revision: 0,
        commands: commands.clone(),
        history: vec![],
        replies: vec![],
    };
    store.create(&start).await.unwrap();

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_connection().unwrap();
    let stream = format!("{prefix}:cmd:x.y");
    let entries: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(&stream).arg("-").arg("+").query(&mut con).unwrap();
    assert_eq!(entries.ids.len(), 1, "the first command went out with the create");
    let event: String = entries.ids[0].get("event").unwrap();
    assert_eq!(baton::bus::cloudevents::decode_command(&event).unwrap(), commands[0]);

    // A transition that loses the revision race sends nothing.
    let mut stale = start.clone();
    Arc::make_mut(&mut stale.saga).revision = 2;
    stale.expected_revision = 5;
    assert_eq!(store.commit(&[stale]).await.unwrap(), [Committed::Conflict]);
    let len: usize = redis::cmd("XLEN").arg(&stream).query(&mut con).unwrap();
    assert_eq!(len, 1, "nothing was sent for the conflicting transition");
    baton_tests::delete_prefix(&prefix);
}

/// Observers read one lifecycle entry per transition from `<prefix>:events`.
#[tokio::test]
async fn redis_store_writes_the_lifecycle_stream() {
    let prefix = baton_tests::unique_prefix("redis_events");
    let url = baton_tests::redis_url();
    let store = baton::store::redis::RedisStore::connect(&url, &prefix).await.unwrap();
    conformance::saga_store(Arc::new(store)).await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_connection().unwrap();
    let entries: redis::streams::StreamRangeReply =
        redis::cmd("XRANGE").arg(format!("{prefix}:events")).arg("-").arg("+").query(&mut con).unwrap();
    let h1: Vec<_> = entries.ids.iter().filter(|e| e.get::<String>("saga").as_deref() == Some("h-1")).collect();
    assert_eq!(h1.len(), 2, "one entry per transition of h-1 that carried history");
    let history: serde_json::Value = serde_json::from_str(&h1[1].get::<String>("history").unwrap()).unwrap();
    assert_eq!(history[1]["event"], "finished");
    assert_eq!(h1[1].get::<String>("status").as_deref(), Some("completed"));
    baton_tests::delete_prefix(&prefix);
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let err = baton::store::redis::RedisStore::connect("redis://127.0.0.1:1", "x")
        .await
        .err()
        .expect("nothing listens on port 1");
    assert!(format!("{err:#}").contains("cannot connect to Redis at redis://127.0.0.1:1"), "{err:#}");
}
