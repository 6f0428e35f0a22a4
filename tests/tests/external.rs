//! Workers outside the sandbox: a workflow declares commands `external`, and a service that
//! speaks the bus protocol (docs/PROTOCOL.md) serves them. Driven through the real `baton`
//! binary on the test Redis, each test under its own prefix, with the Python library
//! (`guest-sdk/python`) as the outside worker: the example (`workflows/order_fraud.toml` with
//! `guest-sdk/python/examples/fraud.py`) and a probe service written here, which logs every
//! run of its handler to a file so a test can count them.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use baton_tests::python::{self, Worker};
use baton_tests::server::{InProcess, Server};
use baton_tests::{PrefixGuard, baton, redis_url, run, unique_prefix};
use serde_json::{Value, json};

/// The probe service: `probe.run` notes each start and end of a run (with the idempotency
/// key, the attempt and its pid) in `$PROBE_LOG`, sleeps `sleep` seconds, and answers, or
/// fails for good (`fatal`), or fails with `retryable` set before attempt `busy_before`, or
/// answers what its output_schema refuses (`bad_output`).
const PROBE: &str = r#"
import json, os, time
from baton_worker import Failure, command

def note(ctx, event):
    with open(os.environ["PROBE_LOG"], "a") as f:
        f.write(json.dumps({"key": ctx.idempotency_key, "attempt": ctx.attempt, "event": event, "pid": os.getpid()}) + "\n")

@command("probe.run")
def run(req, ctx):
    note(ctx, "start")
    time.sleep(req.get("sleep", 0))
    note(ctx, "end")
    if req.get("fatal"):
        raise Failure.fatal("probe_refused", "asked to refuse")
    if ctx.attempt < req.get("busy_before", 0):
        raise Failure.retryable("probe_busy", "busy, try later")
    if req.get("bad_output"):
        return {"ran": "many"}
    return {"ran": 1, "n": req["n"], "pid": os.getpid()}
"#;

/// Two workflows of the probe: `probe` (a long timeout, no retry) and `probe_short` (a
/// one-second timeout, no retry, nothing to compensate).
const PROBE_WF: &str = r#"
name = "probe"

[commands."probe.run"]
external = true
input_schema = { type = "object", required = ["n"], properties = { n = { type = "integer" } } }
output_schema = { type = "object", required = ["ran"], properties = { ran = { type = "integer" } } }

[[step]]
name = "work"
command = "probe.run"
timeout = "30s"
retry = { attempts = 1 }
"#;

const PROBE_SHORT_WF: &str = r#"
name = "probe_short"

[commands."probe.run"]
external = true

[[step]]
name = "work"
command = "probe.run"
timeout = "1s"
retry = { attempts = 1 }
"#;

/// The probe with a retry policy of three attempts.
const PROBE_RETRY_WF: &str = r#"
name = "probe_retry"

[commands."probe.run"]
external = true

[[step]]
name = "work"
command = "probe.run"
timeout = "30s"
retry = { attempts = 3, backoff = "100ms" }
"#;

/// A directory with the probe's workflows, its service and its log.
struct Probe {
    dir: tempfile::TempDir,
}

