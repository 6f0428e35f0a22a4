//! Teams of teams, end to end: `workflow` steps (the trip example and its three sub-sagas),
//! failures and compensation across the tree, a SIGKILL while a child runs, a child run by
//! another host, and a `handles` workflow called as a command by another deployment.

use std::time::Duration;

use baton_tests::server::{Api, InProcess, Server, config, redis_config};
use baton_tests::{PrefixGuard, baton, run, step};
use serde_json::{Value, json};

fn trip(id: &str, destination: &str) -> Value {
    json!({"trip_id": id, "destination": destination, "date": "2026-12-24", "nights": 3, "guests": 2})
}

/// The children of saga `id`, as `GET /v1/sagas?parent=` lists them.
async fn children(api: &Api, id: &str) -> Vec<Value> {
    let (code, list) = api.get(&format!("/v1/sagas?parent={id}")).await;
    assert_eq!(code, 200, "{list}");
    list.as_array().expect("a list").clone()
}

async fn history(api: &Api, id: &str) -> Vec<Value> {
    let (code, history) = api.get(&format!("/v1/sagas/{id}/history")).await;
    assert_eq!(code, 200, "{history}");
    history.as_array().expect("a list").clone()
}

/// Where in `history` the first entry matching `pred` is.
fn position(history: &[Value], what: &str, pred: impl Fn(&Value) -> bool) -> usize {
    history.iter().position(pred).unwrap_or_else(|| panic!("no {what} in {history:#?}"))
}

fn finished_at(history: &[Value]) -> String {
    let e = history.iter().rev().find(|e| e["event"] == "finished").expect("finished");
    e["at"].as_str().expect("at").to_owned()
}

