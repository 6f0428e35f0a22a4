//! `baton bench` through the real binary. These tests check what the load generator reports
//! (counts, the fields of `--json`, failures by kind), never how fast anything is: speed is
//! for the benchmark itself to measure (see BENCHMARKS.md).

use baton_tests::{baton, order, run};
use serde_json::{Value, json};

fn bench(args: &[&str]) -> Value {
    let mut cmd = baton();
    cmd.args(["bench", "order", "--warmup", "0", "--json"]).args(args);
    let ran = run(&mut cmd);
    assert_eq!(ran.code, 0, "{ran}");
    ran.json()
}

fn assert_figures(report: &Value) {
    for key in ["sagas_per_sec", "steps_per_sec", "p50_ms", "p90_ms", "p99_ms", "max_ms", "cpu_seconds", "seconds"] {
        assert!(report[key].as_f64().is_some_and(|v| v >= 0.0), "{key} missing or negative: {report:#}");
    }
    let (p50, p90, p99, max) =
        (report["p50_ms"].as_f64(), report["p90_ms"].as_f64(), report["p99_ms"].as_f64(), report["max_ms"].as_f64());
    assert!(p50 <= p90 && p90 <= p99 && p99 <= max, "percentiles in order: {report:#}");
    assert!(report["sagas_per_sec"].as_f64().unwrap() > 0.0, "{report:#}");
}

#[test]
fn embedded_bench_runs_exactly_the_sagas_asked_for() {
    let report = bench(&["--input", &order(json!({})), "--sagas", "40", "-c", "4"]);
    assert_eq!(report["mode"], "embedded");
    assert_eq!(report["completed"], 40, "{report:#}");
    assert_eq!((report["compensated"].as_u64(), report["failed"].as_u64()), (Some(0), Some(0)));
    assert_eq!(report["errors"], json!({}));
    // Four steps a saga, each run once.
    let steps = report["steps_per_sec"].as_f64().unwrap() / report["sagas_per_sec"].as_f64().unwrap();
    assert!((steps - 4.0).abs() < 1e-6, "4 commands per saga, got {steps}: {report:#}");
    assert_figures(&report);
}

#[test]
fn sagas_that_do_not_complete_are_counted_by_why() {
    let declined = order(json!({"items": [{"sku": "A-1", "qty": 1, "price": 20000.0}]}));
    let report = bench(&["--input", &declined, "--sagas", "12", "-c", "3"]);
    assert_eq!(report["completed"], 0);
    assert_eq!(report["compensated"], 12, "{report:#}");
    assert_eq!(report["errors"], json!({"card_declined": 12}));
}

#[test]
fn redis_bench_runs_on_the_real_redis() {
    let report = bench(&["--input", &order(json!({})), "--sagas", "30", "-c", "4", "--mode", "redis"]);
    assert_eq!(report["mode"], "redis");
    assert_eq!(report["completed"], 30, "{report:#}");
    assert!(report["redis_cpu_seconds"].as_f64().is_some(), "Redis's own CPU is reported: {report:#}");
    assert_figures(&report);
}

#[test]
fn several_runs_report_medians() {
    let report = bench(&["--input", &order(json!({})), "--sagas", "10", "-c", "2", "--runs", "3"]);
    assert_eq!(report["runs"], 3);
    assert_eq!(report["completed"], 10, "the median of three runs of ten: {report:#}");
}

/// `--check`: a run passes against its own report made slower, fails against one made ten
/// times faster (whatever this machine's speed), and refuses a baseline of another bench or
/// a file that is not a report.
#[test]
fn check_compares_with_a_baseline_and_fails_when_slower() {
    let dir = tempfile::tempdir().unwrap();
    let input = order(json!({}));
    let mut base = bench(&["--input", &input, "--sagas", "20", "-c", "2"]);
    let throughput = base["sagas_per_sec"].as_f64().unwrap();
    let write = |name: &str, report: &Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, report.to_string()).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let check = |baseline: &str, c: &str| {
        run(baton().args([
            "bench",
            "order",
            "--warmup",
            "0",
            "--input",
            input.as_str(),
            "--sagas",
            "20",
            "-c",
            c,
            "--check",
            baseline,
        ]))
    };

    base["sagas_per_sec"] = json!(throughput / 10.0);
    let ran = check(&write("slow.json", &base), "2");
    assert_eq!(ran.code, 0, "faster than a baseline ten times slower: {ran}");
    assert!(ran.stderr.contains("check: ok"), "{ran}");

    base["sagas_per_sec"] = json!(throughput * 10.0);
    let ran = check(&write("fast.json", &base), "2");
    assert_eq!(ran.code, 1, "slower than a baseline ten times faster: {ran}");
    assert!(ran.stderr.contains("check: SLOWER"), "{ran}");

    let ran = check(&write("other.json", &base), "3");
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("compare like with like"), "{ran}");

    let ran = check(&write("broken.json", &json!({"not": "a report"})), "2");
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("is not a `baton bench --json` report"), "{ran}");
    let ran = run(baton().args([
        "bench",
        "order",
        "--input",
        input.as_str(),
        "--sagas",
        "1",
        "--check",
        "/nonexistent/base.json",
    ]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("cannot read the baseline"), "{ran}");
}

#[test]
fn bad_bench_arguments_are_clear_errors() {
    let ran = run(baton().args(["bench", "nope", "--input", "{}", "--sagas", "1"]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("no workflow named \"nope\""), "{ran}");
    let ran = run(baton().args(["bench", "order", "--input", "{oops", "--sagas", "1"]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("--input is not valid JSON"), "{ran}");
    let ran = run(baton().args(["bench", "order", "--input", "{}", "--duration", "-3"]));
    assert_eq!(ran.code, 1, "{ran}");
    let ran = run(baton().args(["bench", "order", "--input", "{}", "--runs", "0"]));
    assert_eq!(ran.code, 1, "{ran}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_drives_a_running_server_over_http() {
    let data = tempfile::tempdir().unwrap();
    let server = baton_tests::server::Server::start(&["--data", data.path().to_str().unwrap()]).await;
    let url = server.url.clone();
    let report = tokio::task::spawn_blocking(move || {
        bench(&["--input", &order(json!({})), "--sagas", "20", "-c", "4", "--server", &url])
    })
    .await
    .unwrap();
    assert_eq!(report["mode"], "server");
    assert_eq!(report["completed"], 20, "{report:#}");
    assert_figures(&report);
    // The sagas are the server's: it lists them.
    let (_, list) = server.get("/v1/sagas?status=completed&limit=100").await;
    assert_eq!(list.as_array().unwrap().len(), 20);
}

#[test]
fn bench_against_no_server_says_so() {
    let ran = run(baton().args(["bench", "order", "--input", "{}", "--sagas", "1", "--server", "http://127.0.0.1:1"]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("no baton serve answers at http://127.0.0.1:1"), "{ran}");
}
