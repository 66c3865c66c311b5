//! End to end over real processes: a dev-TEE node proves itself on both
//! attestation endpoints, `attesta verify evidence` checks the proof (and
//! rejects another binary's measurement), and `attesta infer` runs a sealed
//! request through a logging relay that never sees the plaintext.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;

use attesta_seal::MEDIA_TYPE as SEALED;
use serde_json::{Value, json};
use support::*;

/// `attesta models add FILE --store STORE`; returns the CID.
fn add_model(file: &Path, store: &str) -> String {
    run_ok(&["models", "add", file.to_str().unwrap(), "--store", store])
        .trim()
        .to_string()
}

#[test]
fn dev_tee_node_attests_and_serves_sealed_requests() {
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    make_models(&w("models"), &["mlp.onnx", "tiny_identity_string.onnx"]);
    let store = s(&w("store"));
    let data = s(&w("data"));
    let str_cid = add_model(&w("models/tiny_identity_string.onnx"), &store);
    let mlp_cid = add_model(&w("models/mlp.onnx"), &store);

    let node = start_node(&["--tee", "dev", "--data-dir", &data, "--store", &store]);
    let addr = node.addr.clone();
    let root = s(&w("data/dev-root.pem"));
    assert!(
        Path::new(&root).exists(),
        "the dev root is written to <data-dir>/dev-root.pem"
    );
    let health = http(&addr, "GET", "/healthz", b"").json();
    assert_eq!(health["tee"], "dev (insecure)");

    // The registry entry of this very binary, and of a copy that differs by one byte.
    let registry = w("registry.toml");
    std::fs::write(&registry, run_ok(&["measure"])).unwrap();
    let other_exe = w("attesta-other");
    let mut bytes = std::fs::read(env!("CARGO_BIN_EXE_attesta")).unwrap();
    bytes.push(0);
    std::fs::write(&other_exe, bytes).unwrap();
    let other_registry = w("other.toml");
    std::fs::write(
        &other_registry,
        run_ok(&["measure", "--executable", &s(&other_exe)]),
    )
    .unwrap();

    // nitriding's endpoint: base64 + newline, bound to a 20-byte nonce.
    let nonce = "00112233445566778899aabbccddeeff00112233";
    let r = http(
        &addr,
        "GET",
        &format!("/enclave/attestation?nonce={nonce}"),
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(r.body.ends_with(b"\n") && !r.body[..r.body.len() - 1].contains(&b'\n'));
    let doc = w("doc.b64");
    std::fs::write(&doc, &r.body).unwrap();
    let (code, out, _) = run_status(&[
        "verify",
        "evidence",
        &s(&doc),
        "--nonce",
        nonce,
        "--dev-root",
        &root,
        "--measurements",
        &s(&registry),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("dev (insecure)"), "{out}");
    let (code, out, _) = run_status(&[
        "verify",
        "evidence",
        &s(&doc),
        "--nonce",
        nonce,
        "--dev-root",
        &root,
        "--measurements",
        &s(&other_registry),
        "--json",
    ]);
    assert_eq!(code, 3, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["error"]["code"], "measurement_mismatch", "{report}");
    // The failure names PCR0 (the binary's hash) and only PCR0.
    let step = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "measurements")
        .unwrap();
    assert_eq!(step["status"], "fail", "{step}");
    let detail = step["detail"].as_str().unwrap();
    assert!(detail.contains("PCR0 expected"), "{detail}");
    assert!(
        !detail.contains("PCR1 expected") && !detail.contains("PCR2 expected"),
        "{detail}"
    );
    let (code, out, _) = run_status(&[
        "verify",
        "evidence",
        &s(&doc),
        "--nonce",
        nonce,
        "--measurements",
        &s(&registry),
        "--json",
    ]);
    assert_eq!(
        code, 3,
        "without --dev-root the dev root is untrusted: {out}"
    );
    let (code, _, _) = run_status(&[
        "verify",
        "evidence",
        &s(&doc),
        "--nonce",
        "ff112233445566778899aabbccddeeff00112233",
        "--dev-root",
        &root,
    ]);
    assert_eq!(code, 3, "another nonce must fail");
    // Each call is fresh evidence for its own nonce.
    let r2 = http(
        &addr,
        "GET",
        &format!("/enclave/attestation?nonce={nonce}"),
        b"",
    );
    assert_ne!(r2.body, r.body);
    http(&addr, "GET", "/enclave/attestation?nonce=abc", b"").assert_error(400, "invalid_nonce");
    http(&addr, "GET", "/enclave/attestation", b"").assert_error(400, "invalid_nonce");
    let short = http(&addr, "GET", "/v1/attestation?nonce=0011", b"");
    short.assert_error(400, "invalid_nonce");
    let msg = short.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        msg.contains("16..=64 bytes (32..=128 hex characters)") && msg.contains("got 2 bytes"),
        "{msg}"
    );
    let short = http(&addr, "GET", "/enclave/attestation?nonce=0011", b"");
    let msg = short.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains("20 bytes (40 hex characters)"), "{msg}");
    // A repeated `nonce` is a JSON error too, on both endpoints (not axum's plain text).
    for path in [
        format!(
            "/v1/attestation?nonce={}&nonce={}",
            "ab".repeat(32),
            "cd".repeat(32)
        ),
        format!("/enclave/attestation?nonce={nonce}&nonce={nonce}"),
    ] {
        let r = http(&addr, "GET", &path, b"");
        r.assert_error(400, "invalid_nonce");
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    // Percent-encoding and other parameters are understood.
    let encoded = http(
        &addr,
        "GET",
        &format!("/enclave/attestation?x=1&%6eonce={nonce}"),
        b"",
    );
    assert_eq!(encoded.status, 200);
    let v1 = http(
        &addr,
        "GET",
        &format!("/v1/attestation?nonce={}", "ab".repeat(32)),
        b"",
    )
    .json();
    assert_eq!(v1["platform"], "dev");
    assert_eq!(v1["insecure"], true);
    assert_eq!(v1["keyset_digest"], health["keyset_digest"]);

    // Sealed inference through a relay that logs everything.
    let (relay, seen) = logging_relay(addr.clone());
    let secret = "TOP-SECRET-INPUT-7f3a9c";
    let inputs = w("inputs.json");
    std::fs::write(
        &inputs,
        json!({"strings": [{"name": "x", "shape": [1], "values": [secret]}]}).to_string(),
    )
    .unwrap();
    let bundle = w("bundle.json");
    let output = w("output.json");
    let request = w("request.json");
    let url = format!("http://{relay}");
    let (code, out, err) = run_status(&[
        "infer",
        "--node",
        &url,
        "--model",
        &str_cid,
        "--inputs",
        &s(&inputs),
        "--dev-root",
        &root,
        "--measurements",
        &s(&registry),
        "--bundle",
        &s(&bundle),
        "--save-output",
        &s(&output),
        "--save-request",
        &s(&request),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["output"][0]["result"], json!([secret]));
    let log = seen.lock().unwrap().clone();
    assert!(
        contains(&log, b"/v1/infer"),
        "the relay carried the request"
    );
    assert!(
        !contains(&log, secret.as_bytes()),
        "the relay saw the plaintext"
    );

    // The same numbers as the plaintext /infer on the same inputs.
    let mlp_inputs = json!({"numbers": [{"name": "x", "shape": [1, 784], "values": (0..784).map(|i| json!({"value": (i * 37 % 1000) as i64 - 500, "decimals": 3})).collect::<Vec<_>>()}]});
    std::fs::write(&inputs, mlp_inputs.to_string()).unwrap();
    let (code, out, err) = run_status(&[
        "infer",
        "--node",
        &format!("http://{addr}"),
        "--model",
        &mlp_cid,
        "--inputs",
        &s(&inputs),
        "--dev-root",
        &root,
        "--measurements",
        &s(&registry),
    ]);
    assert_eq!(code, 0, "{err}");
    let sealed: Value = serde_json::from_str(&out).unwrap();
    let plain = http(
        &addr,
        "POST",
        "/infer",
        json!({"ipfs_hash": mlp_cid, "model_inputs": mlp_inputs.to_string()})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(plain.status, 200);
    assert_eq!(sealed["output"], plain.json()["output"]);
    assert_eq!(sealed["model_hash"], plain.json()["model_hash"]);

    // The proof bundle verifies offline, and fails on any change.
    let verify = |extra: &[&str]| {
        let mut args = vec!["verify", "receipt"];
        args.extend_from_slice(extra);
        run_status(&args)
    };
    let b = s(&bundle);
    let (code, out, _) = verify(&[
        &b,
        "--dev-root",
        &root,
        "--measurements",
        &s(&registry),
        "--output",
        &s(&output),
        "--request",
        &s(&request),
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, _, _) = verify(&[&b, "--measurements", &s(&registry)]);
    assert_eq!(code, 3, "dev evidence without its root must not verify");
    let (code, _, _) = verify(&[
        &b,
        "--dev-root",
        &root,
        "--measurements",
        &s(&other_registry),
    ]);
    assert_eq!(code, 3, "another binary's measurement must not verify");
    let mut tampered_output = std::fs::read(&output).unwrap();
    let pos = tampered_output.iter().position(|b| *b == b'T').unwrap();
    tampered_output[pos] = b'X';
    std::fs::write(w("output2.json"), tampered_output).unwrap();
    let (code, out, _) = verify(&[&b, "--dev-root", &root, "--output", &s(&w("output2.json"))]);
    assert_eq!(code, 3, "{out}");
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    let sig = doc["receipt"]["signature"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { "1" } else { "0" },
        &sig[1..]
    );
    doc["receipt"]["signature"] = json!(flipped);
    std::fs::write(w("bundle2.json"), doc.to_string()).unwrap();
    let (code, _, _) = verify(&[&s(&w("bundle2.json")), "--dev-root", &root]);
    assert_eq!(code, 3, "a receipt with one byte changed must not verify");

    // A sealed request captured by the relay and replayed is refused.
    let start = log
        .windows(15)
        .position(|w| w == b"POST /v1/infer ")
        .unwrap();
    let head_end = start
        + log[start..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap();
    let head = String::from_utf8_lossy(&log[start..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let sealed_request = log[head_end + 4..head_end + 4 + len].to_vec();
    // In plaintext: v1 sealed this refusal under the genuine answer's key and
    // nonce, and XOR with the guessable refusal gave the answer back. Now no
    // second ciphertext exists, however often it is replayed.
    for _ in 0..3 {
        let replay = http_typed(&addr, "POST", "/v1/infer", SEALED, &sealed_request);
        replay.assert_error(409, "replayed_request");
        assert_eq!(replay.header("content-type"), Some("application/json"));
    }
    let metrics = String::from_utf8(http(&addr, "GET", "/metrics", b"").body).unwrap();
    assert!(
        metrics.contains("attesta_errors_total{code=\"replayed_request\"} 3"),
        "{metrics}"
    );
    // A v1 envelope is told to upgrade.
    let mut v1 = sealed_request.clone();
    v1[0] = 1;
    let r = http_typed(&addr, "POST", "/v1/infer", SEALED, &v1);
    r.assert_error(400, "unsupported_version");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("v2 is required")
    );
    // Garbage is refused in plaintext JSON, before any decryption.
    http_typed(&addr, "POST", "/v1/infer", SEALED, b"\x09garbage")
        .assert_error(400, "unsupported_version");
}

/// Reads one HTTP/1.1 request (head and `Content-Length` body) from `s`.
fn read_request(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut buf).ok().filter(|n| *n > 0)?;
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = raw[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut buf).ok().filter(|n| *n > 0)?;
        body.extend_from_slice(&buf[..n]);
    }
    Some((head, body))
}

/// Sends `head` (with `Connection: close`) and `body` to `target`; returns the raw answer.
fn forward(target: &str, head: &str, body: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(target).unwrap();
    let mut lines: Vec<&str> = head
        .trim_end()
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    let head = format!("{}\r\n\r\n", lines.join("\r\n"));
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer
}

/// A hostile relay: it forwards everything, but for `POST /v1/infer` it keeps
/// the node's genuine sealed answer, replays the request and hands the client
/// the node's (authentic, plaintext) replay refusal instead.
fn swapping_relay(target: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(16) {
            let Ok(mut client) = conn else { continue };
            let Some((head, body)) = read_request(&mut client) else {
                continue;
            };
            let mut answer = forward(&target, &head, &body);
            if head.starts_with("POST /v1/infer ") {
                answer = forward(&target, &head, &body);
            }
            let _ = client.write_all(&answer);
        }
    });
    addr
}

#[test]
fn swapped_refusals_are_unauthenticated_and_declared_faults_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    make_models(&w("models"), &["tiny_identity_string.onnx"]);
    let store = s(&w("store"));
    let data = s(&w("data"));
    let cid = add_model(&w("models/tiny_identity_string.onnx"), &store);
    let node = start_node(&[
        "--tee",
        "dev",
        "--data-dir",
        &data,
        "--store",
        &store,
        "--insecure-fault",
        "wrong-output",
    ]);
    let root = s(&w("data/dev-root.pem"));
    let inputs = w("inputs.json");
    std::fs::write(
        &inputs,
        json!({"strings": [{"name": "x", "shape": [1], "values": ["hello"]}]}).to_string(),
    )
    .unwrap();
    let infer = |url: &str, extra: &[&str]| {
        let mut args = vec![
            "infer",
            "--node",
            url,
            "--model",
            &cid,
            "--inputs",
            inputs.to_str().unwrap(),
            "--dev-root",
            &root,
        ];
        args.extend_from_slice(extra);
        run_status(&args)
    };

    // The relay swaps the genuine answer for the node's replay refusal: not
    // success, and not the node's verdict either.
    let relay = swapping_relay(node.addr.clone());
    let (code, out, err) = infer(&format!("http://{relay}"), &["--accept-declared-faults"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("unauthenticated refusal (may come from a relay): replayed_request"),
        "{err}"
    );

    // Directly: the receipt declares the fault and is refused by default...
    let url = format!("http://{}", node.addr);
    let (code, out, err) = infer(&url, &[]);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(err.contains("wrong-output"), "{err}");
    // ...and accepted, loudly, when asked for.
    let bundle = w("bundle.json");
    let (code, out, err) = infer(&url, &["--accept-declared-faults", "--bundle", &s(&bundle)]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("declares the fault `wrong-output`"), "{err}");

    // The proof bundle prints the fault and fails unless faults are accepted.
    let (code, out, _) = run_status(&["verify", "receipt", &s(&bundle), "--dev-root", &root]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("wrong-output"), "{out}");
    let (code, out, _) = run_status(&[
        "verify",
        "receipt",
        &s(&bundle),
        "--dev-root",
        &root,
        "--accept-declared-faults",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("wrong-output"), "{out}");
}
