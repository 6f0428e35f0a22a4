//! Effectively-once: a duplicate command (same command, same idempotency key) is answered from
//! the recorded outcome and never runs its plugin twice; retryable failures are not recorded.
//! Driven through the real library path: the real runtime, the real testkit plugin, and every
//! store (in memory, embedded on disk, the real Redis); and end to end through Redis Streams.

use std::path::Path;
use std::sync::Arc;

use baton::orchestrator::SystemClock;
use baton::protocol::{CommandMessage, Meta, Outcome};
use baton::runtime::worker::handle;
use baton::runtime::{Runtime, RuntimeConfig};
use baton::store::SagaStore;
use baton::store::memory::MemoryStore;
use baton_tests::PrefixGuard;
use serde_json::{Value, json};

async fn runtime() -> Runtime {
    let rt =
        Runtime::new(RuntimeConfig { cache_dir: Some(baton_tests::cache_dir()), ..RuntimeConfig::default() }).unwrap();
    rt.load_file(&Path::new(baton_tests::PLUGINS_DIR).join("testkit.wasm")).await.unwrap();
    rt
}

fn command(name: &str, key: &str, attempt: u32, payload: Value) -> CommandMessage {
    CommandMessage {
        name: name.into(),
        payload,
        meta: Meta {
            transaction_id: "t-1".into(),
            correlation_id: format!("{key}/{attempt}"),
            idempotency_key: key.into(),
            step: "s".into(),
            attempt,
            traceparent: None,
        },
        timeout_ms: 5_000,
        deadline_ms: 0,
        start_by_ms: 0,
    }
}

/// The stores under test: in memory, embedded in a temporary directory, and Redis under a
/// fresh prefix (deleted by the guard).
async fn stores(test: &str) -> (Vec<(&'static str, Arc<dyn SagaStore>)>, tempfile::TempDir, PrefixGuard) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = baton_tests::unique_prefix(test);
    let redis = baton::store::redis::RedisStore::connect(&baton_tests::redis_url(), &prefix).await.unwrap();
    let embedded = baton::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
    let list: Vec<(&'static str, Arc<dyn SagaStore>)> =
        vec![("memory", Arc::new(MemoryStore::new())), ("embedded", Arc::new(embedded)), ("redis", Arc::new(redis))];
    (list, dir, PrefixGuard(prefix))
}

#[tokio::test]
async fn a_duplicate_gets_the_recorded_outcome_without_running_again() {
    let rt = runtime().await;
    let (stores, _dir, _guard) = stores("idem_duplicate").await;
    for (name, store) in stores {
        duplicate_is_answered_from_the_record(&rt, store.as_ref(), name).await;
    }
}

async fn duplicate_is_answered_from_the_record(rt: &Runtime, store: &dyn SagaStore, name: &str) {
    let first = handle(rt, store, &SystemClock, command("testkit.echo", "k-1", 1, json!({"n": 1}))).await;
    assert_eq!(first.outcome, Outcome::Ok(json!({"n": 1})), "{name}");
    // Same key, different payload: had the plugin run, it would echo {"n": 2}.
    let dup = handle(rt, store, &SystemClock, command("testkit.echo", "k-1", 1, json!({"n": 2}))).await;
    assert_eq!(dup.outcome, Outcome::Ok(json!({"n": 1})), "{name}: answered from the record");
    // Another key runs.
    let other = handle(rt, store, &SystemClock, command("testkit.echo", "k-2", 1, json!({"n": 3}))).await;
    assert_eq!(other.outcome, Outcome::Ok(json!({"n": 3})), "{name}");
}

/// An attempt refused as `expired` leaves no record, so the later attempt that runs in time
/// is the one recorded, and a duplicate of it is answered from the record, not run again.
#[tokio::test]
async fn after_an_expired_attempt_the_next_one_is_recorded() {
    let rt = runtime().await;
    let (stores, _dir, _guard) = stores("idem_expired").await;
    for (name, store) in stores {
        let store = store.as_ref();
        let mut late = command("testkit.echo", "k-late", 1, json!({"n": 1}));
        late.deadline_ms = 1;
        let r1 = handle(&rt, store, &SystemClock, late).await;
        assert!(matches!(&r1.outcome, Outcome::Err(f) if f.code == "expired" && f.retryable), "{name}: {r1:?}");
        assert_eq!(store.outcome("testkit.echo", "k-late").await.unwrap(), None, "{name}: not recorded");
        let r2 = handle(&rt, store, &SystemClock, command("testkit.echo", "k-late", 2, json!({"n": 2}))).await;
        assert_eq!(r2.outcome, Outcome::Ok(json!({"n": 2})), "{name}: the next attempt runs");
        assert_eq!(store.outcome("testkit.echo", "k-late").await.unwrap(), Some(r2.outcome.clone()), "{name}");
        // A duplicate of it (redelivered) with another payload: had it run, it would echo n 3.
        let dup = handle(&rt, store, &SystemClock, command("testkit.echo", "k-late", 2, json!({"n": 3}))).await;
        assert_eq!(dup.outcome, r2.outcome, "{name}: answered from the record");
    }
}

#[tokio::test]
async fn fatal_failures_are_recorded_and_retryable_ones_are_not() {
    let rt = runtime().await;
    let (stores, _dir, _guard) = stores("idem_fatal").await;
    for (name, store) in stores {
        only_terminal_outcomes_are_recorded(&rt, store.as_ref(), name).await;
    }
}

async fn only_terminal_outcomes_are_recorded(rt: &Runtime, store: &dyn SagaStore, name: &str) {
    let flaky = json!({"code": "busy", "message": "later", "retryable": true, "succeed_on_attempt": 2});
    let r1 = handle(rt, store, &SystemClock, command("testkit.fail", "k-flaky", 1, flaky.clone())).await;
    assert!(matches!(&r1.outcome, Outcome::Err(f) if f.retryable), "{name}");
    assert_eq!(store.outcome("testkit.fail", "k-flaky").await.unwrap(), None, "{name}: retryable, not recorded");
    let r2 = handle(rt, store, &SystemClock, command("testkit.fail", "k-flaky", 2, flaky)).await;
    assert_eq!(r2.outcome, Outcome::Ok(json!({"attempt": 2})), "{name}: the retry really ran");

    let fatal = json!({"code": "declined", "message": "no"});
    let f1 = handle(rt, store, &SystemClock, command("testkit.fail", "k-fatal", 1, fatal)).await;
    assert!(matches!(&f1.outcome, Outcome::Err(f) if f.code == "declined" && !f.retryable), "{name}");
    let f2 =
        handle(rt, store, &SystemClock, command("testkit.fail", "k-fatal", 2, json!({"code": "x", "message": "y"})))
            .await;
    assert_eq!(f2.outcome, f1.outcome, "{name}: a fatal outcome is final for its key");
}

/// End to end on the real Redis: a worker pool on Redis Streams gets the same command twice
/// (a redelivery, or a duplicate publish), the second with a payload that would echo
/// differently. Both results carry the first run's output: the plugin ran once.
#[tokio::test]
async fn a_duplicate_on_redis_streams_is_answered_without_running_the_plugin() {
    use baton::bus::EventBus;
    use baton::bus::redis_streams::{RedisStreamsBus, StreamsConfig};
    let prefix = baton_tests::unique_prefix("idem_streams");
    let _guard = PrefixGuard(prefix.clone());
    let url = baton_tests::redis_url();
    let config = StreamsConfig { block: std::time::Duration::from_millis(100), ..StreamsConfig::default() };
    let bus: Arc<dyn EventBus> = Arc::new(RedisStreamsBus::connect(&url, &prefix, config).await.unwrap());
    let store: Arc<dyn SagaStore> = Arc::new(baton::store::redis::RedisStore::connect(&url, &prefix).await.unwrap());
    let mut results = bus.result_consumer().await.unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let pool = tokio::spawn(baton::runtime::worker::run(
        Arc::new(runtime().await),
        bus.clone(),
        store,
        Arc::new(SystemClock),
        baton::runtime::worker::WorkerConfig::default(),
        stopped,
    ));
    let mut outputs = Vec::new();
    for payload in [json!({"run": "first"}), json!({"run": "second"})] {
        bus.send_commands(vec![command("testkit.echo", "saga-1/echo/forward", 1, payload)]).await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), results.recv(1)).await.unwrap().unwrap();
        results.ack(&[got[0].token.clone()]).await.unwrap();
        outputs.push(got[0].message.outcome.clone());
    }
    assert_eq!(outputs, vec![Outcome::Ok(json!({"run": "first"})); 2], "the duplicate was answered from the record");
    stop.send(true).unwrap();
    pool.await.unwrap().unwrap();
}

