//! Mutating real documents never passes and never panics; structured
//! mutations fail with their specific, named error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use attesta_evidence::cbor::{self, Encoder, Value};
use attesta_evidence::nitro::cose;
use attesta_evidence::{
    AttestationDocument, Expected, NitroVerifier, Policy, StepId, UnixTime, VerifyError, danger,
};
use common::{DOCS, raw};

fn verifier() -> NitroVerifier {
    NitroVerifier::new(danger::allow_debug(Policy::aws_nitro().unwrap()))
}

fn inside(doc: &common::Doc) -> UnixTime {
    UnixTime::from_millis(doc.timestamp_ms + 30_000)
}

/// Rebuilds a COSE_Sign1 from parts (keeping the original signature).
fn reassemble(protected: &[u8], payload: &[u8], sig: &[u8]) -> Vec<u8> {
    cose::encode_sign1(protected, payload, sig)
}

fn parts(bytes: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let c = cose::parse(bytes).unwrap();
    (
        c.protected.into_owned(),
        c.payload.into_owned(),
        c.signature.into_owned(),
    )
}

#[test]
fn flipping_bytes_never_passes_nor_panics() {
    let v = verifier();
    let mut tried = 0;
    for doc in &DOCS {
        let bytes = raw(doc);
        let now = inside(doc);
        assert!(v.verify(&bytes, &Expected::default(), now).report.verified);
        let n = bytes.len();
        // Every 7th byte across the document, plus every byte of the header
        // and of the signature (the last 96 bytes).
        let positions = (0..n).step_by(7).chain(0..16).chain(n - 96..n);
        for i in positions {
            for mask in [0x01u8, 0x80] {
                let mut m = bytes.clone();
                m[i] ^= mask;
                let r = v.verify(&m, &Expected::default(), now);
                assert!(
                    !r.report.verified && r.outcome.is_err(),
                    "{}: flip {mask:#x} at {i} passed",
                    doc.file
                );
                assert!(r.report.error.is_some());
                tried += 1;
            }
        }
    }
    assert!(tried > 1500, "{tried}");
}

#[test]
fn truncations_never_pass() {
    let v = verifier();
    let doc = &DOCS[0];
    let bytes = raw(doc);
    for len in (0..bytes.len()).step_by(13) {
        assert!(
            v.verify(&bytes[..len], &Expected::default(), inside(doc))
                .outcome
                .is_err(),
            "prefix {len}"
        );
    }
}

#[test]
fn last_signature_byte_flip_is_bad_signature() {
    let v = verifier();
    for doc in &DOCS {
        let mut m = raw(doc);
        let last = m.len() - 1;
        m[last] ^= 0x01;
        assert_eq!(
            v.verify(&m, &Expected::default(), inside(doc))
                .outcome
                .err(),
            Some(VerifyError::BadSignature),
            "{}",
            doc.file
        );
    }
}

fn edit_payload(bytes: &[u8], f: impl FnOnce(&mut AttestationDocument)) -> Vec<u8> {
    let (p, payload, s) = parts(bytes);
    let mut d = AttestationDocument::parse(&payload).unwrap();
    f(&mut d);
    reassemble(&p, &d.encode(), &s)
}

#[test]
fn encode_is_faithful_to_nsm_bytes() {
    // Our encoder reproduces NSM's payload bytes exactly, so edits below
    // change only what they intend to.
    for doc in &DOCS {
        let bytes = raw(doc);
        assert_eq!(edit_payload(&bytes, |_| {}), bytes, "{}", doc.file);
    }
}

#[test]
fn changing_one_pcr_breaks_the_signature() {
    let doc = &DOCS[0];
    let m = edit_payload(&raw(doc), |d| {
        d.pcrs.get_mut(&0).unwrap()[0] ^= 1;
    });
    let r = verifier().verify(&m, &Expected::default(), inside(doc));
    assert_eq!(r.outcome.err(), Some(VerifyError::BadSignature));
}

