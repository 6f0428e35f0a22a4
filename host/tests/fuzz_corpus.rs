//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) through the checks of each fuzz target
//! (`fuzz/fuzz_targets/<target>.rs`), so every input the fuzzers kept, and every crash they
//! found (`crash-*`), is checked by `cargo test` without cargo-fuzz or nightly flags. Each
//! test lists all the files that fail, not only the first. See fuzz/README.md.
//!
//! The bodies of the checks are copies of the targets' bodies: change both together.
//!
//! A panic is caught and reported with its file; a stack overflow aborts the whole test
//! binary instead. To see which file did it, run with `BATON_FUZZ_CORPUS_TRACE=1` and
//! `--nocapture`: each file is named before it is checked.

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

#[test]
fn workflow_toml_corpus() {
    replay("workflow_toml", |data| {
        let Ok(text) = std::str::from_utf8(data) else { return };
        let _ = baton::workflow::parse(Path::new("fuzz.toml"), text, None);
        let known = ["a.b".to_string()];
        let _ = baton::workflow::parse(Path::new("fuzz.toml"), text, Some(&known));
    });
}

#[test]
fn expression_corpus() {
    use baton::workflow::expr::Expr;
    replay("expression", |data| {
        let Ok(text) = std::str::from_utf8(data) else { return };
        if let Ok(e) = Expr::parse(text) {
            let printed = e.to_string();
            match Expr::parse(&printed) {
                Ok(again) => assert_eq!(again, e, "Display does not round-trip: {text:?} prints as {printed:?}"),
                Err(err) => panic!("Display does not round-trip: {text:?} prints as {printed:?}, which fails: {err}"),
            }
        }
    });
}

#[test]
fn cloudevents_corpus() {
    use baton::bus::cloudevents::{decode_command, decode_result, encode_command, encode_result};
    replay("cloudevents", |data| {
        let Ok(text) = std::str::from_utf8(data) else { return };
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
    });
}

/// The wal_replay target's input layout (see fuzz/fuzz_targets/wal_replay.rs): byte 0 is the
/// mode, bit 0 frames the payload's `len (u16 LE) | body` chunks as records with the right
/// CRC, bit 1 splits the file into two segments at byte 1's share, bit 2 flips the last
/// record's CRC.
mod wal_input {
    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 8);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32(body).to_le_bytes());
        out.extend_from_slice(body);
        out
    }

    /// CRC-32 (IEEE), as the log computes it.
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

    /// The segment files for one input: (file name, contents).
    pub fn segments(data: &[u8]) -> Vec<(String, Vec<u8>)> {
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
                vec![
                    (format!("{:020}.wal", 1), file[..at].to_vec()),
                    (format!("{:020}.wal", 1000), file[at..].to_vec()),
                ]
            }
        }
    }
}

#[test]
fn wal_replay_corpus() {
    use baton::store::embedded::wal;
    replay("wal_replay", |data| {
        let dir = tempfile::tempdir().expect("a temp dir");
        for (name, bytes) in wal_input::segments(data) {
            std::fs::write(dir.path().join(name), bytes).expect("writing a segment");
        }
        if let Ok(records) = wal::replay(dir.path()) {
            match wal::replay(dir.path()) {
                Ok(again) => assert_eq!(again, records, "replaying again gives other records"),
                Err(e) => panic!("a log that replayed fails the second time: {e:#}"),
            }
        }
    });
}
