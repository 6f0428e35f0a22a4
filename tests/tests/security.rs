//! Securing a host: the API token (server and CLI), the loopback rule, the liveness and
//! readiness probes, and Redis with an ACL user and over TLS.

use std::time::{Duration, Instant};

use baton_tests::redis_server::{Certificates, RedisServer};
use baton_tests::server::{Api, InProcess, Server, config, order_case};
use serde_json::Value;

const TOKEN: &str = "t0ken-for-the-tests_0123456789abcdef";

/// The body of an answer as JSON (panics with the text when it is not).
fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `GET path` with these headers: status, headers, body.
async fn get_with(url: &str, path: &str, headers: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut r = reqwest::Client::new().get(format!("{url}{path}"));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.expect("the host answers");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, json(&r.text().await.expect("a body")))
}

/// Check a 401 of the house shape, with its challenge.
fn assert_unauthorized(status: u16, headers: &reqwest::header::HeaderMap, body: &Value) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("--token") && message.contains("BATON_TOKEN"), "says how to pass it: {message}");
    assert!(!message.contains(TOKEN), "never shows the token: {message}");
    let challenge = headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(challenge.starts_with("Bearer"), "WWW-Authenticate: {challenge:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_every_route_but_healthz() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path());
    cfg.token = Some(baton::api::Token::new(TOKEN).unwrap());
    let host = InProcess::start(cfg).await;
    let url = host.url.clone();

    // Liveness needs no token.
    let (code, _, body) = get_with(&url, "/healthz", &[]).await;
    assert_eq!((code, body["status"].as_str()), (200, Some("ok")));

    // Every other route does: no header, another scheme, a wrong token, an empty one.
    let bearer = format!("Bearer {TOKEN}");
    let wrong = format!("Bearer {TOKEN}x");
    for path in ["/v1/sagas", "/v1/sagas/x", "/v1/sagas/x/history", "/readyz"] {
        let (code, headers, body) = get_with(&url, path, &[]).await;
        assert_unauthorized(code, &headers, &body);
    }
    for auth in [wrong.as_str(), "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", TOKEN] {
        let (code, headers, body) = get_with(&url, "/v1/sagas", &[("authorization", auth)]).await;
        assert_unauthorized(code, &headers, &body);
    }
    let (_, headers, _) = get_with(&url, "/v1/sagas", &[("authorization", wrong.as_str())]).await;
    assert!(headers["www-authenticate"].to_str().unwrap().contains(r#"error="invalid_token""#), "{headers:?}");
    // A POST is refused before its body is read.
    let (code, headers, text) = host.request("POST", "/v1/sagas", Some(b"{}".to_vec())).await;
    assert_unauthorized(code, &headers, &json(&text));
    // An unknown route is 401 too (it says nothing of what exists) until the token is shown.
    let (code, headers, body) = get_with(&url, "/v2/whatever", &[]).await;
    assert_unauthorized(code, &headers, &body);
    let (code, _, body) = get_with(&url, "/v2/whatever", &[("authorization", bearer.as_str())]).await;
    assert_eq!((code, body["error"]["code"].as_str()), (404, Some("unknown_route")), "{body}");

    // With the token, the API works as ever; the scheme's case does not matter.
    let api = host.with_token(TOKEN);
    let (code, saga) = api.start_saga("order", "tok-1", &order_case(0).0).await.unwrap();
    assert_eq!(code, 201, "{saga}");
    let (code, done) = api.get("/v1/sagas/tok-1?wait=30").await;
    assert_eq!((code, done["status"].as_str()), (200, Some("completed")), "{done}");
    let lower = format!("bearer {TOKEN}");
    let (code, _, list) = get_with(&url, "/v1/sagas", &[("authorization", lower.as_str())]).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Readiness of an embedded host: its store's threads run, its bus is in memory.
    let (code, ready) = api.get("/readyz").await;
    assert_eq!(code, 200, "{ready}");
    assert_eq!(ready, serde_json::json!({"store": "ok", "bus": "ok"}));
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sends_the_token_and_says_what_to_do_when_refused() {
    let data = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    // Trailing whitespace and a newline, as an editor or `echo` leaves them.
    std::fs::write(&token_file, format!("  {TOKEN} \n")).unwrap();
    let token_file = token_file.to_str().unwrap();
    let server = Server::start(&["--data", data.path().to_str().unwrap(), "--token-file", token_file]).await;
    let url = server.url.clone();
    let baton = |args: &[&str]| baton_tests::run(baton_tests::baton().args(args).args(["--server", &url]));

    // --token on the command line.
    let input = baton_tests::order(serde_json::json!({}));
    let ran = baton(&["start", "order", "--input", &input, "--id", "cli-1", "--wait", "--token", TOKEN]);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(ran.json()["status"], "completed", "{ran}");
    // BATON_TOKEN.
    let ran = baton_tests::run(
        baton_tests::baton().args(["status", "cli-1", "--json", "--server", &url]).env("BATON_TOKEN", TOKEN),
    );
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(ran.json()["id"], "cli-1");
    // --token-file, and BATON_TOKEN_FILE.
    let ran = baton(&["list", "--json", "--token-file", token_file]);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(ran.json().as_array().unwrap().len(), 1, "{ran}");
    let ran = baton_tests::run(
        baton_tests::baton().args(["history", "cli-1", "--json", "--server", &url]).env("BATON_TOKEN_FILE", token_file),
    );
    assert_eq!(ran.code, 0, "{ran}");
    // The commands that POST: a signal to a saga that has ended is refused by the saga (409),
    // which shows the token passed.
    let ran = baton(&["signal", "cli-1", "note", "--token", TOKEN]);
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("saga_state"), "{ran}");
    let ran = baton(&[
        "start",
        "booking_agent",
        "--input",
        "@workflows/booking_agent.input.json",
        "--id",
        "cli-2",
        "--token",
        TOKEN,
    ]);
    assert_eq!(ran.code, 0, "{ran}");
    let ran = baton(&["cancel", "cli-2", "--token", TOKEN]);
    assert_eq!(ran.code, 0, "{ran}");
    let ran = baton(&["retry", "cli-2", "--token", TOKEN]);
    assert!(ran.stderr.contains("saga_state"), "only a failed saga is retried, so the token passed: {ran}");
    let ran = baton(&[
        "bench", "order", "--input", &input, "-c", "2", "--sagas", "4", "--warmup", "0", "--json", "--token", TOKEN,
    ]);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(ran.json()["completed"], 4, "{ran}");

    // Without the token, or with a wrong one: exit 1 and a message that says what to pass.
    let wrong = format!("{TOKEN}-not");
    let refused: Vec<(Vec<&str>, bool)> = vec![
        (vec!["status", "cli-1"], false),
        (vec!["list"], false),
        (vec!["history", "cli-1"], false),
        (vec!["start", "order", "--input", &input], false),
        (vec!["signal", "cli-1", "note"], false),
        (vec!["cancel", "cli-1"], false),
        (vec!["retry", "cli-1"], false),
        (vec!["status", "cli-1", "--token", &wrong], true),
        (vec!["bench", "order", "--input", &input, "--sagas", "1", "--warmup", "0"], false),
        (vec!["bench", "order", "--input", &input, "--sagas", "1", "--warmup", "0", "--token", &wrong], true),
    ];
    for (args, sent) in refused {
        let ran = baton(&args);
        assert_eq!(ran.code, 1, "{args:?}: {ran}");
        let said = if sent { "refused the token" } else { "requires a token" };
        assert!(
            ran.stderr.contains(said) && ran.stderr.contains("--token") && ran.stderr.contains("BATON_TOKEN"),
            "{args:?}: {ran}"
        );
        assert!(!ran.stderr.contains(TOKEN), "{args:?} never shows the token: {ran}");
    }
    // `start` does not retry a 401 as it does a 503.
    let ran = baton(&["start", "order", "--input", &input]);
    assert!(!ran.stderr.contains("trying again"), "{ran}");
    assert!(server.terminate().success());
}

#[test]
fn a_token_file_that_is_missing_or_empty_stops_the_host_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let ran = baton_tests::run(baton_tests::baton().args(["serve", "--token-file", missing.to_str().unwrap()]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("cannot read the token file") && ran.stderr.contains("missing"), "{ran}");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, " \n\n").unwrap();
    let ran = baton_tests::run(baton_tests::baton().args(["serve", "--token-file", empty.to_str().unwrap()]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("is empty"), "{ran}");
    let ran = baton_tests::run(baton_tests::baton().args(["serve", "--token", "two words"]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("Authorization header"), "{ran}");
    let ran =
        baton_tests::run(baton_tests::baton().args(["serve", "--token", "a", "--token-file", empty.to_str().unwrap()]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("not both"), "{ran}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_a_token_serves_on_loopback_only_unless_insecure() {
    // Refused before anything loads, naming both ways out.
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:7600"] {
        let ran = baton_tests::run(baton_tests::baton().args(["serve", "--listen", listen]));
        assert_eq!(ran.code, 1, "{listen}: {ran}");
        assert!(
            ran.stderr.contains("without a token")
                && ran.stderr.contains("--token")
                && ran.stderr.contains("--insecure"),
            "{listen}: {ran}"
        );
        assert!(!ran.stderr.contains("serving on"), "{listen}: {ran}");
    }
    let data = tempfile::tempdir().unwrap();
    let data = data.path().to_str().unwrap();
    // Loopback, by name too, needs no token.
    for listen in ["localhost:0", "127.0.0.1:0"] {
        let (server, said) = Server::start_on(listen, &["--data", data]).await;
        assert!(!said.contains("WARNING"), "{said}");
        let (code, _) = server.get("/v1/sagas").await;
        assert_eq!(code, 200);
        assert!(server.terminate().success());
    }
    // --insecure: it serves, and says loudly what that means.
    let (server, said) = Server::start_on("0.0.0.0:0", &["--data", data, "--insecure"]).await;
    assert!(said.contains("WARNING") && said.contains("no token"), "{said}");
    let (code, _) = server.get("/v1/sagas").await;
    assert_eq!(code, 200);
    assert!(server.terminate().success());
    // With a token it serves anywhere, quietly.
    let (server, said) = Server::start_on("0.0.0.0:0", &["--data", data, "--token", TOKEN]).await;
    assert!(!said.contains("WARNING"), "{said}");
    let (code, _) = server.with_token(TOKEN).get("/v1/sagas").await;
    assert_eq!(code, 200);
    assert!(server.terminate().success());
}

#[test]
fn the_loopback_rule_and_the_token_check() {
    use baton::serve::check_listen;
    for addr in ["127.0.0.1:7600", "127.9.9.9:1", "[::1]:7600", "[::ffff:127.0.0.1]:7600"] {
        assert!(check_listen(addr.parse().unwrap(), false, false).is_ok(), "{addr} is loopback");
    }
    for addr in ["0.0.0.0:7600", "[::]:7600", "10.0.0.1:7600", "[::ffff:10.0.0.1]:7600"] {
        let err = check_listen(addr.parse().unwrap(), false, false).expect_err(addr).to_string();
        assert!(err.contains("--token") && err.contains("--insecure"), "{err}");
        assert!(check_listen(addr.parse().unwrap(), true, false).is_ok());
        assert!(check_listen(addr.parse().unwrap(), false, true).is_ok());
    }
    let token = baton::api::Token::new("abc-123").unwrap();
    assert!(token.matches(b"abc-123"));
    for other in [&b"abc-124"[..], b"abc-12", b"abc-1234", b""] {
        assert!(!token.matches(other));
    }
    assert!(!format!("{token:?}").contains("abc"), "Debug hides it");
    assert!(baton::api::Token::new("").is_err());
    assert!(baton::api::Token::new("a b").is_err());
    assert!(baton::api::Token::new("tab\there").is_err());
    assert!(baton::api::Token::new("caf\u{e9}").is_err());
}

/// Poll `GET /readyz` until `done` says so; panics after 30 s with the last answer.
async fn wait_ready(api: &Api, what: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, body) = api.get("/readyz").await;
        if done(code, &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{}: /readyz did not become {what} within 30s: {code} {body}", api.url);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_says_which_part_is_away_while_healthz_stays_up() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let prefix = baton_tests::unique_prefix("readyz");
    let common = ["--redis", url.as_str(), "--prefix", prefix.as_str(), "--token", TOKEN];
    let all = Server::start(&common).await;
    let worker = Server::start(&[&common[..], &["--role", "worker"]].concat()).await;
    let hosts = [all.with_token(TOKEN), worker.with_token(TOKEN)];
    for api in &hosts {
        let (code, body) = api.get("/readyz").await;
        assert_eq!((code, &body), (200, &serde_json::json!({"store": "ok", "bus": "ok"})), "{}", api.url);
    }
    // A worker-only host serves the probes, behind the token, and nothing else.
    let (code, _, body) = get_with(&worker.url, "/readyz", &[]).await;
    assert_eq!((code, body["error"]["code"].as_str()), (401, Some("unauthorized")));
    let (code, body) = hosts[1].get("/v1/sagas").await;
    assert_eq!((code, body["error"]["code"].as_str()), (404, Some("unknown_route")));

    redis.kill();
    for api in &hosts {
        let body = wait_ready(api, "503", |code, _| code == 503).await;
        assert_eq!(body["error"]["code"], "not_ready", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("store unavailable") && message.contains("bus unavailable"), "{message}");
        let (code, _) = api.get("/healthz").await;
        assert_eq!(code, 200, "liveness does not depend on Redis");
    }

    redis.up();
    for api in &hosts {
        let body = wait_ready(api, "200", |code, _| code == 200).await;
        assert_eq!(body, serde_json::json!({"store": "ok", "bus": "ok"}));
    }
    // And the host works again.
    let (code, saga) = hosts[0].start_saga("order", "ready-1", &order_case(0).0).await.unwrap();
    assert_eq!(code, 201, "{saga}");
    let done = hosts[0].wait_all(&["ready-1".to_owned()], Duration::from_secs(60)).await;
    assert_eq!(done[0]["status"], "completed");
    drop((all, worker));
}

/// An ACL user on the shared Redis, deleted when dropped.
struct AclUser {
    name: String,
}

impl AclUser {
    fn create(name: &str, password: &str, prefix: &str) -> AclUser {
        let mut con = redis::Client::open(baton_tests::redis_url()).unwrap().get_connection().unwrap();
        redis::cmd("ACL")
            .arg(&["SETUSER", name, "reset", "on", &format!(">{password}"), &format!("~{prefix}:*")][..])
            // What the README suggests: the deployment's keys and channels, no dangerous command.
            .arg(&[&format!("&{prefix}:*"), "+@all", "-@dangerous"][..])
            .query::<()>(&mut con)
            .expect("ACL SETUSER (the test Redis must allow it)");
        AclUser { name: name.to_owned() }
    }
}

impl Drop for AclUser {
    fn drop(&mut self) {
        if let Ok(mut con) = redis::Client::open(baton_tests::redis_url()).and_then(|c| c.get_connection()) {
            let _: redis::RedisResult<()> = redis::cmd("ACL").arg(&["DELUSER", &self.name][..]).query(&mut con);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_a_password_runs_sagas_and_a_wrong_password_is_a_clear_error() {
    let prefix = baton_tests::unique_prefix("acl");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let name = format!("baton-test-{}-{nanos}", std::process::id());
    let password = format!("pw-{nanos:x}");
    let user = AclUser::create(&name, &password, &prefix);
    let with =
        |password: &str| baton_tests::redis_url().replacen("redis://", &format!("redis://{name}:{password}@"), 1);

    let server = Server::start(&["--redis", &with(&password), "--prefix", &prefix]).await;
    let (code, saga) = server.start_saga("order", "acl-1", &order_case(0).0).await.unwrap();
    assert_eq!(code, 201, "{saga}");
    let done = server.wait_all(&["acl-1".to_owned()], Duration::from_secs(60)).await;
    assert_eq!(done[0]["status"], "completed", "{:#}", done[0]);
    assert!(server.terminate().success());

    let wrong = format!("{password}-wrong");
    let started = Instant::now();
    let ran = baton_tests::run(baton_tests::baton().args(["serve", "--redis", &with(&wrong), "--prefix", &prefix]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("user and password"), "says what is wrong: {ran}");
    assert!(ran.stderr.contains(&format!("{name}:***@")), "names the user, hides the password: {ran}");
    assert!(!ran.stderr.contains(&wrong) && !ran.stderr.contains("panicked"), "{ran}");
    assert!(started.elapsed() < Duration::from_secs(60), "it does not hang: {:?}", started.elapsed());
    drop(user);
    baton_tests::delete_prefix(&prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_run_over_tls_with_a_private_ca() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = Certificates::generate(certs_dir.path());
    let redis = RedisServer::start_tls(certs.clone());
    let url = redis.url();
    let ca = certs.ca.to_str().unwrap();

    let server = Server::start(&["--redis", &url, "--redis-ca", ca, "--token", TOKEN]).await;
    let api = server.with_token(TOKEN);
    let (code, saga) = api.start_saga("order", "tls-1", &order_case(0).0).await.unwrap();
    assert_eq!(code, 201, "{saga}");
    let done = api.wait_all(&["tls-1".to_owned()], Duration::from_secs(60)).await;
    assert_eq!(done[0]["status"], "completed", "{:#}", done[0]);
    let (code, ready) = api.get("/readyz").await;
    assert_eq!(code, 200, "{ready}");
    assert!(server.terminate().success());

    // Without the CA the certificate is not trusted, and the error says what to pass.
    let ran = baton_tests::run(baton_tests::baton().args(["serve", "--redis", &url]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("not trusted") && ran.stderr.contains("--redis-ca"), "{ran}");
    // `#insecure` skips the check, with a warning.
    let insecure = format!("{url}/#insecure");
    let (server, said) = Server::start_on("127.0.0.1:0", &["--redis", &insecure]).await;
    assert!(said.contains("WARNING") && said.contains("#insecure"), "{said}");
    let (code, saga) = server.start_saga("order", "tls-2", &order_case(0).0).await.unwrap();
    assert_eq!(code, 201, "{saga}");
    let done = server.wait_all(&["tls-2".to_owned()], Duration::from_secs(60)).await;
    assert_eq!(done[0]["status"], "completed");
    assert!(server.terminate().success());
    // A CA for a URL without TLS is a mistake, said so.
    let ran =
        baton_tests::run(baton_tests::baton().args(["serve", "--redis", "redis://127.0.0.1:6379", "--redis-ca", ca]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("rediss://"), "{ran}");
}
