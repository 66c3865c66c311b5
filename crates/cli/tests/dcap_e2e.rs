//! End to end over real processes: a dev-tdx node (TDX quotes and their
//! collateral signed by a local root) goes through the DCAP verification
//! path in `attesta verify evidence`, `attesta infer` and `attesta verify
//! receipt`, with the collateral the node serves beside its quote (no
//! network), and is refused with another binary's measurement, without its
//! root, or when the dev evidence is claimed as hardware.

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
fn dev_tdx_node_goes_through_the_dcap_path() {
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

    let node = start_node(&["--tee", "dev-tdx", "--data-dir", &data, "--store", &store]);
    let addr = node.addr.clone();
    let root = s(&w("data/dev-dcap-root.pem"));
    assert!(
        Path::new(&root).exists(),
        "the dev DCAP root is written to the data dir"
    );

    let registry = w("registry.toml");
    let entry = run_ok(&["measure", "--tee", "dev-tdx"]);
    assert!(entry.contains("platform = \"dev-tdx\""), "{entry}");
    assert!(
        entry.contains("mrtd = ") && entry.contains("rtmr3 = "),
        "{entry}"
    );
    std::fs::write(&registry, &entry).unwrap();
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
            "dev-tdx",
            "--executable",
            &s(&other_exe),
        ]),
    )
    .unwrap();

    // /v1/attestation carries the envelope fields: a TDX quote and its collateral.
    let nonce = "00112233445566778899aabbccddeeff";
    let att = http(&addr, "GET", &format!("/v1/attestation?nonce={nonce}"), b"").json();
    assert_eq!(att["platform"], "dev-tdx");
    assert_eq!(att["insecure"], true);
    assert!(att["collateral"]["tcb_info"].is_string(), "{att}");
    let envelope = w("envelope.json");
    std::fs::write(
        &envelope,
        json!({"version": 1, "platform": att["platform"], "evidence": att["evidence"], "collateral": att["collateral"]}).to_string(),
    )
    .unwrap();
    let env_path = s(&envelope);
    let (code, out, err) = run_status(&[
        "verify",
        "evidence",
        &env_path,
        "--dcap-dev-root",
        &root,
        "--measurements",
        &s(&registry),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("dev-tdx (insecure)"), "{out}");
    assert!(out.contains("[PASS] tcb_level"), "{out}");
    for (extra, want) in [
        (
            vec!["--measurements", other_registry.to_str().unwrap()],
            "measurement_mismatch",
        ),
        (vec![], "untrusted_root"),
    ] {
        let mut args = vec!["verify", "evidence", env_path.as_str()];
        if want != "untrusted_root" {
            args.extend(["--dcap-dev-root", root.as_str()]);
        }
        args.extend(extra.iter().copied());
        let (code, out, _) = run_status(&args);
        assert_eq!(code, 3, "{want}: {out}");
        assert!(out.contains(want), "{want}: {out}");
    }
    // Without the collateral the quote cannot be judged: refused, never passed.
    let bare = w("bare.json");
    std::fs::write(
        &bare,
        json!({"version": 1, "platform": att["platform"], "evidence": att["evidence"]}).to_string(),
    )
    .unwrap();
    let (code, out, _) = run_status(&["verify", "evidence", &s(&bare), "--dcap-dev-root", &root]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("bad_collateral"), "{out}");
    // Claimed as real hardware, the dev evidence fails the platform check.
    let claimed_hw = w("claimed_hw.json");
    std::fs::write(
        &claimed_hw,
        std::fs::read_to_string(&envelope)
            .unwrap()
            .replace("\"dev-tdx\"", "\"tdx\""),
    )
    .unwrap();
    let (code, out, _) = run_status(&[
        "verify",
        "evidence",
        &s(&claimed_hw),
        "--dcap-dev-root",
        &root,
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("platform_mismatch"), "{out}");

    // Sealed inference through the DCAP path, with a proof bundle.
    let inputs = w("inputs.json");
    std::fs::write(
        &inputs,
        json!({"strings": [{"name": "x", "shape": [1], "values": ["tdx"]}]}).to_string(),
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
            "--dcap-dev-root".into(),
            root.clone(),
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
    assert_eq!(answer["output"][0]["result"], json!(["tdx"]));
    let (code, out, err) = infer(&other_registry, None);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("measurement") || out.contains("measurement"),
        "{out}\n{err}"
    );

    // The bundle carries the collateral and verifies offline through the DCAP path.
    let b: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    assert_eq!(b["platform"], "dev-tdx");
    assert!(b["collateral"]["qe_identity"].is_string(), "{b}");
    let bp = s(&bundle);
    let (code, out, _) = run_status(&[
        "verify",
        "receipt",
        &bp,
        "--dcap-dev-root",
        &root,
        "--measurements",
        &s(&registry),
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = run_status(&[
        "verify",
        "receipt",
        &bp,
        "--dcap-dev-root",
        &root,
        "--measurements",
        &s(&other_registry),
    ]);
    assert_eq!(code, 3, "{out}");
    let (code, out, _) = run_status(&["verify", "receipt", &bp, "--measurements", &s(&registry)]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("untrusted_root"), "{out}");
}
