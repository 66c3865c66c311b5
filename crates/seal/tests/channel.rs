//! Sealed request/response round trips and every way they must fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use attesta_seal::channel::{AnswerError, SealedOutput};
use attesta_seal::envelope::{self, EnvelopeError};
use attesta_seal::{NodeKeys, Rejected, ReplayGuard, RequestError, seal_request, sha256};
use common::*;

const OUTPUT: &[u8] = br#"[{"name":"y","shape":[1,2],"result":[[0.25,-1.5]],"type":"number"}]"#;

fn output() -> SealedOutput<'static> {
    SealedOutput {
        output_json: OUTPUT,
        model_sha256: sha256(b"model file"),
        engine: "tract",
        engine_version: "0.23.0",
    }
}

fn guard() -> ReplayGuard {
    ReplayGuard::new(Duration::from_secs(120), 1000)
}

fn rejected_code(r: Result<attesta_seal::OpenedRequest, Rejected>) -> &'static str {
    match r {
        Ok(_) => panic!("request was accepted"),
        Err(e) => e.code(),
    }
}

#[test]
fn round_trip_yields_output_and_verified_receipt() {
    let node = keys(1);
    let g = guard();
    let req = request(T0_SECS, Some("00112233"));
    let (body, ctx) = seal_request(node.public(), &req, &mut TestRng::new(2)).unwrap();
    assert_eq!(body[0], envelope::VERSION);
    assert_eq!(body[1], envelope::KIND_REQUEST);
    // The plaintext never appears on the wire.
    assert!(!body.windows(4).any(|w| w == b"1337"));

    let opened = node.open_request(&body, &g, t(T0_SECS + 5)).unwrap();
    assert_eq!(opened.request.model, MODEL);
    assert_eq!(opened.request_digest, ctx.request_digest());
    assert_eq!(opened.request.inputs.get(), req.inputs.get());
    let sealed = opened
        .responder
        .seal_output(&node, &output(), t(T0_SECS + 6))
        .unwrap();
    assert!(!sealed.windows(4).any(|w| w == b"0.25"));

    let answer = ctx.open_verified(&sealed).unwrap();
    assert_eq!(answer.output.get().as_bytes(), OUTPUT);
    assert_eq!(answer.model_hash, hex::encode(sha256(b"model file")));
    let r = &answer.receipt.receipt;
    assert_eq!(r.keyset_digest, node.keyset_digest());
    assert_eq!(r.issued_at, T0_SECS + 6);
    assert_eq!(r.nonce, vec![0x00, 0x11, 0x22, 0x33]);
    assert_eq!(r.output_digest, sha256(OUTPUT));
    assert_eq!(r.engine, "tract");
}

#[test]
fn every_flipped_request_byte_fails_with_its_error() {
    let node = keys(1);
    let (body, _) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(3)).unwrap();
    for i in 0..body.len() {
        let mut bad = body.clone();
        bad[i] ^= 0x01;
        let code = rejected_code(node.open_request(&bad, &guard(), t(T0_SECS)));
        let want = match i {
            0 => "unsupported_version",
            1 => "unexpected_kind",
            2..=33 => "unknown_key_set",
            _ => "decryption_failed",
        };
        assert_eq!(code, want, "byte {i}");
    }
}

#[test]
fn every_truncation_fails_closed() {
    let node = keys(1);
    let (body, _) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(3)).unwrap();
    for len in 0..body.len() {
        let code = rejected_code(node.open_request(&body[..len], &guard(), t(T0_SECS)));
        let want = if len < envelope::REQUEST_HEADER_LEN + envelope::TAG_LEN {
            "malformed_envelope"
        } else {
            "decryption_failed"
        };
        assert_eq!(code, want, "length {len}");
    }
    // Extra bytes are not ignored either.
    let mut long = body.clone();
    long.push(0);
    assert_eq!(
        rejected_code(node.open_request(&long, &guard(), t(T0_SECS))),
        "decryption_failed"
    );
}

