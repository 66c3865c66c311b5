//! Sealed request/response round trips and every way they must fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use attesta_evidence::danger;
use attesta_seal::channel::{AnswerError, ReceiptOrOutput, SealedOutput};
use attesta_seal::envelope::{self, EnvelopeError};
use attesta_seal::{NodeKeys, Rejected, RequestError, RequestPlaintext, seal_request, sha256};
use common::*;

const OUTPUT: &[u8] = br#"[{"name":"y","shape":[1,2],"result":[[0.25,-1.5]],"type":"number"}]"#;

fn output() -> SealedOutput<'static> {
    SealedOutput {
        output_json: OUTPUT,
        model_sha256: sha256(b"model file"),
        engine: "tract",
        engine_version: "0.23.0",
        fault: None,
    }
}

fn rejected_code(r: Result<attesta_seal::OpenedRequest, Rejected>) -> &'static str {
    match r {
        Ok(_) => panic!("request was accepted"),
        Err(e) => e.code(),
    }
}

/// The refusal's body, checked to be the documented plaintext JSON error.
fn plaintext_refusal(r: Rejected, code: &str) -> Vec<u8> {
    assert_eq!(r.code(), code);
    let (ctype, body) = r.into_body();
    assert_eq!(ctype, "application/json");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    body
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

#[test]
fn round_trip_yields_output_and_verified_receipt() {
    let node = keys(1);
    let g = guard();
    let req = request(T0_SECS, Some("00112233"));
    let (body, ctx) = seal_request(node.public(), &req, &mut TestRng::new(2)).unwrap();
    assert_eq!(body[0], envelope::VERSION);
    assert_eq!(envelope::VERSION, 2);
    assert_eq!(body[1], envelope::KIND_REQUEST);
    // The plaintext never appears on the wire.
    assert!(!body.windows(4).any(|w| w == b"1337"));

    let opened = node.open_request(&body, &g, t(T0_SECS + 5)).unwrap();
    assert_eq!(opened.request.model, MODEL);
    assert_eq!(opened.request_digest, ctx.request_digest());
    assert_eq!(opened.request.inputs.get(), req.inputs.get());
    assert!(g.is_empty(), "opening charges nothing to the replay memory");
    let accepted = opened.admit(&g, t(T0_SECS + 5)).unwrap();
    assert_eq!(g.len(), 1);
    let sealed = accepted
        .responder
        .seal_output(&node, &output(), t(T0_SECS + 6), &mut TestRng::new(50))
        .unwrap();
    assert!(!sealed.windows(4).any(|w| w == b"0.25"));
    assert_eq!(&sealed[..2], &[envelope::VERSION, envelope::KIND_RESPONSE]);

    let answer = ctx.open_verified(&sealed, &strict()).unwrap();
    assert_eq!(answer.output.get().as_bytes(), OUTPUT);
    assert_eq!(answer.model_hash, hex::encode(sha256(b"model file")));
    let r = &answer.receipt.receipt;
    assert_eq!(r.version, 2);
    assert_eq!(r.keyset_digest, node.keyset_digest());
    assert_eq!(r.issued_at, T0_SECS + 6);
    assert_eq!(r.nonce, vec![0x00, 0x11, 0x22, 0x33]);
    assert_eq!(r.output_digest, sha256(OUTPUT));
    assert_eq!(r.engine, "tract");
    assert_eq!(r.fault, "");
    assert_eq!(answer.receipt.declared_fault(), None);
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
fn unknown_versions_fail_closed_and_v1_is_told_to_upgrade() {
    let node = keys(1);
    let (body, ctx) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(3)).unwrap();
    for v in [0u8, 1, 3, 0xff] {
        let mut bad = body.clone();
        bad[0] = v;
        let r = node.open_request(&bad, &guard(), t(T0_SECS));
        let Err(r) = r else {
            panic!("version {v} accepted")
        };
        assert!(matches!(
            r,
            Rejected::Envelope(EnvelopeError::UnsupportedVersion(x)) if x == v
        ));
        assert_eq!(r.http_status(), 400);
        let refusal = plaintext_refusal(r, "unsupported_version");
        let text = String::from_utf8(refusal).unwrap();
        assert!(text.contains("v2 is required"), "{text}");
        let mut resp = vec![v, envelope::KIND_RESPONSE];
        resp.extend_from_slice(&[0u8; 60]);
        assert_eq!(
            ctx.open_response(&resp),
            Err(EnvelopeError::UnsupportedVersion(v))
        );
    }
}

/// The v1 two-time pad: the genuine answer and the answer to its replay were
/// sealed under one key and nonce, so `C1 ⊕ C2 ⊕ P2` gave back `P1`. Now the
/// replay (and the stale replay later) gets a plaintext refusal, nothing sealed.
#[test]
fn replay_of_an_answered_request_gets_a_plaintext_refusal() {
    let node = keys(1);
    let g = guard();
    let (body, ctx) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(4)).unwrap();
    let genuine = accept(&node, &body, &g, t(T0_SECS))
        .responder
        .seal_output(&node, &output(), t(T0_SECS), &mut TestRng::new(40))
        .unwrap();
    assert!(ctx.open_verified(&genuine, &strict()).is_ok());

    // Replayed at once: refused before anything is sealed.
    let err = node.open_request(&body, &g, t(T0_SECS + 1)).unwrap_err();
    assert!(matches!(err, Rejected::Request(RequestError::Replayed)));
    assert_eq!(err.http_status(), 409);
    // The old attack needs a second ciphertext under the genuine answer's
    // key; the refusal is no ciphertext at all.
    let refusal = plaintext_refusal(err, "replayed_request");
    // A plaintext refusal never opens as an answer, so it is never a verdict.
    assert!(matches!(
        ctx.open_verified(&refusal, &strict()),
        Err(AnswerError::Envelope(_))
    ));

    // Replayed after the window: a plaintext `stale_request`.
    let err = node.open_request(&body, &g, t(T0_SECS + 120)).unwrap_err();
    assert!(matches!(err, Rejected::Request(RequestError::Stale { .. })));
    plaintext_refusal(err, "stale_request");
}

