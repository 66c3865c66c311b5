//! The importer reproduces every CID and block count in `ipfs/vectors.tsv`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: failing loudly is the point

use crate::common;

use std::collections::HashSet;

use attesta_content::{Cid, Profile, cid_of_bytes, cid_of_reader, import_reader};

#[test]
fn every_vector_row_matches_for_every_profile() {
    let mut checked = 0;
    for v in common::vectors() {
        let data = common::input(&v.file, v.bytes);
        assert_eq!(common::sha256_hex(&data), v.sha256, "input of {}", v.file);
        for (profile, expected, blocks) in &v.profiles {
            let profile: Profile = profile.parse().unwrap();
            let expected: Cid = expected.parse().unwrap();
            let (cid, sink) = import_reader(&data[..], profile, Vec::new()).unwrap();
            assert_eq!(cid, expected, "{} {profile}", v.file);
            let unique: HashSet<_> = sink.iter().map(|(c, _)| c.clone()).collect();
            assert_eq!(unique.len(), *blocks, "{} {profile} block count", v.file);
            for (c, b) in &sink {
                assert!(c.matches(b), "block {c} does not hash to its CID");
            }
            assert_eq!(sink.last().unwrap().0, cid, "root block comes last");
            assert_eq!(cid_of_bytes(&data, profile), expected);
            checked += 1;
        }
    }
    assert_eq!(checked, 15);
}

/// A reader that hands out tiny, uneven pieces: chunk boundaries must not depend on read sizes.
struct Trickle<'a>(&'a [u8], usize);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.1 = self.1 % 7 + 1;
        let n = (self.1 * 997).min(buf.len()).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn read_sizes_do_not_change_the_cid() {
    let data = common::det(307_200);
    let expected: Cid = "QmTMdR3F3Dkc5fwGhVTHiruQUTbnVia6a8bFcdtK7Yh4hr"
        .parse()
        .unwrap();
    assert_eq!(
        cid_of_reader(Trickle(&data, 0), Profile::KuboDefaultV0).unwrap(),
        expected
    );
}

#[test]
fn a_changed_byte_changes_the_cid() {
    let mut data = common::det(307_200);
    data[300_000] ^= 1;
    for p in Profile::ALL {
        let (good, _) = import_reader(&common::det(307_200)[..], p, Vec::new()).unwrap();
        assert_ne!(cid_of_bytes(&data, p), good, "{p}");
    }
}

/// Exactly 174 chunks fit one level; 175 need a second: the root then has two children.
#[test]
fn balanced_layout_grows_a_level_after_174_chunks() {
    for chunks in [174usize, 175] {
        let data = common::det(chunks * 262_144);
        let (cid, blocks) =
            import_reader(&data[..], Profile::KuboCidV1RawLeaves, Vec::new()).unwrap();
        assert_eq!(blocks.last().unwrap().0, cid);
        let leaves = blocks
            .iter()
            .filter(|(c, _)| c.codec() == attesta_content::Codec::Raw)
            .count();
        assert_eq!(leaves, chunks);
        let internal = blocks.len() - leaves;
        assert_eq!(
            internal,
            if chunks == 174 { 1 } else { 3 },
            "{chunks} chunks"
        );
    }
}
