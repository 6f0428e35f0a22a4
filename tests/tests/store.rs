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
    assert_eq!(store.list(Some(SagaStatus::Completed), 100).await.unwrap().len(), 3);
    assert!(store.outcome("pay.charge", "k").await.unwrap().is_some());
    assert_eq!(store.load("o-1").await.unwrap().unwrap().revision, 1);
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

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let err = baton::store::redis::RedisStore::connect("redis://127.0.0.1:1", "x")
        .await
        .err()
        .expect("nothing listens on port 1");
    assert!(format!("{err:#}").contains("cannot connect to Redis at redis://127.0.0.1:1"), "{err:#}");
}
