//! A worker that runs sagas of its own: the `orchestrator` import of `baton:saga@0.2.0`,
//! driven through the real runtime and the real plugins (`concierge`, `testkit.sagas`), with
//! a fake orchestrator (`Fake`, a `SagaHost` that records every call and whose `wait` can be
//! held shut). And the old contract: a plugin built against `baton:saga@0.1.0` (`legacy`)
//! still loads and runs next to them.
//!
//! Each test builds its own runtime (a `SagaHost` is set once per runtime); the plugins are
//! compiled once into the shared cache (`baton_tests::cache_dir`) and loaded from it after.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use baton::model::call_saga_id;
use baton::protocol::{CommandMessage, Failure, Meta, Outcome};
use baton::runtime::sagas::{NO_ORCHESTRATOR, SagaHost};
use baton::runtime::{Contract, Fault, Runtime, RuntimeConfig};
use serde_json::{Value, json};
use tokio::sync::watch;

/// One call the runtime made to the orchestrator.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Start { workflow: String, input: Value, id: String, caller: Meta },
    Wait { id: String },
    Signal { id: String, name: String, payload: Value },
    Get { id: String },
}

/// A `SagaHost` that records the calls. A start under an id it knows re-attaches when the
/// workflow and input are the same and is refused otherwise, as the orchestrator does. `wait`
/// answers the saga's output (`outputs` by workflow, else `{"workflow", "input"}`), once the
/// gate is open: `hold()` shuts it, `release()` opens it.
struct Fake {
    calls: Mutex<Vec<Call>>,
    sagas: Mutex<HashMap<String, (String, Value)>>,
    outputs: HashMap<String, Value>,
    gate: watch::Sender<bool>,
    /// Waits blocked on the gate right now.
    waiting: AtomicUsize,
}

impl Fake {
    fn new(outputs: &[(&str, Value)]) -> Arc<Fake> {
        Arc::new(Fake {
            calls: Mutex::new(Vec::new()),
            sagas: Mutex::new(HashMap::new()),
            outputs: outputs.iter().map(|(w, v)| ((*w).to_owned(), v.clone())).collect(),
            gate: watch::channel(true).0,
            waiting: AtomicUsize::new(0),
        })
    }

    fn hold(&self) {
        self.gate.send_replace(false);
    }

