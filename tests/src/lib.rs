//! Helpers for Baton's end-to-end tests: where the real `baton` binary and the freshly built
//! plugins are, and a way to run the binary and read what it printed.
//!
//! The tests drive the binary produced by `host/src/main.rs`. `cargo test --workspace` (the
//! README's test command) builds it before any test runs, because the `baton` package has
//! integration tests of its own; `BATON_BIN` overrides the path.

pub mod conformance;
pub mod js;
pub mod probes;
pub mod python;
pub mod redis_server;
pub mod server;
pub mod web;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The directory holding the example plugins, built by this crate's build script.
pub const PLUGINS_DIR: &str = env!("PLUGINS_DIR");

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_owned()
}

/// The `baton` binary next to this test executable (`target/<profile>/baton`).
pub fn baton_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BATON_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test> -> target/<profile>/baton
    let profile_dir = exe.parent().and_then(Path::parent).expect("test executable in target/<profile>/deps");
    let bin = profile_dir.join(format!("baton{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: run the tests with `cargo test --workspace` (or set BATON_BIN)",
        bin.display()
    );
    bin
}

/// Compiled plugins are cached here, shared by every test of a run (and across runs): each
/// plugin is compiled once, not once per test.
pub fn cache_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().and_then(Path::parent).expect("target/<profile>").join("baton-test-cache")
}

/// `baton` with the example plugins and workflows, the shared cache and quiet logs.
pub fn baton() -> Command {
    let mut cmd = Command::new(baton_bin());
    cmd.current_dir(root())
        .env("BATON_PLUGINS", PLUGINS_DIR)
        .env("BATON_WORKFLOWS", root().join("workflows"))
        .env("BATON_CACHE_DIR", cache_dir())
        .env("BATON_LOG", "warn")
        .env_remove("BATON_NO_CACHE")
        .env_remove("BATON_MEMORY_LIMIT_MB")
        .env_remove("BATON_MEMORY_BUDGET_MB")
        .env_remove("BATON_TOKEN")
        .env_remove("BATON_TOKEN_FILE")
        .env_remove("BATON_INSECURE")
        .env_remove("BATON_REDIS_CA");
    cmd
}

/// What a finished `baton` process gave.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// stdout as JSON; panics with both streams when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// Run and collect.
pub fn run(cmd: &mut Command) -> Ran {
    let Output { status, stdout, stderr } = cmd.output().expect("cannot start baton");
    Ran {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// The demo order input, with `extra` fields merged in.
pub fn order(extra: Value) -> String {
    let mut v =
        serde_json::json!({"order_id": "o-1", "customer": "ada", "items": [{"sku": "A-1", "qty": 2, "price": 10.5}]});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            o.insert(k.clone(), val.clone());
        }
    }
    v.to_string()
}

/// The step named `name` in a saga record.
pub fn step<'a>(saga: &'a Value, name: &str) -> &'a Value {
    saga["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no step {name} in {saga:#}"))
}

/// A temporary directory holding copies of the example plugins, for tests that add to it.
pub fn plugin_dir_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for e in std::fs::read_dir(PLUGINS_DIR).expect("plugins dir").flatten() {
        if e.path().extension().is_some_and(|x| x == "wasm") {
            std::fs::copy(e.path(), dir.path().join(e.file_name())).expect("copy plugin");
        }
    }
    dir
}

/// The Redis the tests use: `REDIS_URL`, default `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test (or run) uses, so tests share one Redis in parallel.
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("baton-test:{test}:{}:{nanos}", std::process::id())
}

/// Deletes a test's Redis keys (those under its prefix) when dropped: at the end of the test,
/// passed or not.
pub struct PrefixGuard(pub String);

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        delete_prefix(&self.0);
    }
}

/// Delete every key under `prefix` (best effort; for the end of a test).
pub fn delete_prefix(prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url()) else { return };
    let Ok(mut con) = client.get_connection() else { return };
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query(&mut con).unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut con);
    }
}
