//! Hot-path micro-benchmarks.
//!
//! - `runtime/invoke_echo`: the per-command overhead of the plugin runtime: a fresh instance
//!   from the pooling allocator, the `handle` call of `testkit.echo`, JSON in and out.
//! - `orchestrator/decide_order_saga`: the decision function over a whole four-step
//!   sequential saga (start, four results), with no I/O.
//! - `orchestrator/decide_order_v2_saga`: the same over the state-machine order saga
//!   (for_each over three items, a choice, pay and ship in parallel, notify).
//! - `wire/encode_command`, `wire/decode_command`, `wire/decode_result`: CloudEvents JSON,
//!   as every command and result crosses a broker.
//! - `workflow/map_input`: an input expression evaluated over a saga context (the notify
//!   step's mapping of the order workflow).
//! - `store/encode_record`: the order saga's record as the stores write it (JSON), once per
//!   commit.
//! - `store/embedded_commit`: one transition committed to the embedded store, as the
//!   orchestrator does it per step: the copy of the saga it decides on, the encoding, the log
//!   append and its `fdatasync`, the cache. Disk-bound: on this kind of machine the sync is
//!   most of it.
//! - `worker/round_trip`: one command through a worker pool over the in-memory bus: sent,
//!   taken by the pool, its duplicate check, run on the plugin's threads (`testkit.echo`), its
//!   outcome recorded, its result received. The thread hand-offs of a step, without the
//!   orchestrator.
//!
//! Run: `cargo bench -p baton-tests --bench runtime`.

use std::path::Path;
use std::time::Duration;

use baton::orchestrator::decide::{Effect, Event, decide};
use baton::orchestrator::new_saga;
use baton::protocol::{CommandMessage, Meta, Outcome, ResultMessage};
use baton::runtime::{Runtime, RuntimeConfig};
use baton::store::{Committed, SagaStore, Transition};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

fn invoke_echo(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let runtime = rt.block_on(async {
        let r = Runtime::new(RuntimeConfig { cache_dir: Some(baton_tests::cache_dir()), ..RuntimeConfig::default() })
            .unwrap();
        r.load_file(&Path::new(baton_tests::PLUGINS_DIR).join("testkit.wasm")).await.unwrap();
        r
    });
    let cmd = CommandMessage {
        name: "testkit.echo".into(),
        payload: json!({"order_id": "o-1", "customer": "ada", "items": [{"sku": "A-1", "qty": 2, "price": 10.5}]}),
        meta: Meta {
            transaction_id: "t".into(),
            correlation_id: "t/echo/forward/1".into(),
            idempotency_key: "t/echo/forward".into(),
            step: "echo".into(),
            attempt: 1,
            traceparent: None,
        },
        timeout_ms: 5_000,
        deadline_ms: 0,
        start_by_ms: 0,
    };
    c.bench_function("runtime/invoke_echo", |b| {
        b.iter(|| {
            let out = rt.block_on(runtime.invoke(&cmd, 0));
            assert!(matches!(out, Outcome::Ok(_)));
        })
    });
}

/// Decide a whole saga of `file`: start it, then answer every command it sends with `output`.
fn decide_whole(c: &mut Criterion, bench: &str, file: &str, input: serde_json::Value) {
    let root = baton_tests::root();
    let text = std::fs::read_to_string(root.join(file)).unwrap();
    let wf = baton::workflow::parse(Path::new(file), &text, None).unwrap();
    let output = json!({"ok": true, "tracking_number": "TRK1", "payment_id": "p-1"});
    c.bench_function(bench, |b| {
        b.iter(|| {
            let mut saga = new_saga("s".into(), &wf, input.clone(), 0);
            let mut out: Vec<CommandMessage> = Vec::new();
            let mut d = decide(&wf, &mut saga, &Event::Start, 0);
            loop {
                out.extend(d.effects.into_iter().filter_map(|e| match e {
                    Effect::Dispatch(c) => Some(c),
                    _ => None,
                }));
                let Some(cmd) = out.pop() else { break };
                let r = ResultMessage { command: cmd.name, meta: cmd.meta, outcome: Outcome::Ok(output.clone()) };
                d = decide(&wf, &mut saga, &Event::Result(r), 1);
            }
            assert!(saga.status.is_terminal());
            saga
        })
    });
}

fn decide_order_saga(c: &mut Criterion) {
    let input = json!({"order_id": "o-1", "customer": "ada", "items": [{"sku": "A-1", "qty": 2, "price": 10.5}]});
    decide_whole(c, "orchestrator/decide_order_saga", "tests/workflows/order_sequential.toml", input);
    let three = json!({"order_id": "o-1", "customer": "ada", "items": [
        {"sku": "A-1", "qty": 2, "price": 10.5}, {"sku": "B-2", "qty": 1, "price": 3.0}, {"sku": "C-3", "qty": 5, "price": 1.0}
    ]});
    decide_whole(c, "orchestrator/decide_order_v2_saga", "workflows/order.toml", three);
}

fn order_command() -> CommandMessage {
    CommandMessage {
        name: "payment.charge".into(),
        payload: json!({"order_id": "o-1", "customer": "ada", "items": [{"sku": "A-1", "qty": 2, "price": 10.5}]}),
        meta: Meta {
            transaction_id: "order-1a2b3c-00ff01".into(),
            correlation_id: "order-1a2b3c-00ff01/charge/forward/1".into(),
            idempotency_key: "order-1a2b3c-00ff01/charge/forward".into(),
            step: "charge".into(),
            attempt: 1,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        },
        timeout_ms: 5_000,
        deadline_ms: 0,
        start_by_ms: 0,
    }
}

