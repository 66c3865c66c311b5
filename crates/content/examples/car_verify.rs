//! Benchmark helper for `bench/car_verify.sh` (not a test).
//!
//! - `car_verify gen DATA CAR BYTES [PROFILE]`: writes BYTES of deterministic pseudo-random data
//!   to DATA and its CARv1 (DFS order, root first) to CAR; prints the root CID.
//! - `car_verify verify CAR CID [STORE_DIR]`: verifies the CAR against CID, timing it. Without
//!   STORE_DIR the bytes are only verified (discarded); with it they are written to a
//!   [`ModelStore`] (temp file, file SHA-256, fsync, atomic commit) as a fetch would do.
//!   Prints one JSON line with bytes, seconds, MB/s and peak RSS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a bench tool: failing loudly is fine

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::time::Instant;

use attesta_content::car::{self, CarReader};
use attesta_content::store::PendingBlob;
use attesta_content::verify::{CountingSink, VerifyOutput};
use attesta_content::{
    Cid, DagVerifier, Importer, Limits, ModelStore, Profile, StoreOptions, unixfs,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen") => generate(
            &args[1],
            &args[2],
            args[3].parse().unwrap(),
            args.get(4)
                .map_or(Profile::KuboDefaultV0, |p| p.parse().unwrap()),
        ),
        Some("verify") => verify(&args[1], &args[2], args.get(3)),
        _ => {
            eprintln!(
                "usage: car_verify gen DATA CAR BYTES [PROFILE] | car_verify verify CAR CID [STORE_DIR]"
            );
            std::process::exit(2);
        }
    }
}

/// xorshift64*: incompressible enough that no two chunks repeat (no deduplication in the CAR).
fn fill(state: &mut u64, buf: &mut [u8]) {
    for word in buf.chunks_mut(8) {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        let v = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
        word.copy_from_slice(&v[..word.len()]);
    }
}

fn generate(data_path: &str, car_path: &str, bytes: u64, profile: Profile) {
    // Blocks come out of the importer leaves-first; park them in a side file, then write the CAR
    // in DFS order by reading them back, so memory stays small for any size.
    let side_path = format!("{car_path}.blocks");
    let mut side = BufWriter::new(File::create(&side_path).unwrap());
    let mut index: HashMap<Cid, (u64, usize)> = HashMap::new();
    let mut offset = 0u64;
    let sink = |cid: &Cid, block: &[u8]| {
        side.write_all(block)?;
        index.insert(cid.clone(), (offset, block.len()));
        offset += block.len() as u64;
        Ok(())
    };
    let mut importer = Importer::with_sink(profile, sink);
    let mut data = BufWriter::new(File::create(data_path).unwrap());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        fill(&mut state, &mut buf[..n]);
        data.write_all(&buf[..n]).unwrap();
        importer.write(&buf[..n]).unwrap();
        left -= n as u64;
    }
    data.flush().unwrap();
    let (root, _) = importer.finish().unwrap();
    side.flush().unwrap();
    drop(side);
    let mut side = File::open(&side_path).unwrap();
    let mut out = BufWriter::new(File::create(car_path).unwrap());
    car::write_header(&mut out, &root).unwrap();
    let mut stack = vec![root.clone()];
    let mut block = Vec::new();
    while let Some(cid) = stack.pop() {
        let (off, len) = index[&cid];
        block.resize(len, 0);
        side.seek(SeekFrom::Start(off)).unwrap();
        side.read_exact(&mut block).unwrap();
        car::write_block(&mut out, &cid, &block).unwrap();
        stack.extend(unixfs::links_of(&cid, &block).into_iter().rev());
    }
    out.flush().unwrap();
    std::fs::remove_file(&side_path).unwrap();
    println!("{root}");
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn run(car_path: &str, root: &Cid, out: &mut impl VerifyOutput) -> u64 {
    let limits = Limits::default();
    let mut reader = CarReader::new(File::open(car_path).unwrap(), limits.max_block_bytes + 128);
    let mut v = DagVerifier::new(root.clone(), limits);
    while let Some(b) = reader.next_block().unwrap() {
        if let Some(cid) = b.cid {
            v.push(&cid, b.data, out).unwrap();
        }
    }
    v.finish().unwrap().size
}

fn verify(car_path: &str, cid: &str, store_dir: Option<&String>) {
    let root: Cid = cid.parse().unwrap();
    let car_bytes = std::fs::metadata(car_path).unwrap().len();
    let start = Instant::now();
    let (size, mode) = match store_dir {
        None => (run(car_path, &root, &mut CountingSink::default()), "verify"),
        Some(dir) => {
            let store = ModelStore::open(dir, StoreOptions::default()).unwrap();
            let mut pending: PendingBlob = store.begin().unwrap();
            let size = run(car_path, &root, &mut pending);
            let m = pending.commit(&root).unwrap();
            assert_eq!(m.size, size);
            (size, "verify+store")
        }
    };
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"mode\":\"{mode}\",\"file_bytes\":{size},\"car_bytes\":{car_bytes},\"seconds\":{secs:.4},\"car_mb_per_s\":{:.1},\"peak_rss_kib\":{}}}",
        car_bytes as f64 / secs / 1e6,
        peak_rss_kib()
    );
}
