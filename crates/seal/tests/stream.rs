//! Sealed streams: round trips, and a relay that drops, reorders,
//! duplicates, truncates, splices, flips bits or replays, each caught with
//! its own error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use attesta_evidence::danger;
use attesta_seal::channel::SealedOutput;
use attesta_seal::frames::{FRAME_PREFIX_LEN, FrameError, FrameReader, MAX_FRAME_LEN};
use attesta_seal::stream::{MAX_CHUNK_PLAINTEXT, STREAM_HEADER_LEN, transcript};
use attesta_seal::{
    Chunk, RequestContext, StreamError, StreamSealError, StreamSealer, seal_request, sha256,
};
use common::*;

const FINAL: &[u8] = br#"{"text":"Hello, world","finish_reason":"stop","usage":{"prompt_tokens":5,"completion_tokens":3}}"#;
const TOKENS: [&[u8]; 3] = [b"Hello", b",", b" world"];

fn output() -> SealedOutput<'static> {
    SealedOutput {
        output_json: FINAL,
        model_sha256: sha256(b"model.gguf"),
        engine: "candle",
        engine_version: "0.9.1",
        fault: None,
    }
}

/// A node and one sealed request it accepted; the sealer of a fresh stream.
struct Setup {
    node: attesta_seal::NodeKeys,
    ctx: RequestContext,
    sealer: Option<StreamSealer>,
    header: Vec<u8>,
}

fn setup(seed: u64) -> Setup {
    let node = keys(1);
    let (body, ctx) = seal_request(
        node.public(),
        &request(T0_SECS, Some("0a0b")),
        &mut TestRng::new(seed),
    )
    .unwrap();
    let accepted = accept(&node, &body, &guard(), t(T0_SECS));
    let (sealer, header) = accepted
        .responder
        .start_stream(&mut TestRng::new(seed + 100))
        .unwrap();
    Setup {
        node,
        ctx,
        sealer: Some(sealer),
        header,
    }
}

/// The framed body of a complete stream: header, the tokens, last chunk.
fn stream_frames(s: &mut Setup) -> Vec<Vec<u8>> {
    let mut sealer = s.sealer.take().unwrap();
    let mut frames = vec![s.header.clone()];
    for tok in TOKENS {
        frames.push(sealer.seal_chunk(tok).unwrap());
    }
    frames.push(sealer.finish(&s.node, &output(), t(T0_SECS + 1)).unwrap());
    frames
}

