//! Every event bus passes the same conformance suite.

use std::sync::Arc;
use std::time::Duration;

use baton::bus::memory::MemoryBus;
use baton::bus::redis_streams::{RedisStreamsBus, StreamsConfig};
use baton_tests::conformance::{self, Guarantees};

#[tokio::test]
async fn memory_bus_conforms() {
    // One process: nothing to redeliver to after a consumer is gone.
    let g = Guarantees { keeps_unread: true, competing: true, redelivers: false };
    conformance::event_bus(Arc::new(MemoryBus::new()), g).await;
}

#[tokio::test]
async fn redis_streams_bus_conforms() {
    let prefix = baton_tests::unique_prefix("redis_streams_bus_conforms");
    // A short visibility timeout so the redelivery check takes seconds, not thirty; not
    // shorter, or on a loaded machine a message received and about to be acknowledged could
    // be claimed by the other consumer of the competing-consumers check.
    let config = StreamsConfig { visibility_timeout: Duration::from_secs(2), block: Duration::from_millis(100) };
    let bus = RedisStreamsBus::connect(&baton_tests::redis_url(), &prefix, config).await.unwrap();
    let g = Guarantees { keeps_unread: true, competing: true, redelivers: true };
    conformance::event_bus(Arc::new(bus), g).await;
    baton_tests::delete_prefix(&prefix);
}

#[tokio::test]
async fn garbage_on_a_stream_is_dropped_and_the_consumer_goes_on() {
    let prefix = baton_tests::unique_prefix("garbage_on_a_stream");
    let config = StreamsConfig { visibility_timeout: Duration::from_secs(5), block: Duration::from_millis(100) };
    let bus = RedisStreamsBus::connect(&baton_tests::redis_url(), &prefix, config).await.unwrap();
    let mut consumer = baton::bus::EventBus::command_consumer(&bus, &["g.cmd".into()]).await.unwrap();
    let client = redis::Client::open(baton_tests::redis_url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let stream = format!("{prefix}:cmd:g.cmd");
    let _: String = redis::cmd("XADD").arg(&stream).arg("*").arg("event").arg("{not json").query(&mut con).unwrap();
    let _: String = redis::cmd("XADD").arg(&stream).arg("*").arg("other").arg("field").query(&mut con).unwrap();
    let good = baton::bus::cloudevents::encode_command(&baton::protocol::CommandMessage {
        name: "g.cmd".into(),
        payload: serde_json::json!({"ok": true}),
        meta: baton::protocol::Meta {
            transaction_id: "t".into(),
            correlation_id: "t/s/forward/1".into(),
            idempotency_key: "t/s/forward".into(),
            step: "s".into(),
            attempt: 1,
            traceparent: None,
        },
        timeout_ms: 1_000,
        deadline_ms: 0,
        start_by_ms: 0,
    });
    let _: String = redis::cmd("XADD").arg(&stream).arg("*").arg("event").arg(good).query(&mut con).unwrap();
    let batch = tokio::time::timeout(Duration::from_secs(5), consumer.recv(10)).await.unwrap().unwrap();
    assert_eq!(batch.len(), 1, "only the valid event is delivered");
    assert_eq!(batch[0].message.payload, serde_json::json!({"ok": true}));
    // The bad entries were removed, not left pending to be reclaimed forever.
    let len: usize = redis::cmd("XLEN").arg(&stream).query(&mut con).unwrap();
    assert_eq!(len, 1);
    baton_tests::delete_prefix(&prefix);
}

#[tokio::test]
async fn redis_pubsub_bus_routes_and_promises_nothing_more() {
    let prefix = baton_tests::unique_prefix("redis_pubsub_bus");
    let bus = baton::bus::redis_pubsub::RedisPubSubBus::connect(&baton_tests::redis_url(), &prefix).await.unwrap();
    let g = Guarantees { keeps_unread: false, competing: false, redelivers: false };
    conformance::event_bus(Arc::new(bus.clone()), g).await;
    // And it really does lose what nobody listens for: the README says so.
    use baton::bus::EventBus;
    let cmd = baton::protocol::CommandMessage {
        name: "late.cmd".into(),
        payload: serde_json::json!({}),
        meta: baton::protocol::Meta {
            transaction_id: "t".into(),
            correlation_id: "c".into(),
            idempotency_key: "k".into(),
            step: "s".into(),
            attempt: 1,
            traceparent: None,
        },
        timeout_ms: 1_000,
        deadline_ms: 0,
        start_by_ms: 0,
    };
    bus.send_commands(vec![cmd]).await.unwrap();
    let mut late = bus.command_consumer(&["late.cmd".into()]).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), late.recv(1)).await.is_err(),
        "published before anyone subscribed: lost"
    );
}
