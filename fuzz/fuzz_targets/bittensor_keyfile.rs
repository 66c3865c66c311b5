//! A hotkey file from disk (the Python wallet's JSON, or anything else) must load or be
//! refused with a typed error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = attesta_bittensor::wallet::parse_keyfile(data, std::path::Path::new("fuzz/hotkey"));
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = attesta_bittensor::AccountId::from_ss58(text);
        let _ = attesta_bittensor::Signature::from_header(text);
    }
});