/// What a client makes of these frames (each with its length prefix).
fn open(ctx: &RequestContext, frames: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, StreamError> {
    let mut opener = ctx.stream_opener();
    let mut data = Vec::new();
    for f in frames {
        for c in opener.feed(f)? {
            if let Chunk::Data(d) = c {
                data.push(d);
            }
        }
    }
    opener.finish(&strict())?;
    Ok(data)
}

fn code(r: Result<Vec<Vec<u8>>, StreamError>) -> String {
    match r {
        Ok(_) => panic!("the stream was accepted"),
        Err(e) => e.code().to_owned(),
    }
}

#[test]
fn round_trip_streams_tokens_then_a_verified_receipt() {
    let mut s = setup(1);
    let frames = stream_frames(&mut s);
    let mut opener = s.ctx.stream_opener();
    let mut opened = Vec::new();
    for f in &frames {
        // Byte by byte: the reader must reassemble frames split anywhere.
        for b in f {
            for c in opener.feed(std::slice::from_ref(b)).unwrap() {
                opened.push(c);
            }
        }
    }
    assert_eq!(opened.first(), Some(&Chunk::Header));
    assert_eq!(opened.last(), Some(&Chunk::End));
    let data: Vec<Vec<u8>> = opened
        .iter()
        .filter_map(|c| match c {
            Chunk::Data(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(data, TOKENS.map(<[u8]>::to_vec));
    let v = opener.finish(&strict()).unwrap();
    assert_eq!(v.output.get().as_bytes(), FINAL);
    assert_eq!(v.chunks, 3);
    assert_eq!(v.model_hash, hex::encode(sha256(b"model.gguf")));
    let r = &v.receipt.receipt;
    assert_eq!(r.request_digest, s.ctx.request_digest());
    assert_eq!(r.output_digest, sha256(v.summary.get().as_bytes()));
    assert_eq!(r.engine, "candle");
    assert_eq!(r.nonce, vec![0x0a, 0x0b]);
    // The summary names the count and the transcript of exactly what was streamed.
    let summary: serde_json::Value = serde_json::from_str(v.summary.get()).unwrap();
    assert_eq!(summary["chunks"], 3);
    assert_eq!(summary["transcript"], hex::encode(transcript(TOKENS)));
    // The receipt stands on its own, as a single answer's does.
    v.receipt.verify(s.node.public()).unwrap();
}

#[test]
fn an_empty_stream_is_a_valid_answer() {
    let mut s = setup(2);
    let sealer = s.sealer.take().unwrap();
    let last = sealer.finish(&s.node, &output(), t(T0_SECS)).unwrap();
    assert_eq!(open(&s.ctx, &[s.header.clone(), last]).unwrap().len(), 0);
}

#[test]
fn relay_dropping_a_chunk_is_detected() {
    let mut s = setup(3);
    let mut f = stream_frames(&mut s);
    f.remove(2); // chunk 1
    assert_eq!(code(open(&s.ctx, &f)), "missing_chunk");
}

#[test]
fn relay_reordering_two_chunks_is_detected() {
    let mut s = setup(4);
    let mut f = stream_frames(&mut s);
    f.swap(1, 2);
    let e = open(&s.ctx, &f).unwrap_err();
    assert_eq!(
        e,
        StreamError::Missing {
            expected: 0,
            got: 1
        }
    );
}

#[test]
fn relay_duplicating_a_chunk_is_detected() {
    let mut s = setup(5);
    let mut f = stream_frames(&mut s);
    f.insert(3, f[2].clone());
    assert_eq!(
        open(&s.ctx, &f).unwrap_err(),
        StreamError::Duplicate {
            expected: 2,
            got: 1
        }
    );
}

#[test]
fn relay_truncating_the_stream_is_detected() {
    let mut s = setup(6);
    let f = stream_frames(&mut s);
    // Cut before the last chunk, after a few chunks, after the header, and
    // with nothing at all: all `truncated_stream`.
    for keep in [4, 3, 1, 0] {
        assert_eq!(
            code(open(&s.ctx, &f[..keep])),
            "truncated_stream",
            "{keep} frames"
        );
    }
    // Cut inside the last frame.
    let mut cut = f.clone();
    let last = cut.last_mut().unwrap();
    last.truncate(last.len() - 1);
    assert_eq!(
        open(&s.ctx, &cut).unwrap_err(),
        StreamError::Truncated { chunks: 3 }
    );
    // Cut inside the last frame's length prefix.
    let mut cut = f[..4].to_vec();
    cut.push(f[4][..2].to_vec());
    assert_eq!(
        open(&s.ctx, &cut).unwrap_err(),
        StreamError::Truncated { chunks: 3 }
    );
}

#[test]
fn relay_splicing_a_chunk_from_another_stream_of_the_same_request_is_detected() {
    // The same request answered twice (e.g. a node retry): two streams.
    let node = keys(1);
    let (body, ctx) =
        seal_request(node.public(), &request(T0_SECS, None), &mut TestRng::new(7)).unwrap();
    let mut streams = Vec::new();
    for seed in [70, 71] {
        let accepted = accept(&node, &body, &guard(), t(T0_SECS));
        let (mut sealer, header) = accepted
            .responder
            .start_stream(&mut TestRng::new(seed))
            .unwrap();
        let mut f = vec![header];
        for tok in TOKENS {
            f.push(sealer.seal_chunk(tok).unwrap());
        }
        f.push(sealer.finish(&node, &output(), t(T0_SECS)).unwrap());
        streams.push(f);
    }
    let (a, b) = (&streams[0], &streams[1]);
    // Different response nonces, so different keys and nonces: the same
    // plaintext at the same index gives unrelated ciphertexts.
    assert_ne!(a[0], b[0]);
    assert_ne!(a[1], b[1]);
    assert_ne!(a[1][13..], b[1][13..]);
    assert!(open(&ctx, a).is_ok() && open(&ctx, b).is_ok());
    for i in 1..a.len() {
        let mut spliced = a.clone();
        spliced[i] = b[i].clone();
        assert_eq!(
            open(&ctx, &spliced).unwrap_err(),
            StreamError::DecryptionFailed {
                index: i as u64 - 1
            },
            "frame {i}"
        );
    }
    // b's header on a's chunks.
    let mut spliced = a.clone();
    spliced[0] = b[0].clone();
    assert_eq!(code(open(&ctx, &spliced)), "decryption_failed");
}

#[test]
fn relay_splicing_a_chunk_from_another_request_is_detected() {
    let (mut s, mut other) = (setup(8), setup(9));
    let f = stream_frames(&mut s);
    let g = stream_frames(&mut other);
    let mut spliced = f.clone();
    spliced[2] = g[2].clone();
    assert_eq!(
        open(&s.ctx, &spliced).unwrap_err(),
        StreamError::DecryptionFailed { index: 1 }
    );
    let mut spliced = f.clone();
    spliced[4] = g[4].clone();
    assert_eq!(
        open(&s.ctx, &spliced).unwrap_err(),
        StreamError::DecryptionFailed { index: 3 }
    );
}

#[test]
fn a_flipped_bit_anywhere_is_detected() {
    let mut s = setup(10);
    let f = stream_frames(&mut s);
    for i in 0..f.len() {
        for at in [FRAME_PREFIX_LEN, FRAME_PREFIX_LEN + 1, f[i].len() - 1] {
            let mut bad = f.clone();
            bad[i][at] ^= 1;
            assert!(open(&s.ctx, &bad).is_err(), "frame {i} byte {at}");
        }
    }
    // A data chunk cannot be turned into the last one (the flag is authenticated).
    let mut bad = f[..3].to_vec();
    let mut fake_last = f[3].clone();
    fake_last[FRAME_PREFIX_LEN] = 1;
    bad.push(fake_last);
    assert_eq!(
        open(&s.ctx, &bad).unwrap_err(),
        StreamError::DecryptionFailed { index: 2 }
    );
}

#[test]
fn a_whole_old_stream_replayed_for_a_new_request_is_detected() {
    let mut old = setup(11);
    let f = stream_frames(&mut old);
    // The client's new request (same node, same model, same nonce).
    let new = setup(12);
    assert_eq!(
        open(&new.ctx, &f).unwrap_err(),
        StreamError::DecryptionFailed { index: 0 }
    );
}

#[test]
fn an_error_chunk_is_the_nodes_verdict_and_never_an_answer() {
    let mut s = setup(13);
    let mut sealer = s.sealer.take().unwrap();
    let mut f = vec![s.header.clone(), sealer.seal_chunk(b"Hel").unwrap()];
    f.push(sealer.fail("generation_failed", "out of memory").unwrap());
    let e = open(&s.ctx, &f).unwrap_err();
    assert_eq!(e.code(), "generation_failed");
    assert!(matches!(e, StreamError::Remote(_)));
    // The opener stays failed: nothing after an error chunk counts.
    let mut opener = s.ctx.stream_opener();
    opener.feed(&f[0]).unwrap();
    opener.feed(&f[1]).unwrap();
    assert_eq!(opener.feed(&f[2]).unwrap_err().code(), "generation_failed");
    assert_eq!(
        opener.finish(&strict()).unwrap_err().code(),
        "generation_failed"
    );
}

#[test]
fn frames_after_the_last_chunk_are_refused() {
    let mut s = setup(14);
    let mut f = stream_frames(&mut s);
    f.push(f[1].clone());
    assert_eq!(code(open(&s.ctx, &f)), "malformed_stream");
}

#[test]
fn finish_failure_still_ends_the_stream_with_a_sealed_error() {
    let mut s = setup(15);
    let sealer = s.sealer.take().unwrap();
    let bad = SealedOutput {
        output_json: b"not json",
        ..output()
    };
    let failure = sealer.finish(&s.node, &bad, t(T0_SECS)).unwrap_err();
    assert_eq!(failure.error.code(), "internal_error");
    let last = failure.sealed.unwrap();
    assert_eq!(
        code(open(&s.ctx, &[s.header.clone(), last])),
        "internal_error"
    );
}

#[test]
fn oversized_chunks_are_refused_without_taking_an_index() {
    let mut s = setup(16);
    let mut sealer = s.sealer.take().unwrap();
    let big = vec![0u8; MAX_CHUNK_PLAINTEXT + 1];
    assert_eq!(
        sealer.seal_chunk(&big).unwrap_err(),
        StreamSealError::ChunkTooLarge {
            len: MAX_CHUNK_PLAINTEXT + 1,
            max: MAX_CHUNK_PLAINTEXT
        }
    );
    assert_eq!(sealer.chunks(), 0);
    let f = vec![
        s.header.clone(),
        sealer.seal_chunk(b"x").unwrap(),
        sealer.finish(&s.node, &output(), t(T0_SECS)).unwrap(),
    ];
    assert_eq!(open(&s.ctx, &f).unwrap(), vec![b"x".to_vec()]);
}

#[test]
fn the_receipt_is_checked_like_a_single_answers() {
    // A node under a declared fault: refused by a strict policy, accepted
    // when the policy accepts declared faults.
    let mut s = setup(17);
    let sealer = s.sealer.take().unwrap();
    let out = SealedOutput {
        fault: Some("wrong-output"),
        ..output()
    };
    let f = vec![
        s.header.clone(),
        sealer.finish(&s.node, &out, t(T0_SECS)).unwrap(),
    ];
    assert_eq!(code(open(&s.ctx, &f)), "fault_declared");
    let mut opener = s.ctx.stream_opener();
    for frame in &f {
        opener.feed(frame).unwrap();
    }
    opener
        .finish(&danger::accept_declared_faults(strict()))
        .unwrap();
    // Another node's key set signing: refused.
    let other = keys(99);
    let mut s = setup(18);
    let sealer = s.sealer.take().unwrap();
    let f = vec![
        s.header.clone(),
        sealer.finish(&other, &output(), t(T0_SECS)).unwrap(),
    ];
    assert_eq!(code(open(&s.ctx, &f)), "receipt_key_set_mismatch");
}

#[test]
fn a_bad_header_is_refused() {
    let mut s = setup(19);
    let f = stream_frames(&mut s);
    let mut v1 = f.clone();
    v1[0][FRAME_PREFIX_LEN] = 1;
    assert_eq!(code(open(&s.ctx, &v1)), "unsupported_version");
    let mut kind = f.clone();
    kind[0][FRAME_PREFIX_LEN + 1] = 2;
    assert_eq!(code(open(&s.ctx, &kind)), "unexpected_kind");
    // A single-answer envelope is not a stream header.
    let mut short = f.clone();
    short[0] =
        attesta_seal::frames::encode_frame(&f[0][FRAME_PREFIX_LEN..][..STREAM_HEADER_LEN - 1])
            .unwrap();
    assert_eq!(code(open(&s.ctx, &short)), "malformed_envelope");
}

#[test]
fn frame_reader_bounds_frames_before_buffering_them() {
    let mut r = FrameReader::default();
    r.push(&(MAX_FRAME_LEN as u32 + 1).to_be_bytes());
    assert_eq!(
        r.next_frame().unwrap_err(),
        FrameError::TooLarge {
            len: MAX_FRAME_LEN as u64 + 1,
            max: MAX_FRAME_LEN
        }
    );
    // Failed for good.
    r.push(&[0, 0, 0, 0]);
    assert!(r.next_frame().is_err() && r.finish().is_err());
    // A lowered limit.
    let mut r = FrameReader::new(3);
    r.push(&[0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 4]);
    assert_eq!(r.next_frame().unwrap(), Some(vec![1, 2, 3]));
    assert_eq!(r.next_frame().unwrap_err().code(), "stream_frame_too_large");
    // Many frames in one push, and an incomplete one at the end.
    let mut r = FrameReader::default();
    let mut body = Vec::new();
    for i in 0..1000u32 {
        body.extend_from_slice(&attesta_seal::frames::encode_frame(&i.to_be_bytes()).unwrap());
    }
    body.extend_from_slice(&[0, 0, 0, 9, 1]);
    r.push(&body);
    for i in 0..1000u32 {
        assert_eq!(r.next_frame().unwrap(), Some(i.to_be_bytes().to_vec()));
    }
    assert_eq!(r.next_frame().unwrap(), None);
    assert_eq!(r.buffered(), 5);
    assert_eq!(
        r.finish().unwrap_err(),
        FrameError::Truncated { buffered: 5 }
    );
}

#[test]
fn an_oversized_frame_fails_the_stream() {
    let s = setup(20);
    let mut opener = s.ctx.stream_opener();
    opener.feed(&s.header).unwrap();
    let e = opener.feed(&u32::MAX.to_be_bytes()).unwrap_err();
    assert_eq!(e.code(), "stream_frame_too_large");
    assert_eq!(
        opener.finish(&strict()).unwrap_err().code(),
        "stream_frame_too_large"
    );
}

#[test]
fn sealer_and_opener_move_across_threads() {
    // The node streams from a task; the client opens while awaiting the body.
    fn send<T: Send>() {}
    send::<StreamSealer>();
    send::<attesta_seal::StreamOpener<'static>>();
    send::<attesta_seal::VerifiedStream>();
}
