//! Registry / policy file parsing must never panic.
#![no_main]

use attesta_evidence::{PolicyFile, Registry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(p) = PolicyFile::parse(text) {
            for r in p.registry.releases() {
                let _ = Registry::parse(&r.to_toml());
            }
        }
    }
});
