//! End to end over real processes: a dev-snp node (SEV-SNP format reports
//! signed by a local ARK) goes through the SNP verification path in
//! `attesta verify evidence`, `attesta infer` and `attesta verify receipt`,
//! and is refused with another binary's measurement or without its ARK.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::*;

fn run_status(args: &[&str]) -> (i32, String, String) {
    let out = attesta().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dev_snp_node_goes_through_the_snp_path() {
    let work = tempfile::tempdir().unwrap();
    let w = |p: &str| work.path().join(p);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    make_models(&w("models"), &["tiny_identity_string.onnx"]);
    let store = s(&w("store"));
    let data = s(&w("data"));
    let cid = run_ok(&[
        "models",
        "add",
        &s(&w("models/tiny_identity_string.onnx")),
        "--store",
        &store,
    ])
    .trim()
    .to_string();

    let node = start_node(&["--tee", "dev-snp", "--data-dir", &data, "--store", &store]);
    let addr = node.addr.clone();
    let ark = s(&w("data/dev-snp-ark.pem"));
    assert!(
        Path::new(&ark).exists(),
        "the dev ARK is written to the data dir"
    );

    let registry = w("registry.toml");
    std::fs::write(&registry, run_ok(&["measure", "--tee", "dev-snp"])).unwrap();
    let other_exe = w("attesta-other");
    let mut bytes = std::fs::read(env!("CARGO_BIN_EXE_attesta")).unwrap();
    bytes.push(0);
    std::fs::write(&other_exe, bytes).unwrap();
    let other_registry = w("other.toml");
    std::fs::write(
        &other_registry,
        run_ok(&[
            "measure",
            "--tee",
            "dev-snp",
            "--executable",
            &s(&other_exe),
        ]),
    )
    .unwrap();

    // /v1/attestation carries the envelope fields: an SNP report and its certificates.
    let nonce = "00112233445566778899aabbccddeeff";
    let att = http(&addr, "GET", &format!("/v1/attestation?nonce={nonce}"), b"").json();
    assert_eq!(att["platform"], "dev-snp");
    assert_eq!(att["insecure"], true);
    assert_eq!(att["certs"].as_array().map(Vec::len), Some(3));
    let envelope = w("envelope.json");
    std::fs::write(
        &envelope,
        json!({"version": 1, "platform": att["platform"], "evidence": att["evidence"], "certs": att["certs"]}).to_string(),
    )
    .unwrap();
    let env_path = s(&envelope);
    let (code, out, err) = run_status(&[
        "verify",
        "evidence",
        &env_path,
        "--snp-dev-root",
        &ark,
        "--measurements",
        &s(&registry),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("dev-snp (insecure)"), "{out}");
    assert!(out.contains("[PASS] tcb"), "{out}");
    for (extra, want) in [
        (
            vec!["--measurements", other_registry.to_str().unwrap()],
            "measurement_mismatch",
        ),
        (vec![], "untrusted_root"),
        (vec!["--snp-vmpl", "1"], "snp_vmpl_mismatch"),
    ] {
        let mut args = vec!["verify", "evidence", env_path.as_str()];
        if want != "untrusted_root" {
            args.extend(["--snp-dev-root", ark.as_str()]);
        }
        args.extend(extra.iter().copied());
        let (code, out, _) = run_status(&args);
        assert_eq!(code, 3, "{want}: {out}");
        assert!(out.contains(want), "{want}: {out}");
    }
    // Claimed as real hardware, the dev evidence fails the platform check.
    let claimed_hw = w("claimed_hw.json");
    std::fs::write(
        &claimed_hw,
        std::fs::read_to_string(&envelope)
            .unwrap()
            .replace("\"dev-snp\"", "\"sev-snp\""),
    )
    .unwrap();
    let (code, out, _) = run_status(&[
        "verify",
        "evidence",
        &s(&claimed_hw),
        "--snp-dev-root",
        &ark,
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("platform_mismatch"), "{out}");

    // Sealed inference through the SNP path, with a proof bundle.
    let inputs = w("inputs.json");
    std::fs::write(
        &inputs,
        json!({"strings": [{"name": "x", "shape": [1], "values": ["snp"]}]}).to_string(),
    )
    .unwrap();
    let bundle = w("bundle.json");
    let url = format!("http://{addr}");
    let infer = |registry: &Path, bundle: Option<&Path>| {
        let mut args = vec![
            "infer".to_string(),
            "--node".into(),
            url.clone(),
            "--model".into(),
            cid.clone(),
            "--inputs".into(),
            s(&inputs),
            "--snp-dev-root".into(),
            ark.clone(),
            "--measurements".into(),
            s(registry),
        ];
        if let Some(b) = bundle {
            args.extend(["--bundle".into(), s(b)]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_status(&args)
    };
    let (code, out, err) = infer(&registry, Some(&bundle));
    assert_eq!(code, 0, "{out}\n{err}");
    let answer: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["output"][0]["result"], json!(["snp"]));
    let (code, out, err) = infer(&other_registry, None);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("measurement") || out.contains("measurement"),
        "{out}\n{err}"
    );

    // The bundle carries the certificates and verifies offline through the SNP path.
    let b: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    assert_eq!(b["platform"], "dev-snp");
    assert_eq!(b["certs"].as_array().map(Vec::len), Some(3));
    let bp = s(&bundle);
    let (code, out, _) = run_status(&[
        "verify",
        "receipt",
        &bp,
        "--snp-dev-root",
        &ark,
        "--measurements",
        &s(&registry),
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = run_status(&[
        "verify",
        "receipt",
        &bp,
        "--snp-dev-root",
        &ark,
        "--measurements",
        &s(&other_registry),
    ]);
    assert_eq!(code, 3, "{out}");
    let (code, out, _) = run_status(&["verify", "receipt", &bp, "--measurements", &s(&registry)]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("untrusted_root"), "{out}");
}
