//! Hosts for tests, and a client of their HTTP API.
//!
//! - [`InProcess`]: `baton::serve::run` in the test's own runtime, on `127.0.0.1:0`: the same
//!   code as `baton serve`, with no process to start and no port to race for. The default.
//! - [`Server`]: a real `baton serve` process, for what only a process can show (SIGKILL,
//!   SIGTERM, exit codes). It listens on port 0 too and the test reads the address it printed.
//!
//! Both hand out an [`Api`] (`Deref`), which holds the requests tests make.

use std::io::BufRead as _;
use std::ops::Deref;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A client of one host's HTTP API.
pub struct Api {
    pub url: String,
    http: reqwest::Client,
}

impl Api {
    fn new(url: String) -> Api {
        Api { url, http: reqwest::Client::new() }
    }

    /// A client of the same host that sends `Authorization: Bearer <token>` with every
    /// request (a host started with `--token`).
    pub fn with_token(&self, token: &str) -> Api {
        let mut headers = reqwest::header::HeaderMap::new();
        let value = format!("Bearer {token}").parse().expect("a token that fits in a header");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        let http = reqwest::Client::builder().default_headers(headers).build().expect("an HTTP client");
        Api { url: self.url.clone(), http }
    }

    /// Start a saga; `None` when the server did not answer (it may be dying).
    pub async fn start_saga(&self, workflow: &str, id: &str, input: &Value) -> Option<(u16, Value)> {
        let body = json!({"workflow": workflow, "id": id, "input": input});
        let r = self.http.post(format!("{}/v1/sagas", self.url)).json(&body).send().await.ok()?;
        let status = r.status().as_u16();
        Some((status, r.json().await.ok()?))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(format!("{}{path}", self.url)).send().await.expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let r = self.http.post(format!("{}{path}", self.url)).body(body.to_owned()).send().await.expect("POST");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    /// Any request: the status, the headers and the body as text.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let r = req.send().await.expect("the host answers");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.text().await.expect("a body"))
    }

