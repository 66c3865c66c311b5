//! Input detection, CBOR, COSE_Sign1 and payload decoding must never panic.
#![no_main]

use attesta_evidence::nitro::cose;
use attesta_evidence::{AttestationDocument, cbor, decode_input};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cbor::decode(data);
    if let Ok((_, bytes)) = decode_input(data) {
        if let Ok(c) = cose::parse(&bytes) {
            if let Ok(doc) = AttestationDocument::parse(&c.payload) {
                // Re-encoding a decoded document must decode to the same fields.
                let again = AttestationDocument::parse(&doc.encode());
                assert_eq!(again.as_ref(), Ok(&doc));
            }
        }
    }
});
