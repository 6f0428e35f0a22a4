//! Misbehaving plugins fail their step with a clear error and the host carries on; a broken
//! `.wasm` is reported by name and the other plugins still load.

use std::path::Path;

use baton_tests::{baton, order, plugin_dir_copy, run, step};
use serde_json::{Value, json};

/// A one-off workflow: an echo step (compensated by echo), then `command` with `input`.
fn workflow_dir(command: &str, input: &str, timeout: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
name = "probe"
[defaults]
timeout = "{timeout}"
retry = {{ attempts = 1 }}

[[step]]
name = "first"
command = "testkit.echo"
compensate = "testkit.echo"

[[step]]
name = "probe"
command = "{command}"
input = "{input}"
"#
    );
    std::fs::write(dir.path().join("probe.toml"), text).unwrap();
    dir
}

fn run_probe(workflows: &Path, extra: &[&str]) -> (i32, Value, String) {
    let ran = run(baton().env("BATON_WORKFLOWS", workflows).args(extra).args(["run", "probe", "--input", "{}"]));
    let json = ran.json();
    (ran.code, json, ran.stderr)
}

fn assert_failed_cleanly(saga: &Value, code: &str) {
    assert_eq!(saga["status"], "compensated", "{saga:#}");
    let probe = step(saga, "probe");
    assert_eq!(probe["status"], "failed");
    assert_eq!(probe["error"]["code"], code, "{probe:#}");
    // The host kept going: the completed step before it was compensated.
    assert_eq!(step(saga, "first")["compensation"]["status"], "completed");
}

#[test]
fn a_looping_plugin_is_stopped_at_its_deadline() {
    let dir = workflow_dir("testkit.loop", "{}", "300ms");
    let (code, saga, _) = run_probe(dir.path(), &[]);
    assert_eq!(code, 2);
    assert_failed_cleanly(&saga, "timeout");
    let message = step(&saga, "probe")["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("testkit") && message.contains("300ms"), "{message}");
}

#[test]
fn a_panicking_plugin_reports_its_panic_message() {
    let dir = workflow_dir("testkit.panic", "{ 'message': 'the flux capacitor broke' }", "5s");
    let (code, saga, _) = run_probe(dir.path(), &[]);
    assert_eq!(code, 2);
    assert_failed_cleanly(&saga, "plugin_panicked");
    let message = step(&saga, "probe")["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("the flux capacitor broke"), "{message}");
    assert!(message.contains("testkit.panic"), "{message}");
}

#[test]
fn a_memory_hungry_plugin_hits_its_limit() {
    let dir = workflow_dir("testkit.oom", "{}", "10s");
    let (code, saga, _) = run_probe(dir.path(), &["--memory-limit-mb", "16"]);
    assert_eq!(code, 2);
    assert_failed_cleanly(&saga, "out_of_memory");
    let message = step(&saga, "probe")["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("16 MiB"), "{message}");
}

#[test]
fn a_plugin_failure_is_passed_through_with_its_code() {
    let dir = workflow_dir("testkit.fail", "{ 'code': 'teapot', 'message': 'I am a teapot' }", "5s");
    let (code, saga, _) = run_probe(dir.path(), &[]);
    assert_eq!(code, 2);
    assert_failed_cleanly(&saga, "teapot");
    assert_eq!(step(&saga, "probe")["error"]["message"], "I am a teapot");
}

#[test]
fn a_failing_compensation_ends_the_saga_failed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("probe.toml"),
        r#"
name = "probe"
[defaults]
retry = { attempts = 2, backoff = "10ms", max_backoff = "10ms" }

[[step]]
name = "a"
command = "testkit.echo"
compensate = "testkit.echo"

[[step]]
name = "b"
command = "testkit.echo"
compensate = "testkit.fail"
compensate_input = "{ 'code': 'stuck', 'message': 'cannot undo', 'retryable': true }"

[[step]]
name = "c"
command = "testkit.fail"
input = "{ 'code': 'nope', 'message': 'no' }"
"#,
    )
    .unwrap();
    let (code, saga, _) = run_probe(dir.path(), &[]);
    assert_eq!(code, 3, "{saga:#}");
    assert_eq!(saga["status"], "failed");
    let b = step(&saga, "b");
    assert_eq!(b["compensation"]["status"], "failed");
    assert_eq!(b["compensation"]["attempts"], 2, "compensations are retried too");
    assert_eq!(b["compensation"]["error"]["code"], "stuck");
    // Compensation carried on past the stuck one, in reverse order.
    assert_eq!(step(&saga, "a")["compensation"]["status"], "completed");
}

#[test]
fn a_broken_wasm_is_named_and_the_others_still_load() {
    let plugins = plugin_dir_copy();
    std::fs::write(plugins.path().join("broken.wasm"), b"this is not wasm").unwrap();
    // A core module is valid wasm but not a component.
    std::fs::write(plugins.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();

    let ran = run(baton().env("BATON_PLUGINS", plugins.path()).args(["run", "order", "--input", &order(json!({}))]));
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(ran.json()["status"], "completed");
    assert!(ran.stderr.contains("broken.wasm") && ran.stderr.contains("not a valid WebAssembly component"), "{ran}");
    assert!(ran.stderr.contains("core.wasm"), "{ran}");

    let listed = run(baton().env("BATON_PLUGINS", plugins.path()).args(["plugins", "--json"]));
    assert_eq!(listed.code, 1, "a plugin failed to load: {listed}");
    let names: Vec<String> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["external"] != true)
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        ["chat", "concierge", "inventory", "legacy", "notification", "payment", "shipping", "testkit", "travel"]
    );

    let checked = run(baton().env("BATON_PLUGINS", plugins.path()).arg("check"));
    assert_eq!(checked.code, 1, "{checked}");
    assert!(checked.stderr.contains("broken.wasm"), "{checked}");
}

#[test]
fn two_plugins_with_the_same_command_are_refused() {
    let plugins = plugin_dir_copy();
    std::fs::copy(plugins.path().join("payment.wasm"), plugins.path().join("payment2.wasm")).unwrap();
    let ran = run(baton().env("BATON_PLUGINS", plugins.path()).arg("plugins"));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("payment2.wasm") && ran.stderr.contains("already handled by"), "{ran}");
}

#[test]
fn plugins_lists_commands_and_schemas() {
    let ran = run(baton().args(["plugins", "--json"]));
    assert_eq!(ran.code, 0, "{ran}");
    let list = ran.json();
    let testkit = list.as_array().unwrap().iter().find(|p| p["name"] == "testkit").expect("testkit listed");
    let echo = testkit["commands"].as_array().unwrap().iter().find(|c| c["name"] == "testkit.echo").unwrap();
    assert_eq!(echo["input_schema"], r#"{"type":"object"}"#);
    assert_eq!(testkit["contract"], "baton:saga@0.2.0");
    let legacy = list.as_array().unwrap().iter().find(|p| p["name"] == "legacy").expect("legacy listed");
    assert_eq!(legacy["contract"], "baton:saga@0.1.0", "built against the previous contract");
}

#[test]
fn a_missing_plugin_directory_says_how_to_build_it() {
    let ran = run(baton().env("BATON_PLUGINS", "/nonexistent/plugins").args(["run", "order", "--input", "{}"]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("cd plugins && cargo build --release --target wasm32-wasip2"), "{ran}");
}
