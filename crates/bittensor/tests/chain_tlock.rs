//! Commit-reveal v4 timelock commits against the real implementation: the fixture's commit
//! (made by PyPI `bittensor-drand` 2.0.0) opens with the drand round-1000 signature, and a
//! commit made here opens with `bittensor_drand.decrypt_with_signature`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::Command;

use attesta_bittensor::chain::tlock::{
    self, DrandKey, TestBeacon, TlockError, WeightsTlockPayload,
};
use parity_scale_codec::Encode;
use serde_json::Value;

fn vectors() -> Value {
    let bytes =
        attesta_test_support::read_fixture("bittensor/chain/drand_quicknet_tlock_vectors.json");
    serde_json::from_slice(&bytes).unwrap()
}

fn hex_field(v: &Value, path: &[&str]) -> Vec<u8> {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    hex::decode(cur.as_str().unwrap()).unwrap()
}

fn fixture_payload(v: &Value) -> WeightsTlockPayload {
    let w = &v["weights_payload"];
    let nums = |k: &str| -> Vec<u16> {
        w[k].as_array()
            .unwrap()
            .iter()
            .map(|n| u16::try_from(n.as_u64().unwrap()).unwrap())
            .collect()
    };
    WeightsTlockPayload {
        hotkey: hex_field(w, &["hotkey_hex"]),
        uids: nums("uids"),
        values: nums("values"),
        version_key: w["version_key"].as_u64().unwrap(),
    }
}

#[test]
fn payload_encodes_as_the_fixture() {
    let v = vectors();
    let p = fixture_payload(&v);
    assert_eq!(
        p.encode(),
        hex_field(&v, &["weights_payload", "scale_encoded_hex"])
    );
}

#[test]
fn fixture_commit_opens_with_the_round_1000_signature() {
    let v = vectors();
    let commit = hex_field(&v, &["commit_ciphertext_hex"]);
    let sig = hex_field(&v, &["pulse_round_1000", "signature_g1_compressed_hex"]);
    let plain = tlock::decrypt_with_signature(&commit, &sig).unwrap();
    assert_eq!(
        plain,
        hex_field(&v, &["weights_payload", "scale_encoded_hex"])
    );
    assert_eq!(
        tlock::decrypt_weights(&commit, &sig).unwrap(),
        fixture_payload(&v)
    );
    // The round-999 signature does not exist here; a valid G1 point of another key does
    // not open it either.
    let other = TestBeacon::from_seed([7; 32]).sign_round(1000);
    assert!(matches!(
        tlock::decrypt_with_signature(&commit, &other),
        Err(TlockError::Decrypt(_))
    ));
}

#[test]
fn the_quicknet_key_is_the_fixtures() {
    let v = vectors();
    assert_eq!(
        DrandKey::quicknet().to_compressed(),
        hex_field(&v, &["quicknet", "public_key_g2_hex"])
    );
    assert_eq!(
        tlock::QUICKNET_GENESIS_SECS,
        v["quicknet"]["genesis_time"].as_u64().unwrap()
    );
}

#[test]
fn our_commit_for_round_1000_opens_with_the_fixture_signature() {
    let v = vectors();
    let p = fixture_payload(&v);
    let sig = hex_field(&v, &["pulse_round_1000", "signature_g1_compressed_hex"]);
    let commit = tlock::encrypt_weights(&DrandKey::quicknet(), 1000, &p, [42; 32]).unwrap();
    // Same seed, same bytes: the randomness is all injected.
    assert_eq!(
        commit,
        tlock::encrypt_weights(&DrandKey::quicknet(), 1000, &p, [42; 32]).unwrap()
    );
    assert_ne!(
        commit,
        tlock::encrypt_weights(&DrandKey::quicknet(), 1000, &p, [43; 32]).unwrap()
    );
    // Same layout as the fixture's commit (same payload length).
    assert_eq!(
        commit.len(),
        hex_field(&v, &["commit_ciphertext_hex"]).len()
    );
    assert_eq!(tlock::decrypt_weights(&commit, &sig).unwrap(), p);
}

#[test]
fn malformed_commits_are_refused_not_panics() {
    let v = vectors();
    let commit = hex_field(&v, &["commit_ciphertext_hex"]);
    let sig = hex_field(&v, &["pulse_round_1000", "signature_g1_compressed_hex"]);
    // Every truncation and every single-byte change is an error, never a panic or an
    // allocation of a length read from the input.
    for n in 0..commit.len() {
        assert!(
            tlock::decrypt_with_signature(&commit[..n], &sig).is_err(),
            "{n}"
        );
    }
    // A change anywhere (sampled: each change costs a pairing in a debug build).
    for i in (0..commit.len()).step_by(7) {
        let mut c = commit.clone();
        c[i] ^= 0x01;
        assert!(tlock::decrypt_with_signature(&c, &sig).is_err(), "{i}");
    }
    let mut huge = commit[..96].to_vec();
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        tlock::decrypt_with_signature(&huge, &sig),
        Err(TlockError::Malformed(_))
    ));
    assert!(tlock::decrypt_with_signature(&commit, &sig[..47]).is_err());
    assert!(matches!(
        tlock::decrypt_with_signature(&commit, &[0xff; 48]),
        Err(TlockError::Signature(_))
    ));
}

#[test]
fn a_test_beacon_opens_commits_to_its_key() {
    let beacon = TestBeacon::from_seed([9; 32]);
    let p = WeightsTlockPayload {
        hotkey: vec![1; 32],
        uids: vec![3, 4],
        values: vec![65535, 1],
        version_key: 7,
    };
    let c = tlock::encrypt_weights(&beacon.key(), 77, &p, [1; 32]).unwrap();
    assert_eq!(
        tlock::decrypt_weights(&c, &beacon.sign_round(77)).unwrap(),
        p
    );
    assert!(tlock::decrypt_weights(&c, &beacon.sign_round(78)).is_err());
    let big = vec![0u8; tlock::MAX_COMMIT_BYTES];
    assert!(matches!(
        tlock::encrypt_to_round(&beacon.key(), 1, &big, [0; 32]),
        Err(TlockError::TooLarge { .. })
    ));
}

#[test]
fn our_commit_opens_with_bittensor_drand() {
    let py = attesta_test_support::bittensor_python();
    let v = vectors();
    let p = fixture_payload(&v);
    let sig_hex = v["pulse_round_1000"]["signature_g1_compressed_hex"]
        .as_str()
        .unwrap();
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    let commit = tlock::encrypt_weights(&DrandKey::quicknet(), 1000, &p, seed).unwrap();
    // bittensor_drand takes its `UserData { encrypted_data: Vec<u8>, reveal_round: u64 }`.
    let envelope = (commit, 1000u64).encode();
    let script = "import sys, bittensor_drand as d\n\
                  print(bytes(d.decrypt_with_signature(bytes.fromhex(sys.argv[1]), sys.argv[2])).hex())";
    let out = Command::new(py)
        .args(["-c", script, &hex::encode(&envelope), sig_hex])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bittensor_drand: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        v["weights_payload"]["scale_encoded_hex"].as_str().unwrap()
    );
}
