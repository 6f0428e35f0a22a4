//! Plugin manifests through the real binary: config values (written in the manifest, from a
//! `BATON_VAR_*` variable of the host, from a file) reach the plugin and nothing else (not
//! the logs, not the saga record); per-plugin limits hold; a manifest that asks for anything
//! else keeps its plugin from loading, by name, and the other plugins load.

use std::path::Path;

use baton_tests::{baton, plugin_dir_copy, run, step};
use serde_json::json;

const SECRET: &str = "tok-5ecr3t-do-not-log-91f2";
const CERT: &str = "-----CERT 7c1e-----";

/// `(len, sum of bytes)`, as `testkit.config` answers for a value.
fn digest(v: &str) -> serde_json::Value {
    json!({"set": true, "len": v.len(), "sum": v.bytes().map(u64::from).sum::<u64>()})
}

fn workflow_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.toml"), text).unwrap();
    dir
}

fn baton_in(plugins: &Path, workflows: &Path) -> std::process::Command {
    let mut cmd = baton();
    cmd.env("BATON_PLUGINS", plugins).env("BATON_WORKFLOWS", workflows);
    cmd
}

const READ_CONFIG: &str = r#"
name = "w"
[[step]]
name = "greeting"
command = "testkit.config"
input = "{ 'name': 'greeting' }"
[[step]]
name = "token"
command = "testkit.config"
input = "{ 'name': 'token' }"
[[step]]
name = "cert"
command = "testkit.config"
input = "{ 'name': 'cert' }"
[[step]]
name = "home"
command = "testkit.config"
input = "{ 'name': 'HOME' }"
"#;

#[test]
fn config_reaches_the_plugin_and_never_the_logs_or_the_record() {
    let plugins = plugin_dir_copy();
    std::fs::write(
        plugins.path().join("testkit.toml"),
        "[config]\ngreeting = \"hello\"\ntoken = { env = \"BATON_VAR_TEST_TOKEN\" }\ncert = { file = \"testkit.cert\" }\n",
    )
    .unwrap();
    std::fs::write(plugins.path().join("testkit.cert"), format!("{CERT}\n")).unwrap();
    let workflows = workflow_dir(READ_CONFIG);
    let ran = run(baton_in(plugins.path(), workflows.path())
        .env("BATON_VAR_TEST_TOKEN", SECRET)
        .env("BATON_LOG", "debug")
        .args(["run", "w", "--json", "--input", "{}"]));
    assert_eq!(ran.code, 0, "{ran}");
    let saga = ran.json();
    assert_eq!(step(&saga, "greeting")["output"], digest("hello"));
    assert_eq!(step(&saga, "token")["output"], digest(SECRET));
    assert_eq!(step(&saga, "cert")["output"], digest(CERT), "the file's trailing newline is not the value's");
    // The host's own environment is not the plugin's.
    assert_eq!(step(&saga, "home")["output"], json!({"set": false}));
    for text in [SECRET, CERT] {
        assert!(!ran.stdout.contains(text) && !ran.stderr.contains(text), "{text} leaked:\n{ran}");
    }
    assert!(ran.stderr.contains("plugin loaded"), "the debug log ran: {ran}");

    // `baton plugins` names the config, never its values.
    let ran =
        run(baton_in(plugins.path(), workflows.path()).env("BATON_VAR_TEST_TOKEN", SECRET).args(["plugins", "--json"]));
    assert_eq!(ran.code, 0, "{ran}");
    let list = ran.json();
    let testkit = list.as_array().unwrap().iter().find(|p| p["name"] == "testkit").unwrap();
    assert_eq!(testkit["manifest"]["config"], json!(["cert", "greeting", "token"]));
    assert!(!ran.stdout.contains(SECRET) && !ran.stdout.contains(CERT), "{ran}");
}

