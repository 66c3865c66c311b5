//! One end-to-end scenario for every dev TEE with a real evidence format
//! (dev-snp, dev-tdx): a node over real processes goes through its
//! platform's verification path in `attesta verify evidence`, `attesta
//! infer` and `attesta verify receipt`, and is refused with another
//! binary's measurement, without its dev root, with evidence claimed as
//! hardware, and with whatever else the case lists.

use std::path::Path;

use serde_json::{Value, json};

use super::*;

/// What differs between the dev TEEs.
pub struct DevTee<'a> {
    /// `--tee` value and wire platform (`dev-snp`, `dev-tdx`).
    pub tee: &'a str,
    /// The hardware platform it must never pass as (`sev-snp`, `tdx`).
    pub hardware: &'a str,
    /// The dev root the node writes to its data dir.
    pub root_file: &'a str,
    /// The policy flag naming that root (`--snp-dev-root`, `--dcap-dev-root`).
    pub root_flag: &'a str,
    /// The envelope field carrying what verification needs (`certs`, `collateral`).
    pub extra_field: &'a str,
    /// Checks the served `/v1/attestation` answer further.
    pub check_attestation: &'a dyn Fn(&Value),
    /// A report line only a full pass of this platform's path prints.
    pub pass_step: &'a str,
    /// The code an envelope without `extra_field` fails with.
    pub bare_code: &'a str,
    /// More refusals of the served envelope: extra args and the code they must fail with.
    pub refusals: Vec<(Vec<&'a str>, &'a str)>,
}

/// Runs the scenario for `case`.
pub fn dev_tee_goes_through_its_path(case: &DevTee<'_>) {
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

    let node = start_node(&["--tee", case.tee, "--data-dir", &data, "--store", &store]);
    let addr = node.addr.clone();
    let root = s(&w("data").join(case.root_file));
    assert!(
        Path::new(&root).exists(),
        "the dev root is written to the data dir"
    );

    let registry = w("registry.toml");
    std::fs::write(&registry, run_ok(&["measure", "--tee", case.tee])).unwrap();
    let other_exe = w("attesta-other");
    let mut bytes = std::fs::read(env!("CARGO_BIN_EXE_attesta")).unwrap();
    bytes.push(0);
    std::fs::write(&other_exe, bytes).unwrap();
    let other_registry = w("other.toml");
    std::fs::write(
        &other_registry,
        run_ok(&["measure", "--tee", case.tee, "--executable", &s(&other_exe)]),
    )
    .unwrap();

    // /v1/attestation carries the envelope fields.
    let nonce = "00112233445566778899aabbccddeeff";
    let att = http(&addr, "GET", &format!("/v1/attestation?nonce={nonce}"), b"").json();
    assert_eq!(att["platform"], case.tee);
    assert_eq!(att["insecure"], true);
    (case.check_attestation)(&att);
    let envelope = w("envelope.json");
    let mut env = json!({"version": 1, "platform": att["platform"], "evidence": att["evidence"]});
    env[case.extra_field] = att[case.extra_field].clone();
    std::fs::write(&envelope, env.to_string()).unwrap();
    let env_path = s(&envelope);
    let (code, out, err) = run_status(&[
        "verify",
        "evidence",
        &env_path,
        case.root_flag,
        &root,
        "--measurements",
        &s(&registry),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(&format!("{} (insecure)", case.tee)), "{out}");
    assert!(out.contains(case.pass_step), "{out}");
    let mut refusals = vec![
        (
            vec!["--measurements", other_registry.to_str().unwrap()],
            "measurement_mismatch",
        ),
        (vec![], "untrusted_root"),
    ];
    refusals.extend(case.refusals.iter().cloned());
    for (extra, want) in refusals {
        let mut args = vec!["verify", "evidence", env_path.as_str()];
        if want != "untrusted_root" {
            args.extend([case.root_flag, root.as_str()]);
        }
        args.extend(extra.iter().copied());
        let (code, out, _) = run_status(&args);
        assert_eq!(code, 3, "{want}: {out}");
        assert!(out.contains(want), "{want}: {out}");
    }
    // Without the certificates / collateral the evidence cannot be judged: refused.
    let bare = w("bare.json");
    let mut env_bare = env.clone();
    env_bare
        .as_object_mut()
        .unwrap()
        .remove(case.extra_field)
        .unwrap();
    std::fs::write(&bare, env_bare.to_string()).unwrap();
    let (code, out, _) = run_status(&["verify", "evidence", &s(&bare), case.root_flag, &root]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains(case.bare_code), "{out}");
    // Claimed as real hardware, the dev evidence fails the platform check.
    let claimed_hw = w("claimed_hw.json");
    env["platform"] = json!(case.hardware);
    std::fs::write(&claimed_hw, env.to_string()).unwrap();
    let (code, out, _) =
        run_status(&["verify", "evidence", &s(&claimed_hw), case.root_flag, &root]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("platform_mismatch"), "{out}");

    // Sealed inference through the platform's path, with a proof bundle.
    let inputs = w("inputs.json");
    std::fs::write(
        &inputs,
        json!({"strings": [{"name": "x", "shape": [1], "values": [case.tee]}]}).to_string(),
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
            case.root_flag.into(),
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
    assert_eq!(answer["output"][0]["result"], json!([case.tee]));
    let (code, out, err) = infer(&other_registry, None);
    assert_eq!(code, 3, "{out}\n{err}");
    assert!(
        err.contains("measurement") || out.contains("measurement"),
        "{out}\n{err}"
    );

    // The bundle carries what the envelope did and verifies offline.
    let b: Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    assert_eq!(b["platform"], case.tee);
    assert_eq!(b[case.extra_field], att[case.extra_field]);
    let bp = s(&bundle);
    let receipt = |extra: &[&str]| {
        let mut args = vec!["verify", "receipt", bp.as_str()];
        args.extend_from_slice(extra);
        run_status(&args)
    };
    let (code, out, _) = receipt(&[case.root_flag, &root, "--measurements", &s(&registry)]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = receipt(&[case.root_flag, &root, "--measurements", &s(&other_registry)]);
    assert_eq!(code, 3, "{out}");
    let (code, out, _) = receipt(&["--measurements", &s(&registry)]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("untrusted_root"), "{out}");
}
