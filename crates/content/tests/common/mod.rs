//! Shared test helpers: fixture location and generated inputs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: failing loudly is the point
#![allow(dead_code)]

use std::path::PathBuf;

/// The fixtures folder (`ATTESTA_FIXTURES` or `../shared/fixtures` from the workspace root).
/// A missing folder fails the test: these tests must never pass vacuously.
pub fn fixtures() -> PathBuf {
    attesta_test_support::fixtures()
}

/// One row of `ipfs/vectors.tsv`.
#[derive(Debug, Clone)]
pub struct Vector {
    pub file: String,
    pub bytes: usize,
    pub sha256: String,
    /// (profile name, root CID, block count)
    pub profiles: Vec<(String, String, usize)>,
}

pub fn vectors() -> Vec<Vector> {
    let text = std::fs::read_to_string(fixtures().join("ipfs/vectors.tsv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let rows: Vec<Vector> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), header.len(), "row {line}");
            let col = |name: &str| cols[header.iter().position(|h| *h == name).unwrap()];
            let profiles = ["kubo-default-v0", "kubo-cidv1-rawleaves", "unixfs-v1-2025"]
                .iter()
                .map(|p| {
                    (
                        p.to_string(),
                        col(p).to_string(),
                        col(&format!("{p}_blocks")).parse().unwrap(),
                    )
                })
                .collect();
            Vector {
                file: col("file").into(),
                bytes: col("bytes").parse().unwrap(),
                sha256: col("sha256").into(),
                profiles,
            }
        })
        .collect();
    assert!(
        rows.len() >= 5,
        "expected at least 5 vectors, got {}",
        rows.len()
    );
    rows
}

/// The input bytes of a vector file, generated as the fixtures README says.
pub fn input(file: &str, bytes: usize) -> Vec<u8> {
    let data = match file {
        "hello_world.txt" => b"hello world".to_vec(),
        "hello_world_nl.txt" => b"hello world\n".to_vec(),
        "empty.bin" => Vec::new(),
        f if f.starts_with("det_") => det(bytes),
        other => panic!("no generator for {other}"),
    };
    assert_eq!(data.len(), bytes, "{file}");
    data
}

/// `bytes(i % 251 for i in range(n))`.
pub fn det(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Path of a fixture CAR.
pub fn car_path(file: &str, profile: &str) -> PathBuf {
    fixtures().join(format!("ipfs/cars/{file}.{profile}.car"))
}

/// The profiles that have CAR files.
pub const CAR_PROFILES: [&str; 2] = ["kubo-default-v0", "kubo-cidv1-rawleaves"];

/// Parses a CAR into its blocks (CAR order), failing on any framing error.
pub fn car_blocks(car: &[u8]) -> Vec<(attesta_content::Cid, bytes::Bytes)> {
    let mut r = attesta_content::car::CarReader::new(car, 4 << 20);
    let mut out = Vec::new();
    while let Some(b) = r.next_block().unwrap() {
        out.push((b.cid.unwrap(), b.data));
    }
    out
}

/// Builds a CAR (DFS order) of `data` imported under `profile`.
pub fn make_car(data: &[u8], profile: attesta_content::Profile) -> (attesta_content::Cid, Vec<u8>) {
    let (root, blocks) = attesta_content::import_reader(data, profile, Vec::new()).unwrap();
    let map: std::collections::HashMap<_, _> = blocks.into_iter().collect();
    let mut car = Vec::new();
    attesta_content::unixfs::write_car_dfs(&mut car, &root, &map).unwrap();
    (root, car)
}

/// Encodes a CAR from explicit parts.
pub fn encode_car(
    root: &attesta_content::Cid,
    blocks: &[(attesta_content::Cid, Vec<u8>)],
) -> Vec<u8> {
    let mut car = Vec::new();
    attesta_content::car::write_header(&mut car, root).unwrap();
    for (c, b) in blocks {
        attesta_content::car::write_block(&mut car, c, b).unwrap();
    }
    car
}
pub mod gateway;
