//! Receipt encoding and signature: exact layout, every byte matters.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use attesta_seal::receipt::{RECEIPT_VERSION, Receipt, ReceiptError, SignedReceipt};
use attesta_seal::sha256;
use common::*;

fn receipt() -> Receipt {
    Receipt {
        version: RECEIPT_VERSION,
        keyset_digest: [0; 32],
        model_cid: MODEL.into(),
        model_sha256: sha256(b"model"),
        request_digest: sha256(b"request"),
        output_digest: sha256(b"output"),
        engine: "tract".into(),
        engine_version: "0.23.0".into(),
        issued_at: T0_SECS,
        nonce: vec![1, 2, 3],
        fault: String::new(),
    }
}

#[test]
fn encoding_round_trips_and_has_the_documented_layout() {
    let r = receipt();
    let enc = r.encode().unwrap();
    assert_eq!(enc[0], 2);
    assert_eq!(&enc[1..33], &r.keyset_digest);
    assert_eq!(&enc[33..65], &r.model_sha256);
    assert_eq!(&enc[65..97], &r.request_digest);
    assert_eq!(&enc[97..129], &r.output_digest);
    assert_eq!(&enc[129..137], &T0_SECS.to_be_bytes());
    assert_eq!(&enc[137..139], &(MODEL.len() as u16).to_be_bytes());
    assert_eq!(enc.len(), 137 + 2 + MODEL.len() + 2 + 5 + 2 + 6 + 2 + 3 + 2);
    // The fault comes last, after the nonce: empty here.
    assert_eq!(&enc[enc.len() - 2..], &[0, 0]);
    assert_eq!(Receipt::decode(&enc).unwrap(), r);
    let mut f = receipt();
    f.fault = "wrong-output".into();
    let enc = f.encode().unwrap();
    assert_eq!(&enc[enc.len() - 14..enc.len() - 12], &[0, 12]);
    assert_eq!(&enc[enc.len() - 12..], b"wrong-output");
    assert_eq!(Receipt::decode(&enc).unwrap(), f);
}

#[test]
fn signed_receipt_verifies_under_its_key_only() {
    let node = keys(1);
    let other = keys(2);
    let s = node.sign_receipt(receipt()).unwrap();
    assert_eq!(s.receipt.keyset_digest, node.keyset_digest());
    s.verify(node.public()).unwrap();
    assert!(matches!(
        s.verify(other.public()),
        Err(ReceiptError::KeySetMismatch { .. })
    ));
    // Same digest claimed, but signed by another key: the signature fails.
    let mut forged = other.sign_receipt(receipt()).unwrap();
    forged.receipt.keyset_digest = node.keyset_digest();
    assert_eq!(
        forged.verify(node.public()),
        Err(ReceiptError::BadSignature)
    );
}

#[test]
fn one_changed_byte_anywhere_is_refused() {
    let node = keys(1);
    let s = node.sign_receipt(receipt()).unwrap();
    let bytes = s.to_bytes().unwrap();
    assert_eq!(SignedReceipt::from_bytes(&bytes).unwrap(), s);
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80] {
            let mut bad = bytes.clone();
            bad[i] ^= flip;
            let res = SignedReceipt::from_bytes(&bad).and_then(|r| r.verify(node.public()));
            assert!(res.is_err(), "byte {i} flip {flip:#x} accepted");
        }
    }
    for len in 0..bytes.len() {
        assert!(
            SignedReceipt::from_bytes(&bytes[..len])
                .and_then(|r| r.verify(node.public()))
                .is_err()
        );
    }
}

#[test]
fn json_field_changes_are_refused() {
    let node = keys(1);
    let s = node.sign_receipt(receipt()).unwrap();
    let json = serde_json::to_value(&s).unwrap();
    for (field, value) in [
        ("model_cid", serde_json::json!("QmOther")),
        ("issued_at", serde_json::json!(T0_SECS + 1)),
        ("engine_version", serde_json::json!("0.23.1")),
        ("nonce", serde_json::json!("010204")),
        (
            "output_digest",
            serde_json::json!(hex::encode(sha256(b"other"))),
        ),
    ] {
        let mut j = json.clone();
        j["receipt"][field] = value;
        let r: SignedReceipt = serde_json::from_value(j).unwrap();
        assert_eq!(
            r.verify(node.public()),
            Err(ReceiptError::BadSignature),
            "{field}"
        );
    }
    let mut j = json.clone();
    j["receipt"]["extra"] = serde_json::json!(1);
    assert!(serde_json::from_value::<SignedReceipt>(j).is_err());
}

#[test]
fn digest_checks_name_the_mismatch() {
    let s = keys(1).sign_receipt(receipt()).unwrap();
    s.check_digests(Some(b"request"), Some(b"output")).unwrap();
    assert_eq!(
        s.check_digests(Some(b"requesT"), None),
        Err(ReceiptError::RequestDigestMismatch)
    );
    assert_eq!(
        s.check_digests(None, Some(b"outpuT")),
        Err(ReceiptError::OutputDigestMismatch)
    );
}

#[test]
fn limits_and_versions_fail_closed() {
    let mut r = receipt();
    r.nonce = vec![0; 65];
    assert!(matches!(
        r.encode(),
        Err(ReceiptError::FieldTooLong { field: "nonce", .. })
    ));
    let mut r = receipt();
    r.fault = "x".repeat(65);
    assert!(matches!(
        r.encode(),
        Err(ReceiptError::FieldTooLong { field: "fault", .. })
    ));
    let mut r = receipt();
    r.version = 1;
    assert_eq!(r.encode(), Err(ReceiptError::UnsupportedVersion(1)));
    for v in [1u8, 3] {
        let mut enc = receipt().encode().unwrap();
        enc[0] = v;
        assert_eq!(
            Receipt::decode(&enc),
            Err(ReceiptError::UnsupportedVersion(v))
        );
    }
    let mut enc = receipt().encode().unwrap();
    enc.push(0);
    assert!(matches!(
        Receipt::decode(&enc),
        Err(ReceiptError::Malformed(_))
    ));
}

#[test]
fn non_utf8_text_keeps_the_decoder_error() {
    let mut enc = receipt().encode().unwrap();
    // The first byte of `model_cid` (after its two length bytes).
    enc[139] = 0xff;
    let e = Receipt::decode(&enc).unwrap_err();
    assert!(
        matches!(
            e,
            ReceiptError::NotUtf8 {
                field: "model_cid",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.code(), "malformed_receipt");
    assert!(std::error::Error::source(&e).is_some());
}
