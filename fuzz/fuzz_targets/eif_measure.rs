//! EIF measurement (`attesta measure eif`) must never panic, whatever the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = attesta_evidence::eif::measure(data) {
        let _ = m.release("fuzz").to_toml();
    }
});