/// No two sealed answers ever share a key and nonce: a request refused before
/// acceptance (e.g. its model was missing) and answered again later gets one
/// fresh `response_nonce` per answer, and the XOR of two ciphertexts is not
/// the XOR of their plaintexts.
#[test]
fn answers_to_one_request_never_share_a_key_and_nonce() {
    let node = keys(1);
    let g = guard();
    let (body, ctx) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(4)).unwrap();
    let mut rng = TestRng::new(41);
    let mut answers = Vec::new();
    for i in 0..8 {
        let opened = node.open_request(&body, &g, t(T0_SECS + i)).unwrap();
        answers.push(
            opened
                .seal_error("model_not_found", "no such model", &mut rng)
                .unwrap(),
        );
    }
    let admitted = accept(&node, &body, &g, t(T0_SECS + 9));
    answers.push(
        admitted
            .responder
            .seal_output(&node, &output(), t(T0_SECS + 9), &mut rng)
            .unwrap(),
    );
    let nonces: HashSet<&[u8]> = answers
        .iter()
        .map(|a| &a[2..envelope::RESPONSE_HEADER_LEN])
        .collect();
    assert_eq!(nonces.len(), answers.len(), "a response nonce repeated");
    // Keystream = ciphertext ⊕ plaintext; all distinct, so no pad is reused.
    let mut streams = HashSet::new();
    for a in &answers {
        let plain = ctx.open_response(a).unwrap();
        let ks = xor(&a[envelope::RESPONSE_HEADER_LEN..], &plain);
        assert!(streams.insert(ks), "a keystream repeated");
    }
    let (p0, p8) = (
        ctx.open_response(&answers[0]).unwrap(),
        ctx.open_response(&answers[8]).unwrap(),
    );
    let c = xor(
        &answers[0][envelope::RESPONSE_HEADER_LEN..],
        &answers[8][envelope::RESPONSE_HEADER_LEN..],
    );
    assert_ne!(c, xor(&p0, &p8));
    // The answer whose ciphertext is known to an attacker does not give away the output.
    assert!(!xor(&c, &p0).windows(6).any(|w| w == b"output"));
}

