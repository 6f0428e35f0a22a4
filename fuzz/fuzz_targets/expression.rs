//! Step input expressions come from workflow files. `Expr::parse` must never panic, and its
//! `Display` claims to print what `parse` reads back: parse(to_string(e)) == e.

#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::{Corpus, fuzz_target};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else { return Corpus::Reject };
    checks::expression(text);
    Corpus::Keep
});