#[test]
fn swapping_certificates_breaks_the_chain() {
    let doc = &DOCS[0];
    let now = inside(doc);
    let v = verifier();
    // Swap two intermediates.
    let m = edit_payload(&raw(doc), |d| d.cabundle.swap(1, 2));
    assert!(matches!(
        v.verify(&m, &Expected::default(), now).outcome,
        Err(VerifyError::ChainBroken { .. })
    ));
    // Leaf replaced by the instance CA: it does not chain to itself.
    let m = edit_payload(&raw(doc), |d| d.certificate = d.cabundle[3].clone());
    let r = v.verify(&m, &Expected::default(), now);
    assert!(
        matches!(r.outcome, Err(VerifyError::ChainBroken { ref which, .. }) if which == "leaf"),
        "{:?}",
        r.outcome
    );
    // The signature step still ran and failed too.
    assert_eq!(
        r.report.step(StepId::Signature).map(|s| s.status),
        Some(attesta_evidence::Status::Fail)
    );
    // A certificate from another document's chain (marlin's zonal CA).
    let other = AttestationDocument::parse(&parts(&raw(&DOCS[2])).1).unwrap();
    let m = edit_payload(&raw(doc), |d| d.cabundle[2] = other.cabundle[2].clone());
    assert!(matches!(
        v.verify(&m, &Expected::default(), now).outcome,
        Err(VerifyError::ChainBroken { .. })
    ));
    // Dropping the instance CA.
    let m = edit_payload(&raw(doc), |d| {
        d.cabundle.pop();
    });
    assert!(matches!(
        v.verify(&m, &Expected::default(), now).outcome,
        Err(VerifyError::ChainBroken { .. })
    ));
}

#[test]
fn replacing_the_root_is_untrusted() {
    let doc = &DOCS[0];
    let v = verifier();
    // cabundle[0] replaced by a foreign self-signed P-384 certificate (the
    // blocky negative's leaf): never trusted by position.
    let foreign = foreign_cert();
    let m = edit_payload(&raw(doc), |d| d.cabundle[0] = foreign.clone());
    let r = v.verify(&m, &Expected::default(), inside(doc));
    assert!(
        matches!(r.outcome, Err(VerifyError::UntrustedRoot { .. })),
        "{:?}",
        r.outcome
    );
    // cabundle[0] replaced by the regional CA: the names no longer chain.
    let m = edit_payload(&raw(doc), |d| d.cabundle[0] = d.cabundle[1].clone());
    let r = v.verify(&m, &Expected::default(), inside(doc));
    assert!(
        matches!(r.outcome, Err(VerifyError::ChainBroken { .. })),
        "{:?}",
        r.outcome
    );
    // Root removed from the bundle: the chain still reaches the pinned root
    // (by signature), so only the payload signature fails.
    let m = edit_payload(&raw(doc), |d| {
        d.cabundle.remove(0);
    });
    let r = v.verify(&m, &Expected::default(), inside(doc));
    assert_eq!(r.outcome.err(), Some(VerifyError::BadSignature));
    assert_eq!(
        r.report.step(StepId::Chain).map(|s| s.status),
        Some(attesta_evidence::Status::Pass)
    );
    // A verifier that does not pin the AWS root rejects the real chain.
    let none = NitroVerifier::new(danger::replace_roots(Policy::aws_nitro().unwrap(), vec![]));
    assert!(matches!(
        none.verify(&raw(doc), &Expected::default(), inside(doc))
            .outcome,
        Err(VerifyError::UntrustedRoot { .. })
    ));
}

#[test]
fn wrong_algorithm_is_named() {
    let doc = &DOCS[0];
    let (_, payload, s) = parts(&raw(doc));
    for (alg, name) in [(-7i64, "-7"), (-36, "-36"), (1, "1")] {
        let mut e = Encoder::default();
        e.map(1).uint(1).int(alg);
        let m = reassemble(&e.into_bytes(), &payload, &s);
        assert_eq!(
            verifier()
                .verify(&m, &Expected::default(), inside(doc))
                .outcome
                .err(),
            Some(VerifyError::UnsupportedAlgorithm(name.into()))
        );
    }
}

