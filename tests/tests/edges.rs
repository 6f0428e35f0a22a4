//! Correct at the edges: a command that reaches a worker after its deadline is never run (and
//! says so), a step whose attempt timed out is undone with the rest, a late result is kept in
//! the history, one plugin's load cannot starve another's, and concurrent starts with one id
//! create one saga with one 201. Hosts run in this process (`baton::serve`), embedded and on
//! the test Redis.

use std::time::{Duration, Instant};

use baton::node::Role;
use baton_tests::server::{Api, InProcess, config, redis_config};
use serde_json::{Value, json};

/// A step that may take effect, undone by another plugin: `touch` (testkit) is compensated
/// by `notification.send`, which gets the step's input since the step never answered.
const TOUCH: &str = r#"
name = "touch"
version = 1

[[step]]
name = "touch"
command = "testkit.echo"
compensate = "notification.send"
input = "{ 'customer': 'ada', 'message': 'undo the touch' }"
timeout = "400ms"
retry = { attempts = 1 }
"#;

/// Holds testkit's only slot for 1.5 s.
const HOLD: &str = r#"
name = "hold"
version = 1

[[step]]
name = "spin"
command = "testkit.loop"
timeout = "1500ms"
retry = { attempts = 1 }
"#;

/// `touch`, whose timeout is caught; the saga then waits for `go` and fails, so that it
/// compensates once the test says so.
const TOUCH_THEN_FAIL: &str = r#"
name = "touch_then_fail"
version = 1

[[step]]
name = "touch"
command = "testkit.echo"
compensate = "notification.send"
input = "{ 'customer': 'ada', 'message': 'undo the touch' }"
timeout = "500ms"
retry = { attempts = 1 }
catch = [{ errors = ["timeout"], next = "hold" }]

[[step]]
name = "hold"
wait = "go"

[[step]]
name = "give_up"
fail = { code = "given_up", message = "the test said so" }
"#;

/// Loops until its timeout: a plugin that never answers.
const LOOP: &str = r#"
name = "spin"
version = 1

[[step]]
name = "spin"
command = "testkit.loop"
timeout = "3s"
retry = { attempts = 1 }
"#;

fn workflows(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(format!("{name}.toml")), text).unwrap();
    }
    dir
}

async fn history(api: &Api, id: &str) -> Vec<Value> {
    let (code, h) = api.get(&format!("/v1/sagas/{id}/history")).await;
    assert_eq!(code, 200, "{h}");
    h.as_array().cloned().unwrap_or_default()
}

