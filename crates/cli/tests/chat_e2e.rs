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

/// A chat template is the model file's code. Hostile ones — a string doubled until it
/// would take terabytes, a `replace` whose result would — are refused with a typed 400
/// (minijinja charges fuel for every byte it builds; our Python methods size their
/// results first), they render in the memory-capped template worker besides, and the
/// node serves on: the same model's plain completions, other models' chats, and the
/// same refusal again.
#[test]
fn hostile_chat_templates_get_a_400_and_the_node_serves_on() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let store = store.to_str().unwrap();
    let good = attesta_test_support::llm::test_gguf("tiny-spm-q8_0");
    let template = work.path().join("hostile.jinja");
    std::fs::write(
        &template,
        concat!(
            "{% if messages|length > 1 %}{% set s = 'x' * 100000 %}{{ s.replace('x', s)|length }}",
            "{% else %}{% set ns = namespace(s='x' * 1000) %}{% for i in range(64) %}",
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}{% endif %}"
        ),
    )
    .unwrap();
    let hostile = work.path().join("hostile.gguf");
    let out = std::process::Command::new(attesta_test_support::llm::llm_python())
        .arg(workspace().join("tests/llm/set_chat_template.py"))
        .args([&good, &hostile, &template])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let add = |p: &Path| {
        run_ok(&["models", "add", p.to_str().unwrap(), "--store", store])
            .trim()
            .to_string()
    };
    let (good_cid, hostile_cid) = (add(&good), add(&hostile));
    let data = work.path().join("data");
    let node = start_node(&[
        "--tee",
        "dev",
        "--data-dir",
        data.to_str().unwrap(),
        "--store",
        store,
    ]);
    // One message: the doubling runs; two: the `replace` bomb.
    let chat_n = |cid: &str, n: usize| {
        let body = serde_json::json!({
            "model": cid,
            "messages": vec![serde_json::json!({"role": "user", "content": "hello"}); n],
            "max_tokens": 4,
        });
        http(
            &node.addr,
            "POST",
            "/v1/chat/completions",
            body.to_string().as_bytes(),
        )
    };
    for (n, why) in [
        (1, "step budget"),
        (2, "over its limit"),
        (1, "step budget"),
    ] {
        let r = chat_n(&hostile_cid, n);
        r.assert_error(400, "chat_template_failed");
        let text = String::from_utf8_lossy(&r.body);
        assert!(text.contains(why), "{text}");
        // The node lives on: the good model chats, the hostile one still completes text.
        let r = chat_n(&good_cid, 1);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let body = serde_json::json!({"model": hostile_cid, "prompt": "hello", "max_tokens": 4});
        let r = http(
            &node.addr,
            "POST",
            "/v1/completions",
            body.to_string().as_bytes(),
        );
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
}

/// The template worker's cap is the kernel's: under `--max-memory 256MiB` it renders a
/// small job, and a job that needs more (a 200 MB message parsed into memory) ends the
/// worker alone (the node sees its pipe close and answers 400, see above), never with a
/// partial answer.
#[test]
fn the_template_worker_dies_at_its_address_space_cap() {
    use std::io::{BufRead, BufReader, Write};
    let mut worker = attesta()
        .args([
            "internal-render-template",
            "--max-memory",
            &(256u64 << 20).to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = worker.stdin.take().unwrap();
    let mut stdout = BufReader::new(worker.stdout.take().unwrap());
    let job = |content: &str| {
        let mut line = serde_json::to_vec(&serde_json::json!({
            "source": "{{ bos_token }}{{ messages[0].content|length }}",
            "bos_token": "<s>",
            "eos_token": "",
            "messages": [{"role": "user", "content": content}],
            "add_generation_prompt": true,
        }))
        .unwrap();
        line.push(b'\n');
        line
    };
    stdin.write_all(&job("hello")).unwrap();
    let mut reply = String::new();
    stdout.read_line(&mut reply).unwrap();
    assert_eq!(reply.trim(), r#"{"text":"<s>5"}"#);
    let big = "a".repeat(200_000_000);
    // The worker may die before it has read it all: a broken pipe is expected.
    let _ = stdin.write_all(&job(&big));
    drop(stdin);
    let mut rest = String::new();
    assert_eq!(
        stdout.read_line(&mut rest).unwrap(),
        0,
        "answered: {rest:.200}"
    );
    let status = worker.wait().unwrap();
    assert!(!status.success(), "{status}");
}