#[test]
fn unknown_versions_fail_closed() {
    let node = keys(1);
    let (body, ctx) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(3)).unwrap();
    for v in [0u8, 2, 0xff] {
        let mut bad = body.clone();
        bad[0] = v;
        let r = node.open_request(&bad, &guard(), t(T0_SECS));
        assert!(
            matches!(r, Err(Rejected::Envelope(EnvelopeError::UnsupportedVersion(x))) if x == v)
        );
        let mut resp = vec![v, envelope::KIND_RESPONSE];
        resp.extend_from_slice(&[0u8; 40]);
        assert_eq!(
            ctx.open_response(&resp),
            Err(EnvelopeError::UnsupportedVersion(v))
        );
    }
}

#[test]
fn replayed_request_is_refused_sealed() {
    let node = keys(1);
    let g = guard();
    let (body, ctx) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(4)).unwrap();
    node.open_request(&body, &g, t(T0_SECS)).unwrap();
    let err = node.open_request(&body, &g, t(T0_SECS + 1)).unwrap_err();
    assert_eq!(err.code(), "replayed_request");
    assert_eq!(err.http_status(), 409);
    let (ctype, reply) = err.into_body();
    assert_eq!(ctype, envelope::MEDIA_TYPE);
    // Only the requester learns why, and gets no output.
    match ctx.open_verified(&reply) {
        Err(AnswerError::Remote(e)) => assert_eq!(e.0.code, "replayed_request"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn stale_and_future_requests_are_refused() {
    let node = keys(1);
    for issued in [T0_SECS - 121, T0_SECS + 121] {
        let (body, ctx) =
            seal_request(node.public(), &request(issued, None), &mut TestRng::new(5)).unwrap();
        let err = node.open_request(&body, &guard(), t(T0_SECS)).unwrap_err();
        assert!(matches!(
            err,
            Rejected::Request {
                error: RequestError::Stale { .. },
                ..
            }
        ));
        let (_, reply) = err.into_body();
        assert_eq!(
            ctx.open_verified(&reply).unwrap_err().code(),
            "stale_request"
        );
    }
    let (body, _) = seal_request(
        node.public(),
        &request(T0_SECS - 120, None),
        &mut TestRng::new(5),
    )
    .unwrap();
    node.open_request(&body, &guard(), t(T0_SECS)).unwrap();
}

#[test]
fn answer_cannot_be_opened_by_another_requester() {
    let node = keys(1);
    let g = guard();
    let (body_a, _ctx_a) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(6)).unwrap();
    let (_body_b, ctx_b) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(7)).unwrap();
    let opened = node.open_request(&body_a, &g, t(T0_SECS)).unwrap();
    let sealed = opened
        .responder
        .seal_output(&node, &output(), t(T0_SECS))
        .unwrap();
    assert_eq!(
        ctx_b.open_response(&sealed),
        Err(EnvelopeError::DecryptionFailed)
    );
    assert_eq!(
        ctx_b.open_verified(&sealed).unwrap_err().code(),
        "decryption_failed"
    );
}

#[test]
fn every_flipped_response_byte_fails() {
    let node = keys(1);
    let (body, ctx) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(8)).unwrap();
    let opened = node.open_request(&body, &guard(), t(T0_SECS)).unwrap();
    let sealed = opened
        .responder
        .seal_output(&node, &output(), t(T0_SECS))
        .unwrap();
    ctx.open_verified(&sealed).unwrap();
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x80;
        let err = ctx.open_verified(&bad).unwrap_err();
        let want = match i {
            0 => "unsupported_version",
            1 => "unexpected_kind",
            _ => "decryption_failed",
        };
        assert_eq!(err.code(), want, "byte {i}");
    }
    for len in 0..sealed.len() {
        assert!(ctx.open_verified(&sealed[..len]).is_err(), "length {len}");
    }
}

#[test]
fn request_for_another_node_is_refused() {
    let node = keys(1);
    let other = keys(2);
    let (body, _) = seal_request(
        other.public(),
        &request(T0_SECS, None),
        &mut TestRng::new(9),
    )
    .unwrap();
    assert_eq!(
        rejected_code(node.open_request(&body, &guard(), t(T0_SECS))),
        "unknown_key_set"
    );
    // Relabelled with this node's digest it still does not open.
    let mut relabelled = body.clone();
    relabelled[2..34].copy_from_slice(&node.keyset_digest());
    assert_eq!(
        rejected_code(node.open_request(&relabelled, &guard(), t(T0_SECS))),
        "decryption_failed"
    );
}

