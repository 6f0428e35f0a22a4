//! Hot reload on a running host: a plugin replaced under sagas in flight (none fails, the
//! new version serves the next commands), a broken file that leaves the loaded version
//! serving, a manifest added, a plugin removed, and workflows added, changed and broken.

use std::path::Path;
use std::time::{Duration, Instant};

use baton_tests::plugin_dir_copy;
use baton_tests::server::{InProcess, config};
use serde_json::{Value, json};

/// The plugin's entry in `GET /v1/plugins`, if loaded.
async fn plugin(host: &InProcess, name: &str) -> Option<Value> {
    let (status, list) = host.get("/v1/plugins").await;
    assert_eq!(status, 200, "{list}");
    list.as_array().unwrap().iter().find(|p| p["name"] == name).cloned()
}

/// Poll until `check` holds, for up to 20 s (a reload takes one to two polls of a second).
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `wasm` with a custom section appended: the same component, another content hash (a
/// rebuild that changed nothing the host runs).
fn rebuilt(wasm: &[u8], tag: &str) -> Vec<u8> {
    let name = b"baton-test";
    let body_len = 1 + name.len() + tag.len();
    let mut out = wasm.to_vec();
    out.push(0); // custom section
    out.push(u8::try_from(body_len).expect("a short tag"));
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(tag.as_bytes());
    out
}

/// Replace a file the way a deploy does: write beside it, then rename over it.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

const SLOW: &str = r#"
name = "slow"
[[step]]
name = "work"
command = "testkit.sagas"
input = "{ 'calls': [{ 'call': 'spin', 'ms': input.ms }] }"
[[step]]
name = "done"
command = "testkit.echo"
input = "{ 'n': input.n }"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_and_workflows_reload_under_running_sagas() {
    let plugins = plugin_dir_copy();
    let workflows = tempfile::tempdir().unwrap();
    std::fs::write(workflows.path().join("slow.toml"), SLOW).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path());
    c.plugins = plugins.path().to_owned();
    c.workflows = workflows.path().to_owned();
    let host = InProcess::start(c).await;
    let testkit = plugins.path().join("testkit.wasm");
    let original = std::fs::read(&testkit).unwrap();
    let first_hash = plugin(&host, "testkit").await.expect("testkit")["hash"].clone();

    // Sagas in flight, each in the middle of a command, while testkit is replaced.
    let mut ids = Vec::new();
    for n in 0..4 {
        let id = format!("before-{n}");
        let (status, body) = host.start_saga("slow", &id, &json!({"ms": 2000, "n": n})).await.unwrap();
        assert_eq!(status, 201, "{body}");
        ids.push(id);
    }
    replace(&testkit, &rebuilt(&original, "v2"));
    until("the new testkit is loaded", || async {
        plugin(&host, "testkit").await.is_some_and(|p| p["hash"] != first_hash)
    })
    .await;
    let second_hash = plugin(&host, "testkit").await.unwrap()["hash"].clone();
    for n in 0..4 {
        let id = format!("after-{n}");
        assert_eq!(host.start_saga("slow", &id, &json!({"ms": 10, "n": n})).await.unwrap().0, 201);
        ids.push(id);
    }
    for saga in host.wait_all(&ids, Duration::from_secs(60)).await {
        assert_eq!(saga["status"], "completed", "no saga fails across the swap: {saga:#}");
    }

    // A broken file: reported, and the version loaded before keeps serving.
    replace(&testkit, b"not a component");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(plugin(&host, "testkit").await.expect("still loaded")["hash"], second_hash);
    assert_eq!(host.start_saga("slow", "broken-file", &json!({"ms": 10, "n": 9})).await.unwrap().0, 201);
    let saga = host.wait_all(&["broken-file".to_owned()], Duration::from_secs(30)).await.remove(0);
    assert_eq!(saga["status"], "completed", "{saga:#}");

    // A manifest added beside a plugin reloads it with what the manifest grants.
    replace(&testkit, &rebuilt(&original, "v3"));
    std::fs::write(plugins.path().join("testkit.toml"), "[config]\ngreeting = \"hi\"\n").unwrap();
    until("testkit has its manifest", || async {
        plugin(&host, "testkit").await.is_some_and(|p| p["manifest"]["config"] == json!(["greeting"]))
    })
    .await;

    // A plugin removed is unloaded; one added back is loaded.
    let notification = plugins.path().join("notification.wasm");
    let bytes = std::fs::read(&notification).unwrap();
    std::fs::remove_file(&notification).unwrap();
    until("notification is unloaded", || async { plugin(&host, "notification").await.is_none() }).await;
    replace(&notification, &bytes);
    until("notification is back", || async { plugin(&host, "notification").await.is_some() }).await;

    // A workflow added is started; a change serves new sagas only; a broken edit leaves the
    // version loaded before.
    let echo = |v: u32| {
        format!("name = \"later\"\n[[step]]\nname = \"e\"\ncommand = \"testkit.echo\"\ninput = \"{{ 'v': {v} }}\"\n")
    };
    std::fs::write(workflows.path().join("later.toml"), echo(1)).unwrap();
    until("workflow later is loaded", || async {
        host.start_saga("later", "later-1", &json!({})).await.is_some_and(|(s, _)| s == 201)
    })
    .await;
    replace(&workflows.path().join("later.toml"), echo(2).as_bytes());
    let mut n = 1;
    until("workflow later is reloaded", || {
        n += 1;
        let id = format!("later-{n}");
        let host = &host;
        async move {
            host.start_saga("later", &id, &json!({})).await.unwrap();
            let saga = host.wait_all(&[id], Duration::from_secs(30)).await.remove(0);
            baton_tests::step(&saga, "e")["output"] == json!({"v": 2})
        }
    })
    .await;
    let first = host.wait_all(&["later-1".to_owned()], Duration::from_secs(30)).await.remove(0);
    assert_eq!(baton_tests::step(&first, "e")["output"], json!({"v": 1}), "{first:#}");
    replace(&workflows.path().join("later.toml"), b"name = \"later\"\n[[step]]\nname = ");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(host.start_saga("later", "later-broken", &json!({})).await.unwrap().0, 201, "the loaded version serves");
    host.stop().await;
}
