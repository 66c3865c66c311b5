//! Test vectors: fixed keys, nonces and ephemeral key → exact bytes.
//! `ATTESTA_REGEN_VECTORS=1` rewrites the file (review the diff!); normally
//! the test regenerates everything and compares with the committed file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use attesta_evidence::danger;
use attesta_seal::binding::nitriding_user_data;
use attesta_seal::channel::{SealedOutput, seal_request_bytes};
use attesta_seal::envelope::RESPONSE_HEADER_LEN;
use attesta_seal::receipt::SignedReceipt;
use attesta_seal::{NodeKeys, sha256};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use common::*;
use serde_json::{Value, json};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/v2.json");

fn generate() -> Value {
    let hpke_ikm = seq(0x00);
    let sign_seed = seq(0x20);
    let ikm_e = seq(0x40);
    let nonce = seq(0x60);
    let response_nonce = seq(0x80);
    let second_nonce = seq(0xa0);
    let node = NodeKeys::from_secret_bytes(&hpke_ikm, &sign_seed);
    let ks = node.public();
    let binding = node.attestation_binding(&nonce);
    let request = format!(
        r#"{{"model":"{MODEL}","inputs":{{"numbers":[{{"name":"x","shape":[2],"values":[{{"value":"15","decimals":1}},{{"value":"-3","decimals":0}}]}}],"strings":[]}},"request_id":"vector-1","issued_at":{T0_SECS},"nonce":"0a0b0c0d"}}"#
    );
    let (envelope, ctx) = seal_request_bytes(
        ks,
        request.clone().into_bytes(),
        MODEL.into(),
        vec![10, 11, 12, 13],
        &mut FixedRng(ikm_e.to_vec(), 0),
    )
    .unwrap();
    let g = guard();
    // The same request answered twice: once before acceptance (its model was
    // missing), once after. Each answer has its own response nonce and key.
    let second = node
        .open_request(&envelope, &g, t(T0_SECS))
        .unwrap()
        .seal_error(
            "model_not_found",
            "no such model",
            &mut FixedRng(second_nonce.to_vec(), 0),
        )
        .unwrap();
    let accepted = accept(&node, &envelope, &g, t(T0_SECS));
    let output = r#"[{"name":"y","shape":[2],"result":[1.5,-3.0],"type":"number"}]"#;
    let out = SealedOutput {
        output_json: output.as_bytes(),
        model_sha256: sha256(b"vector model"),
        engine: "tract",
        engine_version: "0.23.0",
        fault: Some("wrong-output"),
    };
    let response = accepted
        .responder
        .seal_output(
            &node,
            &out,
            t(T0_SECS + 1),
            &mut FixedRng(response_nonce.to_vec(), 0),
        )
        .unwrap();
    let response_plaintext = ctx.open_response(&response).unwrap();
    let answer = ctx
        .open_verified(&response, &danger::accept_declared_faults(strict()))
        .unwrap();
    let receipt: &SignedReceipt = &answer.receipt;
    let replay = node
        .open_request(&envelope, &g, t(T0_SECS + 2))
        .unwrap_err();
    let (_, replay_refusal) = replay.into_body();
    let mut v1_envelope = envelope.clone();
    v1_envelope[0] = 1;
    let (_, v1_refusal) = node
        .open_request(&v1_envelope, &g, t(T0_SECS))
        .unwrap_err()
        .into_body();
    let (secret, key, aead_nonce) = schedule(&node, &ikm_e, &response_nonce, (b"key", b"nonce"));
    let (_, key2, aead_nonce2) = schedule(&node, &ikm_e, &second_nonce, (b"key", b"nonce"));
    // The printed values really are the ones the envelope was sealed with.
    let aad = [&response[..RESPONSE_HEADER_LEN], &ctx.request_digest()[..]].concat();
    let opened = chacha20poly1305::ChaCha20Poly1305::new(&key.into())
        .decrypt(
            &aead_nonce.into(),
            Payload {
                msg: &response[RESPONSE_HEADER_LEN..],
                aad: &aad,
            },
        )
        .unwrap();
    assert_eq!(opened, response_plaintext);
    json!({
        "description": "attesta sealed channel v2 test vectors; see docs/PROTOCOL.md, section Sealed channel. All binary values are lowercase hex; text values are exact UTF-8.",
        "suite": "HPKE base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305; response keys HKDF-SHA256 over the exported secret salted with enc and the response nonce (as OHTTP, RFC 9458); Ed25519; SHA-256/SHA-512",
        "node": {
            "hpke_ikm": hex::encode(hpke_ikm),
            "hpke_pk": hex::encode(ks.hpke_pk),
            "sign_seed": hex::encode(sign_seed),
            "sign_pk": hex::encode(ks.sign_pk),
            "keyset_encoding": hex::encode(ks.to_bytes()),
            "keyset_digest": hex::encode(node.keyset_digest()),
        },
        "binding": {
            "nonce": hex::encode(nonce),
            "user_data": hex::encode(&binding.user_data),
            "public_key": hex::encode(&binding.public_key),
            "report_data": hex::encode(binding.report_data),
            "nitriding_user_data_plain_http": hex::encode(nitriding_user_data(&[0; 32], &node.keyset_digest())),
        },
        "request": {
            "ikm_e": hex::encode(ikm_e),
            "hpke_info": hex::encode([attesta_seal::REQUEST_INFO, &node.keyset_digest()[..]].concat()),
            "plaintext": request,
            "request_digest": hex::encode(ctx.request_digest()),
            "envelope": hex::encode(&envelope),
        },
        "response": {
            "node_time": T0_SECS + 1,
            "output": output,
            "secret": hex::encode(secret),
            "response_nonce": hex::encode(response_nonce),
            "key": hex::encode(key),
            "aead_nonce": hex::encode(aead_nonce),
            "plaintext": String::from_utf8(response_plaintext).unwrap(),
            "envelope": hex::encode(&response),
        },
        "second_response": {
            "note": "a sealed answer to the same request made before it was accepted; another response nonce, so another key and AEAD nonce",
            "response_nonce": hex::encode(second_nonce),
            "key": hex::encode(key2),
            "aead_nonce": hex::encode(aead_nonce2),
            "plaintext": String::from_utf8(ctx.open_response(&second).unwrap()).unwrap(),
            "envelope": hex::encode(&second),
        },
        "refusals": {
            "replay": String::from_utf8(replay_refusal).unwrap(),
            "v1_envelope": String::from_utf8(v1_refusal).unwrap(),
        },
        "receipt": {
            "json": serde_json::to_value(receipt).unwrap(),
            "encoding": hex::encode(receipt.receipt.encode().unwrap()),
            "signed_message": hex::encode(receipt.receipt.signed_message().unwrap()),
            "signature": hex::encode(receipt.signature),
        },
    })
}

