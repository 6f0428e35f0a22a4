//! The embedded store replays its write-ahead log at startup, over whatever the disk holds
//! after a crash (torn writes, flipped bits). `wal::replay` must answer records or an error,
//! never panic, and a replay that succeeded (cutting off a torn tail) must give the same
//! records when run again. The input layout is `checks::wal_segments`'s.

#![no_main]

#[path = "../checks.rs"]
mod checks;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| checks::wal_replay(data));