#[test]
fn a_manifest_lowers_the_memory_and_cpu_of_its_plugin() {
    let plugins = plugin_dir_copy();
    std::fs::write(plugins.path().join("testkit.toml"), "[limits]\nmemory_mb = 16\ncpu = \"300ms\"\nconcurrency = 3\n")
        .unwrap();
    let workflows = workflow_dir(
        "name = \"w\"\n[[step]]\nname = \"hog\"\ncommand = \"testkit.oom\"\ncatch = [{ next = \"spin\" }]\n[[step]]\nname = \"spin\"\ncommand = \"testkit.loop\"\nretry = { attempts = 1 }\n",
    );
    let ran = run(baton_in(plugins.path(), workflows.path()).args(["run", "w", "--json", "--input", "{}"]));
    assert_eq!(ran.code, 2, "{ran}");
    let saga = ran.json();
    let hog = &step(&saga, "hog")["error"];
    assert_eq!(hog["code"], "out_of_memory", "{saga:#}");
    assert!(hog["message"].as_str().unwrap().contains("16 MiB"), "{saga:#}");
    let spin = &step(&saga, "spin")["error"];
    assert_eq!(spin["code"], "timeout", "{saga:#}");
    assert!(spin["message"].as_str().unwrap().contains("300ms"), "stopped at the manifest's cpu: {saga:#}");

    let ran = run(baton_in(plugins.path(), workflows.path()).args(["plugins", "--json"]));
    let list = ran.json();
    let testkit = list.as_array().unwrap().iter().find(|p| p["name"] == "testkit").unwrap();
    assert_eq!(testkit["manifest"]["limits"], json!({"memory_mb": 16, "cpu": "300ms", "concurrency": 3}));
}

#[test]
fn a_manifest_that_asks_for_more_keeps_its_plugin_out_and_says_why() {
    let workflows = workflow_dir("name = \"w\"\n[[step]]\nname = \"pay\"\ncommand = \"payment.refund\"\n");
    for (manifest, says) in [
        ("[network]\nallow = [\"example.com\"]\n", "nothing else can be granted"),
        ("[config]\nhome = { env = \"HOME\" }\n", "only variables named BATON_VAR_*"),
        ("[config]\nkey = { env = \"BATON_VAR_NOT_SET_ANYWHERE\" }\n", "BATON_VAR_NOT_SET_ANYWHERE is not set"),
        ("[limits]\nmemory_mb = 100000\n", "--memory-limit-mb"),
        ("[config]\ncert = { file = \"missing.pem\" }\n", "missing.pem"),
    ] {
        let plugins = plugin_dir_copy();
        std::fs::write(plugins.path().join("testkit.toml"), manifest).unwrap();
        let ran = run(baton_in(plugins.path(), workflows.path()).arg("check"));
        assert_eq!(ran.code, 1, "{manifest}: {ran}");
        let line = ran.stderr.lines().find(|l| l.contains("testkit.toml")).unwrap_or_else(|| panic!("{ran}"));
        assert!(line.contains(says), "{manifest}: {line}");
        // The other plugins load, and a saga that needs none of testkit runs.
        let ran =
            run(baton_in(plugins.path(), workflows.path()).args(["run", "w", "--input", "{\"payment_id\": \"p\"}"]));
        assert_eq!(ran.code, 0, "{manifest}: {ran}");
    }
}

