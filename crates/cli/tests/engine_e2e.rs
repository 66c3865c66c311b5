//! The engine choice end to end: tract and onnxruntime nodes answer the same
//! requests alike, a per-model override is honoured, `--engine ort` without
//! its library refuses to start, and a dev-TEE node on onnxruntime reports
//! the library's SHA-384 in PCR9 and names the engine in its receipts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use support::*;

/// The onnxruntime library of the venv's wheel (or `ATTESTA_ORT_LIB`).
fn ort_lib() -> PathBuf {
    if let Some(p) = std::env::var_os("ATTESTA_ORT_LIB").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let out = Command::new(python())
        .args([
            "-c",
            "import onnxruntime,os,glob;d=os.path.join(os.path.dirname(onnxruntime.__file__),'capi');print(sorted(glob.glob(os.path.join(d,'libonnxruntime.so.*')))[-1])",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "no onnxruntime in the venv");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn add_model(file: &Path, store: &str) -> String {
    run_ok(&["models", "add", file.to_str().unwrap(), "--store", store])
        .trim()
        .to_string()
}

fn flatten(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flatten(x, out)),
        Value::Number(n) => out.push(n.as_f64().unwrap()),
        other => panic!("not a number: {other}"),
    }
}

fn numbers(answer: &Value) -> Vec<f64> {
    let mut out = Vec::new();
    for o in answer["output"].as_array().unwrap() {
        flatten(&o["result"], &mut out);
    }
    out
}

fn infer_body(cid: &str, name: &str, shape: &[usize]) -> Vec<u8> {
    let n: usize = shape.iter().product();
    let values: Vec<Value> = (0..n)
        .map(|i| json!({"value": (i * 37 % 1000) as i64 - 500, "decimals": 3}))
        .collect();
    let inputs = json!({"numbers": [{"name": name, "shape": shape, "values": values}]});
    json!({"ipfs_hash": cid, "model_inputs": inputs.to_string()})
        .to_string()
        .into_bytes()
}

#[test]
fn both_engines_answer_alike_and_overrides_are_honoured() {
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    make_models(&w("models"), &["mlp.onnx", "cnn.onnx"]);
    let store = s(&w("store"));
    let mlp = add_model(&w("models/mlp.onnx"), &store);
    let cnn = add_model(&w("models/cnn.onnx"), &store);
    let lib = s(&ort_lib());
    let requests = [
        (mlp.clone(), infer_body(&mlp, "x", &[1, 784])),
        (cnn.clone(), infer_body(&cnn, "x", &[1, 1, 28, 28])),
    ];

    let mut answers = Vec::new();
    for engine in ["tract", "ort"] {
        let node = start_node(&[
            "--tee",
            "none",
            "--store",
            &store,
            "--engine",
            engine,
            "--ort-lib",
            &lib,
        ]);
        let health = http(&node.addr, "GET", "/healthz", b"").json();
        let want = if engine == "ort" {
            "onnxruntime"
        } else {
            "tract"
        };
        assert_eq!(health["engine"], want, "{health}");
        let per_engine: Vec<Value> = requests
            .iter()
            .map(|(cid, body)| {
                let r = http(&node.addr, "POST", "/infer", body);
                assert_eq!(
                    r.status,
                    200,
                    "{engine} {cid}: {}",
                    String::from_utf8_lossy(&r.body)
                );
                r.json()
            })
            .collect();
        answers.push(per_engine);
    }
    for (t, o) in answers[0].iter().zip(&answers[1]) {
        assert_eq!(t["model_hash"], o["model_hash"]);
        let (a, b) = (numbers(t), numbers(o));
        assert_eq!(a.len(), b.len());
        assert!(a.iter().any(|x| *x != 0.0), "degenerate output");
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1e-4 * y.abs().max(1e-3),
                "tract {x} vs onnxruntime {y}"
            );
        }
        for (ot, oo) in t["output"]
            .as_array()
            .unwrap()
            .iter()
            .zip(o["output"].as_array().unwrap())
        {
            assert_eq!(ot["shape"], oo["shape"]);
            assert_eq!(ot["name"], oo["name"]);
        }
    }

    // Default tract, the CNN on onnxruntime by the config file.
    let config = w("attesta.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nengine = \"tract\"\nort_lib = {lib:?}\n[node.model_engines]\n{cnn:?} = \"ort\"\n"
        ),
    )
    .unwrap();
    let node = start_node(&["--tee", "none", "--store", &store, "--config", &s(&config)]);
    for (cid, body) in &requests {
        let r = http(&node.addr, "POST", "/infer", body);
        assert_eq!(r.status, 200, "{cid}");
    }
    let listed = http(&node.addr, "GET", "/v1/models", b"").json();
    for m in listed["models"].as_array().unwrap() {
        let want = if m["cid"] == cnn.as_str() {
            "onnxruntime"
        } else {
            "tract"
        };
        assert_eq!(m["engine"], want, "{listed}");
    }
    let health = http(&node.addr, "GET", "/healthz", b"").json();
    assert_eq!(health["engine"], "tract");
}

