//! Effectively-once: a duplicate command (same command, same idempotency key) is answered from
//! the recorded outcome and never runs its plugin twice; retryable failures are not recorded.
//! Driven through the real library path: the real runtime, the real testkit plugin.

use std::path::Path;
use std::sync::Arc;

use baton::protocol::{CommandMessage, Meta, Outcome};
use baton::runtime::worker::handle;
use baton::runtime::{Runtime, RuntimeConfig};
use baton::store::SagaStore;
use baton::store::memory::MemoryStore;
use serde_json::{Value, json};

async fn runtime() -> Runtime {
    let mut rt =
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
    }
}

#[tokio::test]
async fn a_duplicate_gets_the_recorded_outcome_without_running_again() {
    let rt = runtime().await;
    let store = Arc::new(MemoryStore::new());
    let first = handle(&rt, store.as_ref(), command("testkit.echo", "k-1", 1, json!({"n": 1}))).await;
    assert_eq!(first.outcome, Outcome::Ok(json!({"n": 1})));
    // Same key, different payload: had the plugin run, it would echo {"n": 2}.
    let dup = handle(&rt, store.as_ref(), command("testkit.echo", "k-1", 1, json!({"n": 2}))).await;
    assert_eq!(dup.outcome, Outcome::Ok(json!({"n": 1})));
    // Another key runs.
    let other = handle(&rt, store.as_ref(), command("testkit.echo", "k-2", 1, json!({"n": 3}))).await;
    assert_eq!(other.outcome, Outcome::Ok(json!({"n": 3})));
}

#[tokio::test]
async fn fatal_failures_are_recorded_and_retryable_ones_are_not() {
    let rt = runtime().await;
    let store = Arc::new(MemoryStore::new());
    let flaky = json!({"code": "busy", "message": "later", "retryable": true, "succeed_on_attempt": 2});
    let r1 = handle(&rt, store.as_ref(), command("testkit.fail", "k-flaky", 1, flaky.clone())).await;
    assert!(matches!(&r1.outcome, Outcome::Err(f) if f.retryable));
    assert_eq!(store.outcome("testkit.fail", "k-flaky").await.unwrap(), None, "retryable: not recorded");
    let r2 = handle(&rt, store.as_ref(), command("testkit.fail", "k-flaky", 2, flaky)).await;
    assert_eq!(r2.outcome, Outcome::Ok(json!({"attempt": 2})), "the retry really ran");

    let fatal = json!({"code": "declined", "message": "no"});
    let f1 = handle(&rt, store.as_ref(), command("testkit.fail", "k-fatal", 1, fatal)).await;
    assert!(matches!(&f1.outcome, Outcome::Err(f) if f.code == "declined" && !f.retryable));
    let f2 =
        handle(&rt, store.as_ref(), command("testkit.fail", "k-fatal", 2, json!({"code": "x", "message": "y"}))).await;
    assert_eq!(f2.outcome, f1.outcome, "a fatal outcome is final for its key");
}

#[tokio::test]
async fn commands_the_runtime_does_not_know_fail_fatally_with_the_known_ones() {
    let rt = runtime().await;
    let store = MemoryStore::new();
    let r = handle(&rt, &store, command("warp.drive", "k", 1, json!({}))).await;
    let Outcome::Err(f) = r.outcome else { panic!() };
    assert_eq!(f.code, "unknown_command");
    assert!(!f.retryable);
    assert!(f.message.contains("testkit.echo"), "{}", f.message);
}

#[tokio::test]
async fn a_payload_the_handler_cannot_read_fails_with_invalid_input() {
    let rt = runtime().await;
    let store = MemoryStore::new();
    let r = handle(&rt, &store, command("testkit.panic", "k", 1, json!({"not_message": 1}))).await;
    let Outcome::Err(f) = r.outcome else { panic!() };
    assert_eq!(f.code, "invalid_input");
    assert!(f.message.contains("missing field `message`"), "{}", f.message);
}

#[tokio::test]
async fn the_host_keeps_serving_after_a_plugin_traps() {
    let rt = runtime().await;
    let store = MemoryStore::new();
    let r = handle(&rt, &store, command("testkit.panic", "k-p", 1, json!({"message": "down"}))).await;
    assert!(matches!(&r.outcome, Outcome::Err(f) if f.code == "plugin_panicked"));
    // Fresh instance per command: the next call is unaffected.
    let ok = handle(&rt, &store, command("testkit.echo", "k-e", 1, json!({"still": "here"}))).await;
    assert_eq!(ok.outcome, Outcome::Ok(json!({"still": "here"})));
}
