//! Workflows as state machines, end to end: the booking agent replayed with `baton run`,
//! signals, cancel and retry over `baton serve` (embedded and Redis), and crashes during a wait
//! and during a parallel block.

use std::time::Duration;

use baton_tests::server::{InProcess, Server, config, redis_config};
use baton_tests::{baton, run, step};
use serde_json::{Value, json};

fn message(text: &str) -> String {
    format!("message={}", json!({ "text": text }))
}

/// The conversation of the README, ending with `last`.
fn conversation(last: &str) -> Vec<String> {
    let mut args =
        vec!["run".to_owned(), "booking_agent".into(), "--input".into(), "@workflows/booking_agent.input.json".into()];
    for text in ["a hotel in Lisbon please", "from 2026-12-24, 3 nights", "2 guests", last] {
        args.push("--signal".into());
        args.push(message(text));
    }
    args
}

fn said(saga: &Value) -> Vec<String> {
    saga["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["command"] == "chat.say" && s["status"] == "completed")
        .map(|s| s["output"]["said"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_booking_agent_asks_for_what_is_missing_then_books() {
    let ran = run(baton().args(conversation("yes")));
    assert_eq!(ran.code, 0, "{ran}");
    let saga = ran.json();
    assert_eq!(saga["status"], "completed");
    assert_eq!(
        said(&saga)[..3],
        [
            "Hello! Where would you like to go, when, for how many nights and how many guests?",
            "On which date (YYYY-MM-DD)?",
            "For how many guests?"
        ]
    );
    assert_eq!(saga["output"]["hotel"], "htl-c-1");
    assert_eq!(saga["output"]["flight"], "flt-c-1");
    assert_eq!(saga["output"]["trip"]["destination"], "Lisbon");
    assert_eq!(saga["output"]["trip"]["guests"], 2);
    // Each visit of the loop is an instance of its own.
    assert_eq!(step(&saga, "listen")["path"], "listen");
    assert!(saga["steps"].as_array().unwrap().iter().any(|s| s["path"] == "listen#3"), "{saga:#}");
    assert!(saga["steps"].as_array().unwrap().iter().any(|s| s["path"] == "book/book_hotel"), "{saga:#}");
}

#[test]
fn the_booking_agent_cancels_both_bookings_when_the_user_says_no() {
    let ran = run(baton().args(conversation("no, cancel")));
    assert_eq!(ran.code, 2, "{ran}");
    let saga = ran.json();
    assert_eq!(saga["error"]["code"], "declined");
    for name in ["book_hotel", "book_flight"] {
        let s = step(&saga, name);
        assert_eq!(s["compensation"]["status"], "completed", "{name}: {s}");
        assert_eq!(s["compensation"]["input"], s["output"], "{name}: the cancel gets the booking");
    }
    assert_eq!(step(&saga, "book_hotel")["compensation"]["output"]["cancelled"], "htl-c-1");
}

#[test]
fn a_booking_that_fails_cancels_the_other() {
    let mut args = conversation("yes");
    args[5] = message("a hotel in Atlantis please");
    let ran = run(baton().args(&args));
    assert_eq!(ran.code, 2, "{ran}");
    let saga = ran.json();
    assert_eq!(saga["error"]["code"], "no_hotel");
    assert_eq!(step(&saga, "book_flight")["compensation"]["status"], "completed");
    assert!(step(&saga, "book_hotel")["compensation"].is_null());
}

#[test]
fn run_says_how_to_send_a_signal_that_nothing_will_send() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("w.toml"),
        "name = \"w\"\n[[step]]\nname = \"hold\"\nwait = \"go\"\n[[step]]\nname = \"echo\"\ncommand = \"testkit.echo\"\ninput = \"steps.hold\"\n",
    )
    .unwrap();
    let ran = run(baton()
        .env("BATON_WORKFLOWS", dir.path())
        .args(["run", "w", "--input", "{}"])
        .stdin(std::process::Stdio::null()));
    assert_eq!(ran.code, 4, "{ran}");
    assert!(ran.stderr.contains("--signal go=JSON"), "{ran}");
    assert_eq!(ran.json()["status"], "running");
    let ran = run(baton().env("BATON_WORKFLOWS", dir.path()).args([
        "run",
        "w",
        "--input",
        "{}",
        "--signal",
        r#"go={"n": [1, 2]}"#,
    ]));
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(step(&ran.json(), "echo")["output"], json!({"n": [1, 2]}));
    let ran = run(baton().env("BATON_WORKFLOWS", dir.path()).args(["run", "w", "--input", "{}", "--signal", "go"]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("NAME=JSON"), "{ran}");
}

#[test]
fn input_schema_is_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("w.toml"),
        "name = \"w\"\ninput_schema = { type = \"object\", required = [\"order_id\"], properties = { order_id = { type = \"string\" } } }\n[[step]]\nname = \"a\"\ncommand = \"testkit.echo\"\n",
    )
    .unwrap();
    let ran = run(baton().env("BATON_WORKFLOWS", dir.path()).args(["run", "w", "--input", r#"{"order_id": 7}"#]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("/order_id"), "names the JSON pointer: {ran}");
    let ran = run(baton().env("BATON_WORKFLOWS", dir.path()).args(["run", "w", "--input", r#"{"order_id": "o-7"}"#]));
    assert_eq!(ran.code, 0, "{ran}");
}

/// Poll until the saga `id` has an instance at `path` waiting for a signal.
/// The conversation over the API, on a host in `mode`: signals before and after their waits,
/// a signal to a finished saga, one to an unknown saga.
async fn converse(host: &InProcess, mode: &str) {
    let (code, _) = host.start_saga("booking_agent", "talk-1", &json!({"conversation": "c-9"})).await.unwrap();
    assert_eq!(code, 201, "{mode}");
    host.until_waiting("talk-1", "listen").await;
    let (code, saga) = host.signal("talk-1", "message", &json!({"text": "Paris, 2026-05-01"})).await;
    assert_eq!(code, 202, "{mode}: {saga}");
    host.until_waiting("talk-1", "listen#2").await;
    // Two at once: the second waits in the inbox for the next wait, in order.
    assert_eq!(host.signal("talk-1", "message", &json!({"text": "2 nights"})).await.0, 202);
    assert_eq!(host.signal("talk-1", "message", &json!({"text": "for 3 guests"})).await.0, 202);
    host.until_waiting("talk-1", "answer").await;
    assert_eq!(host.signal("talk-1", "message", &json!({"text": "yes"})).await.0, 202);
    let saga = &host.wait_all(&["talk-1".to_owned()], Duration::from_secs(30)).await[0];
    assert_eq!(saga["status"], "completed", "{mode}: {saga:#}");
    assert_eq!(saga["output"]["trip"]["nights"], 2, "{mode}");
    assert_eq!(saga["output"]["trip"]["guests"], 3, "{mode}");
    let (code, err) = host.signal("talk-1", "message", &json!({"text": "hello?"})).await;
    assert_eq!(code, 409, "{mode}: a finished saga refuses signals: {err}");
    assert_eq!(err["error"]["code"], "saga_state");
    let (code, _) = host.signal("nobody", "message", &json!({})).await;
    assert_eq!(code, 404, "{mode}");
    let (code, err) = host.post_raw("/v1/sagas/talk-1/signals/message", "{not json").await;
    assert_eq!(code, 400, "{mode}: {err}");
    let (_, history) = host.get("/v1/sagas/talk-1/history").await;
    let received = history.as_array().unwrap().iter().filter(|e| e["event"] == "signal_received").count();
    assert_eq!(received, 4, "{mode}: {history:#}");
    host.check_histories(&["talk-1".to_owned()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_drive_a_conversation_over_the_api_embedded() {
    let data = tempfile::tempdir().unwrap();
    let host = InProcess::start(config(data.path())).await;
    converse(&host, "embedded").await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_drive_a_conversation_over_the_api_on_redis() {
    let prefix = baton_tests::unique_prefix("signals");
    let host = InProcess::start(redis_config(&prefix)).await;
    converse(&host, "redis").await;
    host.stop().await;
    baton_tests::delete_prefix(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_undoes_a_saga_waiting_for_approval() {
    let data = tempfile::tempdir().unwrap();
    let host = InProcess::start(config(data.path())).await;
    let input = json!({"order_id": "big-1", "customer": "ada", "total": 5000.0, "items": [{"sku": "A", "qty": 1, "price": 5000.0}]});
    assert_eq!(host.start_saga("order", "big-1", &input).await.unwrap().0, 201);
    host.until_waiting("big-1", "approval").await;
    let (code, saga) = host.post_raw("/v1/sagas/big-1/cancel", r#"{"reason": "customer called"}"#).await;
    assert_eq!(code, 202, "{saga}");
    let saga = &host.wait_all(&["big-1".to_owned()], Duration::from_secs(30)).await[0];
    assert_eq!(saga["status"], "compensated", "{saga:#}");
    assert_eq!(saga["error"]["code"], "cancelled");
    assert_eq!(saga["error"]["message"], "customer called");
    assert_eq!(step(saga, "approval")["status"], "cancelled");
    assert_eq!(step(saga, "reserve_one")["compensation"]["status"], "completed");
    let (code, err) = host.post_raw("/v1/sagas/big-1/cancel", "").await;
    assert_eq!(code, 409, "{err}");
    let (code, err) = host.post_raw("/v1/sagas/big-1/retry", "").await;
    assert_eq!(code, 409, "only a failed saga can be retried: {err}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_resumes_a_failed_compensation_with_the_same_keys() {
    let data = tempfile::tempdir().unwrap();
    let workflows = tempfile::tempdir().unwrap();
    // The compensation fails for good on its first attempt and works on the next: an
    // operator "fixed" it in between.
    std::fs::write(
        workflows.path().join("w.toml"),
        r#"name = "w"
[[step]]
name = "a"
command = "testkit.echo"
compensate = "testkit.fail"
compensate_input = "{ 'code': 'ledger_down', 'message': 'the ledger is down', 'retryable': false, 'succeed_on_attempt': 2 }"
[[step]]
name = "b"
command = "testkit.fail"
input = "{ 'code': 'nope', 'message': 'no', 'retryable': false }"
"#,
    )
    .unwrap();
    let mut c = config(data.path());
    c.workflows = workflows.path().to_owned();
    let host = InProcess::start(c).await;
    assert_eq!(host.start_saga("w", "r-1", &json!({})).await.unwrap().0, 201);
    let saga = &host.wait_all(&["r-1".to_owned()], Duration::from_secs(30)).await[0];
    assert_eq!(saga["status"], "failed", "{saga:#}");
    assert_eq!(step(saga, "a")["compensation"]["error"]["code"], "ledger_down");
    let ran = run(baton().args(["retry", "r-1", "--server", &host.url]));
    assert_eq!(ran.code, 0, "{ran}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let saga = loop {
        let (_, saga) = host.get("/v1/sagas/r-1").await;
        if saga["status"] == "compensated" {
            break saga;
        }
        assert!(std::time::Instant::now() < deadline, "{saga:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(step(&saga, "a")["compensation"]["attempts"], 2);
    let (_, history) = host.get("/v1/sagas/r-1/history").await;
    let keys: Vec<&Value> = history.as_array().unwrap().iter().filter(|e| e["event"] == "retry_requested").collect();
    assert_eq!(keys.len(), 1, "{history:#}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_signals_shows_and_lists() {
    let data = tempfile::tempdir().unwrap();
    let host = InProcess::start(config(data.path())).await;
    let url = host.url.clone();
    let ran = run(baton().args([
        "start",
        "booking_agent",
        "--id",
        "cli-1",
        "--input",
        r#"{"conversation": "c-2"}"#,
        "--server",
        &url,
    ]));
    assert_eq!(ran.code, 0, "{ran}");
    host.until_waiting("cli-1", "listen").await;
    for text in ["Rome on 2026-06-01 for 4 nights, 2 people", "yes"] {
        let data = json!({ "text": text }).to_string();
        let ran = run(baton().args(["signal", "cli-1", "message", "--data", &data, "--server", &url]));
        assert_eq!(ran.code, 0, "{ran}");
        assert!(ran.stderr.contains("accepted"), "{ran}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let saga = &host.wait_all(&["cli-1".to_owned()], Duration::from_secs(30)).await[0];
    assert_eq!(saga["status"], "completed", "{saga:#}");
    let ran = run(baton().args(["signal", "cli-1", "message", "--data", "{}", "--server", &url]));
    assert_eq!(ran.code, 1, "a finished saga refuses: {ran}");
    assert!(ran.stderr.contains("409"), "{ran}");
    let ran = run(baton().args(["status", "cli-1", "--server", &url]));
    assert_eq!(ran.json()["status"], "completed", "piped: JSON");
    let ran = run(baton().args(["history", "cli-1", "--server", &url]));
    assert!(ran.json().as_array().unwrap().iter().any(|e| e["event"] == "signal_received"), "{ran}");
    let ran = run(baton().args(["list", "--server", &url]));
    assert_eq!(ran.json()[0]["id"], "cli-1", "{ran}");
    host.stop().await;
}

/// A saga waiting for a signal when its host is SIGKILLed: the signal is sent to the
/// restarted host, and the saga finishes right. Embedded, and on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_survives_a_sigkill_and_takes_the_signal_after_restart() {
    let data = tempfile::tempdir().unwrap();
    let prefix = baton_tests::unique_prefix("kill_wait");
    let url = baton_tests::redis_url();
    let embedded = vec!["--data".to_owned(), data.path().to_str().unwrap().to_owned()];
    let redis = vec![
        "--redis".to_owned(),
        url,
        "--prefix".to_owned(),
        prefix.clone(),
        "--visibility-timeout".to_owned(),
        "1s".to_owned(),
    ];
    for (mode, args) in [("embedded", embedded), ("redis", redis)] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::start(&args).await;
        let input = json!({"order_id": "k-1", "customer": "ada", "total": 5000.0, "items": [{"sku": "A", "qty": 1, "price": 50.0}]});
        assert_eq!(server.start_saga("order", "k-1", &input).await.unwrap().0, 201, "{mode}");
        server.until_waiting("k-1", "approval").await;
        server.kill();
        let server = Server::start(&args).await;
        let (code, _) = server.signal("k-1", "approved", &json!({"approved": true})).await;
        assert_eq!(code, 202, "{mode}");
        let saga = &server.wait_all(&["k-1".to_owned()], Duration::from_secs(30)).await[0];
        assert_eq!(saga["status"], "completed", "{mode}: {saga:#}");
        server.check_histories(&["k-1".to_owned()]).await;
    }
    baton_tests::delete_prefix(&prefix);
}

/// A host SIGKILLed while a parallel block runs (one branch sleeping, the other done): the
/// restarted host fires the sleep and finishes the block. Embedded, and on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_block_survives_a_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let workflows = tempfile::tempdir().unwrap();
    std::fs::write(
        workflows.path().join("p.toml"),
        r#"name = "p"
[[step]]
name = "both"
parallel = ["slow", "fast"]
[[step]]
name = "after"
command = "testkit.echo"
input = "steps.both"
[[block.slow]]
name = "nap"
sleep = "2s"
[[block.slow]]
name = "woke"
command = "testkit.echo"
input = "{ 'woke': true }"
[[block.fast]]
name = "quick"
command = "testkit.echo"
input = "{ 'quick': true }"
"#,
    )
    .unwrap();
    let prefix = baton_tests::unique_prefix("kill_parallel");
    let wf = workflows.path().to_str().unwrap().to_owned();
    let embedded =
        vec!["--data".to_owned(), data.path().to_str().unwrap().to_owned(), "--workflows".to_owned(), wf.clone()];
    let redis = vec![
        "--redis".to_owned(),
        baton_tests::redis_url(),
        "--prefix".to_owned(),
        prefix.clone(),
        "--workflows".to_owned(),
        wf,
    ];
    for (mode, args) in [("embedded", embedded), ("redis", redis)] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::start(&args).await;
        assert_eq!(server.start_saga("p", "par-1", &json!({})).await.unwrap().0, 201);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (_, saga) = server.get("/v1/sagas/par-1").await;
            let quick_done = saga["steps"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["path"] == "both/quick" && s["status"] == "completed"));
            if quick_done {
                assert_eq!(
                    step(&saga, "nap")["status"],
                    "running",
                    "{mode}: killed while the other branch sleeps: {saga:#}"
                );
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{mode}: {saga:#}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.kill();
        let server = Server::start(&args).await;
        let saga = &server.wait_all(&["par-1".to_owned()], Duration::from_secs(30)).await[0];
        assert_eq!(saga["status"], "completed", "{mode}: {saga:#}");
        assert_eq!(step(saga, "after")["output"], json!({"slow": {"woke": true}, "fast": {"quick": true}}));
        server.check_histories(&["par-1".to_owned()]).await;
    }
    baton_tests::delete_prefix(&prefix);
}

/// A saga runs to its end on the definition it started with: the workflow file is edited
/// and the host restarted while the saga waits for a signal; the saga finishes on the old
/// definition, and a new saga runs the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_keeps_its_definition_across_an_edit_and_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let workflows = tempfile::tempdir().unwrap();
    let file = workflows.path().join("v.toml");
    let version = |n: u32| {
        format!(
            "name = \"v\"\n[[step]]\nname = \"hold\"\nwait = \"go\"\n[[step]]\nname = \"say\"\ncommand = \"testkit.echo\"\ninput = \"{{ 'version': {n} }}\"\n"
        )
    };
    std::fs::write(&file, version(1)).unwrap();
    let args = ["--data", data.path().to_str().unwrap(), "--workflows", workflows.path().to_str().unwrap()];
    let server = Server::start(&args).await;
    assert_eq!(server.start_saga("v", "old-1", &json!({})).await.unwrap().0, 201);
    server.until_waiting("old-1", "hold").await;
    assert_eq!(server.terminate().code(), Some(0));
    std::fs::write(&file, version(2)).unwrap();
    let server = Server::start(&args).await;
    assert_eq!(server.start_saga("v", "new-1", &json!({})).await.unwrap().0, 201);
    for id in ["old-1", "new-1"] {
        server.until_waiting(id, "hold").await;
        assert_eq!(server.signal(id, "go", &json!(null)).await.0, 202);
    }
    let sagas = server.wait_all(&["old-1".to_owned(), "new-1".to_owned()], Duration::from_secs(30)).await;
    assert_eq!(sagas[0]["output"], json!({"version": 1}), "{:#}", sagas[0]);
    assert_eq!(sagas[1]["output"], json!({"version": 2}), "{:#}", sagas[1]);
    assert_ne!(sagas[0]["workflow_hash"], sagas[1]["workflow_hash"]);
}

/// Any process on the bus can answer a waiting saga: a `baton.signal.v1` CloudEvent written
/// straight to Redis (a Streams entry, or a Pub/Sub message), as an outside service would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_event_on_the_bus_answers_a_waiting_saga() {
    use redis::AsyncCommands as _;
    for transport in [baton::serve::Transport::RedisStreams, baton::serve::Transport::RedisPubsub] {
        let prefix = baton_tests::unique_prefix("bus_signal");
        let workflows = tempfile::tempdir().unwrap();
        std::fs::write(
            workflows.path().join("w.toml"),
            // A short timeout: on Pub/Sub a command published before the worker subscribed
            // is lost, and only the step's timeout sends it again.
            "name = \"w\"\n[defaults]\ntimeout = \"1s\"\nretry = { attempts = 10 }\n[[step]]\nname = \"hold\"\nwait = \"approved\"\n[[step]]\nname = \"echo\"\ncommand = \"testkit.echo\"\ninput = \"steps.hold\"\n",
        )
        .unwrap();
        let mut c = redis_config(&prefix);
        c.transport = transport;
        c.workflows = workflows.path().to_owned();
        let host = InProcess::start(c).await;
        assert_eq!(host.start_saga("w", "bus-1", &json!({})).await.unwrap().0, 201);
        host.until_waiting("bus-1", "hold").await;
        let event = json!({
            "specversion": "1.0", "type": "baton.signal.v1", "source": "manager-app", "id": "e-1",
            "subject": "approved", "transactionid": "bus-1", "data": {"approved": true, "by": "maria"}
        })
        .to_string();
        let client = redis::Client::open(baton_tests::redis_url()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let saga = match transport {
            baton::serve::Transport::RedisStreams => {
                let _: String = con.xadd(format!("{prefix}:signals"), "*", &[("event", event.as_str())]).await.unwrap();
                host.wait_all(&["bus-1".to_owned()], Duration::from_secs(30)).await.remove(0)
            }
            // Pub/Sub keeps nothing for a subscriber that is not there yet: a sender publishes
            // until the saga moves, as an outside service on this transport must.
            baton::serve::Transport::RedisPubsub => loop {
                assert!(std::time::Instant::now() < deadline, "the Pub/Sub signal never arrived");
                let _: i64 = con.publish(format!("{prefix}:signals"), event.as_str()).await.unwrap();
                let (_, saga) = host.get("/v1/sagas/bus-1").await;
                if saga["status"] == "completed" {
                    break saga;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            },
        };
        let saga = &saga;
        assert_eq!(saga["status"], "completed", "{transport:?}: {saga:#}");
        assert_eq!(step(saga, "echo")["output"], json!({"approved": true, "by": "maria"}), "{transport:?}");
        host.stop().await;
        baton_tests::delete_prefix(&prefix);
    }
}

/// On a terminal, `baton run` asks for a signal nothing queued, and prints a line per step.
/// `script` gives the run a pseudo-terminal (skipped where util-linux's `script` is absent).
#[test]
fn run_asks_on_a_terminal_and_prints_a_line_per_step() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("w.toml"),
        "name = \"w\"\n[[step]]\nname = \"hold\"\nwait = \"go\"\n[[step]]\nname = \"echo\"\ncommand = \"testkit.echo\"\ninput = \"steps.hold\"\n",
    )
    .unwrap();
    let line = format!("{} run w --id tty-1 --input '{{}}'", baton_tests::baton_bin().display());
    // `script` runs the line in a pseudo-terminal, with the environment `baton()` sets.
    let mut template = baton();
    template.env("BATON_WORKFLOWS", dir.path());
    let mut script = std::process::Command::new("script");
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let mut child = script
        .args(["-qec", &line, "/dev/null"])
        .current_dir(baton_tests::root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        use std::io::Write as _;
        std::thread::sleep(Duration::from_secs(2));
        let _ = stdin.write_all(b"all clear\n");
        std::thread::sleep(Duration::from_secs(30));
    });
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("signal \"go\" >"), "it asked: {text}");
    assert!(text.contains("tty-1  w  completed"), "a summary line: {text}");
    assert!(text.lines().any(|l| l.trim_start().starts_with("echo") && l.contains("completed  1 attempt")), "{text}");
    assert!(text.contains(r#"output: {"text":"all clear"}"#), "plain text is sent as {{\"text\": ...}}: {text}");
}

/// Compensation across a for_each and a parallel, on Redis: the history shows the undoing
/// one at a time, in reverse order of completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compensation_order_across_iterations_and_branches_is_in_the_history() {
    let prefix = baton_tests::unique_prefix("comp_order");
    let host = InProcess::start(redis_config(&prefix)).await;
    let items: Vec<Value> = (0..3).map(|i| json!({"sku": format!("S{i}"), "qty": 1, "price": 6000.0})).collect();
    let input = json!({"order_id": "co-1", "customer": "ada", "items": items});
    assert_eq!(host.start_saga("order", "co-1", &input).await.unwrap().0, 201);
    let saga = &host.wait_all(&["co-1".to_owned()], Duration::from_secs(30)).await[0];
    assert_eq!(saga["status"], "compensated", "{saga:#}");
    assert_eq!(saga["error"]["code"], "card_declined");
    let mut by_seq: Vec<(u64, String)> = saga["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| Some((s["seq"].as_u64()?, s["path"].as_str()?.to_owned())))
        .collect();
    by_seq.sort();
    by_seq.reverse();
    let expected: Vec<String> = by_seq.into_iter().map(|(_, p)| p).collect();
    assert_eq!(expected.len(), 4, "three reservations and the parcel: {saga:#}");
    assert_eq!(expected[0], "settle/ship", "the parcel completed last");
    let (_, history) = host.get("/v1/sagas/co-1/history").await;
    let entries = history.as_array().unwrap();
    let undone: Vec<String> = entries
        .iter()
        .filter(|e| e["event"] == "dispatched" && e["phase"] == "compensate")
        .map(|e| e["step"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(undone, expected, "{history:#}");
    // One at a time: each compensation succeeds before the next is sent.
    let mut open = 0;
    for e in entries.iter().filter(|e| e["phase"] == "compensate") {
        match e["event"].as_str().unwrap() {
            "dispatched" => open += 1,
            "succeeded" => open -= 1,
            _ => {}
        }
        assert!(open <= 1, "{history:#}");
    }
    host.stop().await;
    baton_tests::delete_prefix(&prefix);
}
