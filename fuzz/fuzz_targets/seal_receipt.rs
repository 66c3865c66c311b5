//! Receipt layout and the sealed JSON plaintexts: never panic, and a
//! receipt that decodes re-encodes to exactly the same bytes.
#![no_main]

use attesta_seal::receipt::{Receipt, SignedReceipt};
use attesta_seal::{NodeKeys, RequestPlaintext, ResponsePlaintext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Receipt::decode(data) {
        assert_eq!(r.encode().as_deref(), Ok(data), "decoding is not canonical");
    }
    if let Ok(s) = SignedReceipt::from_bytes(data) {
        let keys = NodeKeys::from_secret_bytes(&[1; 32], &[2; 32]);
        let _ = s.verify(keys.public());
    }
    if let Ok(s) = serde_json::from_slice::<SignedReceipt>(data) {
        let _ = s.receipt.encode();
    }
    let _ = RequestPlaintext::parse(data);
    let _ = serde_json::from_slice::<ResponsePlaintext>(data);
});
