//! CAR framing, CID parsing and the UnixFS DAG verifier on untrusted bytes:
//! never panic, never accept a file that does not match its root.
#![no_main]

use attesta_content::car::CarDecoder;
use attesta_content::verify::{DagVerifier, Limits};
use attesta_content::{Cid, Codec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cid) = text.parse::<Cid>() {
            assert_eq!(cid.to_string().parse::<Cid>().ok(), Some(cid));
        }
    }
    let _ = Cid::from_bytes(data);

    let mut dec = CarDecoder::new(1 << 20);
    dec.push(data);
    let mut blocks = Vec::new();
    while let Ok(Some(b)) = dec.next_block() {
        blocks.push(b);
        if blocks.len() > 64 {
            break;
        }
    }
    let _ = dec.finish();
    // Make the first block the root (its real hash), so the dag-pb and UnixFS
    // parsers see fuzzer-chosen bytes; every other block must still hash right.
    let Some(first) = blocks.first() else { return };
    for codec in [Codec::DagPb, Codec::Raw] {
        let root = Cid::v1(codec, [0; 32]).with_same_prefix_for(&first.data);
        let limits = Limits { max_block_bytes: 1 << 20, max_depth: 8, max_file_bytes: 1 << 24, ..Limits::default() };
        let mut verifier = DagVerifier::new(root.clone(), limits);
        let mut out = Vec::new();
        let mut ok = verifier.push(&root, first.data.clone(), &mut out).is_ok();
        for b in blocks.iter().skip(1) {
            if !ok {
                break;
            }
            if let Some(cid) = &b.cid {
                ok = verifier.push(cid, b.data.clone(), &mut out).is_ok();
            }
        }
        if ok {
            let _ = verifier.finish();
        }
    }
});
