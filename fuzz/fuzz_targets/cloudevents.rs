//! CloudEvents JSON arrives from the broker (Redis), written by any process that can reach it.
//! Decoding must never panic, and what decodes must survive encode + decode unchanged.

#![no_main]

use baton::bus::cloudevents::{decode_command, decode_result, encode_command, encode_result};
use libfuzzer_sys::{Corpus, fuzz_target};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else { return Corpus::Reject };
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
    Corpus::Keep
});
