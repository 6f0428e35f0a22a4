//! `baton new`: a worker made from the template builds, loads and answers in the sandbox; a
//! workflow made from the template passes its own cases; nothing is written over.

use std::path::{Path, PathBuf};
use std::process::Command;

use baton_tests::{baton, js, python, root, run};
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
    let sdk = root().join("guest-sdk/rust");
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
    let built = cargo(&krate, &["build", "--target", "wasm32-wasip2"]);
    assert!(built.status.success(), "the new worker does not build:\n{}", String::from_utf8_lossy(&built.stderr));
    let wasm = scaffold_target().join("wasm32-wasip2/debug/greeter.wasm");

    // Its own tests pass with `cargo test`, on the native target.
    let tested = cargo(&krate, &["test"]);
    let out = String::from_utf8_lossy(&tested.stdout);
    assert!(
        tested.status.success(),
        "cargo test fails in the new worker:\n{out}\n{}",
        String::from_utf8_lossy(&tested.stderr)
    );
    assert!(out.contains("test result: ok. 2 passed"), "{out}");

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

/// `baton new worker NAME --lang python`: its tests pass with `python -m unittest`, it builds
/// with the SDK's `python -m baton_worker.build`, and the component answers in the sandbox.
#[test]
fn a_new_python_worker_passes_its_tests_builds_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let sdk = root().join("guest-sdk/python");
    let ran = run(baton()
        .current_dir(dir.path())
        .args(["new", "worker", "pygreeter", "--lang", "python", "--sdk"])
        .arg(&sdk));
    assert_eq!(ran.code, 0, "{ran}");
    assert!(
        ran.stdout.contains("wrote plugins/pygreeter/pygreeter.py") && ran.stdout.contains("python -m unittest"),
        "{ran}"
    );
    let module_dir = dir.path().join("plugins/pygreeter");

    // Its tests, as the next steps say: `python -m unittest` in its directory, the SDK on the path.
    let tested = Command::new(python::componentize_python())
        .current_dir(&module_dir)
        .env("PYTHONPATH", &sdk)
        .args(["-m", "unittest", "-v"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&tested.stderr);
    assert!(tested.status.success(), "python -m unittest fails in the new worker:\n{err}");
    assert!(err.contains("Ran 2 tests") && err.contains("OK"), "{err}");

    // It builds, and answers in the sandbox (a failure with the handler's code).
    let wasm = dir.path().join("pygreeter.wasm");
    python::build_component(&module_dir.join("pygreeter.py"), &[], &wasm);
    answers_in_the_sandbox(&wasm, "pygreeter.hello");
}

/// The example workers' own tests (`cd plugins && cargo test`, on the native target, with
/// `baton_guest::testing`): what a worker author runs, so they stay green.
#[test]
fn the_example_workers_pass_their_own_tests() {
    let tested = cargo(&root().join("plugins"), &["test"]);
    let out = String::from_utf8_lossy(&tested.stdout);
    assert!(
        tested.status.success(),
        "cd plugins && cargo test fails:\n{out}\n{}",
        String::from_utf8_lossy(&tested.stderr)
    );
    let passed: usize = out
        .lines()
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split_whitespace().next()?.parse::<usize>().ok())
        .sum();
    assert!(passed >= 40, "only {passed} tests ran:\n{out}");
}

/// `baton new worker NAME --lang js`: after `npm install` (the SDK, a `file:` dependency),
/// `npm test` passes, the package's `baton-worker-build` builds it, and the component answers
/// in the sandbox.
#[test]
fn a_new_js_worker_passes_its_tests_builds_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let ran = run(baton()
        .current_dir(dir.path())
        .args(["new", "worker", "jsgreeter", "--lang", "js", "--sdk"])
        .arg(js::sdk_dir()));
    assert_eq!(ran.code, 0, "{ran}");
    assert!(ran.stdout.contains("wrote plugins/jsgreeter/jsgreeter.js") && ran.stdout.contains("npm test"), "{ran}");
    let package = dir.path().join("plugins/jsgreeter");
    let npm = |args: &[&str]| {
        let out =
            Command::new("npm").current_dir(&package).args(args).stdin(std::process::Stdio::null()).output().unwrap();
        let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "npm {args:?} fails in the new worker:\n{text}");
        text
    };
    // The SDK only: componentize-js, its dev dependency, is the tests' shared install.
    npm(&["install", "--omit=dev", "--no-audit", "--no-fund"]);
    let tested = npm(&["test"]);
    assert!(tested.contains("# pass 2") && tested.contains("# fail 0"), "{tested}");

    // The build its package links (`npm run build` runs it with the local componentize-js).
    let wasm = dir.path().join("jsgreeter.wasm");
    let built = Command::new("node")
        .current_dir(&package)
        .arg("node_modules/.bin/baton-worker-build")
        .args(["--quiet", "jsgreeter.js", "-o"])
        .arg(&wasm)
        .arg("--componentize-js")
        .arg(js::componentize_js())
        .output()
        .unwrap();
    assert!(built.status.success(), "the new worker does not build:\n{}", String::from_utf8_lossy(&built.stderr));
    answers_in_the_sandbox(&wasm, "jsgreeter.hello");
}

/// `wasm`, a skeleton's component, answers `command` in the sandbox: a greeting, its
/// handler's failure `no_name`, and the host's `invalid_input` for a payload its declared
/// schema refuses.
fn answers_in_the_sandbox(wasm: &Path, command: &str) {
    let call = |input: &str| run(baton().arg("test-plugin").arg(wasm).args(["--command", command, "--input", input]));
    let ran = call(r#"{"name": "Ada"}"#);
    assert_eq!(ran.code, 0, "{ran}");
    assert_eq!(ran.json()["text"], "Hello, Ada (attempt 1)");
    let ran = call(r#"{"name": " "}"#);
    assert_eq!(ran.code, 2, "{ran}");
    assert!(ran.stdout.contains("no_name"), "{ran}");
    let ran = call(r#"{"who": "Ada"}"#);
    assert_eq!(ran.code, 2, "{ran}");
    assert!(ran.stdout.contains("invalid_input"), "{ran}");
}

/// `cargo ARGS --target-dir <scaffold target>` in `dir`, with the flags of the outer build
/// removed (they are the tests', not a worker's).
fn cargo(dir: &Path, args: &[&str]) -> std::process::Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .current_dir(dir)
        .args(args)
        .arg("--target-dir")
        .arg(scaffold_target())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap()
}
