//! DAG verification from CAR streams and block by block: fixtures, shapes and every tamper case.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: failing loudly is the point

use crate::common;

use std::collections::HashMap;

use attesta_content::car::{CarDecoder, CarError};
use attesta_content::unixfs::{dag_pb_cid, file_node, raw_node};
use attesta_content::verify::Pushed;
use attesta_content::{Cid, Codec, DagVerifier, Limits, Profile, VerifyError, cid_of_bytes};
use bytes::Bytes;

/// Streams `car` through the decoder in `piece`-sized chunks and verifies it against `root`.
fn verify_car_with(
    root: &Cid,
    car: &[u8],
    piece: usize,
    limits: Limits,
) -> Result<Vec<u8>, VerifyError> {
    let mut dec = CarDecoder::new(limits.max_block_bytes + 128);
    let mut v = DagVerifier::new(root.clone(), limits);
    let mut out = Vec::new();
    for chunk in car.chunks(piece.max(1)) {
        dec.push(chunk);
        while let Some(b) = dec.next_block()? {
            if let Some(cid) = b.cid {
                v.push(&cid, b.data, &mut out)?;
            }
        }
    }
    dec.finish()?;
    v.finish()?;
    Ok(out)
}

fn verify_car(root: &Cid, car: &[u8]) -> Result<Vec<u8>, VerifyError> {
    verify_car_with(root, car, 4096, Limits::default())
}

/// Drives the verifier block by block from a map, as the `?format=raw` path does.
fn verify_blocks(
    root: &Cid,
    blocks: &HashMap<Cid, Bytes>,
    limits: Limits,
) -> Result<Vec<u8>, VerifyError> {
    let mut v = DagVerifier::new(root.clone(), limits);
    let mut out = Vec::new();
    while let Some(next) = v.next_needed().cloned() {
        let data = blocks
            .get(&next)
            .cloned()
            .ok_or(VerifyError::MissingBlock { cid: next.clone() })?;
        assert_eq!(v.push(&next, data, &mut out)?, Pushed::Used);
    }
    v.finish()?;
    Ok(out)
}

#[test]
fn every_fixture_car_verifies_from_the_stream_and_block_by_block() {
    let mut checked = 0;
    for vec in common::vectors() {
        let data = common::input(&vec.file, vec.bytes);
        for (profile, cid, blocks) in vec
            .profiles
            .iter()
            .filter(|p| common::CAR_PROFILES.contains(&p.0.as_str()))
        {
            let root: Cid = cid.parse().unwrap();
            let car = std::fs::read(common::car_path(&vec.file, profile)).unwrap();
            for piece in [1, 7, 4096, 1 << 20] {
                assert_eq!(
                    verify_car_with(&root, &car, piece, Limits::default()).unwrap(),
                    data,
                    "{} {profile}",
                    vec.file
                );
            }
            let map: HashMap<Cid, Bytes> = common::car_blocks(&car).into_iter().collect();
            assert_eq!(map.len(), *blocks);
            assert_eq!(verify_blocks(&root, &map, Limits::default()).unwrap(), data);
            checked += 1;
        }
    }
    assert_eq!(checked, 10);
}

fn fixture_300k(profile: &str) -> (Cid, Vec<u8>, Vec<u8>) {
    let v = common::vectors()
        .into_iter()
        .find(|v| v.file == "det_300KiB.bin")
        .unwrap();
    let cid = v
        .profiles
        .iter()
        .find(|p| p.0 == profile)
        .unwrap()
        .1
        .parse()
        .unwrap();
    let car = std::fs::read(common::car_path("det_300KiB.bin", profile)).unwrap();
    (cid, car, common::det(v.bytes))
}

/// Offsets of each block's data inside a CAR (after the frame's CID).
fn block_spans(car: &[u8]) -> Vec<(usize, usize)> {
    let blocks = common::car_blocks(car);
    let mut spans = Vec::new();
    let mut from = 0;
    for (_, data) in blocks {
        let pos = from
            + car[from..]
                .windows(data.len())
                .position(|w| w == &data[..])
                .unwrap();
        spans.push((pos, data.len()));
        from = pos + data.len();
    }
    spans
}

