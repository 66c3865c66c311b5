//! Every vector and capture in the fixtures' `bittensor/` folder verifies: Python `str()`
//! texts, field and body hashes, SS58 ↔ public keys, and the signatures of every captured
//! request (SDK 10.5.0 and 7.2.0 dendrites).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;

use attesta_bittensor::keys::{self, Hotkey, Signature};
use attesta_bittensor::pyrepr::{PyValue, body_hash, sha3_hex};
use attesta_bittensor::ss58::AccountId;
use attesta_bittensor::synapse::signed_message;
use serde_json::Value;

fn dir() -> PathBuf {
    attesta_test_support::fixture("bittensor")
}

fn json(name: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn body_hash_vectors_verify() {
    let v = json("body_hash_vectors.json");
    // The values the SDK held (`model_dump()`), as JSON: the fixture holds their str().
    let values = [
        ("s", r#""it's \"q\" ü""#),
        ("i", "42"),
        ("f", "1"),
        ("tiny", "1e-07"),
        ("b", "true"),
        ("none", "null"),
        ("ls", r#"["a", "it's"]"#),
        ("lf", "[0.1, 2]"),
        ("d", r#"{"k": [1, 2]}"#),
    ];
    let mut texts = Vec::new();
    for (field, json_text) in values {
        let want = &v["fields"][field];
        let text = serde_json::from_str::<PyValue>(json_text).unwrap().py_str();
        assert_eq!(
            text,
            want["python_str"].as_str().unwrap(),
            "str() of {field}"
        );
        assert_eq!(
            sha3_hex(text.as_bytes()),
            want["sha3"].as_str().unwrap(),
            "sha3 of {field}"
        );
        texts.push(text);
    }
    assert_eq!(
        body_hash(texts.iter().map(String::as_str)),
        v["body_hash"].as_str().unwrap()
    );
    assert_eq!(body_hash([]), v["empty_fields_body_hash"].as_str().unwrap());
    for (uri, key) in v["keys"].as_object().unwrap() {
        let ss58 = key["ss58"].as_str().unwrap();
        let account = AccountId::from_ss58(ss58).unwrap();
        assert_eq!(
            hex::encode(account.0),
            key["public_key_hex"].as_str().unwrap()
        );
        assert_eq!(
            Hotkey::from_dev_uri(uri).unwrap().account(),
            account,
            "{uri}"
        );
    }
}

#[test]
fn sample_test_vector_verifies() {
    let v = json("sample_vectors.json");
    let t = &v["test_vector"];
    let mut texts = Vec::new();
    for f in t["required_hash_fields"].as_array().unwrap() {
        let f = f.as_str().unwrap();
        let text = t["per_field_str"][f].as_str().unwrap();
        assert_eq!(
            sha3_hex(text.as_bytes()),
            t["per_field_sha3"][f].as_str().unwrap()
        );
        texts.push(text);
    }
    let hash = body_hash(texts);
    assert_eq!(hash, t["computed_body_hash_header"].as_str().unwrap());
    let message = t["signed_message"].as_str().unwrap();
    let parts: Vec<&str> = message.split('.').collect();
    let [nonce, dendrite, axon, uuid, signed_hash] = parts[..] else {
        panic!("five parts")
    };
    assert_eq!(signed_hash, hash);
    let dendrite = AccountId::from_ss58(dendrite).unwrap();
    let rebuilt = signed_message(
        nonce.parse().unwrap(),
        &dendrite,
        &AccountId::from_ss58(axon).unwrap(),
        uuid,
        &hash,
    );
    assert_eq!(rebuilt, message);
    let sig = Signature::from_header(t["signature_header"].as_str().unwrap()).unwrap();
    keys::verify(&dendrite, message.as_bytes(), &sig).unwrap();
    let mut tampered = message.to_owned();
    tampered.push('0');
    assert!(keys::verify(&dendrite, tampered.as_bytes(), &sig).is_err());
}

/// One captured HTTP request: lowercase headers and the body.
struct Captured {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Captured {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn captured_requests(name: &str) -> Vec<Captured> {
    let raw = std::fs::read(dir().join(name)).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let mut out = Vec::new();
    for chunk in text.split("----- RAW REQUEST").skip(1) {
        let start = chunk.find('\n').unwrap() + 1;
        let rest = &chunk[start..];
        let head_end = rest.find("\r\n\r\n").unwrap();
        let head = &rest[..head_end];
        let headers: Vec<(String, String)> = head
            .split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .unwrap()
            .1
            .parse()
            .unwrap();
        let body = rest.as_bytes()[head_end + 4..head_end + 4 + len].to_vec();
        out.push(Captured { headers, body });
    }
    out
}

#[test]
fn every_captured_request_hashes_and_verifies() {
    let files = [
        "sample_request.txt",
        "sample_request_v10.5.0_to_v10.5.0.txt",
        "sample_request_v10.5.0_to_v7.2.0.txt",
        "sample_request_v7.2.0_to_v10.5.0.txt",
        "sample_request_v7.2.0_to_v7.2.0.txt",
    ];
    let mut verified = 0;
    for file in files {
        for req in captured_requests(file) {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            // EchoSynapse's required_hash_fields, in order; re-parsed as ordered values.
            let ordered: PyValue = serde_json::from_slice(&req.body).unwrap();
            let PyValue::Dict(fields) = ordered else {
                panic!("object")
            };
            let texts: Vec<String> = ["text", "count", "scores", "meta"]
                .iter()
                .map(|f| fields.iter().find(|(k, _)| k == f).unwrap().1.py_str())
                .collect();
            let hash = body_hash(texts.iter().map(String::as_str));
            assert_eq!(
                Some(hash.as_str()),
                req.header("computed_body_hash"),
                "{file}"
            );
            let dendrite =
                AccountId::from_ss58(req.header("bt_header_dendrite_hotkey").unwrap()).unwrap();
            let axon = AccountId::from_ss58(req.header("bt_header_axon_hotkey").unwrap()).unwrap();
            let message = signed_message(
                req.header("bt_header_dendrite_nonce")
                    .unwrap()
                    .parse()
                    .unwrap(),
                &dendrite,
                &axon,
                req.header("bt_header_dendrite_uuid").unwrap(),
                &hash,
            );
            let sig = Signature::from_header(req.header("bt_header_dendrite_signature").unwrap())
                .unwrap();
            keys::verify(&dendrite, message.as_bytes(), &sig)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            // The same signature does not verify for another axon (the message binds it).
            let other = Hotkey::from_dev_uri("//Charlie").unwrap().account();
            let wrong = signed_message(0, &dendrite, &other, "u", &hash);
            assert!(keys::verify(&dendrite, wrong.as_bytes(), &sig).is_err());
            assert!(body.get("text").is_some());
            verified += 1;
        }
    }
    // 3 cases in sample_request.txt + one per version pair.
    assert_eq!(verified, 7);
}
