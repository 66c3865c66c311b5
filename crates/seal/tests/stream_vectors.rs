//! Sealed-stream test vectors: fixed keys, ephemeral key and response
//! nonces → exact bytes of every frame. `ATTESTA_REGEN_VECTORS=1` rewrites
//! the file (review the diff!); normally the test regenerates everything and
//! compares with the committed file. `stream_vectors.py` checks the file
//! with an independent implementation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use attesta_seal::channel::{SealedOutput, seal_request_bytes};
use attesta_seal::frames::FRAME_PREFIX_LEN;
use attesta_seal::stream::{CHUNK_HEADER_LEN, STREAM_HEADER_LEN, transcript};
use attesta_seal::{Chunk, NodeKeys, sha256};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use common::*;
use serde_json::{Value, json};

const STREAM_LABELS: (&[u8], &[u8]) = (b"stream key", b"stream nonce");
const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/stream-v2.json");

/// Every chunk frame of a stream, described and opened from the printed
/// key, base nonce and AAD (so the printed values are the ones used).
fn describe_chunks(
    frames: &[Vec<u8>],
    key: &[u8; 32],
    base_nonce: &[u8; 12],
    header: &[u8],
    request_digest: &[u8; 32],
) -> Vec<Value> {
    frames
        .iter()
        .map(|frame| {
            let content = &frame[FRAME_PREFIX_LEN..];
            let (chunk_header, ct) = content.split_at(CHUNK_HEADER_LEN);
            let index = u64::from_be_bytes(chunk_header[1..].try_into().unwrap());
            let mut nonce = *base_nonce;
            for (b, i) in nonce[4..].iter_mut().zip(index.to_be_bytes()) {
                *b ^= i;
            }
            let aad = [header, &request_digest[..], chunk_header].concat();
            let plain = chacha20poly1305::ChaCha20Poly1305::new(&(*key).into())
                .decrypt(&nonce.into(), Payload { msg: ct, aad: &aad })
                .unwrap();
            json!({
                "index": index,
                "flag": chunk_header[0],
                "plaintext": String::from_utf8(plain).unwrap(),
                "aead_nonce": hex::encode(nonce),
                "aad": hex::encode(&aad),
                "frame": hex::encode(frame),
            })
        })
        .collect()
}

