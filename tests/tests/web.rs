//! The web UI, end to end: its files served without the token and its data behind it, the
//! live event stream (`GET /v1/events`) and the workflow outlines (`GET /v1/workflows`) over
//! HTTP, then the page itself in a real browser (Chromium, driven by `tests/web/ui.mjs` with
//! playwright-core) on a real host: sagas appearing live, a compensation watched as it runs,
//! a signal, a cancel and a retry sent from the page, a saga started from its form, the
//! links between a saga and its sub-sagas.

use std::path::Path;
use std::time::{Duration, Instant};

use baton_tests::server::{InProcess, config};
use serde_json::{Value, json};

const TOKEN: &str = "web-ui-token_0123456789abcdef";

/// A workflow whose saga reserves each item and charges, pauses, then fails: its
/// compensations (a refund that fails until attempt `refund_on_attempt`, default 1, and a
/// release per item that takes 700 ms of CPU) run while a page watches.
const UI_UNDO: &str = r#"
name = "ui_undo"
description = "Reserve each item, charge, pause, then fail: watch the compensations run"
input_schema = { type = "object", required = ["items"], properties = { items = { type = "array" } } }

[defaults]
timeout = "10s"

[[step]]
name = "reserve"
for_each = "input.items"
run = "reserve_item"

[[step]]
name = "charge"
command = "testkit.echo"
input = "{ 'charged': size(input.items) }"
compensate = "testkit.fail"
compensate_input = "{ 'code': 'refund_refused', 'message': 'the refund service said no', 'succeed_on_attempt': has(input.refund_on_attempt) ? input.refund_on_attempt : 1 }"
retry = { attempts = 1 }

[[step]]
name = "pause"
sleep = "2s"

[[step]]
name = "boom"
fail = { code = "out_of_stock", message = "the warehouse has none left" }

[[block.reserve_item]]
name = "reserve_one"
command = "testkit.echo"
input = "{ 'sku': item }"
compensate = "testkit.sagas"
compensate_input = "{ 'calls': [{ 'call': 'spin', 'ms': 700 }] }"
"#;

/// The example workflows (the order with its approval, the trip and its sub-sagas), and
/// `ui_undo`.
fn workflows() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(baton_tests::root().join("workflows")).unwrap().flatten() {
        // Files only: `workflows/tests/` holds the workflows' test cases.
        if e.path().is_file() {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
        }
    }
    std::fs::write(dir.path().join("ui_undo.toml"), UI_UNDO).unwrap();
    dir
}