    fn release(&self) {
        self.gate.send_replace(true);
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn started_ids(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Start { id, .. } => Some(id),
                _ => None,
            })
            .collect()
    }

    fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Until `n` waits are blocked on the gate (panics after 20 s).
    async fn until_waiting(&self, n: usize) {
        let since = Instant::now();
        while self.waiting() < n {
            assert!(since.elapsed() < Duration::from_secs(20), "only {} of {n} waits began", self.waiting());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Decrements `waiting` when the wait ends or is dropped (a run stopped at its timeout).
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl SagaHost for Fake {
    async fn start(&self, workflow: &str, input: Value, id: &str, caller: &Meta) -> Result<(), Failure> {
        self.calls.lock().unwrap().push(Call::Start {
            workflow: workflow.to_owned(),
            input: input.clone(),
            id: id.to_owned(),
            caller: caller.clone(),
        });
        let mut sagas = self.sagas.lock().unwrap();
        match sagas.get(id) {
            Some((w, i)) if w == workflow && *i == input => Ok(()),
            Some(_) => {
                Err(Failure::permanent("saga_exists", format!("{id} was started with another workflow or input")))
            }
            None => {
                sagas.insert(id.to_owned(), (workflow.to_owned(), input));
                Ok(())
            }
        }
    }

    async fn wait(&self, id: &str) -> Result<Value, Failure> {
        self.calls.lock().unwrap().push(Call::Wait { id: id.to_owned() });
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        let mut gate = self.gate.subscribe();
        gate.wait_for(|open| *open).await.expect("the fake outlives its waits");
        let (workflow, input) = self.sagas.lock().unwrap().get(id).cloned().expect("waits follow starts");
        Ok(self.outputs.get(&workflow).cloned().unwrap_or_else(|| json!({ "workflow": workflow, "input": input })))
    }

    async fn signal(&self, id: &str, name: &str, payload: Value) -> Result<(), Failure> {
        self.calls.lock().unwrap().push(Call::Signal { id: id.to_owned(), name: name.to_owned(), payload });
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Value, Failure> {
        self.calls.lock().unwrap().push(Call::Get { id: id.to_owned() });
        match self.sagas.lock().unwrap().get(id) {
            Some((workflow, _)) => Ok(json!({ "id": id, "workflow": workflow, "status": "running" })),
            None => Err(Failure::permanent("not_found", format!("no saga {id}"))),
        }
    }
}

fn config() -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(baton_tests::cache_dir()),
        memory_limit: 32 << 20,
        // Accounting only: room for every command the tests run at once.
        memory_budget: 4 << 30,
        ..RuntimeConfig::default()
    }
}

async fn runtime_with(config: RuntimeConfig, plugins: &[&str]) -> Runtime {
    let rt = Runtime::new(config).unwrap();
    for p in plugins {
        rt.load_file(&Path::new(baton_tests::PLUGINS_DIR).join(format!("{p}.wasm"))).await.unwrap();
    }
    rt
}

/// A runtime with `plugins` and `fake` as its orchestrator.
async fn runtime(fake: &Arc<Fake>, plugins: &[&str]) -> Runtime {
    let rt = runtime_with(config(), plugins).await;
    rt.set_saga_host(fake.clone());
    rt
}

fn command(name: &str, key: &str, payload: Value, timeout_ms: u64) -> CommandMessage {
    CommandMessage {
        name: name.into(),
        payload,
        meta: Meta {
            transaction_id: key.split('/').next().unwrap().into(),
            correlation_id: format!("{key}/1"),
            idempotency_key: key.into(),
            step: "plan".into(),
            attempt: 1,
            traceparent: None,
        },
        timeout_ms,
        deadline_ms: 0,
        start_by_ms: 0,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

fn ok(outcome: Outcome) -> Value {
    match outcome {
        Outcome::Ok(v) => v,
        Outcome::Err(f) => panic!("the command failed: {f}"),
    }
}

fn err(outcome: Outcome) -> Failure {
    match outcome {
        Outcome::Err(f) => f,
        Outcome::Ok(v) => panic!("the command succeeded: {v}"),
    }
}

/// `testkit.sagas` making `calls`; its results, one per call.
async fn sagas(rt: &Runtime, key: &str, calls: Value) -> Vec<Value> {
    let out = ok(rt.invoke(&command("testkit.sagas", key, json!({ "calls": calls }), 10_000), now_ms()).await);
    out["results"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_plugin_built_against_0_1_0_still_loads_and_handles_commands() {
    let fake = Fake::new(&[]);
    let rt = runtime(&fake, &["legacy", "testkit"]).await;
    let plugins = rt.plugins();
    let contracts: Vec<(&str, Contract)> = plugins.iter().map(|p| (p.name.as_str(), p.contract)).collect();
    assert_eq!(contracts, [("legacy", Contract::V0_1), ("testkit", Contract::V0_2)]);
    assert_eq!(rt.command_names().iter().filter(|c| c.starts_with("legacy.")).count(), 2);

    let cmd = command("legacy.echo", "o-1/ship/forward", json!({"parcel": 7}), 5_000);
    let out = ok(rt.invoke(&cmd, now_ms()).await);
    assert_eq!(out["payload"], json!({"parcel": 7}));
    assert_eq!(out["meta"]["idempotency_key"], "o-1/ship/forward");
    assert_eq!(out["meta"]["transaction_id"], "o-1");
    assert_eq!(out["meta"]["attempt"], 1);

    let cmd =
        command("legacy.fail", "o-1/ship/forward", json!({"code": "teapot", "message": "short and stout"}), 5_000);
    assert_eq!(err(rt.invoke(&cmd, now_ms()).await), Failure::permanent("teapot", "short and stout"));

    // The 0.2.0 plugin beside it in the same runtime, making a call the old one cannot.
    let results = sagas(&rt, "o-1/plan/forward", json!([{"call": "start", "workflow": "w", "input": {}}])).await;
    assert_eq!(results, [json!({"ok": call_saga_id("o-1/plan/forward", 1)})]);
}

#[tokio::test]
async fn concierge_runs_the_trip_as_a_sub_saga_and_returns_its_output() {
    let bookings = json!({"hotel": "htl-77", "flight": "flt-77"});
    let fake = Fake::new(&[("trip", bookings.clone())]);
    let rt = runtime(&fake, &["concierge"]).await;
    let request = json!({"traveller": " Ada  Lovelace", "from": "London", "to": "Lisbon", "nights": 3});
    let cmd = command("concierge.book", "o-9/book/forward", request, 10_000);
    let out = ok(rt.invoke(&cmd, now_ms()).await);
    assert_eq!(out["trip"], bookings, "{out:#}");
    assert_eq!(out["summary"], "Ada Lovelace travels from London to Lisbon for 3 nights: booked.");

    let id = call_saga_id("o-9/book/forward", 1);
    assert_eq!(id, "o-9.book.1");
    assert_eq!(
        fake.calls(),
        [
            Call::Start {
                workflow: "trip".into(),
                input: json!({"trip_id": cmd.meta.transaction_id, "destination": "Lisbon", "date": "flexible",
                              "nights": 3, "guests": 1, "traveller": "Ada Lovelace", "from": "London"}),
                id: id.clone(),
                caller: cmd.meta.clone(),
            },
            Call::Wait { id },
        ]
    );

    // A request that makes no sense never reaches the orchestrator.
    let cmd = command(
        "concierge.book",
        "o-10/book/forward",
        json!({"traveller": "Ada", "from": "Rome", "to": "rome"}),
        10_000,
    );
    assert_eq!(err(rt.invoke(&cmd, now_ms()).await).code, "invalid_request");
    assert_eq!(fake.calls().len(), 2);
}

#[tokio::test]
async fn a_failed_sub_saga_fails_the_command_with_its_code() {
    struct Compensated;
    #[async_trait]
    impl SagaHost for Compensated {
        async fn start(&self, _: &str, _: Value, _: &str, _: &Meta) -> Result<(), Failure> {
            Ok(())
        }
        async fn wait(&self, id: &str) -> Result<Value, Failure> {
            Err(Failure::permanent("no_hotel", format!("saga {id} compensated: no hotel in Atlantis")))
        }
        async fn signal(&self, _: &str, _: &str, _: Value) -> Result<(), Failure> {
            Ok(())
        }
        async fn get(&self, _: &str) -> Result<Value, Failure> {
            Err(Failure::retryable("store_unavailable", "try again"))
        }
    }
    let rt = runtime_with(config(), &["concierge", "testkit"]).await;
    rt.set_saga_host(Arc::new(Compensated));
    let cmd = command(
        "concierge.book",
        "o-3/book/forward",
        json!({"traveller": "Ada", "from": "Rome", "to": "Atlantis"}),
        10_000,
    );
    let f = err(rt.invoke(&cmd, now_ms()).await);
    assert_eq!((f.code.as_str(), f.retryable), ("no_hotel", false), "{f}");
    assert!(f.message.contains("could not be booked") && f.message.contains("o-3.book.1"), "{f}");
    // A retryable failure stays retryable through the import.
    let results = sagas(&rt, "o-3/look/forward", json!([{"call": "get", "id": "o-3.book.1"}])).await;
    assert_eq!(results[0]["err"]["code"], "store_unavailable");
    assert_eq!(results[0]["err"]["retryable"], true);
}

#[tokio::test]
async fn derived_ids_count_the_calls_and_a_redelivered_command_reattaches() {
    let fake = Fake::new(&[]);
    let rt = runtime(&fake, &["testkit"]).await;
    let key = "o-2/plan#2/forward";
    let calls = json!([
        {"call": "run", "workflow": "hotel", "input": {"city": "Porto"}},
        {"call": "start", "workflow": "audit", "input": {"n": 1}, "id": "audit-o-2"},
        {"call": "start", "workflow": "notify", "input": {"to": "ada"}},
    ]);
    let first = sagas(&rt, key, calls.clone()).await;
    let (one, two) = (call_saga_id(key, 1), call_saga_id(key, 2));
    assert_eq!((one.as_str(), two.as_str()), ("o-2.plan~2.1", "o-2.plan~2.2"));
    assert_eq!(first[0], json!({"ok": {"workflow": "hotel", "input": {"city": "Porto"}}}));
    assert_eq!(first[1], json!({"ok": "audit-o-2"}), "an explicit id is not counted");
    assert_eq!(first[2], json!({"ok": two}));
    assert_eq!(fake.started_ids(), [one.clone(), "audit-o-2".into(), two.clone()]);

    // The same command again (a redelivery): the same ids, so the same sagas, re-attached.
    let again = sagas(&rt, key, calls.clone()).await;
    assert_eq!(again, first);
    assert_eq!(fake.started_ids(), [one.clone(), "audit-o-2".into(), two.clone(), one, "audit-o-2".into(), two]);
    assert_eq!(fake.sagas.lock().unwrap().len(), 3, "nothing started twice");

    // Another step's command counts from 1 again, under its own key.
    let other = sagas(&rt, "o-2/other/forward", json!([{"call": "start", "workflow": "notify", "input": {}}])).await;
    assert_eq!(other, [json!({"ok": "o-2.other.1"})]);
}

#[tokio::test]
async fn a_bad_id_or_text_that_is_not_json_is_refused_for_good() {
    let fake = Fake::new(&[]);
    let rt = runtime(&fake, &["testkit"]).await;
    let key = "o-4/plan/forward";
    let results = sagas(
        &rt,
        key,
        json!([
            {"call": "start", "workflow": "w", "input": {}, "id": "has/slash"},
            {"call": "start", "workflow": "w", "input": {}, "id": ""},
            {"call": "start", "workflow": "w", "input": {}, "id": "x".repeat(201)},
            {"call": "start_text", "workflow": "w", "input": "{not json"},
            {"call": "start", "workflow": "w", "input": {"fine": true}},
        ]),
    )
    .await;
    for r in &results[..3] {
        assert_eq!(r["err"]["code"], "invalid_id", "{r}");
        assert_eq!(r["err"]["retryable"], false, "{r}");
        assert!(r["err"]["message"].as_str().unwrap().contains("is not a saga id"), "{r}");
    }
    assert_eq!(results[3]["err"]["code"], "invalid_input");
    assert_eq!(results[3]["err"]["retryable"], false);
    assert!(results[3]["err"]["message"].as_str().unwrap().contains("not JSON"), "{}", results[3]);
    // The call with text that was not JSON had no id either: it took index 1.
    assert_eq!(results[4], json!({"ok": call_saga_id(key, 2)}));
    assert_eq!(fake.started_ids(), [call_saga_id(key, 2)], "nothing refused reached the orchestrator");
}

#[tokio::test]
async fn signal_and_get_reach_the_orchestrator() {
    let fake = Fake::new(&[]);
    let rt = runtime(&fake, &["testkit"]).await;
    let results = sagas(
        &rt,
        "o-5/plan/forward",
        json!([
            {"call": "start", "workflow": "approval", "input": {}, "id": "approval-5"},
            {"call": "signal", "id": "approval-5", "signal": "approved", "payload": {"by": "ada"}},
            {"call": "get", "id": "approval-5"},
            {"call": "get", "id": "nobody"},
        ]),
    )
    .await;
    assert_eq!(results[1], json!({"ok": null}));
    assert_eq!(results[2], json!({"ok": {"id": "approval-5", "workflow": "approval", "status": "running"}}));
    assert_eq!(results[3]["err"]["code"], "not_found");
    assert_eq!(
        fake.calls()[1..],
        [
            Call::Signal { id: "approval-5".into(), name: "approved".into(), payload: json!({"by": "ada"}) },
            Call::Get { id: "approval-5".into() },
            Call::Get { id: "nobody".into() },
        ]
    );
}

/// A runtime whose CPU deadline (`max_deadline`) is 300 ms.
async fn short_cpu(fake: &Arc<Fake>) -> Runtime {
    let rt = runtime_with(RuntimeConfig { max_deadline: Duration::from_millis(300), ..config() }, &["testkit"]).await;
    rt.set_saga_host(fake.clone());
    rt
}

#[tokio::test]
async fn a_wait_longer_than_the_cpu_deadline_passes_within_the_step_timeout() {
    let fake = Fake::new(&[]);
    let rt = short_cpu(&fake).await;
    fake.hold();
    let opener = {
        let fake = fake.clone();
        tokio::spawn(async move {
            fake.until_waiting(1).await;
            tokio::time::sleep(Duration::from_millis(1_200)).await;
            fake.release();
        })
    };
    let started = Instant::now();
    let cmd = command(
        "testkit.sagas",
        "o-6/plan/forward",
        json!({"calls": [{"call": "run", "workflow": "slow", "input": {}}], "fail": true}),
        10_000,
    );
    let out = rt.try_invoke(&cmd, now_ms()).await.expect("no fault");
    assert_eq!(ok(out)["results"][0]["ok"]["workflow"], "slow");
    assert!(started.elapsed() >= Duration::from_millis(1_200), "it waited for the saga: {:?}", started.elapsed());
    opener.await.unwrap();

    // CPU time is still bounded after a wait: 1.2 s blocked, then 600 ms of spinning, over
    // the 300 ms deadline, with 10 s of step timeout left.
    fake.hold();
    let opener = {
        let fake = fake.clone();
        tokio::spawn(async move {
            fake.until_waiting(1).await;
            tokio::time::sleep(Duration::from_millis(1_200)).await;
            fake.release();
        })
    };
    let started = Instant::now();
    let cmd = command(
        "testkit.sagas",
        "o-7/plan/forward",
        json!({"calls": [{"call": "run", "workflow": "slow", "input": {}}, {"call": "spin", "ms": 600}]}),
        10_000,
    );
    // Had the spin not been stopped it would have ended, and the command passed.
    let fault = rt.try_invoke(&cmd, now_ms()).await.expect_err("stopped");
    assert!(matches!(fault, Fault::Timeout { .. }), "{fault}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1_200) && took < Duration::from_secs(5), "stopped after {took:?}");
    opener.await.unwrap();
}

#[tokio::test]
async fn a_step_timeout_shorter_than_the_wait_ends_the_command_with_timeout() {
    let fake = Fake::new(&[]);
    let rt = short_cpu(&fake).await;
    fake.hold();
    let started = Instant::now();
    let cmd = command(
        "testkit.sagas",
        "o-8/plan/forward",
        json!({"calls": [{"call": "run", "workflow": "never", "input": {}}]}),
        700,
    );
    let f = err(rt.invoke(&cmd, now_ms()).await);
    let took = started.elapsed();
    assert_eq!((f.code.as_str(), f.retryable), ("timeout", true), "{f}");
    assert!(f.message.contains("700ms"), "the message names the step's timeout: {f}");
    assert!(took >= Duration::from_millis(700) && took < Duration::from_secs(3), "stopped after {took:?}");
    assert_eq!(fake.waiting(), 0, "the wait was dropped with the run");

    // The command's deadline bounds the wait too, whatever its timeout says.
    let mut cmd = command(
        "testkit.sagas",
        "o-8/again/forward",
        json!({"calls": [{"call": "run", "workflow": "never", "input": {}}]}),
        60_000,
    );
    let now = now_ms();
    cmd.deadline_ms = now + 500;
    let started = Instant::now();
    assert_eq!(err(rt.invoke(&cmd, now).await).code, "timeout");
    assert!(started.elapsed() < Duration::from_secs(3), "stopped after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_blocked_in_run_saga_hold_no_thread() {
    const BLOCKED: usize = 12;
    let fake = Fake::new(&[("trip", json!({"booked": true}))]);
    let rt = Arc::new(runtime(&fake, &["concierge", "testkit"]).await);
    fake.hold();
    let mut blocked = Vec::new();
    for i in 0..BLOCKED {
        let rt = rt.clone();
        blocked.push(tokio::spawn(async move {
            let request = json!({"traveller": format!("guest {i}"), "from": "Oslo", "to": "Rome"});
            rt.invoke(&command("concierge.book", &format!("t-{i}/book/forward"), request, 30_000), now_ms()).await
        }));
    }
    fake.until_waiting(BLOCKED).await;

    // Six times as many waiting plugins as threads, and other commands still run at once.
    let started = Instant::now();
    for n in 0..20 {
        let cmd = command("testkit.echo", &format!("e-{n}/echo/forward"), json!({"n": n}), 5_000);
        assert_eq!(ok(rt.invoke(&cmd, now_ms()).await), json!({"n": n}));
    }
    assert!(started.elapsed() < Duration::from_secs(10), "echoes took {:?}", started.elapsed());
    assert_eq!(fake.waiting(), BLOCKED, "the others are still waiting");
    assert!(blocked.iter().all(|b| !b.is_finished()));

    fake.release();
    for (i, b) in blocked.into_iter().enumerate() {
        let out = ok(b.await.unwrap());
        assert_eq!(out["trip"], json!({"booked": true}));
        assert_eq!(out["summary"], format!("guest {i} travels from Oslo to Rome for 2 nights: booked."));
    }
}

#[tokio::test]
async fn without_an_orchestrator_every_call_fails_with_no_orchestrator() {
    let rt = runtime_with(config(), &["concierge", "testkit"]).await;
    let results = sagas(
        &rt,
        "o-11/plan/forward",
        json!([
            {"call": "start", "workflow": "w", "input": {}},
            {"call": "run", "workflow": "w", "input": {}},
            {"call": "signal", "id": "x", "signal": "s", "payload": {}},
            {"call": "get", "id": "x"},
        ]),
    )
    .await;
    for r in &results {
        assert_eq!(r["err"]["code"], NO_ORCHESTRATOR, "{r}");
        assert_eq!(r["err"]["retryable"], false, "{r}");
        assert!(r["err"]["message"].as_str().unwrap().contains("--role all"), "the message names the fix: {r}");
    }
    let cmd = command(
        "concierge.book",
        "o-11/book/forward",
        json!({"traveller": "Ada", "from": "Rome", "to": "Oslo"}),
        5_000,
    );
    assert_eq!(err(rt.invoke(&cmd, now_ms()).await).code, NO_ORCHESTRATOR);

    // Set later, on a runtime already shared: the calls then reach it.
    let fake = Fake::new(&[]);
    rt.set_saga_host(fake.clone());
    let results = sagas(&rt, "o-11/plan/forward", json!([{"call": "start", "workflow": "w", "input": {}}])).await;
    assert_eq!(results, [json!({"ok": call_saga_id("o-11/plan/forward", 1)})]);
    // Once: a second host is ignored.
    rt.set_saga_host(Fake::new(&[]));
    sagas(&rt, "o-11/plan/forward", json!([{"call": "get", "id": "o-11.plan.1"}])).await;
    assert_eq!(fake.calls().len(), 2);
}
