//! The embedded store replays its write-ahead log at startup, over whatever the disk holds
//! after a crash (torn writes, flipped bits). `wal::replay` must answer records or an error,
//! never panic, and a replay that succeeded (cutting off a torn tail) must give the same
//! records when run again.
//!
//! Input layout (byte 0 is the mode, the rest the payload):
//! - bit 0 clear: the payload is a segment file as it is (raw bytes: headers, CRCs and all).
//! - bit 0 set: the payload is a run of chunks `len (u16 LE) | body`, each written as a
//!   well-framed record (right length, right CRC-32) so the body decoder is reached; bytes
//!   past the last whole chunk are appended unframed (a torn tail). Bit 2 flips the last
//!   record's CRC (a damaged tail).
//! - bit 1 set: the file is split in two segments at byte 1's share of it (the second named
//!   after a later sequence number), so "corruption before the last segment" is reached.
//!
//! Segments are named as the log names them: `<first seq, 20 digits>.wal`.

#![no_main]

use baton::store::embedded::wal;
use libfuzzer_sys::fuzz_target;

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(body).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// CRC-32 (IEEE), as crc32fast computes it; written out so the target needs only baton.
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
fn segments(data: &[u8]) -> Vec<(String, Vec<u8>)> {
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

fuzz_target!(|data: &[u8]| {
    // A fresh directory for each input (removed when it drops): the cost is small next to the
    // sync that cutting off a torn tail does.
    let dir = tempfile::tempdir().expect("a temp dir");
    let dir = dir.path();
    for (name, bytes) in segments(data) {
        std::fs::write(dir.join(name), bytes).expect("writing a segment");
    }
    if let Ok(records) = wal::replay(dir) {
        match wal::replay(dir) {
            Ok(again) => assert_eq!(again, records, "replaying again gives other records"),
            Err(e) => panic!("a log that replayed fails the second time: {e:#}"),
        }
    }
});