    /// Wait until every id is terminal; returns the records. Panics after `limit`.
    pub async fn wait_all(&self, ids: &[String], limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut done: Vec<Option<Value>> = vec![None; ids.len()];
        loop {
            for (i, id) in ids.iter().enumerate() {
                if done[i].is_some() {
                    continue;
                }
                let (code, saga) = self.get(&format!("/v1/sagas/{id}")).await;
                if code == 200
                    && ["completed", "compensated", "failed"].contains(&saga["status"].as_str().unwrap_or(""))
                {
                    done[i] = Some(saga);
                }
            }
            let left = done.iter().filter(|d| d.is_none()).count();
            if left == 0 {
                return done.into_iter().flatten().collect();
            }
            assert!(Instant::now() < deadline, "{left} of {} sagas did not finish within {limit:?}", ids.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until saga `id` has an instance at `path` waiting for a signal; returns the
    /// saga. Panics after 30 s.
    pub async fn until_waiting(&self, id: &str, path: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, saga) = self.get(&format!("/v1/sagas/{id}")).await;
            if code == 200
                && saga["steps"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["path"] == path && s["waiting"]["on"] == "signal"))
            {
                return saga;
            }
            assert!(Instant::now() < deadline, "{id} never waited at {path}: {saga:#}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Send signal `name` with `payload` to saga `id`.
    pub async fn signal(&self, id: &str, name: &str, payload: &Value) -> (u16, Value) {
        self.post_raw(&format!("/v1/sagas/{id}/signals/{name}"), &payload.to_string()).await
    }

    /// Check the history of every saga in `ids` with [`check_history`].
    pub async fn check_histories(&self, ids: &[String]) {
        for id in ids {
            let (code, history) = self.get(&format!("/v1/sagas/{id}/history")).await;
            assert_eq!(code, 200, "{id}: {history}");
            check_history(id, &history);
        }
    }
}

/// The configuration of a test host: the freshly built plugins, the example workflows, the
/// shared compile cache, embedded with its data in `data`.
pub fn config(data: &std::path::Path) -> baton::serve::Config {
    let mut config =
        baton::serve::Config::embedded(crate::PLUGINS_DIR.into(), crate::root().join("workflows"), data.to_owned());
    config.runtime.cache_dir = Some(crate::cache_dir());
    config
}

/// The same, distributed over the test Redis under `prefix`.
pub fn redis_config(prefix: &str) -> baton::serve::Config {
    let mut config = config(std::path::Path::new("unused"));
    config.redis = Some(crate::redis_url());
    config.prefix = prefix.to_owned();
    config
}

/// A host running in this process (see the module documentation).
pub struct InProcess {
    api: Api,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    /// Build the host and serve it on a port the OS picks.
    pub async fn start(config: baton::serve::Config) -> InProcess {
        let host = baton::serve::build(&config).await.expect("the host builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local_addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(baton::serve::run(
            listener,
            async move {
                let _ = stopped.await;
            },
            host,
        ));
        InProcess { api: Api::new(url), stop: Some(stop), task: Some(task) }
    }

    /// Stop gracefully and wait for the host to finish what it had taken.
    pub async fn stop(mut self) {
        let _ = self.stop.take().map(|s| s.send(()));
        if let Some(task) = self.task.take() {
            task.await.expect("the host task").expect("the host stops cleanly");
        }
    }
}

impl Deref for InProcess {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        // Dropped without `stop`: end it with the test.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A running `baton serve` process.
pub struct Server {
    child: Child,
    api: Api,
}

impl Deref for Server {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Server {
    /// `baton serve` with `args` on a port the OS picks, once its API answers. Its stderr is
    /// passed through to the test's, after the line that says where it listens.
    pub async fn start(args: &[&str]) -> Server {
        Server::start_on("127.0.0.1:0", args).await.0
    }

    /// `baton serve --listen <listen>` with `args`, once its API answers, and what it wrote
    /// on stderr up to the line that says where it listens (warnings included). A wildcard
    /// address (`0.0.0.0`, `[::]`) is reached on loopback.
    pub async fn start_on(listen: &str, args: &[&str]) -> (Server, String) {
        Server::start_env(listen, args, &[]).await
    }

    /// [`Server::start_on`], with these environment variables set for the host.
    pub async fn start_env(listen: &str, args: &[&str], env: &[(&str, &str)]) -> (Server, String) {
        let mut child = crate::baton()
            .arg("serve")
            .args(["--listen", listen])
            .args(args)
            .env("BATON_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start baton serve");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut before = String::new();
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                match line.split_once("serving on http://") {
                    Some((_, rest)) if tx.is_some() => {
                        let addr = rest.split_whitespace().next().unwrap_or_default().to_owned();
                        let _ = tx.take().map(|tx| tx.send((addr, std::mem::take(&mut before))));
                    }
                    _ => {
                        if tx.is_some() {
                            before.push_str(&line);
                            before.push('\n');
                        }
                        eprintln!("{line}")
                    }
                }
            }
        });
        let (addr, before) = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("baton serve did not say where it listens within 60s (see its stderr above)")
        });
        let addr = match addr.rsplit_once(':') {
            Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
            Some(("[::]", port)) => format!("[::1]:{port}"),
            _ => addr,
        };
        let server = Server { child, api: Api::new(format!("http://{addr}")) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if server.http.get(format!("{}/healthz", server.url)).send().await.is_ok() {
                return (server, before);
            }
            assert!(Instant::now() < deadline, "baton serve did not answer on {addr} within 30s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id (to read its `/proc/<pid>/status`, say).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "baton serve did not stop within 20s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The order input for saga number `i`, and the status it must end with: the inputs cycle
/// through a clean order, a declined card, an item out of stock and a flaky gateway.
pub fn order_case(i: usize) -> (Value, &'static str) {
    let base = |items: Value| json!({"order_id": format!("o-{i}"), "customer": "ada", "items": items});
    match i % 4 {
        0 => (base(json!([{"sku": "A", "qty": 2, "price": 10.5}])), "completed"),
        1 => (base(json!([{"sku": "A", "qty": 1, "price": 20000.0}])), "compensated"),
        2 => (base(json!([{"sku": "A", "qty": 101, "price": 1.0}])), "compensated"),
        _ => {
            let mut v = base(json!([{"sku": "A", "qty": 1, "price": 5.0}]));
            v["flaky_payment"] = json!(1);
            (v, "completed")
        }
    }
}

/// The invariants of a saga's history, whatever its workflow: it started once, ended once,
/// and no step (or compensation) is recorded as succeeded twice, however many hosts died,
/// commands were redelivered or timers fired twice on the way.
pub fn check_history(id: &str, history: &Value) {
    let entries = history.as_array().unwrap_or_else(|| panic!("{id}: history is not a list: {history}"));
    let count = |event: &str| entries.iter().filter(|e| e["event"] == event).count();
    assert_eq!(count("started"), 1, "{id}: started once: {history:#}");
    assert_eq!(count("finished"), 1, "{id}: exactly one terminal state: {history:#}");
    let mut succeeded = std::collections::BTreeSet::new();
    for e in entries.iter().filter(|e| e["event"] == "succeeded") {
        let key = (e["step"].to_string(), e["phase"].to_string());
        assert!(
            succeeded.insert(key),
            "{id}: step {} ({}) recorded completed twice: {history:#}",
            e["step"],
            e["phase"]
        );
    }
    // Only what was done is undone.
    for e in entries.iter().filter(|e| e["event"] == "dispatched" && e["phase"] == "compensate") {
        let done = (e["step"].to_string(), "\"forward\"".to_owned());
        assert!(succeeded.contains(&done), "{id}: compensated {} which never completed: {history:#}", e["step"]);
    }
    let revisions: Vec<u64> = entries.iter().map(|e| e["revision"].as_u64().unwrap()).collect();
    assert!(revisions.windows(2).all(|w| w[0] <= w[1]), "{id}: history in commit order: {revisions:?}");
}

/// The invariants of a finished order saga: the status its input implies, and compensation
/// only of steps that completed.
pub fn check_order_saga(i: usize, saga: &Value) {
    let (_, expected) = order_case(i);
    assert_eq!(saga["status"], expected, "saga {i}: {saga:#}");
    for step in saga["steps"].as_array().unwrap() {
        if !step["compensation"].is_null() {
            assert_eq!(step["status"], "completed", "saga {i}: only completed steps are compensated: {step}");
            assert_eq!(step["compensation"]["status"], "completed", "saga {i}: {step}");
        }
    }
    if i % 4 == 1 {
        assert_eq!(
            crate::step(saga, "reserve_one")["compensation"]["status"],
            "completed",
            "saga {i}: the card was declined, stock released"
        );
    }
}