#[test]
fn vectors_match_the_committed_file() {
    check_vector_file(FILE, &generate());
}

/// The committed bytes open on their own, whatever this build would produce.
#[test]
fn committed_envelopes_open_with_the_committed_keys() {
    let CommittedVectors { json: v, node, ctx } = CommittedVectors::load(FILE);
    let h = |p: &str| hex::decode(v.pointer(p).unwrap().as_str().unwrap()).unwrap();
    assert_eq!(
        node.public().to_bytes().to_vec(),
        h("/node/keyset_encoding")
    );
    let opened = node
        .open_request(&h("/request/envelope"), &guard(), t(T0_SECS))
        .unwrap();
    assert_eq!(
        serde_json::to_string(&opened.request).unwrap(),
        v["request"]["plaintext"].as_str().unwrap()
    );
    let receipt: SignedReceipt = serde_json::from_value(v["receipt"]["json"].clone()).unwrap();
    receipt.verify(node.public()).unwrap();
    assert_eq!(
        receipt.to_bytes().unwrap(),
        [h("/receipt/encoding"), h("/receipt/signature")].concat()
    );
    // The requester's side (same ephemeral key) opens both committed answers.
    for answer in ["response", "second_response"] {
        let plain = ctx
            .open_response(&h(&format!("/{answer}/envelope")))
            .unwrap();
        assert_eq!(
            String::from_utf8(plain).unwrap(),
            v[answer]["plaintext"].as_str().unwrap()
        );
    }
    // The v1 envelope is refused, in plaintext, with a clear code.
    let refusal: Value =
        serde_json::from_str(v["refusals"]["v1_envelope"].as_str().unwrap()).unwrap();
    assert_eq!(refusal["error"]["code"], "unsupported_version");
}

/// An independent implementation (Python `cryptography` primitives, RFC 9180
/// written out) reproduces every committed value.
#[test]
fn independent_python_implementation_agrees() {
    run_python_checker("check_vectors.py", FILE);
}
