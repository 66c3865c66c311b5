//! Bounded mutation run over the fixture CARs: whatever the bytes, decoding and verification
//! return an error or the exact file, never panic, and never accept wrong content.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: failing loudly is the point

use crate::common;

use attesta_content::car::CarDecoder;
use attesta_content::{Cid, DagVerifier, Limits};

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn run(root: &Cid, car: &[u8]) -> Option<Vec<u8>> {
    let limits = Limits {
        max_block_bytes: 1 << 20,
        ..Limits::default()
    };
    let mut dec = CarDecoder::new(limits.max_block_bytes + 128);
    let mut v = DagVerifier::new(root.clone(), limits);
    let mut out = Vec::new();
    dec.push(car);
    while let Some(b) = dec.next_block().ok()? {
        if let Some(cid) = b.cid {
            v.push(&cid, b.data, &mut out).ok()?;
        }
    }
    if !v.is_done() {
        dec.finish().ok()?;
    }
    v.finish().ok()?;
    Some(out)
}

#[test]
fn mutated_cars_never_panic_and_never_verify_wrong_bytes() {
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut accepted = 0;
    let mut runs = 0;
    for v in common::vectors() {
        let data = common::input(&v.file, v.bytes);
        for (profile, cid, _) in v
            .profiles
            .iter()
            .filter(|p| common::CAR_PROFILES.contains(&p.0.as_str()))
        {
            let root: Cid = cid.parse().unwrap();
            let car = std::fs::read(common::car_path(&v.file, profile)).unwrap();
            let iterations = if car.len() > 100_000 { 60 } else { 400 };
            for _ in 0..iterations {
                let mut m = car.clone();
                match xorshift(&mut seed) % 4 {
                    0 => {
                        let i = (xorshift(&mut seed) as usize) % m.len();
                        m[i] = xorshift(&mut seed) as u8;
                    }
                    1 => m.truncate((xorshift(&mut seed) as usize) % m.len()),
                    2 => {
                        let i = (xorshift(&mut seed) as usize) % m.len();
                        m.insert(i, xorshift(&mut seed) as u8);
                    }
                    _ => {
                        let i = (xorshift(&mut seed) as usize) % m.len();
                        m.remove(i);
                    }
                }
                runs += 1;
                if let Some(out) = run(&root, &m) {
                    // Only mutations the verifier may ignore (e.g. in the header's roots) can pass.
                    assert_eq!(out, data, "{} {profile}: accepted wrong bytes", v.file);
                    accepted += 1;
                }
            }
        }
    }
    assert!(runs > 2000);
    assert!(accepted < runs / 4, "{accepted} of {runs} mutants accepted");
}
