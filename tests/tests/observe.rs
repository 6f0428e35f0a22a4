//! Observability with real parts: traces received by an OTLP/HTTP receiver (over the
//! `opentelemetry-proto` package) from two hosts on Redis, and metrics scraped by a real
//! Prometheus (Debian's `prometheus`, which `.ci/run` installs) and asked back with PromQL.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_tests::server::Server;
use baton_tests::{PrefixGuard, python, redis_url, unique_prefix};
use serde_json::{Value, json};

/// The receiver process, and the file it writes the spans to.
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    fn start() -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("spans.jsonl");
        let script = baton_tests::root().join("tests/observe/otlp_receiver.py");
        let mut child = Command::new(python::python())
            .arg(&script)
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the OTLP receiver");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().parse().unwrap_or_else(|_| panic!("the receiver said {line:?}, not its port"));
        Receiver { child, port, out, _dir: dir }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a span line"))
            .collect()
    }

    /// The spans of saga `id` (and of its sub-sagas, whose ids start with it), once its own
    /// span and `n` more have come.
    async fn spans_of(&self, id: &str, min: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let spans: Vec<Value> = self
                .spans()
                .into_iter()
                .filter(|s| s["attributes"]["baton.transaction_id"].as_str().is_some_and(|t| t.starts_with(id)))
                .collect();
            let has_root = spans.iter().any(|s| {
                s["attributes"]["baton.transaction_id"] == id && s["name"].as_str().unwrap().starts_with("saga ")
            });
            if has_root && spans.len() >= min {
                return spans;
            }
            assert!(Instant::now() < deadline, "the spans of {id} did not come within 20s: {spans:#?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

fn by_id(spans: &[Value]) -> HashMap<String, &Value> {
    spans.iter().map(|s| (s["span_id"].as_str().unwrap().to_owned(), s)).collect()
}

/// Start `workflow` with `input` over the API, with a `traceparent` header when given, and
/// wait for its end.
async fn run_saga(host: &Server, workflow: &str, id: &str, input: Value, traceparent: Option<&str>) -> Value {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/sagas", host.url))
        .json(&json!({"workflow": workflow, "id": id, "input": input}));
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (code, saga) = host.get(&format!("/v1/sagas/{id}?wait=30")).await;
    assert_eq!(code, 200, "{saga}");
    saga
}

/// An order saga run by an orchestrator host and a worker host on Redis, each exporting to
/// the receiver: its spans are one trace, and every parent is the span it should be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_covers_a_saga_across_two_hosts_and_its_sub_sagas() {
    let receiver = Receiver::start();
    let prefix = unique_prefix("observe_trace");
    let _guard = PrefixGuard(prefix.clone());
    let url = redis_url();
    let otlp = receiver.url();
    let common = ["--redis", url.as_str(), "--prefix", prefix.as_str(), "--otlp", otlp.as_str()];
    let env = |service: &'static str| [("OTEL_SERVICE_NAME", service), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let (orchestrator, _) =
        Server::start_env("127.0.0.1:0", &[&common[..], &["--role", "orchestrator"]].concat(), &env("baton-a")).await;
    let (_worker, _) =
        Server::start_env("127.0.0.1:0", &[&common[..], &["--role", "worker"]].concat(), &env("baton-b")).await;

    let input = json!({"order_id": "tr-1", "customer": "ada", "items": [{"sku": "A-1", "qty": 1, "price": 5}, {"sku": "B-2", "qty": 1, "price": 7}]});
    let saga = run_saga(&orchestrator, "order", "tr-1", input, None).await;
    assert_eq!(saga["status"], "completed", "{saga:#}");
    // reserve x2, charge, ship, notify: 5 attempts, each with its send, process and handle.
    let spans = receiver.spans_of("tr-1", 1 + 5 * 4).await;
    let trace = spans[0]["trace_id"].as_str().unwrap();
    assert!(spans.iter().all(|s| s["trace_id"] == trace), "one trace: {spans:#?}");
    let ids = by_id(&spans);
    let root = named(&spans, "saga order");
    assert_eq!(root.len(), 1, "{spans:#?}");
    let root = root[0];
    assert!(
        ["", "0000000000000000"].contains(&root["parent_span_id"].as_str().unwrap()),
        "the saga is the root of its trace: {root:#}"
    );
    assert_eq!(root["service"], "baton-a");
    assert_eq!(root["attributes"]["baton.status"], "completed");

    let steps: Vec<&Value> = spans.iter().filter(|s| s["name"].as_str().unwrap().starts_with("step ")).collect();
    assert_eq!(steps.len(), 5, "{steps:#?}");
    for s in &steps {
        assert_eq!(s["parent_span_id"], root["span_id"], "a step hangs under its saga: {s:#}");
        assert_eq!(s["attributes"]["baton.outcome"], "ok");
    }
    for kind in ["process", "send"] {
        let of_kind: Vec<&&Value> = ids.values().filter(|s| s["name"].as_str().unwrap().starts_with(kind)).collect();
        assert_eq!(of_kind.len(), 5, "{kind}: {of_kind:#?}");
        for s in of_kind {
            let parent = ids.get(s["parent_span_id"].as_str().unwrap()).unwrap_or_else(|| panic!("no parent: {s:#}"));
            assert!(parent["name"].as_str().unwrap().starts_with("step "), "{kind} under its attempt: {s:#}");
            assert_eq!(
                s["attributes"]["messaging.destination.name"],
                format!("cmd:{}", parent["attributes"]["baton.command"].as_str().unwrap())
            );
            let service = if kind == "process" { "baton-b" } else { "baton-a" };
            assert_eq!(s["service"], service, "{s:#}");
        }
    }
    for h in ids.values().filter(|s| s["name"].as_str().unwrap().starts_with("handle ")) {
        let parent = ids[h["parent_span_id"].as_str().unwrap()];
        assert!(parent["name"].as_str().unwrap().starts_with("process "), "{h:#}");
        assert!(h["attributes"]["baton.plugin"].is_string(), "{h:#}");
        assert_eq!(h["attributes"]["baton.outcome"], "ok");
    }
    let commits = named(&spans, "store commit");
    assert!(!commits.is_empty() && commits.iter().all(|c| c["parent_span_id"] == root["span_id"]), "{commits:#?}");
    let parallel = named(&spans, "parallel settle");
    assert_eq!(parallel.len(), 1, "a step that is not a command has its span too: {spans:#?}");

    // A caller's trace context: the saga joins the caller's trace, under the caller's span.
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let input = json!({"order_id": "tr-2", "customer": "bo", "items": [{"sku": "A-1", "qty": 1, "price": 5}]});
    run_saga(&orchestrator, "order", "tr-2", input, Some(caller)).await;
    let spans = receiver.spans_of("tr-2", 1 + 4 * 4).await;
    assert!(spans.iter().all(|s| s["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"), "{spans:#?}");
    assert_eq!(named(&spans, "saga order")[0]["parent_span_id"], "00f067aa0ba902b7");

    // Sub-sagas: the trip's three children are in the trip's trace, each under the step that
    // started it.
    let trip = json!({"trip_id": "tr-3", "destination": "Lisbon", "date": "2026-12-24", "nights": 3, "guests": 2});
    let saga = run_saga(&orchestrator, "trip", "tr-3", trip, None).await;
    assert_eq!(saga["status"], "completed", "{saga:#}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans = receiver.spans_of("tr-3", 1).await;
        if named(&spans, "saga trip").len() == 1
            && spans.iter().filter(|s| s["name"].as_str().unwrap().starts_with("saga ")).count() == 4
        {
            break spans;
        }
        assert!(Instant::now() < deadline, "not every saga of the trip sent its span: {spans:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let trace = named(&spans, "saga trip")[0]["trace_id"].clone();
    assert!(spans.iter().all(|s| s["trace_id"] == trace), "the tree is one trace: {spans:#?}");
    let ids = by_id(&spans);
    for child in spans.iter().filter(|s| s["name"].as_str().unwrap().starts_with("saga ") && s["name"] != "saga trip") {
        let parent = ids.get(child["parent_span_id"].as_str().unwrap()).unwrap_or_else(|| panic!("{child:#}"));
        assert!(
            parent["name"].as_str().unwrap().starts_with("step "),
            "a child under its parent's step: {child:#} under {parent:#}"
        );
        assert!(child["attributes"]["baton.parent"].as_str().unwrap().starts_with("tr-3"), "{child:#}");
    }
}

/// A Prometheus scrapes a running host; its counts, asked back with PromQL, are those of the
/// sagas run. Bad events on the results stream are dropped and counted by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_counts_of_what_ran_and_what_was_dropped() {
    let prometheus = Path::new("/usr/bin/prometheus");
    assert!(
        prometheus.exists(),
        "{} is missing: `.ci/run` installs Debian's prometheus package (apt-get install prometheus)",
        prometheus.display()
    );
    let prefix = unique_prefix("observe_metrics");
    let _guard = PrefixGuard(prefix.clone());
    let url = redis_url();
    let host = Server::start(&["--redis", url.as_str(), "--prefix", prefix.as_str()]).await;

    // Three orders that complete, one that compensates (out of stock).
    for i in 0..3 {
        let input =
            json!({"order_id": format!("m-{i}"), "customer": "ada", "items": [{"sku": "A-1", "qty": 1, "price": 5}]});
        assert_eq!(run_saga(&host, "order", &format!("m-{i}"), input, None).await["status"], "completed");
    }
    let input = json!({"order_id": "m-x", "customer": "ada", "items": [{"sku": "A-1", "qty": 101, "price": 5}]});
    assert_eq!(run_saga(&host, "order", "m-x", input, None).await["status"], "compensated");

    // Bad results: not JSON, another type, an unknown saga, a step the saga does not have,
    // and a late result for a finished saga (kept in its history, not dropped).
    let stream = format!("{prefix}:results");
    let result = |saga: &str, step: &str| {
        json!({"specversion": "1.0", "type": "baton.result.v1", "source": "test", "id": format!("{saga}-{step}"),
               "subject": "inventory.reserve", "transactionid": saga, "correlationid": format!("{saga}/{step}/forward/1"),
               "idempotencykey": format!("{saga}/{step}/forward"), "datacontenttype": "application/json",
               "data": {"step": step, "attempt": 1, "outcome": {"ok": {"late": true}}}})
        .to_string()
    };
    let other = json!({"specversion": "1.0", "type": "com.example.other", "source": "x", "id": "1"}).to_string();
    let mut con = redis::Client::open(url.as_str()).unwrap().get_connection().unwrap();
    for event in [
        "{not json".to_owned(),
        other,
        result("nobody", "reserve"),
        result("m-0", "no_such_step"),
        result("m-0", "notify"),
    ] {
        let _: String = redis::cmd("XADD").arg(&stream).arg("*").arg("event").arg(event).query(&mut con).unwrap();
    }

    // The host goes on: one more order completes.
    let input = json!({"order_id": "m-9", "customer": "ada", "items": [{"sku": "A-1", "qty": 1, "price": 5}]});
    assert_eq!(run_saga(&host, "order", "m-9", input, None).await["status"], "completed");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, history) = host.get("/v1/sagas/m-0/history").await;
        if history.as_array().unwrap().iter().any(|e| e["event"] == "late_result") {
            break;
        }
        assert!(Instant::now() < deadline, "the late result is not in m-0's history: {history:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The text itself: Prometheus' format, histograms with buckets.
    let (code, _, text) = host.request("GET", "/metrics", None).await;
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("# TYPE baton_step_duration_seconds histogram"), "{text}");
    assert!(text.contains("baton_store_commit_seconds_bucket{le=\"0.005\"}"), "{text}");

    // A real Prometheus scrapes it every second.
    let dir = tempfile::tempdir().unwrap();
    let target = host.url.trim_start_matches("http://");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: baton\n    static_configs:\n      - targets: ['{target}']\n")).unwrap();
    let port = free_port();
    let mut prom = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let query = |q: &str| {
        let q = q.to_owned();
        async move {
            let encoded: String = q
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect();
            let r = reqwest::Client::new()
                .get(format!("http://127.0.0.1:{port}/api/v1/query?query={encoded}"))
                .send()
                .await
                .ok()?;
            let v: Value = r.json().await.ok()?;
            v["data"]["result"][0]["value"][1].as_str().and_then(|n| n.parse::<f64>().ok())
        }
    };
    let expected = [
        ("sum(baton_sagas_ended_total{workflow=\"order\",status=\"completed\"})", 4.0),
        ("sum(baton_sagas_ended_total{workflow=\"order\",status=\"compensated\"})", 1.0),
        ("sum(baton_sagas_started_total{workflow=\"order\"})", 5.0),
        (
            "sum(baton_step_attempts_total{command=\"inventory.reserve\",phase=\"forward\",outcome=\"out_of_stock\"})",
            1.0,
        ),
        ("sum(baton_commands_handled_total{command=\"payment.charge\",outcome=\"ok\"})", 4.0),
        ("sum(baton_saga_duration_seconds_count{workflow=\"order\"})", 5.0),
        ("baton_bus_events_dropped_total{reason=\"not_json\"}", 1.0),
        ("baton_bus_events_dropped_total{reason=\"wrong_type\"}", 1.0),
        ("baton_bus_events_dropped_total{reason=\"unknown_saga\"}", 1.0),
        ("baton_bus_events_dropped_total{reason=\"unknown_step\"}", 1.0),
        ("sum(baton_sagas_in_flight)", 0.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    loop {
        last.clear();
        for (q, want) in expected {
            let got = query(q).await;
            if got != Some(want) {
                last.push(format!("{q} = {got:?}, expected {want}"));
            }
        }
        if last.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let _ = prom.kill();
            panic!("Prometheus does not see the expected counts after 30s:\n{}\n\n/metrics:\n{text}", last.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = prom.kill();
    let _ = prom.wait();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