#[test]
fn tagged_and_indefinite_forms_parse() {
    let doc = &DOCS[2];
    let bytes = raw(doc);
    let v = verifier();
    let mut tagged = vec![0xd2];
    tagged.extend_from_slice(&bytes);
    assert!(
        v.verify(&tagged, &Expected::default(), inside(doc))
            .report
            .verified
    );
    // Same document with an indefinite outer array and a chunked payload string:
    // the signature covers the concatenated contents, so it still verifies.
    let (p, payload, s) = parts(&bytes);
    let mut e = Encoder::default();
    e.raw(&[0x9f]).bytes(&p).map(0).raw(&[0x5f]);
    let (a, b) = payload.split_at(100);
    e.bytes(a).bytes(b).raw(&[0xff]).bytes(&s).raw(&[0xff]);
    let indefinite = e.into_bytes();
    assert!(matches!(cbor::decode(&indefinite), Ok(Value::Array(_))));
    let r = v.verify(&indefinite, &Expected::default(), inside(doc));
    assert!(r.report.verified, "{}", r.report);
}

type Edit = Box<dyn Fn(&mut AttestationDocument)>;
type Check = fn(&VerifyError) -> bool;

#[test]
fn structural_payload_errors_are_named() {
    let doc = &DOCS[2];
    let v = verifier();
    let now = inside(doc);
    let cases: Vec<(Edit, Check)> = vec![
        (
            Box::new(|d| d.digest = "SHA256".into()),
            |e| matches!(e, VerifyError::FieldType { field, .. } if field == "digest"),
        ),
        (
            Box::new(|d| d.nonce = Some(vec![0; 1025])),
            |e| matches!(e, VerifyError::FieldSize { field, len: 1025, .. } if field == "nonce"),
        ),
        (
            Box::new(|d| {
                d.pcrs.insert(3, vec![0; 20]);
            }),
            |e| matches!(e, VerifyError::FieldSize { field, len: 20, .. } if field == "pcrs[3]"),
        ),
        (
            Box::new(|d| d.module_id.clear()),
            |e| matches!(e, VerifyError::FieldType { field, .. } if field == "module_id"),
        ),
        (
            Box::new(|d| d.cabundle.clear()),
            |e| matches!(e, VerifyError::FieldType { field, .. } if field == "cabundle"),
        ),
        (
            Box::new(|d| d.certificate = vec![0x30, 0x03, 0x02, 0x01, 0x01]),
            // Not DER: the X.509 decoder's error is kept, the code is unchanged.
            |e| {
                matches!(e, VerifyError::Certificate { which, .. } if which == "leaf")
                    && e.code() == "bad_certificate"
                    && std::error::Error::source(e).is_some()
            },
        ),
    ];
    for (i, (edit, check)) in cases.into_iter().enumerate() {
        let m = edit_payload(&raw(doc), edit);
        let r = v.verify(&m, &Expected::default(), now);
        let err = r
            .outcome
            .as_ref()
            .err()
            .unwrap_or_else(|| panic!("case {i} passed"));
        assert!(check(err), "case {i}: {err:?}");
    }
    // A payload without `timestamp`.
    let (p, payload, s) = parts(&raw(doc));
    let Value::Map(entries) = cbor::decode(&payload).unwrap() else {
        panic!()
    };
    let mut e = Encoder::default();
    e.map(entries.len() - 1);
    for (k, val) in &entries {
        if k == &Value::Text("timestamp".into()) {
            continue;
        }
        reencode(&mut e, k);
        reencode(&mut e, val);
    }
    let m = reassemble(&p, &e.into_bytes(), &s);
    assert_eq!(
        v.verify(&m, &Expected::default(), now).outcome.err(),
        Some(VerifyError::MissingField("timestamp"))
    );
}