fn wire(c: &mut Criterion) {
    use baton::bus::cloudevents::{decode_command, decode_result, encode_command, encode_result};
    let cmd = order_command();
    let text = encode_command(&cmd);
    let result = ResultMessage {
        command: cmd.name.clone(),
        meta: cmd.meta.clone(),
        outcome: Outcome::Ok(json!({"payment_id": "pay-o-1", "amount": 21.0, "customer": "ada"})),
    };
    let result_text = encode_result(&result);
    c.bench_function("wire/encode_command", |b| b.iter(|| encode_command(std::hint::black_box(&cmd))));
    c.bench_function("wire/decode_command", |b| b.iter(|| decode_command(std::hint::black_box(&text)).unwrap()));
    c.bench_function("wire/decode_result", |b| b.iter(|| decode_result(std::hint::black_box(&result_text)).unwrap()));
}

fn map_input(c: &mut Criterion) {
    use baton::workflow::expr::{Expr, Scope};
    struct Context {
        input: serde_json::Value,
        ship: serde_json::Value,
    }
    impl Scope for Context {
        fn input(&self) -> &serde_json::Value {
            &self.input
        }
        fn step_output(&self, step: &str) -> Option<&serde_json::Value> {
            (step == "ship").then_some(&self.ship)
        }
        fn variable(&self, _: &str) -> Option<serde_json::Value> {
            None
        }
    }
    let expr = Expr::parse(
        "{ 'customer': input.customer, 'message': 'Your order is on its way', 'tracking_number': steps.ship.tracking_number, 'first': input.items[0].sku }",
    )
    .unwrap();
    let ctx = Context {
        input: json!({"order_id": "o-1", "customer": "ada", "items": [{"sku": "A-1", "qty": 2, "price": 10.5}]}),
        ship: json!({"tracking_number": "TRK0000000042", "carrier": "baton-post"}),
    };
    c.bench_function("workflow/map_input", |b| b.iter(|| expr.eval(std::hint::black_box(&ctx)).unwrap()));
}

/// The order saga (`workflows/order.toml`, one item) just after its start, at revision 1.
fn started_order_saga() -> baton::model::Saga {
    let root = baton_tests::root();
    let text = std::fs::read_to_string(root.join("workflows/order.toml")).unwrap();
    let wf = baton::workflow::parse(Path::new("order.toml"), &text, None).unwrap();
    let input = json!({"order_id": "o-1", "customer": "ada", "items": [{"sku": "A-1", "qty": 2, "price": 10.5}]});
    let mut saga = new_saga("order-bench-1".into(), &wf, input, 0);
    let started = decide(&wf, &mut saga, &Event::Start, 0);
    assert!(started.changed);
    saga.revision = 1;
    saga
}

fn store(c: &mut Criterion) {
    let saga = started_order_saga();
    c.bench_function("store/encode_record", |b| b.iter(|| serde_json::to_vec(std::hint::black_box(&saga)).unwrap()));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = baton::store::embedded::EmbeddedStore::open(dir.path()).unwrap();
    rt.block_on(store.create(&Transition::bare(saga.clone(), 0))).unwrap();
    let mut current = saga;
    c.bench_function("store/embedded_commit", |b| {
        b.iter(|| {
            let mut next = current.clone();
            next.revision += 1;
            next.updated_at += 1;
            let t = Transition::bare(next, current.revision);
            assert_eq!(rt.block_on(store.commit(std::slice::from_ref(&t))).unwrap(), [Committed::Ok]);
            current = baton::model::Saga::clone(&t.saga);
        })
    });
}

fn worker_round_trip(c: &mut Criterion) {
    use baton::bus::EventBus;
    use baton::runtime::worker::{WorkerConfig, run};
    use std::sync::Arc;
    // Two threads, as the host's own runtime has on this kind of machine; the pool starts
    // the plugin's threads itself.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(baton::bus::memory::MemoryBus::new());
    let store: Arc<dyn SagaStore> = Arc::new(baton::store::memory::MemoryStore::new());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut results = rt.block_on(async {
        let runtime = Arc::new(
            Runtime::new(RuntimeConfig { cache_dir: Some(baton_tests::cache_dir()), ..RuntimeConfig::default() })
                .unwrap(),
        );
        runtime.load_file(&Path::new(baton_tests::PLUGINS_DIR).join("testkit.wasm")).await.unwrap();
        let clock = Arc::new(baton::orchestrator::SystemClock);
        tokio::spawn(run(runtime, bus.clone(), store, clock, WorkerConfig::default(), stopped));
        bus.result_consumer().await.unwrap()
    });
    let mut n = 0u64;
    c.bench_function("worker/round_trip", |b| {
        b.iter(|| {
            // A new idempotency key each time: a repeated one is answered from its record
            // without the plugin running.
            n += 1;
            let mut cmd = order_command();
            cmd.name = "testkit.echo".into();
            cmd.meta.transaction_id = format!("rt-{n}");
            cmd.meta.idempotency_key = format!("rt-{n}/echo/forward");
            cmd.meta.correlation_id = format!("rt-{n}/echo/forward/1");
            rt.block_on(async {
                bus.send_commands(vec![cmd]).await.unwrap();
                let got = results.recv(1).await.unwrap();
                assert_eq!(got.len(), 1);
                assert!(matches!(got[0].message.outcome, Outcome::Ok(_)), "{:?}", got[0].message.outcome);
            });
        })
    });
    let _ = stop.send(true);
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = invoke_echo, decide_order_saga, wire, map_input, store, worker_round_trip
}
criterion_main!(benches);