#[test]
fn a_trip_books_its_flight_hotel_and_car_as_sub_sagas() {
    let ran = run(baton().args(["run", "trip", "--input", "@workflows/trip.input.json"]));
    assert_eq!(ran.code, 0, "{ran}");
    let saga = ran.json();
    assert_eq!(saga["status"], "completed", "{saga:#}");
    assert_eq!(
        saga["output"],
        json!({"trip": "t-100", "flight": "flt-t-100", "hotel": "htl-t-100", "car": "car-t-100"})
    );
    let id = saga["id"].as_str().unwrap();
    let kids: Vec<&str> = saga["children"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert_eq!(kids.len(), 3, "{saga:#}");
    assert_eq!(kids[0], format!("{id}.flight"));
    assert!(kids.contains(&format!("{id}.stay.hotel").as_str()) && kids.contains(&format!("{id}.stay.car").as_str()));
    assert_eq!(step(&saga, "flight")["kind"], "workflow");
    assert_eq!(step(&saga, "flight")["child"], kids[0]);
}

/// The car cannot be rented in Venice: its sub-saga fails, the trip's `car` step fails with
/// the child's code, and the trip undoes the hotel, then the flight, each by compensating its
/// completed sub-saga.
async fn failure_cascades(api: &Api, mode: &str) {
    let (code, _) = api.start_saga("trip", "ven-1", &trip("ven-1", "Venice")).await.unwrap();
    assert_eq!(code, 201, "{mode}");
    let saga = &api.wait_all(&["ven-1".to_owned()], Duration::from_secs(60)).await[0];
    assert_eq!(saga["status"], "compensated", "{mode}: {saga:#}");
    assert_eq!(saga["error"]["code"], "no_car", "{mode}: the child's code: {saga:#}");
    assert_eq!(saga["error"]["step"], "stay", "{mode}: the parallel step, failed by its car branch");
    assert_eq!(step(saga, "car")["error"]["code"], "no_car", "{mode}");

    let kids = children(api, "ven-1").await;
    let status = |id: &str| kids.iter().find(|k| k["id"] == id).map(|k| k["status"].clone()).unwrap_or_default();
    assert_eq!(kids.len(), 3, "{mode}: {kids:#?}");
    for id in ["ven-1.flight", "ven-1.stay.hotel", "ven-1.stay.car"] {
        assert_eq!(status(id), "compensated", "{mode}: {id}: {kids:#?}");
    }
    for k in &kids {
        assert_eq!(k["parent"]["saga"], "ven-1", "{mode}: {k:#}");
    }
    // The completed children were undone by their own compensations, hotel before flight.
    let flight = history(api, "ven-1.flight").await;
    let hotel = history(api, "ven-1.stay.hotel").await;
    for (name, h, cancel) in [("flight", &flight, "flight.cancel"), ("hotel", &hotel, "hotel.cancel")] {
        position(h, "undo_requested", |e| e["event"] == "undo_requested" && e["by"] == "ven-1");
        let undone = position(h, "the cancel", |e| {
            e["event"] == "dispatched" && e["phase"] == "compensate" && e["command"] == cancel
        });
        assert!(undone > 0, "{mode}: {name}");
    }
    let parent = history(api, "ven-1").await;
    let undo = |path: &str| {
        position(&parent, path, |e| e["event"] == "dispatched" && e["phase"] == "compensate" && e["step"] == path)
    };
    assert!(undo("stay/hotel") < undo("flight"), "{mode}: hotel first: {parent:#?}");
    // The hotel's sub-saga was undone before the trip moved on to the flight's.
    let hotel_done = position(&parent, "hotel undone", |e| {
        e["event"] == "succeeded" && e["phase"] == "compensate" && e["step"] == "stay/hotel"
    });
    assert!(hotel_done < undo("flight"), "{mode}: {parent:#?}");
    assert!(finished_at(&hotel).as_str() <= parent[undo("flight")]["at"].as_str().unwrap(), "{mode}");
    // The car's child failed by itself and compensated itself: there was nothing to undo.
    let car = history(api, "ven-1.stay.car").await;
    assert!(!car.iter().any(|e| e["event"] == "undo_requested"), "{mode}: {car:#?}");
}

/// A child whose second step fails compensates its first before its parent learns of it.
async fn child_compensates_first(api: &Api, mode: &str) {
    // No traveller to tell: the flight is booked, then `tell` fails for good.
    let (code, _) = api.start_saga("trip", "anon-1", &trip("", "Lisbon")).await.unwrap();
    assert_eq!(code, 201, "{mode}");
    let saga = &api.wait_all(&["anon-1".to_owned()], Duration::from_secs(60)).await[0];
    assert_eq!(saga["status"], "compensated", "{mode}: {saga:#}");
    assert_eq!(saga["error"]["code"], "no_recipient", "{mode}: {saga:#}");
    let child = history(api, "anon-1.flight").await;
    position(&child, "the flight cancelled", |e| {
        e["event"] == "succeeded" && e["phase"] == "compensate" && e["step"] == "book"
    });
    let parent = history(api, "anon-1").await;
    let failed = &parent[position(&parent, "the step's failure", |e| e["event"] == "failed" && e["step"] == "flight")];
    assert!(finished_at(&child).as_str() <= failed["at"].as_str().unwrap(), "{mode}: child first");
    assert_eq!(step(saga, "flight")["child"], "anon-1.flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_cascade_through_the_tree_embedded() {
    let data = tempfile::tempdir().unwrap();
    let host = InProcess::start(config(data.path())).await;
    failure_cascades(&host, "embedded").await;
    child_compensates_first(&host, "embedded").await;
    let (code, body) = host.get("/v1/sagas?parent=nobody").await;
    assert_eq!((code, body["error"]["code"].as_str()), (404, Some("not_found")));
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_cascade_through_the_tree_on_redis() {
    let prefix = baton_tests::unique_prefix("sub_fail");
    let _guard = PrefixGuard(prefix.clone());
    let host = InProcess::start(redis_config(&prefix)).await;
    failure_cascades(&host, "redis").await;
    child_compensates_first(&host, "redis").await;
    host.stop().await;
}

/// The `baton serve` arguments of both modes over the workflows in `workflows`: embedded with
/// its data in `data`, and on the test Redis under `prefix` (taking over a killed host's
/// messages after 1 s).
fn modes(data: &std::path::Path, workflows: &std::path::Path, prefix: &str) -> [(&'static str, Vec<String>); 2] {
    let wf = workflows.to_str().unwrap().to_owned();
    let embedded = vec!["--data".to_owned(), data.to_str().unwrap().to_owned(), "--workflows".into(), wf.clone()];
    let redis =
        ["--redis", &baton_tests::redis_url(), "--prefix", prefix, "--visibility-timeout", "1s", "--workflows", &wf]
            .map(str::to_owned)
            .to_vec();
    [("embedded", embedded), ("redis", redis)]
}

/// A parent whose child waits for a signal.
const PARENT: &str = r#"name = "parent"
[[step]]
name = "kid"
workflow = "kid"
input = "{ 'n': 1 }"
[[step]]
name = "after"
command = "testkit.echo"
input = "{ 'kid': steps.kid }"
"#;

const KID: &str = r#"name = "kid"
[[step]]
name = "hold"
wait = "go"
[[step]]
name = "work"
command = "testkit.echo"
input = "{ 'n': input.n, 'go': steps.hold }"
"#;

/// A host SIGKILLed while a child saga waits: after the restart, the same child (one, not
/// two) takes the signal, and the parent finishes with its output. Embedded, and on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_survives_a_sigkill_of_its_host() {
    let data = tempfile::tempdir().unwrap();
    let workflows = tempfile::tempdir().unwrap();
    std::fs::write(workflows.path().join("parent.toml"), PARENT).unwrap();
    std::fs::write(workflows.path().join("kid.toml"), KID).unwrap();
    let prefix = baton_tests::unique_prefix("sub_kill");
    let _guard = PrefixGuard(prefix.clone());
    for (mode, args) in modes(data.path(), workflows.path(), &prefix) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::start(&args).await;
        assert_eq!(server.start_saga("parent", "pk-1", &json!({})).await.unwrap().0, 201, "{mode}");
        server.until_waiting("pk-1.kid", "hold").await;
        server.kill();
        let server = Server::start(&args).await;
        assert_eq!(server.signal("pk-1.kid", "go", &json!({"ok": true})).await.0, 202, "{mode}");
        let saga = &server.wait_all(&["pk-1".to_owned()], Duration::from_secs(30)).await[0];
        assert_eq!(saga["status"], "completed", "{mode}: {saga:#}");
        assert_eq!(step(saga, "after")["output"], json!({"kid": {"n": 1, "go": {"ok": true}}}), "{mode}");
        let kids = children(&server, "pk-1").await;
        assert_eq!(kids.len(), 1, "{mode}: one child: {kids:#?}");
        assert_eq!(saga["children"], json!(["pk-1.kid"]), "{mode}");
        let h = history(&server, "pk-1.kid").await;
        let runs = h.iter().filter(|e| e["event"] == "succeeded" && e["step"] == "work").count();
        assert_eq!(runs, 1, "{mode}: the child's work happened once: {h:#?}");
        server.check_histories(&["pk-1".to_owned(), "pk-1.kid".to_owned()]).await;
        // baton status shows the tree (on a terminal; piped, it prints the saga's JSON).
        let ran = run(baton().args(["status", "pk-1", "--server", &server.url]));
        assert_eq!(ran.json()["children"], json!(["pk-1.kid"]), "{mode}: {ran}");
    }
}

/// Two hosts on one Redis: the one that starts the trip has no workflow for its children,
/// the other runs them (and the trip's results, when they reach it first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_runs_on_another_host() {
    let prefix = baton_tests::unique_prefix("sub_hosts");
    let _guard = PrefixGuard(prefix.clone());
    let only_trip = tempfile::tempdir().unwrap();
    std::fs::copy(baton_tests::root().join("workflows/trip.toml"), only_trip.path().join("trip.toml")).unwrap();
    let mut a = redis_config(&prefix);
    a.workflows = only_trip.path().to_owned();
    a.role = baton::node::Role::Orchestrator;
    a.streams.visibility_timeout = Duration::from_secs(1);
    let mut b = redis_config(&prefix);
    b.streams.visibility_timeout = Duration::from_secs(1);
    let (a, b) = (InProcess::start(a).await, InProcess::start(b).await);
    assert_eq!(a.start_saga("trip", "far-1", &trip("far-1", "Lisbon")).await.unwrap().0, 201);
    let saga = &a.wait_all(&["far-1".to_owned()], Duration::from_secs(60)).await[0];
    assert_eq!(saga["status"], "completed", "{saga:#}");
    assert_eq!(saga["output"]["car"], "car-far-1");
    assert_eq!(children(&b, "far-1").await.len(), 3);
    a.stop().await;
    b.stop().await;
}

/// Deployment `x` books a vacation with an ordinary command step, `travel.book`; deployment
/// `y` (another prefix, same Redis) answers it by running its `trip` workflow, which
/// `handles` that command, and replies on `x`'s bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_deployment_calls_a_whole_team_as_one_command() {
    let x = baton_tests::unique_prefix("sub_x");
    let y = baton_tests::unique_prefix("sub_y");
    let (_gx, _gy) = (PrefixGuard(x.clone()), PrefixGuard(y.clone()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("vacation.toml"),
        r#"name = "vacation"
[[step]]
name = "book"
command = "travel.book"
input = "{ 'trip_id': input.who, 'destination': 'Porto', 'date': '2027-01-02', 'nights': 2, 'guests': 1 }"
timeout = "1m"
[[step]]
name = "postcard"
command = "testkit.echo"
input = "{ 'from': 'Porto', 'hotel': steps.book.hotel }"
"#,
    )
    .unwrap();
    let mut cx = redis_config(&x);
    cx.workflows = dir.path().to_owned();
    let mut cy = redis_config(&y);
    cy.answer_for = vec![x.clone()];
    let (hx, hy) = (InProcess::start(cx).await, InProcess::start(cy).await);
    assert_eq!(hx.start_saga("vacation", "vac-1", &json!({"who": "ada"})).await.unwrap().0, 201);
    let saga = &hx.wait_all(&["vac-1".to_owned()], Duration::from_secs(60)).await[0];
    assert_eq!(saga["status"], "completed", "{saga:#}");
    assert_eq!(step(saga, "book")["output"]["flight"], "flt-ada");
    assert_eq!(step(saga, "postcard")["output"], json!({"from": "Porto", "hotel": "htl-ada"}));
    // The team ran in y, under an id derived from x's idempotency key, and never showed in x.
    let (code, team) = hy.get("/v1/sagas/vac-1.book").await;
    assert_eq!(code, 200, "{team}");
    assert_eq!(team["workflow"], "trip");
    assert_eq!(team["parent"]["reply"]["prefix"], x);
    assert_eq!(children(&hy, "vac-1.book").await.len(), 3);
    assert_eq!(hx.get("/v1/sagas/vac-1.book").await.0, 404);
    hx.stop().await;
    hy.stop().await;
}

#[test]
fn check_names_a_missing_sub_workflow_and_a_command_handled_twice() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), "name = \"a\"\n[[step]]\nname = \"go\"\nworkflow = \"trp\"\n").unwrap();
    let echo = "[[step]]\nname = \"e\"\ncommand = \"testkit.echo\"\n";
    std::fs::write(dir.path().join("trip.toml"), format!("name = \"trip\"\nhandles = \"x.y\"\n{echo}")).unwrap();
    std::fs::write(dir.path().join("two.toml"), format!("name = \"two\"\nhandles = \"x.y\"\n{echo}")).unwrap();
    let ran = run(baton().args(["check", "--workflows", dir.path().to_str().unwrap()]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains(r#"no workflow "trp" here for this step's sub-saga: did you mean "trip"?"#), "{ran}");
    assert!(ran.stderr.contains(r#"handles "x.y", which workflow "trip" handles already"#), "{ran}");
}

/// A worker waiting in `run-saga` when its host is SIGKILLed: the command comes again
/// (re-sent on restart, or redelivered), the worker re-attaches to the same child (its id
/// derives from the command's idempotency key), and the parent finishes with the child's
/// output. Exactly one child exists, and its work happened once. Embedded, and on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_waiting_in_run_saga_survives_a_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let workflows = tempfile::tempdir().unwrap();
    std::fs::write(
        workflows.path().join("asker.toml"),
        r#"name = "asker"
[[step]]
name = "ask"
command = "testkit.sagas"
input = "{ 'calls': [{ 'call': 'run', 'workflow': 'kid', 'input': { 'n': 2 } }], 'fail': true }"
timeout = "1m"
"#,
    )
    .unwrap();
    std::fs::write(workflows.path().join("kid.toml"), KID).unwrap();
    let prefix = baton_tests::unique_prefix("sub_run_kill");
    let _guard = PrefixGuard(prefix.clone());
    for (mode, args) in modes(data.path(), workflows.path(), &prefix) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::start(&args).await;
        assert_eq!(server.start_saga("asker", "wk-1", &json!({})).await.unwrap().0, 201, "{mode}");
        server.until_waiting("wk-1.ask.1", "hold").await;
        server.kill();
        let server = Server::start(&args).await;
        assert_eq!(server.signal("wk-1.ask.1", "go", &json!({"ok": 1})).await.0, 202, "{mode}");
        let saga = &server.wait_all(&["wk-1".to_owned()], Duration::from_secs(60)).await[0];
        assert_eq!(saga["status"], "completed", "{mode}: {saga:#}");
        assert_eq!(step(saga, "ask")["output"]["results"][0]["ok"], json!({"n": 2, "go": {"ok": 1}}), "{mode}");
        assert_eq!(saga["children"], json!(["wk-1.ask.1"]), "{mode}: one child, noted in its parent");
        let kids = children(&server, "wk-1").await;
        assert_eq!(kids.len(), 1, "{mode}: {kids:#?}");
        assert_eq!(kids[0]["parent"]["step"], "ask", "{mode}");
        let h = history(&server, "wk-1.ask.1").await;
        let runs = h.iter().filter(|e| e["event"] == "succeeded" && e["step"] == "work").count();
        assert_eq!(runs, 1, "{mode}: the child's work happened once: {h:#?}");
    }
}

/// The concierge plugin books a whole trip from inside its handler (`run-saga`): the trip and
/// its three sub-sagas run on the same host, under ids derived from the command's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concierge_runs_a_trip_from_inside_its_handler() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for f in ["trip.toml", "book_flight.toml", "book_hotel.toml", "rent_car.toml"] {
        std::fs::copy(baton_tests::root().join("workflows").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("getaway.toml"),
        "name = \"getaway\"\n[[step]]\nname = \"book\"\ncommand = \"concierge.book\"\ntimeout = \"1m\"\nretry = { attempts = 1 }\n",
    )
    .unwrap();
    let mut cfg = config(data.path());
    cfg.workflows = dir.path().to_owned();
    let host = InProcess::start(cfg).await;
    let request = json!({"traveller": "Ada", "from": "London", "to": "Lisbon", "date": "2027-01-02", "nights": 2});
    assert_eq!(host.start_saga("getaway", "ga-1", &request).await.unwrap().0, 201);
    let saga = &host.wait_all(&["ga-1".to_owned()], Duration::from_secs(60)).await[0];
    assert_eq!(saga["status"], "completed", "{saga:#}");
    let out = &step(saga, "book")["output"];
    assert_eq!(out["summary"], "Ada travels from London to Lisbon for 2 nights: booked.", "{out:#}");
    assert_eq!(out["trip"], json!({"trip": "ga-1", "flight": "flt-ga-1", "hotel": "htl-ga-1", "car": "car-ga-1"}));
    assert_eq!(saga["children"], json!(["ga-1.book.1"]));
    assert_eq!(children(&host, "ga-1.book.1").await.len(), 3, "the trip's own sub-sagas");
    host.stop().await;
}

/// Embedded, a workflow may call a `handles` command of its own host as a command step: the
/// host answers it by running the workflow that handles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handles_workflow_answers_a_command_step_of_the_same_host() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for f in ["trip.toml", "book_flight.toml", "book_hotel.toml", "rent_car.toml"] {
        std::fs::copy(baton_tests::root().join("workflows").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("weekend.toml"),
        "name = \"weekend\"\n[[step]]\nname = \"go\"\ncommand = \"travel.book\"\ninput = \"{ 'trip_id': 'wk', 'destination': 'Porto', 'date': 'soon', 'nights': 2, 'guests': 1 }\"\ntimeout = \"1m\"\n",
    )
    .unwrap();
    let mut cfg = config(data.path());
    cfg.workflows = dir.path().to_owned();
    let host = InProcess::start(cfg).await;
    assert_eq!(host.start_saga("weekend", "we-1", &json!({})).await.unwrap().0, 201);
    let saga = &host.wait_all(&["we-1".to_owned()], Duration::from_secs(60)).await[0];
    assert_eq!(saga["status"], "completed", "{saga:#}");
    assert_eq!(step(saga, "go")["output"]["hotel"], "htl-wk");
    let (code, team) = host.get("/v1/sagas/we-1.go").await;
    assert_eq!((code, team["workflow"].as_str()), (200, Some("trip")), "{team:#}");
    host.stop().await;
}