#[test]
fn ort_without_its_library_refuses_to_start() {
    let work = tempfile::tempdir().unwrap();
    let out = attesta()
        .args([
            "node",
            "--listen",
            "127.0.0.1:0",
            "--tee",
            "none",
            "--engine",
            "ort",
        ])
        .arg("--store")
        .arg(work.path().join("store"))
        .arg("--ort-lib")
        .arg(work.path().join("no-such-libonnxruntime.so"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("onnxruntime") || err.contains("ort"), "{err}");
    // `auto` starts on tract instead.
    let store = work.path().join("store2");
    let node = start_node(&[
        "--tee",
        "none",
        "--store",
        store.to_str().unwrap(),
        "--engine",
        "auto",
        "--ort-lib",
        work.path()
            .join("no-such-libonnxruntime.so")
            .to_str()
            .unwrap(),
    ]);
    let health = http(&node.addr, "GET", "/healthz", b"").json();
    assert_eq!(health["engine"], "tract");
}

#[test]
fn dev_tee_attests_the_engine_library_and_receipts_name_the_engine() {
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    make_models(&w("models"), &["mlp.onnx"]);
    let store = s(&w("store"));
    let data = s(&w("data"));
    let mlp = add_model(&w("models/mlp.onnx"), &store);
    let lib = ort_lib();
    let node = start_node(&[
        "--tee",
        "dev",
        "--data-dir",
        &data,
        "--store",
        &store,
        "--engine",
        "ort",
        "--ort-lib",
        &s(&lib),
    ]);
    let root = s(&w("data/dev-root.pem"));

    // Registries: binary + this library; binary + another library.
    let registry = w("registry.toml");
    std::fs::write(&registry, run_ok(&["measure", "--engine-lib", &s(&lib)])).unwrap();
    assert!(std::fs::read_to_string(&registry).unwrap().contains("9 = "));
    let other_lib = w("libother.so");
    let mut bytes = std::fs::read(&lib).unwrap();
    bytes.push(0);
    std::fs::write(&other_lib, bytes).unwrap();
    let other = w("other.toml");
    std::fs::write(&other, run_ok(&["measure", "--engine-lib", &s(&other_lib)])).unwrap();

    let nonce = "00112233445566778899aabbccddeeff00112233";
    let r = http(
        &node.addr,
        "GET",
        &format!("/enclave/attestation?nonce={nonce}"),
        b"",
    );
    assert_eq!(r.status, 200);
    let doc = w("doc.b64");
    std::fs::write(&doc, &r.body).unwrap();
    let verify = |reg: &Path| {
        attesta()
            .args([
                "verify",
                "evidence",
                &s(&doc),
                "--nonce",
                nonce,
                "--dev-root",
                &root,
            ])
            .args(["--measurements", &s(reg)])
            .output()
            .unwrap()
    };
    let ok = verify(&registry);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let bad = verify(&other);
    assert_eq!(
        bad.status.code(),
        Some(3),
        "another engine library must not verify: {}",
        String::from_utf8_lossy(&bad.stdout)
    );

    // A sealed request: the receipt names onnxruntime and its version.
    let inputs = w("inputs.json");
    let values: Vec<Value> = (0..784)
        .map(|i| json!({"value": i % 7, "decimals": 1}))
        .collect();
    std::fs::write(
        &inputs,
        json!({"numbers": [{"name": "x", "shape": [1, 784], "values": values}]}).to_string(),
    )
    .unwrap();
    let bundle = w("bundle.json");
    let out = attesta()
        .args([
            "infer",
            "--node",
            &format!("http://{}", node.addr),
            "--model",
            &mlp,
        ])
        .args(["--inputs", &s(&inputs), "--dev-root", &root])
        .args(["--measurements", &s(&registry), "--bundle", &s(&bundle)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle_text = std::fs::read_to_string(&bundle).unwrap();
    let version = Command::new(python())
        .args(["-c", "import onnxruntime;print(onnxruntime.__version__)"])
        .output()
        .unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    assert!(bundle_text.contains("onnxruntime"), "{bundle_text}");
    assert!(bundle_text.contains(version.trim()), "{bundle_text}");
}
