//! `--insecure-fault` over real processes: refused under every TEE that may
//! be hardware; under the dev TEE declared in a signed field of every
//! document, printed by `attesta verify` and refused there (exit 3) unless
//! `--accept-declared-faults`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

#[test]
fn a_fault_under_a_hardware_tee_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    for tee in ["nitro", "tsm", "gramine", "auto"] {
        let data = dir.path().join(tee);
        let started = Instant::now();
        let mut child = attesta()
            .arg("--data-dir")
            .arg(&data)
            .args(["node", "--listen", "127.0.0.1:0", "--tee", tee])
            .args(["--insecure-fault", "wrong-output"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Bounded: a node that starts serving instead is killed and fails the test.
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("--tee {tee} with a fault kept running");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(status.code(), Some(2), "--tee {tee}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "refusing --insecure-fault wrong-output under --tee {tee}"
            )),
            "--tee {tee}: {stderr}"
        );
        assert!(
            !stdout.contains("listening"),
            "--tee {tee} served: {stdout}"
        );
    }
    // The same TEE without a fault fails for its own reason (no device), not this one.
    let (code, _, err) = run_status(&[
        "--data-dir",
        &dir.path().join("plain").display().to_string(),
        "node",
        "--listen",
        "127.0.0.1:0",
        "--tee",
        "nitro",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("refusing --insecure-fault"), "{err}");
}

/// A sealed inference through `attesta infer` (returns exit code, stdout, stderr).
fn infer(
    addr: &str,
    cid: &str,
    inputs: &Path,
    root: &Path,
    extra: &[&str],
) -> (i32, String, String) {
    let mut args = vec![
        "infer".to_string(),
        "--node".into(),
        format!("http://{addr}"),
        "--model".into(),
        cid.into(),
        "--inputs".into(),
        inputs.display().to_string(),
        "--dev-root".into(),
        root.display().to_string(),
        "--timeout".into(),
        "20s".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_status(&args)
}

#[test]
fn a_dev_node_declares_its_fault_and_verify_prints_and_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let w = |p: &str| dir.path().join(p);
    let data = w("data");
    let (name, spec) = attesta_engine::demo::devnet_set().remove(1);
    let model = w(&format!("{name}.onnx"));
    std::fs::write(&model, attesta_engine::demo::mlp(&spec)).unwrap();
    let cid = run_ok(&[
        "--data-dir",
        &data.display().to_string(),
        "models",
        "add",
        &model.display().to_string(),
    ])
    .split_whitespace()
    .next()
    .unwrap()
    .to_string();
    let node = start_node(&[
        "--data-dir",
        &data.display().to_string(),
        "--tee",
        "dev",
        "--insecure-fault",
        "wrong-output",
    ]);
    let root = data.join("dev-root.pem");
    assert_eq!(
        http(&node.addr, "GET", "/healthz", b"").json()["insecure_fault"],
        "wrong-output"
    );

    // The evidence itself carries the declaration (nitriding's endpoint: base64).
    let nonce = "ab".repeat(20);
    let att = http(
        &node.addr,
        "GET",
        &format!("/enclave/attestation?nonce={nonce}"),
        b"",
    );
    assert_eq!(att.status, 200);
    let doc_file = w("doc.b64");
    std::fs::write(&doc_file, &att.body).unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "evidence",
            doc_file.to_str().unwrap(),
            "--dev-root",
            root.to_str().unwrap(),
            "--nonce",
            &nonce,
        ];
        args.extend_from_slice(extra);
        run_status(&args)
    };
    let (code, out, err) = verify(&[]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(
        out.contains("fault:      wrong-output (declared; INSECURE)"),
        "{out}"
    );
    assert!(out.contains("FAILED (fault_declared)"), "{out}");
    let (code, out, _) = verify(&["--accept-declared-faults"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("fault:      wrong-output (declared; INSECURE)"),
        "{out}"
    );
    let (code, out, _) = verify(&["--json"]);
    assert_eq!(code, 3);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["document"]["insecure_fault"], "wrong-output");
    assert_eq!(report["error"]["code"], "fault_declared");

    // A client refuses the node by default; opted in, it gets the (wrong) answer
    // and a bundle that `verify receipt` refuses the same way.
    let inputs = w("inputs.json");
    let values: Vec<_> = (0..spec.inputs)
        .map(|i| json!({"value": i as i64 * 3 - 7, "decimals": 1}))
        .collect();
    std::fs::write(
        &inputs,
        json!({"numbers": [{"name": "x", "shape": [1, spec.inputs], "values": values}]})
            .to_string(),
    )
    .unwrap();
    let (code, _, err) = infer(&node.addr, &cid, &inputs, &root, &[]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("wrong-output"), "{err}");
    let bundle = w("bundle.json");
    let (code, _, err) = infer(
        &node.addr,
        &cid,
        &inputs,
        &root,
        &[
            "--accept-declared-faults",
            "--bundle",
            bundle.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let receipt = |extra: &[&str]| {
        let mut args = vec![
            "verify",
            "receipt",
            bundle.to_str().unwrap(),
            "--dev-root",
            root.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run_status(&args)
    };
    let (code, out, _) = receipt(&[]);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("fault:      wrong-output (declared; INSECURE)"),
        "{out}"
    );
    let (code, out, _) = receipt(&["--accept-declared-faults"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("fault:      wrong-output"), "{out}");
}
