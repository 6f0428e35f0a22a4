//! `baton test-plugin`: one command of one plugin file through the real sandbox, for a worker
//! author who wants to see what the plugin answers without a workflow or a host.

use std::path::Path;

use baton_tests::{PLUGINS_DIR, baton, run};
use serde_json::Value;

fn plugin(name: &str) -> String {
    Path::new(PLUGINS_DIR).join(format!("{name}.wasm")).to_str().unwrap().to_owned()
}

#[test]
fn one_command_runs_in_the_sandbox_and_prints_its_answer() {
    // No --command: the plugin's commands.
    let ran = run(baton().args(["test-plugin", &plugin("payment")]));
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(ran.stdout.trim(), "plugin payment (baton:saga@0.2.0): payment.charge, payment.refund");

    // A result: JSON on stdout, exit 0.
    let order = r#"{"order_id": "o-1", "customer": "ada", "items": [{"sku": "A-1", "qty": 1, "price": 5}]}"#;
    let ran = run(baton().args(["test-plugin", &plugin("payment"), "--command", "payment.charge", "--input", order]));
    assert_eq!(ran.code, 0, "{ran}");
    let out: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert!(out["payment_id"].is_string(), "{out:#}");

    // The plugin's own failure: the failure on stdout, exit 2.
    let big = r#"{"order_id": "o-2", "customer": "ada", "items": [{"sku": "A-1", "qty": 1, "price": 20000}]}"#;
    let ran = run(baton().args(["test-plugin", &plugin("payment"), "--command", "payment.charge", "--input", big]));
    assert_eq!(ran.code, 2, "{ran}");
    let out: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!((&out["code"], &out["retryable"]), (&Value::from("card_declined"), &Value::from(false)), "{out:#}");

    // The sandbox's checks apply: the input schema, and a panic is a failure, not a crash.
    let ran = run(baton().args(["test-plugin", &plugin("payment"), "--command", "payment.charge", "--input", "{}"]));
    assert_eq!(ran.code, 2, "{ran}");
    let out: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(out["code"], "invalid_input", "{out:#}");
    assert!(out["message"].as_str().unwrap().contains("\"customer\" is a required property"), "{out:#}");
    let ran = run(baton().args([
        "test-plugin",
        &plugin("testkit"),
        "--command",
        "testkit.panic",
        "--input",
        r#"{"message": "boom"}"#,
    ]));
    assert_eq!(ran.code, 2, "{ran}");
    assert!(ran.stdout.contains("plugin_panicked") && ran.stdout.contains("boom"), "{ran}");
}

#[test]
fn a_bad_plugin_or_an_unknown_command_is_refused_by_name() {
    let ran = run(baton().args(["test-plugin", &plugin("payment"), "--command", "payment.nope"]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(
        ran.stderr.contains("has no command \"payment.nope\"; its commands: payment.charge, payment.refund"),
        "{ran}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"not wasm").unwrap();
    let ran = run(baton().args(["test-plugin", bad.to_str().unwrap()]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("bad.wasm did not load") && ran.stderr.contains("wasm32-wasip2"), "{ran}");
}
