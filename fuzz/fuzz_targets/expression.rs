//! Step input expressions come from workflow files. `Expr::parse` must never panic, and its
//! `Display` claims to print what `parse` reads back: parse(to_string(e)) == e.
//!
//! With `BATON_FUZZ_SKIP_KNOWN=1` in the environment, inputs that would only hit the known
//! round-trip findings (see README.md: float literals that serde_json parses inexactly, object
//! keys holding `'` or `\`) are skipped, so that other findings can surface.

#![no_main]

use std::sync::OnceLock;

use baton::workflow::expr::Expr;
use libfuzzer_sys::{Corpus, fuzz_target};

fn skip_known() -> bool {
    static SKIP: OnceLock<bool> = OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("BATON_FUZZ_SKIP_KNOWN").is_some_and(|v| v == "1"))
}

/// Whether `e` holds a float literal or an object key that needs escaping.
fn hits_known(e: &Expr) -> bool {
    match e {
        Expr::Literal(v) => v.is_f64(),
        Expr::Path(_) => false,
        Expr::Object(fields) => fields.iter().any(|(k, v)| k.contains(['\'', '\\']) || hits_known(v)),
        Expr::Array(items) => items.iter().any(hits_known),
    }
}

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else { return Corpus::Reject };
    if let Ok(e) = Expr::parse(text) {
        if skip_known() && hits_known(&e) {
            return Corpus::Reject;
        }
        let printed = e.to_string();
        match Expr::parse(&printed) {
            Ok(again) => assert_eq!(again, e, "Display does not round-trip: {text:?} prints as {printed:?}"),
            Err(err) => panic!("Display does not round-trip: {text:?} prints as {printed:?}, which fails: {err}"),
        }
    }
    Corpus::Keep
});
