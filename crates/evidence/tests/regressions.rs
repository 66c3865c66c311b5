//! Replays every input saved from fuzzing: decoding and verification must
//! return an error or a report, never panic, and never pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use attesta_evidence::nitro::cose;
use attesta_evidence::{
    AttestationDocument, Expected, NitroVerifier, Policy, PolicyFile, UnixTime, cbor, danger,
    decode_input,
};

#[test]
fn saved_fuzz_inputs_do_not_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let verifier = NitroVerifier::new(danger::allow_debug(Policy::aws_nitro().unwrap()));
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        let _ = cbor::decode(&data);
        if let Ok((_, bytes)) = decode_input(&data)
            && let Ok(c) = cose::parse(&bytes)
        {
            let _ = AttestationDocument::parse(&c.payload);
        }
        if let Ok(text) = std::str::from_utf8(&data) {
            let _ = PolicyFile::parse(text);
        }
        let (time, doc) = data.split_at(data.len().min(8));
        let mut t = [0u8; 8];
        t[..time.len()].copy_from_slice(time);
        let now = UnixTime::from_millis(u64::from_le_bytes(t) % 4_102_444_800_000);
        let v = verifier.verify(doc, &Expected::default(), now);
        assert!(!v.report.verified, "{} passed verification", path.display());
        n += 1;
    }
    println!("replayed {n} saved inputs");
}
