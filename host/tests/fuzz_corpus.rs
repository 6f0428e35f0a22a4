//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) through the checks of each fuzz target
//! (`fuzz/fuzz_targets/<target>.rs`), so every input the fuzzers kept, and every crash they
//! found (`crash-*`), is checked by `cargo test` without cargo-fuzz or nightly flags. Each
//! test lists all the files that fail, not only the first. See fuzz/README.md.
//!
//! The checks themselves are the targets' own, in `fuzz/checks.rs`, included here.
//!
//! A panic is caught and reported with its file; a stack overflow aborts the whole test
//! binary instead. To see which file did it, run with `BATON_FUZZ_CORPUS_TRACE=1` and
//! `--nocapture`: each file is named before it is checked.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// The files of `fuzz/corpus/<target>`, sorted.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    files
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}

/// Run `check` on every file of the target's corpus; fail naming each file that panics.
fn replay(target: &str, check: impl Fn(&[u8])) {
    let files = corpus(target);
    let trace = std::env::var_os("BATON_FUZZ_CORPUS_TRACE").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for file in &files {
        if trace {
            eprintln!("fuzz corpus: {}", file.display());
        }
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            failures.push(format!("{}: {}", file.display(), panic_message(&*panic)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the {} inputs in fuzz/corpus/{target} fail:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// `check` on the input as text; inputs that are not UTF-8 are skipped, as the targets do.
fn text(check: fn(&str)) -> impl Fn(&[u8]) {
    move |data| {
        if let Ok(text) = std::str::from_utf8(data) {
            check(text);
        }
    }
}

#[test]
fn workflow_toml_corpus() {
    replay("workflow_toml", text(checks::workflow_toml));
}

#[test]
fn expression_corpus() {
    replay("expression", text(checks::expression));
}

#[test]
fn cloudevents_corpus() {
    replay("cloudevents", text(checks::cloudevents));
}

#[test]
fn wal_replay_corpus() {
    replay("wal_replay", checks::wal_replay);
}
