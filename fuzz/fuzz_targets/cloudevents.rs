//! CloudEvents JSON arrives from the broker (Redis), written by any process that can reach it.
//! Decoding must never panic, and what decodes must survive encode + decode unchanged.

#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::{Corpus, fuzz_target};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else { return Corpus::Reject };
    checks::cloudevents(text);
    Corpus::Keep
});
