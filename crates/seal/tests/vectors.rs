//! Test vectors: fixed keys, nonces and ephemeral key → exact bytes.
//! `ATTESTA_REGEN_VECTORS=1` rewrites the file (review the diff!); normally
//! the test regenerates everything and compares with the committed file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use attesta_seal::binding::nitriding_user_data;
use attesta_seal::channel::{SealedOutput, seal_request_bytes};
use attesta_seal::receipt::SignedReceipt;
use attesta_seal::{NodeKeys, ReplayGuard, sha256};
use common::*;
use serde_json::{Value, json};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/v1.json");

fn seq(from: u8) -> [u8; 32] {
    std::array::from_fn(|i| from.wrapping_add(i as u8))
}

fn generate() -> Value {
    let hpke_ikm = seq(0x00);
    let sign_seed = seq(0x20);
    let ikm_e = seq(0x40);
    let nonce = seq(0x60);
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
    let opened = node
        .open_request(
            &envelope,
            &ReplayGuard::new(Duration::from_secs(60), 4),
            t(T0_SECS),
        )
        .unwrap();
    let output = r#"[{"name":"y","shape":[2],"result":[1.5,-3.0],"type":"number"}]"#;
    let out = SealedOutput {
        output_json: output.as_bytes(),
        model_sha256: sha256(b"vector model"),
        engine: "tract",
        engine_version: "0.23.0",
    };
    let response = opened
        .responder
        .seal_output(&node, &out, t(T0_SECS + 1))
        .unwrap();
    let response_plaintext = ctx.open_response(&response).unwrap();
    let answer = ctx.open_verified(&response).unwrap();
    let receipt: &SignedReceipt = &answer.receipt;
    json!({
        "description": "attesta sealed channel v1 test vectors; see docs/PROTOCOL.md, section Sealed channel. All binary values are lowercase hex; text values are exact UTF-8.",
        "suite": "HPKE base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305; Ed25519; SHA-256/SHA-512",
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
            "plaintext": String::from_utf8(response_plaintext).unwrap(),
            "envelope": hex::encode(&response),
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
    let fresh = generate();
    if std::env::var_os("ATTESTA_REGEN_VECTORS").is_some() {
        let mut text = serde_json::to_string_pretty(&fresh).unwrap();
        text.push('\n');
        std::fs::write(FILE, text).unwrap();
    }
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(FILE).expect("tests/vectors/v1.json is committed"),
    )
    .unwrap();
    assert_eq!(
        committed, fresh,
        "regenerate with ATTESTA_REGEN_VECTORS=1 only for an intended format change"
    );
}

/// The committed bytes open on their own, whatever this build would produce.
#[test]
fn committed_envelopes_open_with_the_committed_keys() {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(FILE).unwrap()).unwrap();
    let h = |p: &str| hex::decode(v.pointer(p).unwrap().as_str().unwrap()).unwrap();
    let node = NodeKeys::from_secret_bytes(
        &h("/node/hpke_ikm").try_into().unwrap(),
        &h("/node/sign_seed").try_into().unwrap(),
    );
    assert_eq!(
        node.public().to_bytes().to_vec(),
        h("/node/keyset_encoding")
    );
    let opened = node
        .open_request(
            &h("/request/envelope"),
            &ReplayGuard::new(Duration::from_secs(60), 4),
            t(T0_SECS),
        )
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
}

/// An independent implementation (Python `cryptography` primitives, RFC 9180
/// written out) reproduces every committed value.
#[test]
fn independent_python_implementation_agrees() {
    let python = std::env::var_os("ATTESTA_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../.venv/bin/python"
            ))
        });
    assert!(
        python.exists(),
        "python not found at {}: run scripts/setup-venv (or set ATTESTA_PYTHON)",
        python.display()
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/check_vectors.py"
    );
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(FILE)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check_vectors.py failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
}