/// `GET /v1/plugins`: what the host loaded, with each file's content hash, its load time and
/// its manifest (config names, never values).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lists_the_loaded_plugins_with_their_hashes() {
    let plugins = plugin_dir_copy();
    std::fs::write(plugins.path().join("testkit.toml"), "[config]\ngreeting = \"hello\"\n[limits]\nconcurrency = 2\n")
        .unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = baton_tests::server::config(data.path());
    config.plugins = plugins.path().to_owned();
    let host = baton_tests::server::InProcess::start(config).await;
    let (status, list) = host.get("/v1/plugins").await;
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap();
    let testkit = list.iter().find(|p| p["name"] == "testkit").expect("testkit");
    let bytes = std::fs::read(plugins.path().join("testkit.wasm")).unwrap();
    let hex: String = {
        use sha2::Digest as _;
        sha2::Sha256::digest(&bytes).iter().take(8).map(|b| format!("{b:02x}")).collect()
    };
    assert_eq!(testkit["hash"], format!("sha256:{hex}"));
    assert!(testkit["loaded_at"].as_str().is_some_and(|t| t.starts_with("20")), "{testkit:#}");
    assert_eq!(testkit["manifest"]["config"], json!(["greeting"]));
    assert_eq!(testkit["manifest"]["limits"], json!({"concurrency": 2}));
    assert!(!testkit.to_string().contains("hello"), "no config value: {testkit:#}");
    let commands: Vec<&str> =
        testkit["commands"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    assert!(commands.contains(&"testkit.amount"), "{commands:?}");
    assert!(list.iter().any(|p| p["name"] == "payment" && p.get("manifest").is_none()), "{list:?}");
    host.stop().await;
}

/// A one-connection-at-a-time HTTP server on loopback that answers every request with
/// `body`; returns its port. It lives as long as the test process.
fn http_server(body: &'static str) -> u16 {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Up to the end of the headers (the tests send no body).
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let answer =
                format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    port
}

#[test]
fn outbound_http_reaches_the_allowed_origins_only() {
    let port = http_server("hello from loopback");
    let big = http_server(Box::leak("x".repeat(4096).into_boxed_str()));
    let plugins = plugin_dir_copy();
    std::fs::write(
        plugins.path().join("testkit.toml"),
        format!("[http]\nallow = [\"http://127.0.0.1:{port}\", \"http://127.0.0.1:{big}\"]\ntimeout = \"5s\"\nmax_response_kb = 1\n"),
    )
    .unwrap();
    let fetch = |name: &str, url: String| {
        format!(
            "[[step]]\nname = \"{name}\"\ncommand = \"testkit.fetch\"\ninput = \"{{ 'url': '{url}' }}\"\nretry = {{ attempts = 1 }}\ncatch = [{{ next = \"end\" }}]\n"
        )
    };
    let allowed =
        workflow_dir(&format!("name = \"w\"\n{}", fetch("allowed", format!("http://127.0.0.1:{port}/score"))));
    let ran = run(baton_in(plugins.path(), allowed.path()).args(["run", "w", "--json", "--input", "{}"]));
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(step(&ran.json(), "allowed")["output"], json!({"status": 200, "body": "hello from loopback"}));

    // Another port of the same host, another host, and https to an allowed host:port are
    // all outside the list.
    for url in [
        format!("http://127.0.0.1:{}/score", port.wrapping_add(1).max(1)),
        format!("http://localhost:{port}/score"),
        format!("https://127.0.0.1:{port}/score"),
    ] {
        let dir = workflow_dir(&format!("name = \"w\"\n{}", fetch("denied", url.clone())));
        let ran = run(baton_in(plugins.path(), dir.path()).args(["run", "w", "--json", "--input", "{}"]));
        let saga = ran.json();
        let error = &step(&saga, "denied")["error"];
        assert_eq!(error["code"], "http_denied", "{url}: {saga:#}");
        assert!(error["message"].as_str().unwrap().contains("[http] allow"), "{url}: {saga:#}");
    }

    // A response over max_response_kb.
    let dir = workflow_dir(&format!("name = \"w\"\n{}", fetch("big", format!("http://127.0.0.1:{big}/"))));
    let ran = run(baton_in(plugins.path(), dir.path()).args(["run", "w", "--json", "--input", "{}"]));
    let saga = ran.json();
    assert_eq!(step(&saga, "big")["error"]["code"], "http_response_too_large", "{saga:#}");

    // Without a manifest, nothing is reachable.
    let bare = plugin_dir_copy();
    let ran = run(baton_in(bare.path(), allowed.path()).args(["run", "w", "--json", "--input", "{}"]));
    assert_eq!(step(&ran.json(), "allowed")["error"]["code"], "http_denied", "{ran}");
}