#[tokio::test]
async fn commands_the_runtime_does_not_know_fail_fatally_with_the_known_ones() {
    let rt = runtime().await;
    let store = MemoryStore::new();
    let r = handle(&rt, &store, &SystemClock, command("warp.drive", "k", 1, json!({}))).await;
    let Outcome::Err(f) = r.outcome else { panic!() };
    assert_eq!(f.code, "unknown_command");
    assert!(!f.retryable);
    assert!(f.message.contains("testkit.echo"), "{}", f.message);
}

#[tokio::test]
async fn a_payload_the_handler_cannot_read_fails_with_invalid_input() {
    let rt = runtime().await;
    let store = MemoryStore::new();
    let r = handle(&rt, &store, &SystemClock, command("testkit.panic", "k", 1, json!({"not_message": 1}))).await;
    let Outcome::Err(f) = r.outcome else { panic!() };
    assert_eq!(f.code, "invalid_input");
    assert!(f.message.contains("missing field `message`"), "{}", f.message);
}

#[tokio::test]
async fn the_host_keeps_serving_after_a_plugin_traps() {
    let rt = runtime().await;
    let store = MemoryStore::new();
    let r = handle(&rt, &store, &SystemClock, command("testkit.panic", "k-p", 1, json!({"message": "down"}))).await;
    assert!(matches!(&r.outcome, Outcome::Err(f) if f.code == "plugin_panicked"));
    // Fresh instance per command: the next call is unaffected.
    let ok = handle(&rt, &store, &SystemClock, command("testkit.echo", "k-e", 1, json!({"still": "here"}))).await;
    assert_eq!(ok.outcome, Outcome::Ok(json!({"still": "here"})));
}