#[test]
fn a_flipped_byte_in_any_block_is_a_bad_block_hash() {
    for profile in common::CAR_PROFILES {
        let (root, car, _) = fixture_300k(profile);
        let spans = block_spans(&car);
        assert_eq!(spans.len(), 3);
        for (start, len) in spans {
            for at in [start, start + len / 2, start + len - 1] {
                let mut bad = car.clone();
                bad[at] ^= 0x01;
                let err = verify_car(&root, &bad).unwrap_err();
                assert!(
                    matches!(err, VerifyError::BadBlockHash { .. }),
                    "{profile} @{at}: {err}"
                );
            }
        }
    }
}

#[test]
fn a_truncated_stream_fails_at_every_cut() {
    for profile in common::CAR_PROFILES {
        let (root, car, _) = fixture_300k(profile);
        let spans = block_spans(&car);
        let mut cuts: Vec<usize> = vec![0, 1, 10, car.len() - 1];
        for (s, l) in &spans {
            cuts.extend([*s - 1, *s, s + l / 2, s + l]);
        }
        cuts.retain(|&c| c < car.len());
        for cut in cuts {
            let err = verify_car(&root, &car[..cut]).unwrap_err();
            assert!(
                matches!(
                    err,
                    VerifyError::Car(CarError::Truncated) | VerifyError::Truncated { .. }
                ),
                "{profile} cut at {cut}: {err}"
            );
        }
    }
}

#[test]
fn the_car_header_roots_are_ignored_and_a_wrong_dag_fails() {
    let (root, car, data) = fixture_300k("kubo-default-v0");
    let blocks: Vec<(Cid, Vec<u8>)> = common::car_blocks(&car)
        .into_iter()
        .map(|(c, b)| (c, b.to_vec()))
        .collect();
    // A header naming some other root does not matter: we verify against the CID we asked for.
    let liar = common::encode_car(&cid_of_bytes(b"other", Profile::KuboDefaultV0), &blocks);
    assert_eq!(verify_car(&root, &liar).unwrap(), data);
    // Valid CAR of a different file, header claiming our root: nothing we need ever arrives.
    let (_, other) = common::make_car(b"hello world", Profile::KuboDefaultV0);
    let (other_root, _) = common::make_car(b"hello world", Profile::KuboDefaultV0);
    let other_blocks: Vec<(Cid, Vec<u8>)> = common::car_blocks(&other)
        .into_iter()
        .map(|(c, b)| (c, b.to_vec()))
        .collect();
    let swapped = common::encode_car(&root, &other_blocks);
    assert_ne!(other_root, root);
    assert_eq!(
        verify_car(&root, &swapped).unwrap_err().to_string(),
        (VerifyError::Truncated { next: root.clone() }).to_string()
    );
}

#[test]
fn extra_unrelated_blocks_are_ignored() {
    let (root, car, data) = fixture_300k("kubo-cidv1-rawleaves");
    let mut blocks: Vec<(Cid, Vec<u8>)> = common::car_blocks(&car)
        .into_iter()
        .map(|(c, b)| (c, b.to_vec()))
        .collect();
    let junk = b"unrelated".to_vec();
    blocks.insert(
        1,
        (
            Cid::v1(
                Codec::Raw,
                *cid_of_bytes(&junk, Profile::KuboCidV1RawLeaves).digest(),
            ),
            junk.clone(),
        ),
    );
    blocks.push((
        cid_of_bytes(b"tail", Profile::KuboCidV1RawLeaves),
        b"tail".to_vec(),
    ));
    assert_eq!(
        verify_car(&root, &common::encode_car(&root, &blocks)).unwrap(),
        data
    );
    // An unrelated block that lies about its own hash is still a lie.
    blocks.push((
        cid_of_bytes(b"tail", Profile::KuboCidV1RawLeaves),
        b"liar".to_vec(),
    ));
    assert!(matches!(
        verify_car(&root, &common::encode_car(&root, &blocks)),
        Err(VerifyError::BadBlockHash { .. })
    ));
}