/// A host of those workflows, with the token when asked.
async fn host(workflows: &Path, data: &Path, token: bool) -> InProcess {
    let mut cfg = config(data);
    cfg.workflows = workflows.to_owned();
    cfg.reload = false;
    if token {
        cfg.token = Some(baton::api::Token::new(TOKEN).unwrap());
    }
    InProcess::start(cfg).await
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_is_served_without_the_token_and_its_data_with_it() {
    let (wf, data) = (workflows(), tempfile::tempdir().unwrap());
    let host = host(wf.path(), data.path(), true).await;

    for (path, kind, marker) in [
        ("/", "text/html", "<title>Baton</title>"),
        ("/ui/app.js", "text/javascript", "runFeed"),
        ("/ui/app.css", "text/css", "--running"),
    ] {
        let (code, headers, body) = host.request("GET", path, None).await;
        assert_eq!(code, 200, "{path}: {body}");
        assert!(header(&headers, "content-type").starts_with(kind), "{path}: {headers:?}");
        assert_eq!(header(&headers, "cache-control"), "no-cache", "{path}");
        assert!(header(&headers, "content-security-policy").contains("default-src 'self'"), "{path}");
        assert!(body.contains(marker), "{path}");
    }
    // The data is behind the token, the live feed included, and so is any other path.
    for path in ["/v1/events", "/v1/workflows", "/v1/workflows/order", "/v1/sagas", "/ui/other.js", "/index.html"] {
        let (code, _, body) = host.request("GET", path, None).await;
        assert_eq!(code, 401, "{path}: {body}");
        assert!(body.contains("unauthorized"), "{path}: {body}");
    }

    let api = host.with_token(TOKEN);
    let (code, list) = api.get("/v1/workflows").await;
    assert_eq!(code, 200, "{list}");
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    for name in ["order", "trip", "book_flight", "ui_undo"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    let trip = list.as_array().unwrap().iter().find(|w| w["name"] == "trip").unwrap();
    assert_eq!(trip["input_schema"]["required"][0], "trip_id", "{trip}");
    assert!(trip.get("blocks").is_none(), "the list has no outlines: {trip}");

    // The outline of the order: the main block, its steps in file order, their jumps.
    let (code, order) = api.get("/v1/workflows/order").await;
    assert_eq!(code, 200, "{order}");
    let main = &order["blocks"][0];
    assert_eq!(main["name"], "main");
    let steps: Vec<&str> = main["steps"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(steps, ["reserve", "review", "approval", "approved", "settle", "notify", "reject"]);
    assert_eq!(main["steps"][0]["block"], "reserve_item");
    assert_eq!(main["steps"][1]["otherwise"], "settle");
    assert_eq!(main["steps"][2]["signal"], "approved");
    assert_eq!(main["steps"][2]["catch"], json!([{"errors": ["timeout"], "next": "reject"}]));
    assert_eq!(main["steps"][4]["blocks"], json!(["pay", "ship"]));
    assert_eq!(main["steps"][5]["next"], "end");
    let hash = order["hash"].as_str().unwrap();

    // A saga's definition, by the hash it records.
    let (code, saga) = api
        .start_saga("order", "web-outline", &json!({"order_id": "o-1", "customer": "ada", "items": []}))
        .await
        .unwrap();
    assert_eq!(code, 201, "{saga}");
    assert_eq!(saga["workflow_hash"], hash);
    let (code, by_hash) = api.get(&format!("/v1/workflows/order?hash={hash}")).await;
    assert_eq!((code, &by_hash), (200, &order));
    let refused = [
        ("/v1/workflows/nope".to_owned(), 404, "unknown_workflow"),
        ("/v1/workflows/order?hash=sha256:0000000000000000".to_owned(), 404, "unknown_workflow"),
        (format!("/v1/workflows/trip?hash={hash}"), 404, "unknown_workflow"),
        ("/v1/workflows/order?hash=bogus".to_owned(), 400, "invalid_request"),
        ("/v1/workflows/order?other=1".to_owned(), 400, "invalid_request"),
    ];
    for (path, status, code_name) in refused {
        let (code, body) = api.get(&path).await;
        assert_eq!((code, body["error"]["code"].as_str()), (status, Some(code_name)), "{path}: {body}");
    }
    host.stop().await;
}

/// Read server-sent events off `response` until `done` says so (or `limit`): (name, data).
async fn read_events(
    response: &mut reqwest::Response,
    limit: Duration,
    mut done: impl FnMut(&str, &str) -> bool,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + limit;
    let (mut buffer, mut events) = (String::new(), Vec::new());
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut name, mut data) = (String::from("message"), Vec::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                }
            }
            if !data.is_empty() {
                let data = data.join("\n");
                let stop = done(&name, &data);
                events.push((name, data));
                if stop {
                    return events;
                }
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, response.chunk()).await {
            Ok(Ok(Some(chunk))) => buffer.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => panic!("the event stream ended; events so far: {events:?}"),
            Ok(Err(e)) => panic!("the event stream failed: {e}; events so far: {events:?}"),
            Err(_) => panic!("no end within {limit:?}; events so far: {events:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_sends_what_the_host_commits_as_it_commits_it() {
    let (wf, data) = (workflows(), tempfile::tempdir().unwrap());
    let host = host(wf.path(), data.path(), false).await;
    let client = reqwest::Client::new();
    let (code, body) = host.get("/v1/events?status=bogus").await;
    assert_eq!((code, body["error"]["code"].as_str()), (400, Some("invalid_status")), "{body}");

    let mut all = client.get(format!("{}/v1/events", host.url)).send().await.unwrap();
    assert_eq!(all.status(), 200);
    assert_eq!(header(all.headers(), "content-type"), "text/event-stream");
    let mut orders =
        client.get(format!("{}/v1/events?workflow=order&status=completed", host.url)).send().await.unwrap();
    // The first event says the stream listens: read the list after it, and nothing is missed.
    for stream in [&mut all, &mut orders] {
        let first = read_events(stream, Duration::from_secs(10), |_, _| true).await;
        assert_eq!(first, [("resync".to_owned(), "0".to_owned())]);
    }

    let input = json!({"order_id": "o-1", "customer": "ada", "items": [{"sku": "A-1", "qty": 1, "price": 5}]});
    let (code, _) = host.start_saga("order", "live-1", &input).await.unwrap();
    assert_eq!(code, 201);
    let (code, _) = host.start_saga("book_hotel", "live-2", &json!({"booking_id": "b-1"})).await.unwrap();
    assert_eq!(code, 201);

    // Every commit of the order, in order, each the record as the list serves it.
    let events = read_events(&mut all, Duration::from_secs(30), |name, data| {
        let saga: Value = serde_json::from_str(data).unwrap();
        name == "saga" && saga["id"] == "live-1" && saga["status"] == "completed"
    })
    .await;
    let order: Vec<Value> = events
        .iter()
        .map(|(name, data)| {
            assert_eq!(name, "saga", "{data}");
            serde_json::from_str::<Value>(data).unwrap()
        })
        .filter(|s| s["id"] == "live-1")
        .collect();
    assert!(order.len() >= 3, "a start, steps, the end: {order:#?}");
    assert_eq!(order[0]["status"], "running");
    let revisions: Vec<u64> = order.iter().map(|s| s["revision"].as_u64().unwrap()).collect();
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "in commit order: {revisions:?}");
    let (_, list) = host.get("/v1/sagas?status=completed").await;
    let listed = list.as_array().unwrap().iter().find(|s| s["id"] == "live-1").unwrap();
    assert_eq!(order.last().unwrap(), listed, "the same JSON as the list");

    // The filtered stream sends the completed order and nothing else.
    let filtered = read_events(&mut orders, Duration::from_secs(10), |_, _| true).await;
    let saga: Value = serde_json::from_str(&filtered[0].1).unwrap();
    assert_eq!((saga["id"].as_str(), saga["status"].as_str()), (Some("live-1"), Some("completed")));

    // An open stream does not hold up a graceful stop.
    let stopped = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), host.stop()).await.expect("the host stops with streams open");
    assert!(stopped.elapsed() < Duration::from_secs(15));
    let end =
        tokio::time::timeout(Duration::from_secs(5), async { while let Ok(Some(_)) = all.chunk().await {} }).await;
    assert!(end.is_ok(), "the stream ends with the host");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_shows_sagas_live_and_acts_on_them_in_a_browser() {
    baton_tests::web::chromium();
    let tools = tokio::task::spawn_blocking(baton_tests::web::tools).await.unwrap();
    assert!(tools.join("node_modules/playwright-core").exists());
    let (wf, data) = (workflows(), tempfile::tempdir().unwrap());
    let host = host(wf.path(), data.path(), true).await;
    let screens = baton_tests::web::screens_dir();
    let script = baton_tests::root().join("tests/web/ui.mjs");
    let env = vec![
        ("BATON_URL", host.url.clone()),
        ("BATON_TOKEN", TOKEN.to_owned()),
        ("BATON_SCREENS", screens.display().to_string()),
        ("BATON_CHROMIUM", baton_tests::web::CHROMIUM.to_owned()),
    ];
    let ran = tokio::task::spawn_blocking(move || baton_tests::web::run_node(&script, &env, Duration::from_secs(90)))
        .await
        .unwrap();
    assert_eq!(ran.code, Some(0), "tests/web/ui.mjs failed:\n{ran}");
    println!("{}", ran.stdout);
    for shot in ["list.png", "saga-compensating.png", "saga-order.png", "saga-trip.png", "start-form.png"] {
        assert!(screens.join(shot).exists(), "{shot} in {}", screens.display());
    }

    // What the page did, as the host recorded it.
    let api = host.with_token(TOKEN);
    let expect = [
        ("web-undo", "compensated"),
        ("web-retry", "compensated"),
        ("web-order", "completed"),
        ("web-cancel", "compensated"),
        ("web-trip", "completed"),
    ];
    for (id, status) in expect {
        let (code, saga) = api.get(&format!("/v1/sagas/{id}")).await;
        assert_eq!((code, saga["status"].as_str()), (200, Some(status)), "{saga:#}");
    }
    let (_, order) = api.get("/v1/sagas/web-order").await;
    assert_eq!(baton_tests::step(&order, "approval")["output"], json!({"approved": true, "by": "maria"}));
    let (_, cancelled) = api.get("/v1/sagas/web-cancel").await;
    assert_eq!(cancelled["error"]["message"], "the customer called");
    let (_, history) = api.get("/v1/sagas/web-retry/history").await;
    assert!(history.as_array().unwrap().iter().any(|e| e["event"] == "retry_requested"), "{history:#}");
    host.stop().await;
}
