//! `baton serve` through its HTTP API, and what survives a SIGKILL.
//!
//! Tests that kill or signal a host run the real binary ([`Server`]); the others run the same
//! host in process ([`InProcess`]), which is quicker and needs no process to start.

use std::time::Duration;

use baton::serve::{Role, Transport};
use baton_tests::server::{InProcess, Server, check_order_saga, order_case, redis_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_serve_runs_sagas_over_http() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&["--data", data.path().to_str().unwrap()]).await;
    let (input, _) = order_case(0);
    let (code, saga) = server.start_saga("order", "http-1", &input).await.unwrap();
    assert_eq!(code, 201, "{saga}");
    assert_eq!(saga["id"], "http-1");
    let (code, done) = server.get("/v1/sagas/http-1?wait=30").await;
    assert_eq!(code, 200);
    assert_eq!(done["status"], "completed");
    // A retried start with the same id returns the same saga, and starts nothing new.
    let (code, again) = server.start_saga("order", "http-1", &input).await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(again["created_at"], done["created_at"]);
    let (_, list) = server.get("/v1/sagas?status=completed").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Errors are JSON with a code and a message that says what is wrong.
    let (code, err) = server.post_raw("/v1/sagas", "{not json").await;
    assert_eq!(code, 400);
    assert_eq!(err["error"]["code"], "invalid_request");
    let (code, err) = server.start_saga("nope", "x", &input).await.unwrap();
    assert_eq!(code, 404);
    assert_eq!(err["error"]["code"], "unknown_workflow");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("known: book_flight, book_hotel, booking_agent, order, "), "{message}");
    let (code, err) = server.get("/v1/sagas/missing").await;
    assert_eq!((code, err["error"]["code"].as_str()), (404, Some("not_found")));
    let (code, err) = server.get("/v1/sagas?status=bogus").await;
    assert_eq!((code, err["error"]["code"].as_str()), (400, Some("invalid_status")));

    assert!(server.terminate().success(), "SIGTERM is a graceful stop: exit 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_sagas_survive_a_sigkill() {
    const N: usize = 500;
    let data = tempfile::tempdir().unwrap();
    let data_arg = data.path().to_str().unwrap().to_owned();
    let ids: Vec<String> = (0..N).map(|i| format!("crash-{i}")).collect();

    let server = Server::start(&["--data", &data_arg]).await;
    // Submit from a few tasks at once, and kill the host while they are at it.
    let submitted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for part in 0..4 {
        let (url, ids, submitted) = (server.url.clone(), ids.clone(), submitted.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in (part..N).step_by(4) {
                let (input, _) = order_case(i);
                let body = serde_json::json!({"workflow": "order", "id": ids[i], "input": input});
                if http.post(format!("{url}/v1/sagas")).json(&body).send().await.is_err() {
                    return; // the host died under us
                }
                submitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    while submitted.load(std::sync::atomic::Ordering::Relaxed) < N / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    for t in tasks {
        t.await.unwrap();
    }
    let before = submitted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(before < N, "the kill should land mid-flight (all {N} were already submitted)");

    // Restart on the same data; the client retries every start with the same id.
    let server = Server::start(&["--data", &data_arg]).await;
    for (i, id) in ids.iter().enumerate() {
        let (input, _) = order_case(i);
        let (code, _) = server.start_saga("order", id, &input).await.expect("the restarted host answers");
        assert!(code == 200 || code == 201, "start {id}: HTTP {code}");
    }
    let sagas = server.wait_all(&ids, Duration::from_secs(180)).await;
    for (i, saga) in sagas.iter().enumerate() {
        check_order_saga(i, saga);
    }
    server.check_histories(&ids).await;
    eprintln!("{before} of {N} sagas were submitted before the SIGKILL; all {N} finished as their input implies");
}

/// Submit sagas `range` to `servers` round-robin, concurrently; returns how many were accepted.
async fn submit(servers: &[String], ids: &[String], range: std::ops::Range<usize>) -> usize {
    let mut tasks = Vec::new();
    for (k, url) in servers.iter().enumerate() {
        let (url, ids) = (url.clone(), ids.to_vec());
        let mine: Vec<usize> = range.clone().filter(|i| i % servers.len() == k).collect();
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut ok = 0;
            for i in mine {
                let (input, _) = order_case(i);
                let body = serde_json::json!({"workflow": "order", "id": ids[i], "input": input});
                if http.post(format!("{url}/v1/sagas")).json(&body).send().await.is_ok_and(|r| r.status().is_success())
                {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sagas_survive_a_sigkill() {
    const N: usize = 500;
    let prefix = baton_tests::unique_prefix("redis_sigkill");
    let url = baton_tests::redis_url();
    let args = ["--redis", url.as_str(), "--prefix", prefix.as_str(), "--visibility-timeout", "1s"];
    let ids: Vec<String> = (0..N).map(|i| format!("rk-{i}")).collect();

    let server = Server::start(&args).await;
    let first = submit(std::slice::from_ref(&server.url), &ids, 0..N / 2).await;
    assert_eq!(first, N / 2);
    server.kill(); // the first half is in flight, in Redis
    let server = Server::start(&args).await;
    assert_eq!(submit(std::slice::from_ref(&server.url), &ids, 0..N).await, N, "retried starts are idempotent");
    let sagas = server.wait_all(&ids, Duration::from_secs(180)).await;
    for (i, saga) in sagas.iter().enumerate() {
        check_order_saga(i, saga);
    }
    server.check_histories(&ids).await;
    drop(server);
    baton_tests::delete_prefix(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_redis_hosts_share_the_work_and_lose_nothing_when_one_dies() {
    const N: usize = 300;
    let prefix = baton_tests::unique_prefix("redis_three_hosts");
    let url = baton_tests::redis_url();
    let args = ["--redis", url.as_str(), "--prefix", prefix.as_str(), "--visibility-timeout", "1s"];
    let ids: Vec<String> = (0..N).map(|i| format!("h3-{i}")).collect();
    let a = Server::start(&args).await;
    let b = Server::start(&args).await;
    let c = Server::start(&args).await;
    let urls = vec![a.url.clone(), b.url.clone(), c.url.clone()];
    assert_eq!(submit(&urls, &ids, 0..N / 2).await, N / 2);
    c.kill(); // one host dies with work in flight
    let survivors = vec![a.url.clone(), b.url.clone()];
    assert_eq!(submit(&survivors, &ids, 0..N).await, N);
    let sagas = a.wait_all(&ids, Duration::from_secs(180)).await;
    for (i, saga) in sagas.iter().enumerate() {
        check_order_saga(i, saga);
    }
    b.check_histories(&ids).await;
    // Every host joined the command's consumer group, which shares the stream among them.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_connection().unwrap();
    let consumers: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(format!("{prefix}:cmd:inventory.reserve"))
        .arg("workers")
        .query(&mut con)
        .unwrap();
    assert!(consumers.len() >= 3, "every host joined the worker group: {consumers:?}");
    drop((a, b));
    baton_tests::delete_prefix(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_backoff_survives_a_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let workflows = tempfile::tempdir().unwrap();
    std::fs::write(
        workflows.path().join("slow.toml"),
        r#"
name = "slow"
[[step]]
name = "flaky"
command = "testkit.fail"
input = "{ 'code': 'busy', 'message': 'try later', 'retryable': true, 'succeed_on_attempt': 2 }"
retry = { attempts = 2, backoff = "3s", max_backoff = "3s", multiplier = 1.0 }
"#,
    )
    .unwrap();
    let args = ["--data", data.path().to_str().unwrap(), "--workflows", workflows.path().to_str().unwrap()];
    let server = Server::start(&args).await;
    let (code, _) = server.start_saga("slow", "backoff-1", &serde_json::json!({})).await.unwrap();
    assert_eq!(code, 201);
    // Wait for the first attempt to fail and the backoff to begin, then kill the host.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, saga) = server.get("/v1/sagas/backoff-1").await;
        if saga["steps"][0]["waiting"]["on"] == "backoff" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never entered backoff: {saga:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    let server = Server::start(&args).await;
    let saga = &server.wait_all(&["backoff-1".to_owned()], Duration::from_secs(30)).await[0];
    assert_eq!(saga["status"], "completed", "{saga:#}");
    assert_eq!(saga["steps"][0]["attempts"], 2, "the retry ran once, after the restart");
}

/// A step timeout set by one process fires in the next: the orchestrator that sent the
/// command dies, no worker ever answers, and the restarted orchestrator times the step out
/// from the deadline in the saga record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_timeout_survives_a_sigkill() {
    let prefix = baton_tests::unique_prefix("timeout_sigkill");
    let url = baton_tests::redis_url();
    let workflows = tempfile::tempdir().unwrap();
    std::fs::write(
        workflows.path().join("unanswered.toml"),
        "name = \"unanswered\"\n[[step]]\nname = \"e\"\ncommand = \"testkit.echo\"\ntimeout = \"2s\"\nretry = { attempts = 1 }\n",
    )
    .unwrap();
    let wf = workflows.path().to_str().unwrap();
    let args = ["--redis", url.as_str(), "--prefix", prefix.as_str(), "--workflows", wf, "--role", "orchestrator"];
    let server = Server::start(&args).await;
    let (code, _) = server.start_saga("unanswered", "to-1", &serde_json::json!({})).await.unwrap();
    assert_eq!(code, 201);
    server.kill();
    let server = Server::start(&args).await;
    let saga = &server.wait_all(&["to-1".to_owned()], Duration::from_secs(30)).await[0];
    assert_eq!(saga["status"], "compensated", "{saga:#}");
    assert_eq!(saga["error"]["code"], "timeout", "{saga:#}");
    server.check_histories(&["to-1".to_owned()]).await;
    drop(server);
    baton_tests::delete_prefix(&prefix);
}

/// A Redis of our own, so we can stop it without disturbing the tests that share the
/// machine's Redis. Append-only with fsync on every write: stopping it loses nothing.
struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = PrivateRedis { port, dir: tempfile::tempdir().unwrap(), child: None };
        r.up();
        r
    }

    fn up(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--dir", self.dir.path().to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (the CI script needs it too)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "private redis did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SHUTDOWN: Redis flushes its append-only file and exits; clients see it go away.
    fn down(&mut self) {
        let _ = std::process::Command::new("redis-cli").args(["-p", &self.port.to_string(), "shutdown"]).status();
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_carry_on_after_redis_goes_away_for_a_few_seconds() {
    const N: usize = 100;
    let mut redis = PrivateRedis::start();
    let mut config = redis_config("baton");
    config.redis = Some(redis.url());
    config.streams.visibility_timeout = Duration::from_secs(1);
    let ids: Vec<String> = (0..N).map(|i| format!("outage-{i}")).collect();
    let server = InProcess::start(config).await;
    assert_eq!(submit(std::slice::from_ref(&server.url), &ids, 0..N).await, N, "every start is accepted");
    redis.down();
    // While Redis is away a start is refused, after the host has tried for a while, with a
    // 503 that says what is unreachable and that a retry with the same id is safe.
    let (code, err) = server.start_saga("order", "outage-late", &order_case(0).0).await.expect("the host answers");
    assert_eq!(code, 503, "{err}");
    assert_eq!(err["error"]["code"], "store_unavailable", "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("Redis at redis://127.0.0.1:") && message.contains("same id is safe"), "{message}");
    redis.up();
    let sagas = server.wait_all(&ids, Duration::from_secs(120)).await;
    for (i, saga) in sagas.iter().enumerate() {
        check_order_saga(i, saga);
    }
    server.check_histories(&ids).await;
    // The refused start retried with its id now succeeds, once.
    let (code, _) = server.start_saga("order", "outage-late", &order_case(0).0).await.unwrap();
    assert_eq!(code, 201);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_loses_a_command_nobody_hears_and_the_step_timeout_resends_it() {
    let prefix = baton_tests::unique_prefix("pubsub_timeout");
    let workflows = tempfile::tempdir().unwrap();
    std::fs::write(
        workflows.path().join("echo.toml"),
        "name = \"echo\"\n[[step]]\nname = \"e\"\ncommand = \"testkit.echo\"\ntimeout = \"1s\"\nretry = { attempts = 5, backoff = \"10ms\" }\n",
    )
    .unwrap();
    let config = |role| {
        let mut c = redis_config(&prefix);
        c.transport = Transport::RedisPubsub;
        c.workflows = workflows.path().to_owned();
        c.role = role;
        c
    };
    // Only an orchestrator: the first command is published to nobody. The start answers
    // once the command is published, so it is lost before the worker below subscribes.
    let orchestrator = InProcess::start(config(Role::Orchestrator)).await;
    let (code, _) = orchestrator.start_saga("echo", "ps-1", &serde_json::json!({"hello": "world"})).await.unwrap();
    assert_eq!(code, 201);
    // A worker-only host: an orchestrator here would re-send the pending command at its
    // start, and the first attempt would not be lost.
    let worker = InProcess::start(config(Role::Worker)).await;
    let saga = &orchestrator.wait_all(&["ps-1".to_owned()], Duration::from_secs(30)).await[0];
    assert_eq!(saga["status"], "completed", "{saga:#}");
    assert!(
        saga["steps"][0]["attempts"].as_u64().unwrap() >= 2,
        "the lost first attempt timed out and was resent: {saga:#}"
    );
    assert_eq!(saga["steps"][0]["output"], serde_json::json!({"hello": "world"}));
    orchestrator.stop().await;
    worker.stop().await;
    baton_tests::delete_prefix(&prefix);
}

/// Nothing is left unacknowledged once traffic stops: a command left pending would be
/// reclaimed after the visibility timeout and, had it failed retryably, run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_entries_are_acknowledged_when_traffic_stops() {
    let prefix = baton_tests::unique_prefix("acks_when_idle");
    let url = baton_tests::redis_url();
    let server = InProcess::start(redis_config(&prefix)).await;
    let ids: Vec<String> = (0..8).map(|i| format!("ack-{i}")).collect();
    assert_eq!(submit(std::slice::from_ref(&server.url), &ids, 0..8).await, 8);
    server.wait_all(&ids, Duration::from_secs(30)).await;
    // Quiet now: every group must drain to nothing pending. The last acknowledgements may
    // still be on their way, so look until they are in (well before the 30 s visibility
    // timeout after which an entry left pending would be redelivered).
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_connection().unwrap();
    let mut streams: Vec<(String, &str)> =
        ["inventory.reserve", "payment.charge", "shipping.ship", "notification.send"]
            .iter()
            .map(|c| (format!("{prefix}:cmd:{c}"), "workers"))
            .collect();
    streams.push((format!("{prefix}:results"), "orchestrators"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for (stream, group) in streams {
        loop {
            let pending: redis::Value = redis::cmd("XPENDING").arg(&stream).arg(group).query(&mut con).unwrap();
            let count = match &pending {
                redis::Value::Array(v) => redis::from_redis_value_ref::<u64>(&v[0]).unwrap(),
                other => panic!("XPENDING {stream}: {other:?}"),
            };
            if count == 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{stream} has {count} entries nobody acknowledged");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    server.stop().await;
    baton_tests::delete_prefix(&prefix);
}

/// Worker pools scale apart: one host runs every plugin but shipping, another only shipping.
/// The first still loads the order workflow (another host handles `shipping.*`), and every
/// saga completes with its ship step run by the second host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_with_different_plugins_share_one_workflow() {
    let prefix = baton_tests::unique_prefix("split_plugins");
    let most = baton_tests::plugin_dir_copy();
    std::fs::remove_file(most.path().join("shipping.wasm")).unwrap();
    let shipping_only = tempfile::tempdir().unwrap();
    std::fs::copy(
        std::path::Path::new(baton_tests::PLUGINS_DIR).join("shipping.wasm"),
        shipping_only.path().join("shipping.wasm"),
    )
    .unwrap();
    let mut most_config = redis_config(&prefix);
    most_config.plugins = most.path().to_owned();
    let mut shipping_config = redis_config(&prefix);
    shipping_config.plugins = shipping_only.path().to_owned();
    shipping_config.role = Role::Worker;
    let a = InProcess::start(most_config).await;
    let b = InProcess::start(shipping_config).await;
    let ids: Vec<String> = (0..12).map(|i| format!("split-{i}")).collect();
    assert_eq!(submit(std::slice::from_ref(&a.url), &ids, 0..12).await, 12);
    let sagas = a.wait_all(&ids, Duration::from_secs(60)).await;
    for (i, saga) in sagas.iter().enumerate() {
        check_order_saga(i, saga);
    }
    a.check_histories(&ids).await;
    a.stop().await;
    b.stop().await;
    baton_tests::delete_prefix(&prefix);
}

/// Finished sagas go after `--retain`, with their history and outcome records, in both
/// stores; the list says how long they are kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_sagas_are_deleted_after_their_retention() {
    let data = tempfile::tempdir().unwrap();
    let prefix = baton_tests::unique_prefix("retention");
    let mut embedded = baton_tests::server::config(data.path());
    let mut redis = redis_config(&prefix);
    for c in [&mut embedded, &mut redis] {
        c.retain = Some(Duration::from_secs(1));
    }
    for (mode, config) in [("embedded", embedded), ("redis", redis)] {
        let host = InProcess::start(config).await;
        let ids: Vec<String> = (0..4).map(|i| format!("keep-{i}")).collect();
        assert_eq!(submit(std::slice::from_ref(&host.url), &ids, 0..4).await, 4);
        let sagas = host.wait_all(&ids, Duration::from_secs(30)).await;
        for s in &sagas {
            let ms = |v: &serde_json::Value| baton::model::time::parse(v.as_str().unwrap()).unwrap();
            assert_eq!(ms(&s["expires_at"]), ms(&s["updated_at"]) + 1_000, "{mode}: {s:#}");
        }
        let (_, headers, _) = host.request("GET", "/v1/sagas", None).await;
        assert_eq!(headers["baton-retain"], "1s", "{mode}");
        // Gone within a few sweeps of their expiry.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        for id in &ids {
            while host.get(&format!("/v1/sagas/{id}")).await.0 != 404 {
                assert!(std::time::Instant::now() < deadline, "{mode}: {id} was never deleted");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(host.get(&format!("/v1/sagas/{id}/history")).await.0, 404);
        }
        let (_, list) = host.get("/v1/sagas").await;
        assert_eq!(list, serde_json::json!([]), "{mode}");
        if mode == "redis" {
            // Redis frees the keys at their expiry by itself; the indexes go at the next purge.
            let client = redis::Client::open(baton_tests::redis_url()).unwrap();
            let mut con = client.get_connection().unwrap();
            loop {
                let n: usize = redis::cmd("ZCARD").arg(format!("{prefix}:all")).query(&mut con).unwrap();
                if n == 0 {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{n} ids left in {prefix}:all");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        host.stop().await;
    }
    // Nothing of them is left in Redis: no record, history, outcome or index entry.
    let client = redis::Client::open(baton_tests::redis_url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query(&mut con).unwrap();
    let left: Vec<&String> = keys.iter().filter(|k| k.contains("keep-")).collect();
    assert!(left.is_empty(), "{left:?}");
    for index in ["all", "expiry", "status:completed", "status:compensated"] {
        let n: usize = redis::cmd("ZCARD").arg(format!("{prefix}:{index}")).query(&mut con).unwrap();
        assert_eq!(n, 0, "{index}");
    }
    baton_tests::delete_prefix(&prefix);
}

/// `baton start` rides out a store outage: it picks the id itself and retries the 503s with
/// backoff, so the saga starts once Redis is back, and only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baton_start_retries_while_the_store_is_away() {
    let mut redis = PrivateRedis::start();
    let mut config = redis_config("baton");
    config.redis = Some(redis.url());
    let server = InProcess::start(config).await;
    redis.down();
    let url = server.url.clone();
    let start = std::thread::spawn(move || {
        baton_tests::run(baton_tests::baton().args([
            "start",
            "order",
            "--input",
            &baton_tests::order(serde_json::json!({})),
            "--server",
            &url,
        ]))
    });
    // Long enough for the host's own retries to give up at least once (a 503 reaches the CLI).
    tokio::time::sleep(Duration::from_secs(7)).await;
    redis.up();
    let ran = tokio::task::spawn_blocking(move || start.join().unwrap()).await.unwrap();
    assert_eq!(ran.code, 0, "{ran}");
    assert!(ran.stderr.contains("trying again"), "it met a 503 and retried: {ran}");
    let id = ran.json()["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("order-"), "the CLI chose the id: {id}");
    let (_, list) = server.get("/v1/sagas").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "started once: {list:#}");
    server.stop().await;
}
