//! A real `baton serve` process for tests: started on a free port, killed (gracefully or with
//! SIGKILL) when the test says, and talked to over its HTTP API.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A running `baton serve`.
pub struct Server {
    child: Child,
    pub url: String,
    http: reqwest::Client,
}

fn free_port() -> u16 {
    // The port is free now; the server binds it a moment later. A clash is possible but rare,
    // and shows as a clear "cannot listen" error.
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// `baton serve` with `args`, once its API answers.
    pub async fn start(args: &[&str]) -> Server {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let child = crate::baton()
            .arg("serve")
            .args(["--listen", &listen])
            .args(args)
            .env("BATON_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start baton serve");
        let server = Server { child, url: format!("http://{listen}"), http: reqwest::Client::new() };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if server.http.get(format!("{}/healthz", server.url)).send().await.is_ok() {
                return server;
            }
            assert!(Instant::now() < deadline, "baton serve did not answer on {listen} within 30s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Check the history of every saga in `ids` with [`check_history`].
    pub async fn check_histories(&self, ids: &[String]) {
        for id in ids {
            let (code, history) = self.get(&format!("/v1/sagas/{id}/history")).await;
            assert_eq!(code, 200, "{id}: {history}");
            check_history(id, &history);
        }
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
            saga["steps"][0]["compensation"]["status"], "completed",
            "saga {i}: the card was declined, stock released"
        );
    }
}
