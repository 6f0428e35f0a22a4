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

/// `Expr::parse` never panics, and what it parses prints as text it reads back unchanged.
pub fn expression(text: &str) {
    use baton::workflow::expr::Expr;
    if let Ok(e) = Expr::parse(text) {
        let printed = e.to_string();
        match Expr::parse(&printed) {
            Ok(again) => assert_eq!(again, e, "Display does not round-trip: {text:?} prints as {printed:?}"),
            Err(err) => panic!("Display does not round-trip: {text:?} prints as {printed:?}, which fails: {err}"),
        }
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
