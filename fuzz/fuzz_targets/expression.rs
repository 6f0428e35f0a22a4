//! Expressions (CEL) come from workflow files. Parsing and evaluating one must never panic or
//! overflow the stack, whatever the text; see `checks::expression` for what else holds.

#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::{Corpus, fuzz_target};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else { return Corpus::Reject };
    checks::expression(text);
    Corpus::Keep
});