#[test]
fn receipt_signed_by_an_unbound_key_is_refused() {
    let node = keys(1);
    let impostor = keys(2);
    let (body, ctx) = seal_request(
        node.public(),
        &request(T0_SECS, None),
        &mut TestRng::new(10),
    )
    .unwrap();
    let opened = node.open_request(&body, &guard(), t(T0_SECS)).unwrap();
    let sealed = opened
        .responder
        .seal_output(&impostor, &output(), t(T0_SECS))
        .unwrap();
    match ctx.open_verified(&sealed) {
        Err(AnswerError::Receipt(e)) => assert_eq!(e.code(), "receipt_key_set_mismatch"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_plaintext_gets_a_sealed_error() {
    let node = keys(1);
    let ks = node.public();
    for bad in [
        &b"not json"[..],
        br#"{"model":"","inputs":{},"request_id":"x","issued_at":1767225600}"#,
    ] {
        let (body, ctx) = attesta_seal::channel::seal_request_bytes(
            ks,
            bad.to_vec(),
            MODEL.into(),
            vec![],
            &mut TestRng::new(11),
        )
        .unwrap();
        let err = node.open_request(&body, &guard(), t(T0_SECS)).unwrap_err();
        assert_eq!(err.code(), "malformed_request");
        let (_, reply) = err.into_body();
        assert_eq!(
            ctx.open_verified(&reply).unwrap_err().code(),
            "malformed_request"
        );
    }
    let mut req = request(T0_SECS, None);
    req.request_id = "x".repeat(129);
    let (body, _) = seal_request(ks, &req, &mut TestRng::new(12)).unwrap();
    assert_eq!(
        rejected_code(node.open_request(&body, &guard(), t(T0_SECS))),
        "malformed_request"
    );
}

#[test]
fn node_errors_are_sealed_and_carry_no_output() {
    let node = keys(1);
    let (body, ctx) = seal_request(
        node.public(),
        &request(T0_SECS, None),
        &mut TestRng::new(13),
    )
    .unwrap();
    let opened = node.open_request(&body, &guard(), t(T0_SECS)).unwrap();
    let sealed = opened
        .responder
        .seal_error("model_not_found", "no such model");
    assert!(!sealed.windows(5).any(|w| w == b"model"));
    match ctx.open_verified(&sealed) {
        Err(AnswerError::Remote(e)) => {
            assert_eq!(e.0.code, "model_not_found");
            assert_eq!(e.0.message, "no such model");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_output_json_yields_a_sealed_internal_error() {
    let node = keys(1);
    let (body, ctx) = seal_request(
        node.public(),
        &request(T0_SECS, None),
        &mut TestRng::new(14),
    )
    .unwrap();
    let opened = node.open_request(&body, &guard(), t(T0_SECS)).unwrap();
    let mut out = output();
    out.output_json = b"[1,";
    let fail = opened
        .responder
        .seal_output(&node, &out, t(T0_SECS))
        .unwrap_err();
    assert_eq!(
        ctx.open_verified(&fail.sealed).unwrap_err().code(),
        "internal_error"
    );
}

#[test]
fn node_keys_debug_prints_no_secret() {
    let seed = [9u8; 32];
    let node = NodeKeys::from_secret_bytes(&[8u8; 32], &seed);
    let dbg = format!("{node:?}");
    assert!(dbg.contains(&hex::encode(node.public().hpke_pk)));
    assert!(!dbg.contains(&hex::encode(seed)));
}

#[test]
fn replay_window_forgets_only_expired_entries_and_fails_closed_when_full() {
    let g = ReplayGuard::new(Duration::from_secs(10), 2);
    g.check_and_insert(&[1; 32], 100, t(100)).unwrap();
    g.check_and_insert(&[2; 32], 100, t(100)).unwrap();
    assert_eq!(
        g.check_and_insert(&[3; 32], 100, t(100)),
        Err(RequestError::ReplayWindowFull)
    );
    assert_eq!(
        g.check_and_insert(&[1; 32], 100, t(105)),
        Err(RequestError::Replayed)
    );
    // At 111 the old entries can no longer pass the time check: forgotten.
    g.check_and_insert(&[3; 32], 111, t(111)).unwrap();
    assert_eq!(g.len(), 1);
    assert!(matches!(
        g.check_and_insert(&[1; 32], 100, t(111)),
        Err(RequestError::Stale { .. })
    ));
}
