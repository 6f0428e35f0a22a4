//! Golden tests of workflow loading: `ui/*.toml` must resolve to `ui/*.out`, and
//! `ui/invalid/*.toml` must fail with `ui/invalid/*.err`. Run with `BLESS=1` to rewrite the
//! expected files after an intended change, then review the diff.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use baton::workflow::{self, Next, Sleep, StepKind, Workflow, duration};

/// The commands the golden files may use, as if these plugins were loaded.
const KNOWN: &[&str] = &[
    "chat.extract",
    "chat.say",
    "flight.book",
    "flight.cancel",
    "hotel.book",
    "hotel.cancel",
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

fn next(n: &Next, block: &workflow::Block) -> String {
    match n {
        Next::Following => "following".to_owned(),
        Next::Step(j) => block.steps[*j].name.clone(),
        Next::End => "end".to_owned(),
    }
}

fn dump(wf: &Workflow) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "workflow {} v{}", wf.name, wf.version);
    if let Some(d) = &wf.description {
        let _ = writeln!(out, "  description: {d}");
    }
    if let Some(o) = &wf.output {
        let _ = writeln!(out, "  output: {o}");
    }
    if let Some(s) = &wf.input_schema {
        let _ = writeln!(out, "  input_schema: {}", s.json());
    }
    if let Some(h) = &wf.handles {
        let _ = writeln!(out, "  handles: {h}");
    }
    for (name, e) in &wf.external {
        let schema =
            |s: &Option<workflow::schema::Schema>| s.as_ref().map_or_else(|| "-".to_owned(), |s| s.json().to_string());
        let _ = writeln!(
            out,
            "  external {name} (line {}): input_schema {}; output_schema {}",
            e.line,
            schema(&e.input_schema),
            schema(&e.output_schema)
        );
    }
    for block in &wf.blocks {
        let _ = writeln!(out, "block {}", block.name);
        for s in &block.steps {
            let _ = writeln!(out, "step {} (line {}): {}", s.name, s.line, s.kind.name());
            match &s.kind {
                StepKind::Command(c) | StepKind::Workflow(c) => {
                    if let Some(w) = &c.workflow {
                        let _ = writeln!(out, "  workflow: {w}");
                    }
                    let _ = writeln!(out, "  command: {}", c.command);
                    match &c.input {
                        Some(e) => _ = writeln!(out, "  input: {e}"),
                        None => _ = writeln!(out, "  input: the saga input"),
                    }
                    if let Some(comp) = &c.compensate {
                        let _ = writeln!(out, "  compensate: {comp}");
                        match &c.compensate_input {
                            Some(e) => _ = writeln!(out, "  compensate_input: {e}"),
                            None if c.workflow.is_some() => {
                                _ = writeln!(out, "  compensate_input: {{saga: the child's id}}")
                            }
                            None => _ = writeln!(out, "  compensate_input: the step's output"),
                        }
                    }
                    let r = &c.retry;
                    let _ = writeln!(
                        out,
                        "  timeout: {}; retry: {} attempt(s), backoff {} x{} up to {}",
                        duration::format(c.timeout),
                        r.attempts,
                        duration::format(r.backoff),
                        r.multiplier,
                        duration::format(r.max_backoff)
                    );
                }
                StepKind::Choice(c) => {
                    for (when, n) in &c.cases {
                        let _ = writeln!(out, "  when {when} -> {}", next(n, block));
                    }
                    let _ = writeln!(out, "  otherwise -> {}", next(&c.otherwise, block));
                }
                StepKind::Parallel(p) => {
                    let names: Vec<&str> = p.blocks.iter().map(|&b| wf.blocks[b].name.as_str()).collect();
                    let _ = writeln!(out, "  blocks: {}", names.join(", "));
                }
                StepKind::ForEach(f) => {
                    let _ = writeln!(
                        out,
                        "  items: {}; run: {}; concurrency: {}",
                        f.items, wf.blocks[f.block].name, f.concurrency
                    );
                }
                StepKind::Wait(w) => {
                    let t = w.timeout.map_or_else(|| "none".to_owned(), duration::format);
                    let _ = writeln!(out, "  signal: {}; timeout: {t}", w.signal);
                }
                StepKind::Sleep(Sleep::For(d)) => _ = writeln!(out, "  for: {}", duration::format(*d)),
                StepKind::Sleep(Sleep::Until(e)) => _ = writeln!(out, "  until: {e}"),
                StepKind::Fail(f) => _ = writeln!(out, "  code: {}; message: {}", f.code, f.message),
            }
            if s.next != Next::Following {
                let _ = writeln!(out, "  next: {}", next(&s.next, block));
            }
            for c in &s.catch {
                let errors = if c.errors.is_empty() { "any".to_owned() } else { c.errors.join(", ") };
                let _ = writeln!(out, "  catch {errors} -> {}", next(&c.next, block));
            }
        }
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
    inputs.push(PathBuf::from("../workflows/booking_agent.toml"));
    inputs.push(PathBuf::from("../workflows/trip.toml"));
    inputs.push(PathBuf::from("../workflows/order_fraud.toml"));
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
