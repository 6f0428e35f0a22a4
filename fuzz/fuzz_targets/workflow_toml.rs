//! Workflow files are written by users and loaded by `baton serve`/`baton run`: whatever the
//! text, `workflow::parse` must answer with a workflow or errors, never panic or overflow the
//! stack.

#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::{Corpus, fuzz_target};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else { return Corpus::Reject };
    checks::workflow_toml(text);
    Corpus::Keep
});