#[test]
fn a_block_whose_declared_size_lies_is_detected() {
    // Root over two raw leaves of 5 and 3 bytes.
    let a = b"aaaaa".to_vec();
    let b = b"bbb".to_vec();
    let ca = Cid::v1(
        Codec::Raw,
        *cid_of_bytes(&a, Profile::KuboCidV1RawLeaves).digest(),
    );
    let cb = Cid::v1(
        Codec::Raw,
        *cid_of_bytes(&b, Profile::KuboCidV1RawLeaves).digest(),
    );
    let build = |sizes: (u64, u64), filesize: u64| {
        let node = file_node(
            None,
            filesize,
            &[(ca.clone(), 5, sizes.0), (cb.clone(), 3, sizes.1)],
        );
        let root = dag_pb_cid(&node);
        let car = common::encode_car(
            &root,
            &[
                (root.clone(), node),
                (ca.clone(), a.clone()),
                (cb.clone(), b.clone()),
            ],
        );
        (root, car)
    };
    let (root, car) = build((5, 3), 8);
    assert_eq!(verify_car(&root, &car).unwrap(), b"aaaaabbb");
    // Consistent totals, but the first child is not 4 bytes.
    let (root, car) = build((4, 4), 8);
    assert!(matches!(
        verify_car(&root, &car),
        Err(VerifyError::ChildSizeMismatch {
            declared: 4,
            actual: 5,
            ..
        })
    ));
    // filesize disagrees with blocksizes.
    let (root, car) = build((5, 3), 9);
    assert!(matches!(
        verify_car(&root, &car),
        Err(VerifyError::FilesizeMismatch {
            declared: Some(9),
            actual: 8,
            ..
        })
    ));
    // One blocksize for two links.
    let node = raw_node(2, &[ca.to_bytes(), cb.to_bytes()], &[8], 8);
    let root = dag_pb_cid(&node);
    let car = common::encode_car(
        &root,
        &[
            (root.clone(), node),
            (ca.clone(), a.clone()),
            (cb.clone(), b.clone()),
        ],
    );
    assert!(matches!(
        verify_car(&root, &car),
        Err(VerifyError::BlocksizesMismatch {
            links: 2,
            blocksizes: 1,
            ..
        })
    ));
    // The real fixture with its second blocksize inflated by one (filesize adjusted to match).
    let (_, fixture, _) = fixture_300k("kubo-default-v0");
    let blocks: Vec<(Cid, Vec<u8>)> = common::car_blocks(&fixture)
        .into_iter()
        .map(|(c, b)| (c, b.to_vec()))
        .collect();
    let mut root_block = blocks[0].1.clone();
    let tail = root_block.len();
    // ... 0x18 <filesize 307200> 0x20 <262144> 0x20 <45056>: bump the last varint and the filesize.
    let fs_at = root_block
        .windows(4)
        .rposition(|w| w == [0x18, 0x80, 0xe0, 0x12])
        .unwrap();
    root_block[fs_at + 1] += 1;
    root_block[tail - 3] += 1;
    let lying_root = blocks[0].0.with_same_prefix_for(&root_block);
    let mut tampered = blocks.clone();
    tampered[0] = (lying_root.clone(), root_block);
    let err = verify_car(&lying_root, &common::encode_car(&lying_root, &tampered)).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::ChildSizeMismatch {
                declared: 45057,
                actual: 45056,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_hash_length_bomb_fails_before_allocating() {
    let (root, car, _) = fixture_300k("kubo-cidv1-rawleaves");
    let header_len = car[0] as usize + 1;
    // Frame: length 40, CID 01 55 12 <digest length 2^62>.
    let mut bomb = car[..header_len].to_vec();
    bomb.extend([
        40, 0x01, 0x55, 0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40,
    ]);
    bomb.extend([0u8; 31]);
    assert_eq!(
        verify_car(&root, &bomb).unwrap_err().to_string(),
        (VerifyError::Car(CarError::DigestTooLong(1 << 62))).to_string()
    );
    // A frame length of 2^62: refused from the prefix alone.
    let mut frame_bomb = car[..header_len].to_vec();
    frame_bomb.extend([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
    let err = verify_car(&root, &frame_bomb).unwrap_err();
    assert!(
        matches!(err, VerifyError::BlockTooLarge { size, .. } if size == 1 << 62),
        "{err}"
    );
    // A varint that never ends.
    let mut endless = car[..header_len].to_vec();
    endless.extend([0xff; 12]);
    assert_eq!(
        verify_car(&root, &endless).unwrap_err().to_string(),
        (VerifyError::Car(CarError::VarintOverflow)).to_string()
    );
}

#[test]
fn caps_on_block_size_file_size_depth_and_buffering() {
    let (root, car, _) = fixture_300k("kubo-cidv1-rawleaves");
    let small_blocks = Limits {
        max_block_bytes: 100_000,
        ..Limits::default()
    };
    assert!(matches!(
        verify_car_with(&root, &car, 4096, small_blocks),
        Err(VerifyError::BlockTooLarge { .. })
    ));
    let small_file = Limits {
        max_file_bytes: 307_199,
        ..Limits::default()
    };
    assert_eq!(verify_car(&root, &car).unwrap().len(), 307_200);
    assert_eq!(
        verify_car_with(&root, &car, 4096, small_file)
            .unwrap_err()
            .to_string(),
        (VerifyError::FileTooLarge {
            size: 307_200,
            max: 307_199
        })
        .to_string()
    );

    // A chain of 40 single-child nodes over one leaf.
    let leaf = b"deep".to_vec();
    let mut child = Cid::v1(
        Codec::Raw,
        *cid_of_bytes(&leaf, Profile::KuboCidV1RawLeaves).digest(),
    );
    let mut blocks = vec![(child.clone(), leaf)];
    for _ in 0..40 {
        let node = file_node(None, 4, &[(child.clone(), 4, 4)]);
        child = dag_pb_cid(&node);
        blocks.push((child.clone(), node));
    }
    blocks.reverse();
    let deep = common::encode_car(&child, &blocks);
    assert_eq!(
        verify_car(&child, &deep).unwrap_err().to_string(),
        (VerifyError::DepthExceeded { max: 32 }).to_string()
    );
    assert_eq!(
        verify_car_with(
            &child,
            &deep,
            4096,
            Limits {
                max_depth: 41,
                ..Limits::default()
            }
        )
        .unwrap(),
        b"deep"
    );

    // Siblings swapped (root, second leaf, first leaf): buffered within the cap, refused beyond it.
    let mut blocks = common::car_blocks(&car)
        .into_iter()
        .map(|(c, b)| (c, b.to_vec()))
        .collect::<Vec<_>>();
    blocks.swap(1, 2);
    let swapped = common::encode_car(&root, &blocks);
    assert_eq!(verify_car(&root, &swapped).unwrap().len(), 307_200);
    let tight = Limits {
        max_buffered_bytes: 40_000,
        ..Limits::default()
    };
    assert_eq!(
        verify_car_with(&root, &swapped, 4096, tight)
            .unwrap_err()
            .to_string(),
        (VerifyError::OutOfOrder { max: 40_000 }).to_string()
    );
    // Children before their parent cannot be recognised without unbounded buffering: refused.
    blocks.reverse();
    let reversed = common::encode_car(&root, &blocks);
    assert!(matches!(
        verify_car(&root, &reversed),
        Err(VerifyError::Truncated { .. })
    ));
}

#[test]
fn non_file_nodes_and_foreign_links_are_refused() {
    let leaf = b"x".to_vec();
    let leaf_cid = Cid::v1(
        Codec::Raw,
        *cid_of_bytes(&leaf, Profile::KuboCidV1RawLeaves).digest(),
    );
    // UnixFS directory.
    let dir = raw_node(1, &[], &[], 0);
    let dir_cid = dag_pb_cid(&dir);
    assert_eq!(
        verify_car(
            &dir_cid,
            &common::encode_car(&dir_cid, &[(dir_cid.clone(), dir)])
        )
        .unwrap_err()
        .to_string(),
        (VerifyError::NotUnixfsFile {
            cid: dir_cid.clone(),
            kind: Some(1)
        })
        .to_string()
    );
    // A link to dag-cbor, and one using another hash function.
    let mut cbor = vec![0x01, 0x71, 0x12, 0x20];
    cbor.extend([1u8; 32]);
    let mut blake = vec![0x01, 0x55, 0xa0, 0xe4, 0x02, 0x20];
    blake.extend([1u8; 32]);
    for (hash, expected) in [
        (cbor, VerifyError::UnsupportedCodec(0x71)),
        (blake, VerifyError::UnsupportedHash(0xb220)),
    ] {
        let node = raw_node(2, &[hash, leaf_cid.to_bytes()], &[1, 1], 2);
        let cid = dag_pb_cid(&node);
        let car = common::encode_car(
            &cid,
            &[(cid.clone(), node), (leaf_cid.clone(), leaf.clone())],
        );
        assert_eq!(
            verify_car(&cid, &car).unwrap_err().to_string(),
            (expected).to_string()
        );
    }
    // Garbage that hashes correctly but is not dag-pb.
    let junk = vec![0xff, 0xff, 0xff];
    let junk_cid = dag_pb_cid(&junk);
    assert!(matches!(
        verify_car(
            &junk_cid,
            &common::encode_car(&junk_cid, &[(junk_cid.clone(), junk)])
        ),
        Err(VerifyError::MalformedNode { .. })
    ));
}

#[test]
fn any_tree_shape_and_repeated_blocks() {
    // Uneven, trickle-like shape: data in an inner node, leaves at different depths.
    let l1 = b"cd".to_vec();
    let l2 = b"ef".to_vec();
    let c1 = Cid::v1(
        Codec::Raw,
        *cid_of_bytes(&l1, Profile::KuboCidV1RawLeaves).digest(),
    );
    let c2 = Cid::v1(
        Codec::Raw,
        *cid_of_bytes(&l2, Profile::KuboCidV1RawLeaves).digest(),
    );
    let inner = file_node(Some(b"XY"), 6, &[(c2.clone(), 2, 2), (c2.clone(), 2, 2)]);
    let ci = dag_pb_cid(&inner);
    let root = file_node(
        Some(b"ab"),
        12,
        &[(c1.clone(), 2, 2), (ci.clone(), 10, 6), (c1.clone(), 2, 2)],
    );
    let cr = dag_pb_cid(&root);
    let car = common::encode_car(
        &cr,
        &[
            (cr.clone(), root),
            (c1.clone(), l1),
            (ci.clone(), inner),
            (c2.clone(), l2),
        ],
    );
    assert_eq!(verify_car(&cr, &car).unwrap(), b"abcdXYefefcd");

    // A file of identical chunks: the CAR carries the leaf once, the file has it three times.
    let zeros = vec![0u8; 3 * 262_144];
    for profile in [Profile::KuboDefaultV0, Profile::KuboCidV1RawLeaves] {
        let (root, car) = common::make_car(&zeros, profile);
        assert_eq!(common::car_blocks(&car).len(), 2, "root + one shared leaf");
        assert_eq!(verify_car(&root, &car).unwrap(), zeros);
    }
}

#[test]
fn importer_output_round_trips_for_multi_level_dags() {
    // 175 chunks: two levels; both profiles; unixfs-v1-2025 with 3 chunks.
    let data = common::det(175 * 262_144 + 17);
    for profile in Profile::ALL {
        let (root, car) = common::make_car(&data, profile);
        assert_eq!(root, cid_of_bytes(&data, profile));
        let out = verify_car_with(&root, &car, 1 << 16, Limits::default()).unwrap();
        assert!(out == data, "{profile}");
    }
}