fn reencode(e: &mut Encoder, v: &Value<'_>) {
    match v {
        Value::Uint(u) => {
            e.uint(*u);
        }
        Value::Text(t) => {
            e.text(t);
        }
        Value::Bytes(b) => {
            e.bytes(b);
        }
        Value::Null => {
            e.null();
        }
        Value::Array(a) => {
            e.array(a.len());
            a.iter().for_each(|x| reencode(e, x));
        }
        Value::Map(m) => {
            e.map(m.len());
            m.iter().for_each(|(k, x)| {
                reencode(e, k);
                reencode(e, x);
            });
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// The self-signed leaf of the blocky negative fixture.
fn foreign_cert() -> Vec<u8> {
    let bytes = common::read("nitro/negative/blocky_selfsigned_synthetic.b64");
    let raw = attesta_evidence::decode_input(&bytes)
        .unwrap()
        .1
        .into_owned();
    let Value::Array(items) = cbor::decode(&raw).unwrap() else {
        panic!()
    };
    let Some(Value::Bytes(payload)) = items.get(2) else {
        panic!()
    };
    let Value::Map(entries) = cbor::decode(payload).unwrap() else {
        panic!()
    };
    entries
        .into_iter()
        .find_map(|(k, v)| match (k, v) {
            (Value::Text(k), Value::Bytes(b)) if k == "certificate" => Some(b.into_owned()),
            _ => None,
        })
        .unwrap()
}

#[test]
fn self_signed_document_with_repaired_structure_is_untrusted() {
    // Give the blocky document the structure NSM uses (empty unprotected map,
    // cabundle = [its own certificate], timestamp in ms): it must still fail,
    // now because its root is not the AWS root.
    let bytes = common::read("nitro/negative/blocky_selfsigned_synthetic.b64");
    let raw = attesta_evidence::decode_input(&bytes)
        .unwrap()
        .1
        .into_owned();
    let Value::Array(items) = cbor::decode(&raw).unwrap() else {
        panic!()
    };
    let (Some(Value::Bytes(p)), Some(Value::Bytes(payload)), Some(Value::Bytes(sig))) =
        (items.first(), items.get(2), items.get(3))
    else {
        panic!()
    };
    let Value::Map(entries) = cbor::decode(payload).unwrap() else {
        panic!()
    };
    let cert = foreign_cert();
    let mut e = Encoder::default();
    let mut ts = 0;
    e.map(entries.len());
    for (k, val) in &entries {
        reencode(&mut e, k);
        match (k, val) {
            (Value::Text(k), Value::Uint(t)) if k == "timestamp" => {
                ts = t * 1000;
                e.uint(ts);
            }
            (Value::Text(k), _) if k == "cabundle" => {
                e.array(1).bytes(&cert);
            }
            (Value::Text(k), Value::Map(pcrs)) if k == "pcrs" => {
                e.map(16);
                for (i, v) in pcrs.iter().take(16) {
                    reencode(&mut e, i);
                    reencode(&mut e, v);
                }
            }
            _ => reencode(&mut e, val),
        }
    }
    let m = reassemble(p, &e.into_bytes(), sig);
    let r = verifier().verify(&m, &Expected::default(), UnixTime::from_millis(ts + 1000));
    assert!(
        matches!(r.outcome, Err(VerifyError::UntrustedRoot { .. })),
        "{}",
        r.report
    );
}

#[test]
fn flipping_every_byte_of_one_document_never_passes() {
    // The full sweep over one real document (one bit per byte); the sampled
    // test above covers the other documents and a second bit.
    let v = verifier();
    let doc = &DOCS[0];
    let bytes = raw(doc);
    let now = inside(doc);
    let mut codes = std::collections::BTreeSet::new();
    for i in 0..bytes.len() {
        let mut m = bytes.clone();
        m[i] ^= 0x04;
        let r = v.verify(&m, &Expected::default(), now);
        let err = r
            .outcome
            .err()
            .unwrap_or_else(|| panic!("flip at {i} passed"));
        codes.insert(err.code());
    }
    // Flips land in every part of the document, so several kinds of failure show up.
    for expected in ["bad_signature", "chain_broken", "malformed_payload"] {
        assert!(codes.contains(expected), "{codes:?}");
    }
}

#[test]
fn verifier_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<NitroVerifier>();
    let v = std::sync::Arc::new(verifier());
    let handles: Vec<_> = DOCS
        .iter()
        .map(|doc| {
            let v = v.clone();
            let bytes = raw(doc);
            let now = inside(doc);
            std::thread::spawn(move || {
                (0..20).all(|_| v.verify(&bytes, &Expected::default(), now).report.verified)
            })
        })
        .collect();
    assert!(handles.into_iter().all(|h| h.join().unwrap()));
    assert_eq!(v.cached_chains(), 3);
}