fn generate() -> Value {
    let hpke_ikm = seq(0x00);
    let sign_seed = seq(0x20);
    let ikm_e = seq(0x40);
    let response_nonce = seq(0xc0);
    let error_nonce = seq(0xe0);
    let node = NodeKeys::from_secret_bytes(&hpke_ikm, &sign_seed);
    let ks = node.public();
    let request = format!(
        r#"{{"model":"{MODEL}","inputs":{{"messages":[{{"role":"user","content":"Say hello"}}],"max_tokens":3,"temperature":0.0,"seed":7,"stream":true}},"request_id":"stream-1","issued_at":{T0_SECS},"nonce":"0a0b0c0d"}}"#
    );
    let (envelope, ctx) = seal_request_bytes(
        ks,
        request.clone().into_bytes(),
        MODEL.into(),
        vec![10, 11, 12, 13],
        &mut FixedRng(ikm_e.to_vec(), 0),
    )
    .unwrap();
    let tokens: [&[u8]; 3] = [b"Hello", b",", b" world"];
    let output = r#"{"text":"Hello, world","finish_reason":"length","usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#;
    let out = SealedOutput {
        output_json: output.as_bytes(),
        model_sha256: sha256(b"vector model.gguf"),
        engine: "candle",
        engine_version: "0.9.1",
        fault: None,
    };
    // The successful stream.
    let g = guard();
    let accepted = accept(&node, &envelope, &g, t(T0_SECS));
    let (mut sealer, header) = accepted
        .responder
        .start_stream(&mut FixedRng(response_nonce.to_vec(), 0))
        .unwrap();
    let mut frames = vec![header];
    for tok in tokens {
        frames.push(sealer.seal_chunk(tok).unwrap());
    }
    frames.push(sealer.finish(&node, &out, t(T0_SECS + 1)).unwrap());
    // The same request answered by a second stream (another node attempt,
    // so another replay memory) that fails after one chunk.
    let accepted = accept(&node, &envelope, &guard(), t(T0_SECS));
    let (mut sealer, header) = accepted
        .responder
        .start_stream(&mut FixedRng(error_nonce.to_vec(), 0))
        .unwrap();
    let error_frames = [
        header,
        sealer.seal_chunk(b"Hello").unwrap(),
        sealer
            .fail("generation_failed", "the sequence ran out of memory")
            .unwrap(),
    ];
    // The client opens the first stream.
    let mut opener = ctx.stream_opener();
    let mut opened = Vec::new();
    for f in &frames {
        opened.extend(opener.feed(f).unwrap());
    }
    assert_eq!(opened.last(), Some(&Chunk::End));
    let verified = opener.finish(&strict()).unwrap();
    let receipt = &verified.receipt;
    let (secret, key, base_nonce) = schedule(&node, &ikm_e, &response_nonce, STREAM_LABELS);
    let (_, key2, base_nonce2) = schedule(&node, &ikm_e, &error_nonce, STREAM_LABELS);
    let digest = ctx.request_digest();
    let head = |f: &[u8]| f[FRAME_PREFIX_LEN..][..STREAM_HEADER_LEN].to_vec();
    let chunks = describe_chunks(&frames[1..], &key, &base_nonce, &head(&frames[0]), &digest);
    let error_chunks = describe_chunks(
        &error_frames[1..],
        &key2,
        &base_nonce2,
        &head(&error_frames[0]),
        &digest,
    );
    json!({
        "description": "attesta sealed stream v2 test vectors; see docs/PROTOCOL.md, section Sealed streams. All binary values are lowercase hex; text values are exact UTF-8. Frames include their u32 big-endian length prefix.",
        "suite": "request as in v2.json (HPKE base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305); per stream: prk = HKDF-Extract(enc || response_nonce, secret), key = Expand(prk, \"stream key\", 32), base_nonce = Expand(prk, \"stream nonce\", 12); chunk i: nonce = base_nonce XOR i (BE), aad = header || request_digest || flag || i (u64 BE); Ed25519 receipts",
        "node": {
            "hpke_ikm": hex::encode(hpke_ikm),
            "sign_seed": hex::encode(sign_seed),
            "hpke_pk": hex::encode(ks.hpke_pk),
            "sign_pk": hex::encode(ks.sign_pk),
            "keyset_digest": hex::encode(node.keyset_digest()),
        },
        "request": {
            "ikm_e": hex::encode(ikm_e),
            "plaintext": request,
            "request_digest": hex::encode(digest),
            "envelope": hex::encode(&envelope),
            "secret": hex::encode(secret),
        },
        "stream": {
            "node_time": T0_SECS + 1,
            "response_nonce": hex::encode(response_nonce),
            "header": hex::encode(&frames[0]),
            "key": hex::encode(key),
            "base_nonce": hex::encode(base_nonce),
            "chunks": chunks,
            "output": output,
            "transcript": hex::encode(transcript(tokens)),
            "summary": verified.summary.get(),
            "body": hex::encode(frames.concat()),
        },
        "receipt": {
            "json": serde_json::to_value(&**receipt).unwrap(),
            "encoding": hex::encode(receipt.receipt.encode().unwrap()),
            "signature": hex::encode(receipt.signature),
        },
        "error_stream": {
            "note": "a second stream for the same request (another response nonce, so another key and base nonce) that ends with the node's error after one chunk; no receipt",
            "response_nonce": hex::encode(error_nonce),
            "header": hex::encode(&error_frames[0]),
            "key": hex::encode(key2),
            "base_nonce": hex::encode(base_nonce2),
            "chunks": error_chunks,
            "body": hex::encode(error_frames.concat()),
        },
    })
}

#[test]
fn stream_vectors_match_the_committed_file() {
    check_vector_file(FILE, &generate());
}

/// The committed bodies open on their own, whatever this build would produce.
#[test]
fn committed_streams_open_with_the_committed_keys() {
    let c = CommittedVectors::load(FILE);
    let mut opener = c.ctx.stream_opener();
    let chunks = opener.feed(&c.hex("/stream/body")).unwrap();
    assert_eq!(
        chunks,
        vec![
            Chunk::Header,
            Chunk::Data(b"Hello".to_vec()),
            Chunk::Data(b",".to_vec()),
            Chunk::Data(b" world".to_vec()),
            Chunk::End
        ]
    );
    let verified = opener.finish(&strict()).unwrap();
    assert_eq!(
        verified.output.get(),
        c.json["stream"]["output"].as_str().unwrap()
    );
    verified.receipt.verify(c.node.public()).unwrap();
    let mut opener = c.ctx.stream_opener();
    let e = opener.feed(&c.hex("/error_stream/body")).unwrap_err();
    assert_eq!(e.code(), "generation_failed");
}

/// An independent implementation (Python `cryptography` primitives) reproduces every committed value.
#[test]
fn independent_python_implementation_agrees() {
    run_python_checker("check_stream_vectors.py", FILE);
}
