//! Golden tests of workflow loading: `ui/*.toml` must resolve to `ui/*.out`, and
//! `ui/invalid/*.toml` must fail with `ui/invalid/*.err`. Run with `BLESS=1` to rewrite the
//! expected files after an intended change, then review the diff.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use baton::workflow::{self, Workflow, duration};

/// The commands the golden files may use, as if these plugins were loaded.
const KNOWN: &[&str] = &[
    "inventory.release",
    "inventory.reserve",
    "notification.send",
    "payment.charge",
    "payment.refund",
    "shipping.cancel",
    "shipping.ship",
];

fn known() -> Vec<String> {
    let mut k: Vec<String> = KNOWN.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

fn dump(wf: &Workflow) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "workflow {} v{}", wf.name, wf.version);
    if let Some(d) = &wf.description {
        let _ = writeln!(out, "  description: {d}");
    }
    for s in &wf.steps {
        let _ = writeln!(out, "step {} (line {}): {}", s.name, s.line, s.command);
        match &s.input {
            Some(e) => _ = writeln!(out, "  input: {e}"),
            None => _ = writeln!(out, "  input: the saga input"),
        }
        if let Some(c) = &s.compensate {
            let _ = writeln!(out, "  compensate: {c}");
            match &s.compensate_input {
                Some(e) => _ = writeln!(out, "  compensate_input: {e}"),
                None => _ = writeln!(out, "  compensate_input: the step's output"),
            }
        }
        let r = &s.retry;
        let _ = writeln!(
            out,
            "  timeout: {}; retry: {} attempt(s), backoff {} x{} up to {}",
            duration::format(s.timeout),
            r.attempts,
            duration::format(r.backoff),
            r.multiplier,
            duration::format(r.max_backoff)
        );
    }
    out
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    v
}

/// Compare `actual` with the file, or write it under BLESS=1. Returns a failure description.
fn golden(expected_path: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(expected_path, actual).unwrap();
        return None;
    }
    let expected = std::fs::read_to_string(expected_path).unwrap_or_default();
    (expected != actual).then(|| format!("{}:\n--- expected\n{expected}--- actual\n{actual}", expected_path.display()))
}

#[test]
fn valid_workflows_resolve_as_expected() {
    // Paths relative to the crate, so that the expected files do not depend on the checkout.
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    let mut failures = Vec::new();
    let mut inputs = files(Path::new("tests/ui"));
    inputs.push(PathBuf::from("../workflows/order.toml"));
    for file in inputs {
        let text = std::fs::read_to_string(&file).unwrap();
        let actual = match workflow::parse(&file, &text, Some(&known())) {
            Ok(wf) => dump(&wf),
            Err(e) => format!("unexpected errors:\n{e}\n"),
        };
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        failures.extend(golden(&Path::new("tests/ui").join(format!("{name}.out")), &actual));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_workflows_fail_as_expected() {
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).unwrap();
    let mut failures = Vec::new();
    let inputs = files(Path::new("tests/ui/invalid"));
    assert!(inputs.len() >= 10, "the invalid corpus went missing");
    for file in inputs {
        let text = std::fs::read_to_string(&file).unwrap();
        let actual = match workflow::parse(&file, &text, Some(&known())) {
            Ok(wf) => format!("unexpectedly valid:\n{}", dump(&wf)),
            Err(e) => format!("{e}\n"),
        };
        failures.extend(golden(&file.with_extension("err"), &actual));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
