//! `attesta chat` end to end over real processes: a dev-TEE node serving a test GGUF,
//! a sealed streamed chat through a logging relay that sees no prompt and no token, the
//! receipt verified by `attesta verify receipt`, and a replayed request refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::path::Path;

use support::*;

#[test]
fn sealed_chat_streams_privately_and_its_receipt_verifies() {
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let store = s(&w("store"));
    let data = s(&w("data"));
    let gguf = attesta_test_support::llm::test_gguf("tiny-spm-q8_0");
    let cid = run_ok(&["models", "add", gguf.to_str().unwrap(), "--store", &store])
        .trim()
        .to_string();
    let ls = run_ok(&["models", "ls", "--store", &store]);
    assert!(ls.contains("llm llama Q8_0 ctx 512"), "{ls}");

    let node = start_node(&["--tee", "dev", "--data-dir", &data, "--store", &store]);
    let root = s(&w("data/dev-root.pem"));
    let registry = w("registry.toml");
    std::fs::write(&registry, run_ok(&["measure"])).unwrap();
    let (relay, seen) = logging_relay(node.addr.clone());
    let secret = "TOP-SECRET-PROMPT-51c0";
    let bundle = w("bundle.json");
    let output = w("output.json");
    let request = w("request.json");
    let chat = |extra: &[&str]| {
        let mut args = vec![
            "chat",
            "--node",
            &format!("http://{relay}"),
            "--model",
            &cid,
            "--dev-root",
            &root,
            "--measurements",
            registry.to_str().unwrap(),
            "--max-tokens",
            "24",
        ]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
        args.extend(extra.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_status(&refs)
    };
    let (code, out, err) = chat(&[
        "--stream",
        "--system",
        "Answer briefly.",
        "--bundle",
        &s(&bundle),
        "--save-output",
        &s(&output),
        "--save-request",
        &s(&request),
        secret,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("receipt verified"), "{err}");
    let answer = out.trim_end_matches('\n');
    assert!(!answer.trim().is_empty(), "empty answer");
    // The relay carried ciphertext only: neither the prompt nor any answer text.
    let log = seen.lock().unwrap().clone();
    assert!(
        !contains(&log, secret.as_bytes()),
        "the relay saw the prompt"
    );
    let longest_word = answer
        .split_whitespace()
        .max_by_key(|w| w.len())
        .unwrap_or("");
    if longest_word.len() >= 6 {
        assert!(
            !contains(&log, longest_word.as_bytes()),
            "the relay saw {longest_word:?}"
        );
    }
    assert!(contains(&log, b"application/vnd.attesta.sealed-stream"));
    // Greedy: the same question gives the same verified answer (fresh keys, same text).
    let (code, again, err) = chat(&["--system", "Answer briefly.", secret]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again.trim_end_matches('\n'), answer);

    // The bundle verifies offline with the saved output, and fails on a changed one.
    let verify = |out_file: &Path| {
        run_status(&[
            "verify",
            "receipt",
            &s(&bundle),
            "--dev-root",
            &root,
            "--measurements",
            registry.to_str().unwrap(),
            "--output",
            &s(out_file),
            "--request",
            &s(&request),
        ])
    };
    let (code, out, _) = verify(&output);
    assert_eq!(code, 0, "{out}");
    let summary = std::fs::read_to_string(&output).unwrap();
    assert!(summary.contains("\"transcript\""), "{summary}");
    let forged = w("forged.json");
    std::fs::write(&forged, summary.replacen("\"chunks\":", "\"chunks\": ", 1)).unwrap();
    let (code, out, _) = verify(&forged);
    assert_ne!(code, 0, "a changed output verified: {out}");

    // A replayed sealed request (the exact bytes again) is refused before any work.
    let sealed_body: Vec<u8> = {
        let log = seen.lock().unwrap().clone();
        // The first chat POST's body: after the blank line that ends its head.
        let post = log
            .windows(25)
            .position(|w| w == b"POST /v1/chat/completions")
            .unwrap();
        let start = post
            + log[post..]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap()
            + 4;
        let head = String::from_utf8_lossy(&log[post..start]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        log[start..start + len].to_vec()
    };
    let r = http_typed(
        &node.addr,
        "POST",
        "/v1/chat/completions",
        "application/vnd.attesta.sealed",
        &sealed_body,
    );
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        String::from_utf8_lossy(&r.body).contains("replayed"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}
