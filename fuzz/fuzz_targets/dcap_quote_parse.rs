//! DCAP quote parsing (raw, hex, base64) must never panic, and a parsed
//! quote's fields must stay within the input.
#![no_main]

use attesta_evidence::dcap::{Quote, decode_quote};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(bytes) = decode_quote(data) {
        if let Ok(q) = Quote::parse(&bytes) {
            assert!(q.len + q.trailing_zeros == bytes.len());
            assert!(q.signed.len() <= q.len);
        }
    }
    let _ = Quote::parse(data);
});