#[test]
fn concurrent_copies_of_one_request_run_once() {
    let node = Arc::new(keys(1));
    let g = Arc::new(guard());
    let (body, _) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(4)).unwrap();
    let body = Arc::new(body);
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (node, g, body, barrier) = (node.clone(), g.clone(), body.clone(), barrier.clone());
            std::thread::spawn(move || {
                let opened = node.open_request(&body, &g, t(T0_SECS)).unwrap();
                barrier.wait();
                opened.admit(&g, t(T0_SECS)).map_err(|r| r.code())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(*r, "replayed_request");
    }
}

#[test]
fn stale_and_future_requests_are_refused_in_plaintext() {
    let node = keys(1);
    // Default window: 60 s back, 10 s ahead.
    for issued in [T0_SECS - 61, T0_SECS + 11] {
        let (body, ctx) =
            seal_request(node.public(), &request(issued, None), &mut TestRng::new(5)).unwrap();
        let err = node.open_request(&body, &guard(), t(T0_SECS)).unwrap_err();
        assert!(matches!(err, Rejected::Request(RequestError::Stale { .. })));
        let refusal = plaintext_refusal(err, "stale_request");
        assert!(ctx.open_verified(&refusal, &strict()).is_err());
    }
    for issued in [T0_SECS - 60, T0_SECS + 10] {
        let (body, _) =
            seal_request(node.public(), &request(issued, None), &mut TestRng::new(5)).unwrap();
        accept(&node, &body, &guard(), t(T0_SECS));
    }
}

#[test]
fn answer_cannot_be_opened_by_another_requester() {
    let node = keys(1);
    let g = guard();
    let (body_a, _ctx_a) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(6)).unwrap();
    let (_body_b, ctx_b) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(7)).unwrap();
    let sealed = accept(&node, &body_a, &g, t(T0_SECS))
        .responder
        .seal_output(&node, &output(), t(T0_SECS), &mut TestRng::new(50))
        .unwrap();
    assert_eq!(
        ctx_b.open_response(&sealed),
        Err(EnvelopeError::DecryptionFailed)
    );
    assert_eq!(
        ctx_b.open_verified(&sealed, &strict()).unwrap_err().code(),
        "decryption_failed"
    );
}