impl Probe {
    fn new() -> Probe {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("workflows")).unwrap();
        std::fs::write(dir.path().join("workflows/probe.toml"), PROBE_WF).unwrap();
        std::fs::write(dir.path().join("workflows/probe_short.toml"), PROBE_SHORT_WF).unwrap();
        std::fs::write(dir.path().join("workflows/probe_retry.toml"), PROBE_RETRY_WF).unwrap();
        std::fs::write(dir.path().join("probe.py"), PROBE).unwrap();
        Probe { dir }
    }

    fn workflows(&self) -> String {
        self.dir.path().join("workflows").to_str().unwrap().to_owned()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("runs.log")
    }

    /// A worker of the probe service.
    fn worker(&self, prefix: &str, args: &[&str]) -> Worker {
        let log = self.log_path();
        Worker::start(
            &self.dir.path().join("probe.py"),
            &redis_url(),
            prefix,
            args,
            &[("PROBE_LOG", log.to_str().unwrap())],
        )
    }

    /// The handler's runs so far: (idempotency key, attempt, start or end, pid).
    fn runs(&self) -> Vec<Value> {
        std::fs::read_to_string(self.log_path())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn count(&self, key: &str, event: &str) -> usize {
        self.runs().iter().filter(|r| r["key"] == key && r["event"] == event).count()
    }

    /// Wait until the handler has logged `event` for `key` `n` times.
    fn wait_for(&self, key: &str, event: &str, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.count(key, event) < n {
            assert!(
                Instant::now() < deadline,
                "the probe did not log {event} of {key} {n} time(s) within {limit:?}: {:?}",
                self.runs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `baton serve` on the test Redis under `prefix`, with `args`.
async fn serve(prefix: &str, args: &[&str]) -> Server {
    let url = redis_url();
    let mut all = vec!["--redis", url.as_str(), "--prefix", prefix];
    all.extend_from_slice(args);
    Server::start(&all).await
}

async fn history(server: &Server, id: &str) -> Vec<Value> {
    let (code, h) = server.get(&format!("/v1/sagas/{id}/history")).await;
    assert_eq!(code, 200, "{h}");
    h.as_array().unwrap().clone()
}

/// Wait until the saga's history has an entry `pred` takes; the history then.
async fn history_until(server: &Server, id: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + limit;
    loop {
        let h = history(server, id).await;
        if h.iter().any(&pred) {
            return h;
        }
        assert!(Instant::now() < deadline, "{id}: no such history entry within {limit:?}: {h:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A command of the probe for saga `saga`, in time, as Baton's encoder writes it.
fn probe_command(saga: &str, payload: Value) -> String {
    let key = format!("{saga}/work/forward");
    baton::bus::cloudevents::encode_command(&baton::protocol::CommandMessage {
        name: "probe.run".into(),
        payload,
        meta: baton::protocol::Meta {
            transaction_id: saga.into(),
            correlation_id: format!("{key}/1"),
            idempotency_key: key,
            step: "work".into(),
            attempt: 1,
            traceparent: None,
        },
        timeout_ms: 30_000,
        deadline_ms: baton::orchestrator::Clock::now_ms(&baton::orchestrator::SystemClock) + 60_000,
        start_by_ms: 0,
    })
}

/// `XADD` an event to `stream` of the Redis at `url`.
fn xadd(url: &str, stream: &str, event: &str) {
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: String = redis::cmd("XADD").arg(stream).arg("*").arg("event").arg(event).query(&mut con).unwrap();
}

/// The result for `correlation_id` on `<prefix>:results` of the Redis at `url`, decoded by
/// Baton's decoder, once it is there.
fn wait_result(url: &str, prefix: &str, correlation_id: &str, limit: Duration) -> baton::protocol::ResultMessage {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(mut con) = redis::Client::open(url).unwrap().get_connection() {
            let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(format!("{prefix}:results"))
                .arg("-")
                .arg("+")
                .query(&mut con)
                .unwrap_or_default();
            for entry in entries.ids {
                let text: String = entry.get("event").expect("an event field");
                let r = baton::bus::cloudevents::decode_result(&text).expect("Baton reads the result");
                if r.meta.correlation_id == correlation_id {
                    return r;
                }
            }
        }
        assert!(Instant::now() < deadline, "no result for {correlation_id} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn order_input() -> Value {
    serde_json::from_str(&std::fs::read_to_string(baton_tests::root().join("workflows/order.input.json")).unwrap())
        .unwrap()
}

#[test]
fn the_python_library_passes_its_own_tests() {
    let out = python::command(&python::sdk_dir())
        .args(["-W", "error::ResourceWarning", "-m", "unittest", "discover", "-s", "tests", "-v"])
        .output()
        .expect("run python -m unittest");
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the Python library's unit tests failed:\n{text}");
    assert!(text.contains("OK") && !text.contains("Ran 0 tests"), "{text}");
}

#[test]
fn check_and_plugins_name_the_external_commands() {
    let ran = run(baton().arg("check"));
    assert_eq!(ran.code, 0, "{ran}");
    assert!(ran.stdout.starts_with("ok: "), "{ran}");
    assert!(ran.stdout.contains("1 external command(s), served outside this host"), "{ran}");
    assert!(ran.stdout.contains("fraud.score") && ran.stdout.contains("declared by order_fraud"), "{ran}");

    let ran = run(baton().arg("plugins"));
    assert_eq!(ran.code, 0, "{ran}");
    let line = ran.stdout.lines().find(|l| l.contains("fraud.score")).unwrap_or_else(|| panic!("{ran}"));
    assert!(line.contains("workflow: order_fraud") && line.contains("\"score\""), "{line}");
    assert!(ran.stdout.contains("external (declared by workflows in"), "{ran}");

    let ran = run(baton().args(["plugins", "--json"]));
    assert_eq!(ran.code, 0, "{ran}");
    let list = ran.json();
    let external = list.as_array().unwrap().iter().find(|p| p["external"] == true).expect("an external entry");
    let fraud = &external["commands"][0];
    assert_eq!((&fraud["name"], &fraud["workflow"]), (&json!("fraud.score"), &json!("order_fraud")));
    let output: Value = serde_json::from_str(fraud["output_schema"].as_str().unwrap()).unwrap();
    assert_eq!(output["required"], json!(["order_id", "score"]), "read from workflows/fraud_score.schema.json");
}

#[test]
fn a_plugin_and_a_declaration_of_one_command_is_a_definition_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("clash.toml"),
        "name = \"clash\"\n[commands.\"payment.charge\"]\nexternal = true\n[[step]]\nname = \"a\"\ncommand = \"payment.charge\"\n",
    )
    .unwrap();
    let ran = run(baton().env("BATON_WORKFLOWS", dir.path()).arg("check"));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(
        ran.stderr.contains(
            "clash.toml:2: command \"payment.charge\" is declared external = true, but a loaded plugin handles it too"
        ),
        "{ran}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mode_refuses_a_saga_that_needs_an_outside_worker() {
    // `baton run`: exit 1, the command named, the way out said.
    let ran = run(baton().args(["run", "order_fraud", "--input", "@workflows/order.input.json"]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("workflow \"order_fraud\" sends fraud.score, declared external"), "{ran}");
    assert!(ran.stderr.contains("baton serve --redis URL"), "{ran}");
    assert!(ran.stdout.is_empty(), "{ran}");
    // The demo next to it still runs in one process.
    let ran = run(baton().args(["run", "order", "--input", "@workflows/order.input.json"]));
    assert_eq!(ran.code, 0, "{ran}");

    // An embedded `baton serve`: 400, and nothing started.
    let data = tempfile::tempdir().unwrap();
    let host = InProcess::start(baton_tests::server::config(data.path())).await;
    let (code, body) = host.start_saga("order_fraud", "of-1", &order_input()).await.unwrap();
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"]["code"], "external_unreachable", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("fraud.score"), "{body}");
    let (code, _) = host.get("/v1/sagas/of-1").await;
    assert_eq!(code, 404);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_runs_on_redis_with_the_python_service() {
    let prefix = unique_prefix("external_example");
    let _cleanup = PrefixGuard(prefix.clone());
    let server = serve(&prefix, &[]).await;
    let fraud = python::sdk_dir().join("examples/fraud.py");
    let worker = Worker::start(&fraud, &redis_url(), &prefix, &[], &[]);

    // A clean order: the service scores it 21 / 10000, and the saga's output says so.
    let (code, saga) = server.start_saga("order_fraud", "of-ok", &order_input()).await.unwrap();
    assert_eq!(code, 201, "{saga}");
    // A blocked customer: the service fails the step for good (Failure.fatal), and the
    // reservation is released.
    let mut blocked = order_input();
    blocked["order_id"] = json!("o-blocked");
    blocked["customer"] = json!("mallory");
    assert_eq!(server.start_saga("order_fraud", "of-blocked", &blocked).await.unwrap().0, 201);
    // A big order: scored 0.9, refused by the workflow, the charge never made.
    let mut big = order_input();
    big["order_id"] = json!("o-big");
    big["items"] = json!([{"sku": "A-1", "qty": 1, "price": 9000}]);
    assert_eq!(server.start_saga("order_fraud", "of-big", &big).await.unwrap().0, 201);
    let ids = ["of-ok".to_owned(), "of-blocked".to_owned(), "of-big".to_owned()];
    let sagas = server.wait_all(&ids, Duration::from_secs(60)).await;

    let ok = &sagas[0];
    assert_eq!(ok["status"], "completed", "{ok:#}");
    assert_eq!(ok["output"]["fraud_score"], json!(0.0021), "{ok:#}");
    assert_eq!(ok["output"]["payment_id"], "pay-o-1", "{ok:#}");
    let check = baton_tests::step(ok, "fraud_check");
    assert_eq!(check["output"], json!({"order_id": "o-1", "score": 0.0021}));
    assert_eq!(check["input"], json!({"order_id": "o-1", "customer": "ada", "items": order_input()["items"]}));

    let blocked = &sagas[1];
    assert_eq!(blocked["status"], "compensated", "{blocked:#}");
    assert_eq!(blocked["error"]["code"], "customer_blocked", "{blocked:#}");
    assert_eq!(blocked["error"]["message"], "customer mallory is on the block list");
    let check = baton_tests::step(blocked, "fraud_check");
    assert_eq!((&check["status"], &check["attempts"]), (&json!("failed"), &json!(1)), "not retried: {check:#}");
    assert_eq!(baton_tests::step(blocked, "reserve")["compensation"]["status"], "completed", "{blocked:#}");

    let big = &sagas[2];
    assert_eq!(big["status"], "compensated", "{big:#}");
    assert_eq!(big["error"]["code"], "fraud_suspected", "{big:#}");
    assert_eq!(baton_tests::step(big, "fraud_check")["output"]["score"], json!(0.9));
    assert!(big["steps"].as_array().unwrap().iter().all(|s| s["name"] != "charge"), "{big:#}");
    server.check_histories(&ids).await;

    // SIGTERM with nothing in hand: a clean stop.
    let status = worker.terminate(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(server.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_is_answered_from_the_record_and_the_schemas_are_checked() {
    let prefix = unique_prefix("external_duplicate");
    let _cleanup = PrefixGuard(prefix.clone());
    let probe = Probe::new();
    let server = serve(&prefix, &["--workflows", &probe.workflows()]).await;
    let worker = probe.worker(&prefix, &[]);

    let (code, saga) = server.start_saga("probe", "p-1", &json!({"n": 1})).await.unwrap();
    assert_eq!(code, 201, "{saga}");
    let saga = server.wait_all(&["p-1".to_owned()], Duration::from_secs(30)).await.remove(0);
    assert_eq!(saga["status"], "completed", "{saga:#}");
    let key = "p-1/work/forward";
    assert_eq!(probe.count(key, "start"), 1);

    // The same command delivered again (as a redelivery would), encoded by Baton's own
    // encoder: answered from the record, the handler not run.
    xadd(&redis_url(), &format!("{prefix}:cmd:probe.run"), &probe_command("p-1", json!({"n": 1})));
    let h = history_until(&server, "p-1", Duration::from_secs(20), |e| e["event"] == "late_result").await;
    let late = h.iter().find(|e| e["event"] == "late_result").unwrap();
    assert_eq!((&late["step"], &late["outcome"]), (&json!("work"), &json!("ok")), "{late:#}");
    worker.wait_for_log("duplicate, answered from the record", Duration::from_secs(5));
    assert_eq!(probe.count(key, "start"), 1, "the handler ran once: {:?}", probe.runs());

    // A payload the declared input_schema refuses is never sent; a result the output_schema
    // refuses fails the step. Neither is retried.
    assert_eq!(server.start_saga("probe", "p-bad-in", &json!({"n": "one"})).await.unwrap().0, 201);
    assert_eq!(server.start_saga("probe", "p-bad-out", &json!({"n": 2, "bad_output": true})).await.unwrap().0, 201);
    let sagas = server.wait_all(&["p-bad-in".to_owned(), "p-bad-out".to_owned()], Duration::from_secs(30)).await;
    assert_eq!(sagas[0]["status"], "compensated", "{:#}", sagas[0]);
    assert_eq!(sagas[0]["error"]["code"], "invalid_input");
    let message = sagas[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("/n: \"one\" is not of type \"integer\"") && message.contains("not sent"), "{message}");
    assert_eq!(probe.count("p-bad-in/work/forward", "start"), 0, "never sent");
    assert_eq!(sagas[1]["status"], "compensated", "{:#}", sagas[1]);
    assert_eq!(sagas[1]["error"]["code"], "invalid_output");
    assert!(sagas[1]["error"]["message"].as_str().unwrap().contains("/ran: \"many\" is not of type \"integer\""));
    assert_eq!(baton_tests::step(&sagas[1], "work")["attempts"], 1);
    drop(worker);
}

/// An outside worker's failure with `retryable` set is retried by the saga's policy (a new
/// attempt, after the backoff), and one without it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_failure_from_an_outside_worker_is_retried_by_the_policy() {
    let prefix = unique_prefix("external_retryable");
    let _cleanup = PrefixGuard(prefix.clone());
    let probe = Probe::new();
    let server = serve(&prefix, &["--workflows", &probe.workflows()]).await;
    let _worker = probe.worker(&prefix, &[]);

    assert_eq!(server.start_saga("probe_retry", "r-1", &json!({"n": 1, "busy_before": 3})).await.unwrap().0, 201);
    assert_eq!(server.start_saga("probe_retry", "r-2", &json!({"n": 2, "busy_before": 9})).await.unwrap().0, 201);
    assert_eq!(server.start_saga("probe_retry", "r-3", &json!({"n": 3, "fatal": true})).await.unwrap().0, 201);
    let ids = ["r-1", "r-2", "r-3"].map(str::to_owned);
    let sagas = server.wait_all(&ids, Duration::from_secs(30)).await;

    // Busy twice, then done on the third attempt.
    assert_eq!(sagas[0]["status"], "completed", "{:#}", sagas[0]);
    assert_eq!(baton_tests::step(&sagas[0], "work")["attempts"], 3);
    let h = history(&server, "r-1").await;
    let retries: Vec<&Value> = h.iter().filter(|e| e["event"] == "retry_scheduled").collect();
    assert_eq!(retries.len(), 2, "{h:#?}");
    let failed: Vec<&Value> = h.iter().filter(|e| e["event"] == "failed").collect();
    assert!(failed.iter().all(|f| f["code"] == "probe_busy" && f["retryable"] == true), "{failed:#?}");
    let attempts: Vec<u64> = probe
        .runs()
        .iter()
        .filter(|r| r["key"] == "r-1/work/forward" && r["event"] == "start")
        .map(|r| r["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3], "each attempt ran once: {:?}", probe.runs());

    // Busy every time: the policy's three attempts, then the saga compensates.
    assert_eq!(sagas[1]["status"], "compensated", "{:#}", sagas[1]);
    assert_eq!(sagas[1]["error"]["code"], "probe_busy");
    assert_eq!(baton_tests::step(&sagas[1], "work")["attempts"], 3);

    // Not retryable: one attempt.
    assert_eq!(sagas[2]["status"], "compensated", "{:#}", sagas[2]);
    assert_eq!(sagas[2]["error"]["code"], "probe_refused");
    assert_eq!(baton_tests::step(&sagas[2], "work")["attempts"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_past_its_deadline_is_answered_expired_and_never_run() {
    let prefix = unique_prefix("external_expired");
    let _cleanup = PrefixGuard(prefix.clone());
    let probe = Probe::new();
    let server = serve(&prefix, &["--workflows", &probe.workflows()]).await;
    // No worker yet: the one-second attempt times out, and the saga ends.
    assert_eq!(server.start_saga("probe_short", "ps-1", &json!({"n": 1})).await.unwrap().0, 201);
    let saga = server.wait_all(&["ps-1".to_owned()], Duration::from_secs(20)).await.remove(0);
    assert_eq!(saga["status"], "compensated", "{saga:#}");
    assert_eq!(saga["error"]["code"], "timeout", "{saga:#}");

    // A worker that comes up now finds the command on its stream, past its deadline.
    let worker = probe.worker(&prefix, &[]);
    let h = history_until(&server, "ps-1", Duration::from_secs(20), |e| e["event"] == "late_result").await;
    let late = h.iter().find(|e| e["event"] == "late_result").unwrap();
    assert_eq!((&late["step"], &late["outcome"]), (&json!("work"), &json!("expired")), "{late:#}");
    let message = late["message"].as_str().unwrap();
    assert!(
        message.starts_with("not started: it reached worker") && message.contains("after its deadline"),
        "{message}"
    );
    assert!(probe.runs().is_empty(), "the handler never ran: {:?}", probe.runs());
    drop(worker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_is_replaced_and_a_terminated_one_finishes_its_command() {
    let prefix = unique_prefix("external_kill");
    let _cleanup = PrefixGuard(prefix.clone());
    let probe = Probe::new();
    let server = serve(&prefix, &["--workflows", &probe.workflows()]).await;
    let claim = ["--visibility-timeout", "2"];

    // SIGKILL mid-command: the entry stays pending; another worker claims it once it has
    // been idle for the visibility timeout, and the same attempt finishes the saga.
    let first = probe.worker(&prefix, &claim);
    assert_eq!(server.start_saga("probe", "k-1", &json!({"n": 1, "sleep": 3})).await.unwrap().0, 201);
    probe.wait_for("k-1/work/forward", "start", 1, Duration::from_secs(20));
    let killed = first.pid();
    first.kill();
    let second = probe.worker(&prefix, &claim);
    let saga = server.wait_all(&["k-1".to_owned()], Duration::from_secs(40)).await.remove(0);
    assert_eq!(saga["status"], "completed", "{saga:#}");
    let work = baton_tests::step(&saga, "work");
    assert_eq!(work["attempts"], 1, "redelivered, not retried: {saga:#}");
    assert_eq!(work["output"]["pid"], second.pid(), "{saga:#}");
    let runs = probe.runs();
    let pids: Vec<&Value> = runs.iter().filter(|r| r["event"] == "start").map(|r| &r["pid"]).collect();
    assert_eq!(pids, [&json!(killed), &json!(second.pid())], "{runs:?}");
    second.wait_for_log("claimed", Duration::from_secs(1));

    // SIGTERM mid-command: the command in hand finishes, its result is sent, exit 0.
    assert_eq!(server.start_saga("probe", "k-2", &json!({"n": 2, "sleep": 2})).await.unwrap().0, 201);
    probe.wait_for("k-2/work/forward", "start", 1, Duration::from_secs(20));
    let status = second.terminate(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(probe.count("k-2/work/forward", "end"), 1);
    let saga = server.wait_all(&["k-2".to_owned()], Duration::from_secs(20)).await.remove(0);
    assert_eq!(saga["status"], "completed", "answered before it stopped: {saga:#}");
    server.check_histories(&["k-1".to_owned(), "k-2".to_owned()]).await;
}

#[test]
fn the_python_worker_carries_on_when_redis_comes_back() {
    let mut redis = baton_tests::redis_server::RedisServer::start();
    let url = redis.url();
    let probe = Probe::new();
    let log = probe.log_path();
    let worker =
        Worker::start(&probe.dir.path().join("probe.py"), &url, "rc", &[], &[("PROBE_LOG", log.to_str().unwrap())]);
    xadd(&url, "rc:cmd:probe.run", &probe_command("r-1", json!({"n": 1})));
    let r = wait_result(&url, "rc", "r-1/work/forward/1", Duration::from_secs(20));
    assert!(matches!(&r.outcome, baton::protocol::Outcome::Ok(v) if v["n"] == 1), "{r:?}");

    // Redis goes away (and comes back empty: nothing is persisted): the worker says so,
    // tries again with backoff, makes its group again and serves the next command.
    redis.kill();
    worker.wait_for_log("is away", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    redis.up();
    xadd(&url, "rc:cmd:probe.run", &probe_command("r-2", json!({"n": 2})));
    let r = wait_result(&url, "rc", "r-2/work/forward/1", Duration::from_secs(30));
    assert!(matches!(&r.outcome, baton::protocol::Outcome::Ok(v) if v["n"] == 2), "{r:?}");
    assert_eq!(worker.terminate(Duration::from_secs(10)).code(), Some(0));
}
