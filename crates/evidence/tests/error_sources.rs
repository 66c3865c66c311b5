//! Every error built from another error keeps it as its `source()`.

use std::error::Error as _;

use attesta_evidence::nitro::cose;
use attesta_evidence::pem::{self, PemError};
use attesta_evidence::{
    AttestationDocument, ENVELOPE_VERSION, Envelope, EvidenceVerifier, Expected, InputError,
    Platform, Policy, RootError, Shared, TrustedRoot, UnixTime, VerifyError, decode_input,
};

#[test]
fn input_errors_keep_the_decoder_error() {
    let hex = decode_input(b"abc").unwrap_err();
    assert!(matches!(hex, InputError::Hex(_)));
    assert!(hex.source().is_some());
    let b64 = decode_input(b"QUJD=A").unwrap_err();
    assert!(matches!(b64, InputError::Base64(_)), "{b64:?}");
    assert!(b64.source().is_some());
    // Wrapped into a verification error, the chain goes down to the decoder.
    let v = VerifyError::from(hex);
    assert_eq!(v.code(), "input");
    assert!(v.source().and_then(|s| s.source()).is_some());
}

#[test]
fn pem_and_root_errors_keep_their_cause() {
    let bad = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    let e = pem::certificates(bad).unwrap_err();
    assert!(matches!(e, PemError::Base64(_)));
    assert!(e.source().is_some());
    let root = TrustedRoot::from_der("junk", b"not a certificate").unwrap_err();
    assert!(matches!(root, RootError::Certificate(_)));
    let cause = root.source().and_then(|s| s.downcast_ref::<VerifyError>());
    assert_eq!(cause.map(VerifyError::code), Some("bad_certificate"));
}

#[test]
fn cbor_errors_keep_the_decoder_error_and_their_codes() {
    let payload = AttestationDocument::parse(&[0xff]).unwrap_err();
    assert!(matches!(payload, VerifyError::PayloadCbor(_)));
    assert_eq!(payload.code(), "malformed_payload");
    assert!(payload.source().is_some());
    // COSE_Sign1 whose protected header (bstr 0xff) is not CBOR.
    let mut sign1 = vec![0x84, 0x41, 0xff, 0xa0, 0x40, 0x58, 96];
    sign1.extend([0u8; 96]);
    let header = cose::parse(&sign1).unwrap_err();
    assert!(
        matches!(header, VerifyError::ProtectedHeader(_)),
        "{header:?}"
    );
    assert_eq!(header.code(), "not_cose_sign1");
    assert!(header.source().is_some());
}

#[test]
fn collateral_of_the_wrong_shape_keeps_the_json_error() {
    let v = EvidenceVerifier::new(Policy::aws_nitro().unwrap());
    let envelope = Envelope {
        version: ENVELOPE_VERSION,
        platform: Platform::Tdx,
        evidence: vec![0; 64],
        certs: Vec::new(),
        collateral: Some(serde_json::json!({ "unexpected": 1 })),
    };
    let out = v.verify(
        &envelope,
        &Expected::default(),
        UnixTime::from_secs(1_700_000_000),
    );
    let e = out.outcome.err().unwrap();
    assert_eq!(e.code(), "bad_collateral");
    assert!(
        e.source().is_some(),
        "{e}: the serde error is kept as the source"
    );
}

#[test]
fn shared_causes_compare_by_what_they_report() {
    let a: Shared<serde_json::Error> = serde_json::from_str::<u8>("x").unwrap_err().into();
    let b: Shared<serde_json::Error> = serde_json::from_str::<u8>("x").unwrap_err().into();
    let c: Shared<serde_json::Error> = serde_json::from_str::<u8>("[").unwrap_err().into();
    assert_eq!(a, a.clone());
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.to_string(), a.get().to_string());
}
