//! Evidence binding: Nitro fields, report data, the nitriding layout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use attesta_seal::binding::{self, BindingError};
use attesta_seal::{PublicKeySet, report_data};
use common::*;

#[test]
fn nitro_binding_accepts_the_node_fields() {
    let node = keys(1);
    let b = node.attestation_binding(b"nonce-1");
    assert_eq!(b.user_data, node.keyset_digest());
    assert_eq!(b.public_key.len(), 65);
    assert_eq!(
        b.report_data,
        report_data(&node.keyset_digest(), b"nonce-1")
    );
    let ks = binding::check_nitro(
        Some(&b.public_key),
        Some(&b.user_data),
        Some(&b.nonce),
        b"nonce-1",
    )
    .unwrap();
    assert_eq!(&ks, node.public());
    // The nitriding layout carries the digest in the app-key slot.
    let n = node.nitriding_binding(b"nonce-1", &[0; 32]);
    assert_eq!(n.user_data.len(), 68);
    assert_eq!(&n.user_data[..2], &[0x12, 0x20]);
    assert_eq!(&n.user_data[34..36], &[0x12, 0x20]);
    let ks = binding::check_nitro(
        Some(&n.public_key),
        Some(&n.user_data),
        Some(&n.nonce),
        b"nonce-1",
    )
    .unwrap();
    assert_eq!(&ks, node.public());
}

#[test]
fn nitro_binding_names_each_failure() {
    let node = keys(1);
    let other = keys(2);
    let b = node.attestation_binding(b"n");
    let chk = |pk: Option<&[u8]>, ud: Option<&[u8]>, n: Option<&[u8]>| {
        binding::check_nitro(pk, ud, n, b"n").unwrap_err()
    };
    assert_eq!(
        chk(None, Some(&b.user_data), Some(b"n")),
        BindingError::MissingPublicKey
    );
    assert!(matches!(
        chk(Some(&[1; 32]), Some(&b.user_data), Some(b"n")),
        BindingError::MalformedKeySet { len: 32 }
    ));
    let mut wrong_version = b.public_key.clone();
    wrong_version[0] = 2;
    assert!(matches!(
        chk(Some(&wrong_version), Some(&b.user_data), Some(b"n")),
        BindingError::MalformedKeySet { .. }
    ));
    // public_key announces another key set than user_data binds.
    let ob = other.attestation_binding(b"n");
    assert!(matches!(
        chk(Some(&ob.public_key), Some(&b.user_data), Some(b"n")),
        BindingError::UserDataMismatch { .. }
    ));
    assert!(matches!(
        chk(Some(&b.public_key), None, Some(b"n")),
        BindingError::UserDataMismatch { .. }
    ));
    let bad_nitriding = binding::nitriding_user_data(&[0; 32], &other.keyset_digest());
    assert!(matches!(
        chk(Some(&b.public_key), Some(&bad_nitriding), Some(b"n")),
        BindingError::UserDataMismatch { .. }
    ));
    assert_eq!(
        chk(Some(&b.public_key), Some(&b.user_data), None),
        BindingError::MissingNonce
    );
    assert!(matches!(
        chk(Some(&b.public_key), Some(&b.user_data), Some(b"m")),
        BindingError::NonceMismatch { .. }
    ));
}

#[test]
fn report_data_binds_keyset_and_nonce() {
    let node = keys(1);
    let ks = *node.public();
    let rd = report_data(&node.keyset_digest(), b"nonce");
    assert_eq!(binding::check_report_data(&rd, &ks, b"nonce").unwrap(), ks);
    assert_eq!(
        binding::check_report_data(&rd, &ks, b"nonce2"),
        Err(BindingError::ReportDataMismatch)
    );
    assert_eq!(
        binding::check_report_data(&rd, keys(2).public(), b"nonce"),
        Err(BindingError::ReportDataMismatch)
    );
    assert_eq!(
        binding::check_report_data(&rd[..32], &ks, b"nonce"),
        Err(BindingError::ReportDataMismatch)
    );
}

#[test]
fn nitriding_layout_round_trips_and_rejects_other_shapes() {
    let ud = binding::nitriding_user_data(&[1; 32], &[2; 32]);
    assert_eq!(
        binding::parse_nitriding_user_data(&ud),
        Some(([1; 32], [2; 32]))
    );
    for i in [0, 1, 34, 35] {
        let mut bad = ud;
        bad[i] ^= 1;
        assert_eq!(binding::parse_nitriding_user_data(&bad), None);
    }
    assert_eq!(binding::parse_nitriding_user_data(&ud[..67]), None);
}

#[test]
fn keyset_encoding_round_trips() {
    let ks = *keys(3).public();
    let enc = ks.to_bytes();
    assert_eq!(enc[0], 1);
    assert_eq!(PublicKeySet::from_bytes(&enc), Some(ks));
    assert_eq!(PublicKeySet::from_bytes(&enc[..64]), None);
    let json = serde_json::to_string(&ks).unwrap();
    assert!(json.contains(&hex::encode(ks.hpke_pk)));
    assert_eq!(serde_json::from_str::<PublicKeySet>(&json).unwrap(), ks);
}