#[test]
fn every_flipped_response_byte_fails() {
    let node = keys(1);
    let (body, ctx) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(8)).unwrap();
    let sealed = accept(&node, &body, &guard(), t(T0_SECS))
        .responder
        .seal_output(&node, &output(), t(T0_SECS), &mut TestRng::new(50))
        .unwrap();
    ctx.open_verified(&sealed, &strict()).unwrap();
    for i in 0..sealed.len() {
        let mut bad = sealed.clone();
        bad[i] ^= 0x80;
        let err = ctx.open_verified(&bad, &strict()).unwrap_err();
        let want = match i {
            0 => "unsupported_version",
            1 => "unexpected_kind",
            // The response nonce keys the answer: any change and it does not open.
            _ => "decryption_failed",
        };
        assert_eq!(err.code(), want, "byte {i}");
    }
    for len in 0..sealed.len() {
        assert!(
            ctx.open_verified(&sealed[..len], &strict()).is_err(),
            "length {len}"
        );
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
    let sealed = accept(&node, &body, &guard(), t(T0_SECS))
        .responder
        .seal_output(&impostor, &output(), t(T0_SECS), &mut TestRng::new(50))
        .unwrap();
    match ctx.open_verified(&sealed, &strict()) {
        Err(AnswerError::Receipt(e)) => assert_eq!(e.code(), "receipt_key_set_mismatch"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn declared_fault_is_signed_and_refused_unless_the_policy_accepts_it() {
    let node = keys(1);
    let (body, ctx) = seal_request(
        node.public(),
        &request(T0_SECS, None),
        &mut TestRng::new(15),
    )
    .unwrap();
    let mut out = output();
    out.fault = Some("wrong-output");
    let sealed = accept(&node, &body, &guard(), t(T0_SECS))
        .responder
        .seal_output(&node, &out, t(T0_SECS), &mut TestRng::new(50))
        .unwrap();
    match ctx.open_verified(&sealed, &strict()) {
        Err(AnswerError::Receipt(e)) => {
            assert_eq!(e.code(), "fault_declared");
            assert!(e.to_string().contains("wrong-output"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    let relaxed = danger::accept_declared_faults(strict());
    let answer = ctx.open_verified(&sealed, &relaxed).unwrap();
    assert_eq!(answer.receipt.declared_fault(), Some("wrong-output"));
    // The fault is signed: erasing it breaks the signature.
    let mut erased = (*answer.receipt).clone();
    erased.receipt.fault.clear();
    assert_eq!(
        erased.verify(node.public()).unwrap_err().code(),
        "bad_receipt_signature"
    );
}

#[test]
fn malformed_plaintext_is_refused_in_plaintext() {
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
        let refusal = plaintext_refusal(err, "malformed_request");
        assert!(ctx.open_verified(&refusal, &strict()).is_err());
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
    let g = guard();
    let (body, ctx) = seal_request(
        node.public(),
        &request(T0_SECS, None),
        &mut TestRng::new(13),
    )
    .unwrap();
    // Before acceptance (model missing) and after (inference failed): both
    // sealed verdicts, and the first charged nothing to the replay memory.
    let before = node
        .open_request(&body, &g, t(T0_SECS))
        .unwrap()
        .seal_error("model_not_found", "no such model", &mut TestRng::new(50))
        .unwrap();
    assert!(g.is_empty());
    let after = accept(&node, &body, &g, t(T0_SECS))
        .responder
        .seal_error("inference_failed", "bad shapes", &mut TestRng::new(51))
        .unwrap();
    for (sealed, code) in [(before, "model_not_found"), (after, "inference_failed")] {
        assert!(!sealed.windows(5).any(|w| w == b"model"));
        match ctx.open_verified(&sealed, &strict()) {
            Err(AnswerError::Remote(e)) => assert_eq!(e.0.code, code),
            other => panic!("{other:?}"),
        }
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
    let mut out = output();
    out.output_json = b"[1,";
    let fail = accept(&node, &body, &guard(), t(T0_SECS))
        .responder
        .seal_output(&node, &out, t(T0_SECS), &mut TestRng::new(50))
        .unwrap_err();
    assert!(matches!(fail.error, ReceiptOrOutput::Output(_)));
    assert!(
        std::error::Error::source(&fail.error).is_some(),
        "the JSON error is kept"
    );
    assert_eq!(
        ctx.open_verified(fail.sealed.as_ref().unwrap(), &strict())
            .unwrap_err()
            .code(),
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
fn malformed_request_plaintext_keeps_the_decoder_error() {
    let json = RequestPlaintext::parse(b"{").unwrap_err();
    assert!(matches!(json, RequestError::Json(_)));
    assert_eq!(
        (json.code(), json.http_status()),
        ("malformed_request", 400)
    );
    assert!(std::error::Error::source(&json).is_some());
    let nonce = request(T0_SECS, Some("zz")).validate().unwrap_err();
    assert!(matches!(nonce, RequestError::Nonce(_)));
    assert_eq!(
        (nonce.code(), nonce.http_status()),
        ("malformed_request", 400)
    );
    assert!(std::error::Error::source(&nonce).is_some());
}
