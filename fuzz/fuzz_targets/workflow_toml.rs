//! Workflow files are written by users and loaded by `baton serve`/`baton run`: whatever the
//! text, `workflow::parse` must answer with a workflow or errors, never panic or overflow the
//! stack.

#![no_main]

use std::path::Path;

use libfuzzer_sys::{Corpus, fuzz_target};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else { return Corpus::Reject };
    let _ = baton::workflow::parse(Path::new("fuzz.toml"), text, None);
    // With known commands too: that path checks names against them and suggests near ones.
    let known = ["a.b".to_string()];
    let _ = baton::workflow::parse(Path::new("fuzz.toml"), text, Some(&known));
    Corpus::Keep
});
