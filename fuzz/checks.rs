//! The checks of the fuzz targets, one function per target, written once: each target in
//! `fuzz_targets/` calls its function, and `host/tests/fuzz_corpus.rs` replays the corpus
//! through the same functions under `cargo test` (both include this file with `#[path]`).
//! Each panics when its property does not hold; it needs only `baton` and `tempfile`.

// Each fuzz target uses one of these functions; the others are dead code in that binary.
#![allow(dead_code)]

use std::path::Path;

/// `workflow::parse` answers a workflow or errors, never a panic or a stack overflow, with
/// and without known commands (the second checks names and suggests near ones).
pub fn workflow_toml(text: &str) {
    let _ = baton::workflow::parse(Path::new("fuzz.toml"), text, None);
    let known = ["a.b".to_string()];
    let _ = baton::workflow::parse(Path::new("fuzz.toml"), text, Some(&known));
}

/// `Expr::parse` answers an expression or a one-line error, never a panic or a stack overflow
/// (hostile nesting is an error). What parses reads only the known variables, lists them and
/// its steps sorted and once each, prints as its source, and evaluates against the empty scope
/// (`&()`) to a value or a one-line error, without panicking and in bounded time (the
/// iteration budget). A panic that `Expr` caught and turned into an error fails too.
pub fn expression(text: &str) {
    use baton::workflow::expr::{Expr, VARIABLES};
    let one_line = |what: &str, err: &str| {
        let caught = err.starts_with("the CEL parser panicked") || err.starts_with("the CEL interpreter panicked");
        assert!(!err.contains('\n') && !caught, "{what} of {text:?} fails with {err:?}");
    };
    let e = match Expr::parse(text) {
        Ok(e) => e,
        Err(err) => return one_line("parse", &err),
    };
    assert_eq!(e.to_string(), text, "Display is not the source");
    let vars = e.variables();
    assert!(vars.windows(2).all(|w| w[0] < w[1]), "variables of {text:?} not sorted once each: {vars:?}");
    assert!(vars.iter().all(|v| VARIABLES.contains(&v.as_str())), "unknown variables of {text:?}: {vars:?}");
    let steps = e.steps_read();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "steps of {text:?} not sorted once each: {steps:?}");
    assert_eq!(
        vars.iter().any(|v| v == "steps"),
        !steps.is_empty(),
        "{text:?} reads steps {steps:?}, variables {vars:?}"
    );
    if let Err(err) = e.eval(&()) {
        one_line("eval", &err);
    }
    if let Err(err) = e.eval_bool(&()) {
        one_line("eval_bool", &err);
    }
}

/// CloudEvents decoding never panics, and what decodes survives encode + decode unchanged.
pub fn cloudevents(text: &str) {
    use baton::bus::cloudevents::{decode_command, decode_result, encode_command, encode_result};
    if let Ok(c) = decode_command(text) {
        let encoded = encode_command(&c);
        match decode_command(&encoded) {
            Ok(again) => assert_eq!(again, c, "a command changes through encode + decode: {encoded}"),
            Err(e) => panic!("an encoded command does not decode: {e}: {encoded}"),
        }
    }
    if let Ok(r) = decode_result(text) {
        let encoded = encode_result(&r);
        match decode_result(&encoded) {
            Ok(again) => assert_eq!(again, r, "a result changes through encode + decode: {encoded}"),
            Err(e) => panic!("an encoded result does not decode: {e}: {encoded}"),
        }
    }
}

/// `wal::replay` over the segment files `data` describes (see [`wal_segments`]) answers
/// records or an error, never a panic, and a replay that succeeded (cutting off a torn tail)
/// gives the same records when run again. A fresh directory for each input.
pub fn wal_replay(data: &[u8]) {
    use baton::store::embedded::wal;
    let dir = tempfile::tempdir().expect("a temp dir");
    for (name, bytes) in wal_segments(data) {
        std::fs::write(dir.path().join(name), bytes).expect("writing a segment");
    }
    if let Ok(records) = wal::replay(dir.path()) {
        match wal::replay(dir.path()) {
            Ok(again) => assert_eq!(again, records, "replaying again gives other records"),
            Err(e) => panic!("a log that replayed fails the second time: {e:#}"),
        }
    }
}

/// The segment files for one `wal_replay` input, as (file name, contents). Byte 0 is the
/// mode, the rest the payload:
/// - bit 0 clear: the payload is a segment file as it is (raw bytes: headers, CRCs and all).
/// - bit 0 set: the payload is a run of chunks `len (u16 LE) | body`, each written as a
///   well-framed record (right length, right CRC-32) so the body decoder is reached; bytes
///   past the last whole chunk are appended unframed (a torn tail). Bit 2 flips the last
///   record's CRC (a damaged tail).
/// - bit 1 set: the file is split in two segments at byte 1's share of it (the second named
///   after a later sequence number), so "corruption before the last segment" is reached.
///
/// Segments are named as the log names them: `<first seq, 20 digits>.wal`.
pub fn wal_segments(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let Some((&mode, payload)) = data.split_first() else { return Vec::new() };
    let (split, payload) = match (mode & 2 != 0, payload.split_first()) {
        (true, Some((&at, rest))) => (Some(at), rest),
        _ => (None, payload),
    };
    let file = if mode & 1 == 0 {
        payload.to_vec()
    } else {
        let mut out = Vec::new();
        let mut rest = payload;
        let mut last = 0;
        while rest.len() >= 2 {
            let n = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
            if rest.len() < 2 + n {
                break;
            }
            last = out.len();
            out.extend_from_slice(&frame(&rest[2..2 + n]));
            rest = &rest[2 + n..];
        }
        if mode & 4 != 0 && !out.is_empty() {
            out[last + 4] ^= 1;
        }
        out.extend_from_slice(rest);
        out
    };
    match split {
        None => vec![(format!("{:020}.wal", 1), file)],
        Some(at) => {
            let at = file.len() * usize::from(at) / 256;
            vec![(format!("{:020}.wal", 1), file[..at].to_vec()), (format!("{:020}.wal", 1000), file[at..].to_vec())]
        }
    }
}

/// A record as the log frames it: length, CRC-32, body.
fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// CRC-32 (IEEE), as crc32fast computes it; written out so this file needs only baton.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}