/// A parent cancelled while its child runs: the child is cancelled too, compensates what it
/// did, and only then does the parent end `compensated`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_parent_cancels_its_running_child() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("parent.toml"), PARENT).unwrap();
    // The child books a flight, then waits: cancelled there, it must cancel the flight.
    std::fs::write(
        dir.path().join("kid.toml"),
        "name = \"kid\"\n[[step]]\nname = \"book\"\ncommand = \"flight.book\"\ncompensate = \"flight.cancel\"\ninput = \"{ 'destination': 'Oslo', 'date': 'd', 'nights': 1, 'guests': 1, 'booking_id': 'c-1' }\"\n[[step]]\nname = \"hold\"\nwait = \"go\"\n",
    )
    .unwrap();
    let mut cfg = config(data.path());
    cfg.workflows = dir.path().to_owned();
    let host = InProcess::start(cfg).await;
    assert_eq!(host.start_saga("parent", "pc-1", &json!({})).await.unwrap().0, 201);
    host.until_waiting("pc-1.kid", "hold").await;
    let (code, _) = host.post_raw("/v1/sagas/pc-1/cancel", r#"{"reason": "changed my mind"}"#).await;
    assert_eq!(code, 202);
    let sagas = host.wait_all(&["pc-1".to_owned(), "pc-1.kid".to_owned()], Duration::from_secs(30)).await;
    assert_eq!(sagas[0]["status"], "compensated", "{:#}", sagas[0]);
    assert_eq!(sagas[1]["status"], "compensated", "{:#}", sagas[1]);
    assert_eq!(step(&sagas[1], "book")["compensation"]["output"]["cancelled"], "flt-c-1", "{:#}", sagas[1]);
    let kid = history(&host, "pc-1.kid").await;
    position(&kid, "the cancel", |e| e["event"] == "cancelled" && e["reason"].as_str().unwrap().contains("pc-1"));
    let parent = history(&host, "pc-1").await;
    let undone = position(&parent, "the child undone", |e| {
        e["event"] == "succeeded" && e["phase"] == "compensate" && e["step"] == "kid"
    });
    assert!(finished_at(&kid).as_str() <= parent[undone]["at"].as_str().unwrap(), "the child first");
    host.stop().await;
}