/// Poll the history of `id` until an entry satisfies `pred`; panics after `limit`.
async fn history_until(api: &Api, id: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let h = history(api, id).await;
        if h.iter().any(&pred) {
            return h;
        }
        assert!(Instant::now() < deadline, "no such history entry for {id} within {limit:?}: {h:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn compensated_with(history: &[Value], step: &str, command: &str) -> bool {
    history.iter().any(|e| {
        e["event"] == "dispatched" && e["step"] == step && e["phase"] == "compensate" && e["command"] == command
    }) && history.iter().any(|e| e["event"] == "succeeded" && e["step"] == step && e["phase"] == "compensate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_queued_past_its_deadline_is_never_run_and_its_step_is_undone() {
    let dir = workflows(&[("touch", TOUCH), ("hold", HOLD)]);
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.workflows = dir.path().to_owned();
    // One slot for testkit: `touch` queues behind `hold`'s loop.
    cfg.worker.per_plugin.insert("testkit".into(), 1);
    let host = InProcess::start(cfg).await;

    assert_eq!(host.start_saga("hold", "hold-1", &json!({})).await.unwrap().0, 201);
    // The loop takes the slot as soon as it is dispatched; give it that moment.
    history_until(&host, "hold-1", Duration::from_secs(10), |e| e["event"] == "dispatched").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(host.start_saga("touch", "touch-1", &json!({})).await.unwrap().0, 201);

    let saga = host.wait_all(&["touch-1".to_owned()], Duration::from_secs(20)).await.remove(0);
    assert_eq!(saga["status"], "compensated", "{saga:#}");
    assert_eq!(saga["error"]["code"], "timeout", "{saga:#}");
    let touch = baton_tests::step(&saga, "touch");
    assert_eq!(touch["uncertain"], true, "{saga:#}");
    // Undone although it never answered: by another plugin, while testkit's slot was held.
    let h = history(&host, "touch-1").await;
    assert!(compensated_with(&h, "touch", "notification.send"), "{h:#?}");
    assert_eq!(touch["compensation"]["input"], json!({"customer": "ada", "message": "undo the touch"}));

    // When the slot frees, the queued command is refused, not run, and the refusal is kept.
    let h = history_until(&host, "touch-1", Duration::from_secs(20), |e| e["event"] == "late_result").await;
    let late = h.iter().find(|e| e["event"] == "late_result").unwrap();
    assert_eq!(late["step"], "touch");
    assert_eq!(late["outcome"], "expired", "{late:#}");
    let message = late["message"].as_str().unwrap();
    assert!(message.contains("free slot of plugin testkit"), "{message}");
    assert!(message.contains("not started"), "{message}");
    host.stop().await;

    // Not recorded under the idempotency key: a redelivery of that attempt is past the same
    // deadline, and a later attempt in time must have its own outcome recorded.
    let store = baton::store::embedded::EmbeddedStore::open(data.path()).unwrap();
    let recorded = baton::store::SagaStore::outcome(&store, "testkit.echo", "touch-1/touch/forward").await.unwrap();
    assert_eq!(recorded, None, "an expired refusal is not recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_host_started_after_the_deadline_refuses_the_command_and_the_step_is_undone() {
    let prefix = baton_tests::unique_prefix("edges_late_worker");
    let _cleanup = baton_tests::PrefixGuard(prefix.clone());
    let dir = workflows(&[("touch_then_fail", TOUCH_THEN_FAIL)]);
    let mut cfg = redis_config(&prefix);
    cfg.workflows = dir.path().to_owned();
    cfg.role = Role::Orchestrator;
    let orchestrator = InProcess::start(cfg.clone()).await;

    assert_eq!(orchestrator.start_saga("touch_then_fail", "ttf-1", &json!({})).await.unwrap().0, 201);
    // No worker anywhere: the attempt times out, the catch takes it, the saga waits for `go`.
    history_until(&orchestrator, "ttf-1", Duration::from_secs(10), |e| e["event"] == "caught").await;

    // A worker host comes up after the deadline and finds the command on its stream.
    cfg.role = Role::Worker;
    let worker = InProcess::start(cfg).await;
    let h = history_until(&orchestrator, "ttf-1", Duration::from_secs(20), |e| e["event"] == "late_result").await;
    let late = h.iter().find(|e| e["event"] == "late_result").unwrap();
    assert_eq!((&late["step"], &late["outcome"]), (&json!("touch"), &json!("expired")), "{late:#}");

    // The saga compensates: the timed-out step is undone with the rest.
    let (code, _) = orchestrator.post_raw("/v1/sagas/ttf-1/signals/go", "{}").await;
    assert_eq!(code, 202);
    let saga = orchestrator.wait_all(&["ttf-1".to_owned()], Duration::from_secs(20)).await.remove(0);
    assert_eq!(saga["status"], "compensated", "{saga:#}");
    assert_eq!(saga["error"]["code"], "given_up", "{saga:#}");
    let h = history(&orchestrator, "ttf-1").await;
    assert!(compensated_with(&h, "touch", "notification.send"), "{h:#?}");
    worker.stop().await;
    orchestrator.stop().await;

    let store = baton::store::redis::RedisStore::connect(&baton_tests::redis_url(), &prefix).await.unwrap();
    let recorded = baton::store::SagaStore::outcome(&store, "testkit.echo", "ttf-1/touch/forward").await.unwrap();
    assert_eq!(recorded, None, "an expired refusal is not recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_plugins_do_not_starve_the_others_or_the_api() {
    let order = std::fs::read_to_string(baton_tests::root().join("workflows/order.toml")).unwrap();
    let dir = workflows(&[("spin", LOOP), ("order", &order)]);
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.workflows = dir.path().to_owned();
    let host = InProcess::start(cfg).await;
    let input: Value =
        serde_json::from_str(&std::fs::read_to_string(baton_tests::root().join("workflows/order.input.json")).unwrap())
            .unwrap();

    // The same 20 orders on an idle host first, for comparison.
    let (mut idle_took, mut idle_starts) = (Vec::new(), Vec::new());
    for i in 0..20 {
        let id = format!("idle-{i}");
        let t = Instant::now();
        assert_eq!(host.start_saga("order", &id, &input).await.unwrap().0, 201);
        idle_starts.push(t.elapsed());
        let (code, saga) = host.get(&format!("/v1/sagas/{id}?wait=30")).await;
        idle_took.push(t.elapsed());
        assert_eq!((code, saga["status"].as_str()), (200, Some("completed")), "{saga:#}");
    }
    idle_took.sort();
    idle_starts.sort();
    eprintln!(
        "orders on an idle host: p50 {:?}, max {:?}; POST /v1/sagas p50 {:?}, max {:?}",
        idle_took[10], idle_took[19], idle_starts[10], idle_starts[19]
    );

    let mut starts = Vec::new();
    let mut loops = Vec::new();
    for i in 0..64 {
        let id = format!("spin-{i}");
        let t = Instant::now();
        assert_eq!(host.start_saga("spin", &id, &json!({})).await.unwrap().0, 201);
        starts.push(t.elapsed());
        loops.push(id);
    }
    // The loops now hold every slot testkit has; orders need other plugins only.
    let mut orders = Vec::new();
    let mut took = Vec::new();
    for i in 0..20 {
        let id = format!("order-{i}");
        let t = Instant::now();
        assert_eq!(host.start_saga("order", &id, &input).await.unwrap().0, 201);
        starts.push(t.elapsed());
        let (code, saga) = host.get(&format!("/v1/sagas/{id}?wait=30")).await;
        took.push(t.elapsed());
        assert_eq!(code, 200);
        assert_eq!(saga["status"], "completed", "an order starved behind the loops: {saga:#}");
        orders.push(id);
    }
    took.sort();
    starts.sort();
    let p99 = starts[starts.len() * 99 / 100];
    eprintln!(
        "orders beside 64 loops: p50 {:?}, max {:?}; POST /v1/sagas p50 {:?}, p99 {p99:?}",
        took[took.len() / 2],
        took[took.len() - 1],
        starts[starts.len() / 2]
    );
    // Behaviour, not speed: before pools of their own, these orders waited about 19 s for a
    // slot and timed out. A second is far beyond any scheduling jitter.
    assert!(took[took.len() / 2] < Duration::from_secs(1), "orders took {took:?}");
    let spun = host.wait_all(&loops, Duration::from_secs(60)).await;
    // 16 loops ran to their timeout; the others waited for testkit's slots past their
    // deadline and were never started (`expired`, or `timeout` when the refusal came late).
    let codes: Vec<&str> = spun.iter().map(|s| s["error"]["code"].as_str().unwrap_or("")).collect();
    assert!(codes.iter().all(|c| *c == "timeout" || *c == "expired"), "{codes:?}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_starts_with_one_id_answer_201_once() {
    let data = tempfile::tempdir().unwrap();
    let host = InProcess::start(config(data.path())).await;
    let input: Value =
        serde_json::from_str(&std::fs::read_to_string(baton_tests::root().join("workflows/order.input.json")).unwrap())
            .unwrap();
    for round in 0..3 {
        let id = format!("same-{round}");
        let calls = (0..20).map(|_| host.start_saga("order", &id, &input));
        let answers: Vec<_> = futures_util::future::join_all(calls).await.into_iter().map(|a| a.unwrap()).collect();
        let created = answers.iter().filter(|(code, _)| *code == 201).count();
        let existing = answers.iter().filter(|(code, _)| *code == 200).count();
        assert_eq!((created, existing), (1, 19), "{:?}", answers.iter().map(|a| a.0).collect::<Vec<_>>());
        assert!(answers.iter().all(|(_, saga)| saga["id"] == id.as_str()));
    }
    host.stop().await;
}

/// Grows its memory until the limit stops it.
const BOMB: &str = r#"
name = "bomb"
version = 1

[[step]]
name = "bomb"
command = "testkit.oom"
timeout = "60s"
retry = { attempts = 1 }
"#;

/// `VmHWM` (peak) and `VmRSS` (now) of a process, in MiB.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in {status}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (kib("VmHWM:") >> 10, kib("VmRSS:") >> 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bombs_wait_for_room_in_the_budget_and_give_their_memory_back() {
    const BUDGET_MB: u64 = 256;
    // The host itself: code, the compiled plugins, the store, buffers. Measured at about
    // 60 MiB idle here; the rest is headroom for allocator slack.
    const OVERHEAD_MB: u64 = 160;
    let dir = workflows(&[("bomb", BOMB)]);
    let data = tempfile::tempdir().unwrap();
    let budget = BUDGET_MB.to_string();
    let server = baton_tests::server::Server::start(&[
        "--workflows",
        dir.path().to_str().unwrap(),
        "--data",
        data.path().to_str().unwrap(),
        "--memory-limit-mb",
        "64",
        "--memory-budget-mb",
        &budget,
        "--plugin-concurrency",
        "testkit=64",
    ])
    .await;
    let (_, idle) = memory_of(server.pid());
    let ids: Vec<String> = (0..64).map(|i| format!("bomb-{i}")).collect();
    for id in &ids {
        assert_eq!(server.start_saga("bomb", id, &json!({})).await.unwrap().0, 201);
    }
    let sagas = server.wait_all(&ids, Duration::from_secs(120)).await;
    // Each ran to its own limit (64 at once would have needed 4 GiB): four at a time.
    for saga in &sagas {
        assert_eq!(baton_tests::step(saga, "bomb")["error"]["code"], "out_of_memory", "{saga:#}");
    }
    let (peak, after) = memory_of(server.pid());
    eprintln!("memory bombs: idle {idle} MiB, peak {peak} MiB, after {after} MiB (budget {BUDGET_MB} MiB)");
    assert!(
        peak <= BUDGET_MB + OVERHEAD_MB,
        "peak RSS {peak} MiB is over the budget {BUDGET_MB} MiB + {OVERHEAD_MB} MiB"
    );
    assert!(after <= idle + 64, "RSS stayed at {after} MiB after the bombs (idle: {idle} MiB)");
    server.kill();
}

/// `touch` with a queue timeout: it may wait 300 ms for a slot, then run for 5 s.
const QUEUED: &str = r#"
name = "queued"
version = 1

[[step]]
name = "touch"
command = "testkit.echo"
input = "{ 'n': 1 }"
queue_timeout = "300ms"
timeout = "5s"
retry = { attempts = 1 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_timeout_fails_an_attempt_that_waited_too_long_for_a_slot_and_says_so() {
    let dir = workflows(&[("queued", QUEUED), ("hold", HOLD)]);
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.workflows = dir.path().to_owned();
    cfg.worker.per_plugin.insert("testkit".into(), 1);
    let host = InProcess::start(cfg).await;

    // Unloaded, the step runs at once.
    assert_eq!(host.start_saga("queued", "q-free", &json!({})).await.unwrap().0, 201);
    let saga = host.wait_all(&["q-free".to_owned()], Duration::from_secs(10)).await.remove(0);
    assert_eq!(saga["status"], "completed", "{saga:#}");

    // Behind a loop that holds testkit's only slot for 1.5 s, it gives up after its queue
    // timeout, not after its 5 s timeout, and says why.
    assert_eq!(host.start_saga("hold", "hold-q", &json!({})).await.unwrap().0, 201);
    history_until(&host, "hold-q", Duration::from_secs(10), |e| e["event"] == "dispatched").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    assert_eq!(host.start_saga("queued", "q-busy", &json!({})).await.unwrap().0, 201);
    let saga = host.wait_all(&["q-busy".to_owned()], Duration::from_secs(20)).await.remove(0);
    let took = t.elapsed();
    assert_eq!(saga["status"], "compensated", "{saga:#}");
    let error = &baton_tests::step(&saga, "touch")["error"];
    let message = error["message"].as_str().unwrap();
    assert!(
        (error["code"] == "expired" && message.contains("free slot of plugin testkit"))
            || (error["code"] == "timeout" && message.contains("queue_timeout of 300ms plus its timeout of 5s")),
        "{error:#}"
    );
    assert!(took < Duration::from_secs(5), "it waited for the slot, not for its timeout: {took:?}");
    host.stop().await;
}
