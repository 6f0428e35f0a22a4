//! `baton new`: a worker made from the template builds, loads and answers in the sandbox; a
//! workflow made from the template passes its own cases; nothing is written over.

use std::path::PathBuf;
use std::process::Command;

use baton_tests::{baton, root, run};
use serde_json::Value;

/// A target directory of its own (the tests' plugin directory must hold only the example
/// plugins), kept across runs so that only the first build compiles the dependencies.
fn scaffold_target() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).expect("target/<profile>/deps/<test>").join("scaffold-target")
}

#[test]
fn a_new_worker_builds_and_answers_and_a_new_workflow_passes_its_cases() {
    let dir = tempfile::tempdir().unwrap();
    let sdk = root().join("guest-sdk");
    let ran =
        run(baton().current_dir(dir.path()).args(["new", "worker", "greeter", "--dir", "plugins", "--sdk"]).arg(&sdk));
    assert_eq!(ran.code, 0, "{ran}");
    assert!(
        ran.stdout.contains("wrote plugins/greeter/Cargo.toml")
            && ran.stdout.contains("cargo build --release --target wasm32-wasip2"),
        "{ran}"
    );

    // It builds (with the example plugins' lockfile, so the same dependency versions).
    let krate = dir.path().join("plugins/greeter");
    std::fs::copy(root().join("plugins/Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .current_dir(&krate)
        .args(["build", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(scaffold_target())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(built.status.success(), "the new worker does not build:\n{}", String::from_utf8_lossy(&built.stderr));
    let wasm = scaffold_target().join("wasm32-wasip2/debug/greeter.wasm");

    // It answers its command in the sandbox, and its derived schema is enforced.
    let ran = run(baton().args(["test-plugin"]).arg(&wasm).args([
        "--command",
        "greeter.hello",
        "--input",
        r#"{"name": "Ada"}"#,
    ]));
    assert_eq!(ran.code, 0, "{ran}");
    let out: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(out["text"], "Hello, Ada (attempt 1)");
    let ran = run(baton().args(["test-plugin"]).arg(&wasm).args([
        "--command",
        "greeter.hello",
        "--input",
        r#"{"name": ""}"#,
    ]));
    assert_eq!(ran.code, 2, "{ran}");
    assert!(ran.stdout.contains("invalid_input"), "{ran}");

    // The workflow for it: its cases pass, and it runs on the real plugin.
    let workflows = dir.path().join("workflows");
    std::fs::create_dir(&workflows).unwrap();
    let ran = run(baton().arg("--workflows").arg(&workflows).args(["new", "workflow", "greeter"]));
    assert_eq!(ran.code, 0, "{ran}");
    let ran = run(baton().arg("--workflows").arg(&workflows).args(["test", "greeter"]));
    assert_eq!(ran.code, 0, "{ran}");
    assert!(ran.stdout.ends_with("2 passed, 0 failed\n"), "{ran}");
    let plugins = dir.path().join("wasm");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(&wasm, plugins.join("greeter.wasm")).unwrap();
    let ran = run(baton().arg("--workflows").arg(&workflows).arg("--plugins").arg(&plugins).args([
        "run",
        "greeter",
        "--input",
        r#"{"who": "Ada"}"#,
        "--json",
    ]));
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(ran.json()["output"]["text"], "Hello, Ada (attempt 1)");

    // Nothing is written over, and a name Baton cannot use is refused.
    let again = run(baton().current_dir(dir.path()).args(["new", "worker", "greeter", "--dir", "plugins"]));
    assert_eq!(again.code, 1, "{again}");
    assert!(again.stderr.contains("exists already"), "{again}");
    let again = run(baton().arg("--workflows").arg(&workflows).args(["new", "workflow", "greeter"]));
    assert_eq!(again.code, 1, "{again}");
    let bad = run(baton().args(["new", "workflow", "Greeter"]));
    assert_eq!(bad.code, 1, "{bad}");
    assert!(bad.stderr.contains("not a name Baton can use"), "{bad}");
}
