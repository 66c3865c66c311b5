//! `attesta verify evidence` on the real DCAP fixtures: detection, the
//! collateral file and directory forms, --accept-tcb, envelopes and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::path::PathBuf;

use serde_json::{Value, json};
use support::*;

const IN_WINDOW: &str = "2025-07-01T00:00:00Z";

fn fixtures() -> PathBuf {
    attesta_test_support::fixture("sgx-tdx")
}

fn fx(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = attesta().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn verify(quote: &str, collateral: &str, extra: &[&str]) -> (i32, String, String) {
    let (q, c) = (fx(quote), fx(collateral));
    let mut args = vec![
        "verify",
        "evidence",
        &q,
        "--collateral",
        &c,
        "--at",
        IN_WINDOW,
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn fixtures_give_their_documented_exit_codes() {
    let (code, out, _) = verify(
        "phala_tdx_v4_quote.bin",
        "phala_tdx_v4_collateral.json",
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("platform:   intel-tdx") && out.contains("result:     VERIFIED"),
        "{out}"
    );

    let (code, out, _) = verify(
        "phala_sgx_v3_quote.bin",
        "phala_sgx_v3_collateral.json",
        &[],
    );
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("FAIL] tcb_level"), "{out}");
    assert!(
        out.contains("ConfigurationAndSWHardeningNeeded") && out.contains("INTEL-SA-00615"),
        "{out}"
    );
    let accept = ["--accept-tcb", "ConfigurationAndSWHardeningNeeded"];
    let (code, out, _) = verify(
        "phala_sgx_v3_quote.bin",
        "phala_sgx_v3_collateral.json",
        &accept,
    );
    assert_eq!(code, 0, "{out}");

    // Hex input, no matching TCB level whatever is accepted.
    let all = [
        "--accept-tcb",
        "OutOfDate",
        "--accept-tcb",
        "SWHardeningNeeded",
        "--accept-tcb",
        "ConfigurationNeeded",
        "--accept-tcb",
        "OutOfDateConfigurationNeeded",
    ];
    let (code, out, _) = verify(
        "phala_tdx_v4_tappd_quote.hex",
        "phala_tdx_v4_collateral.json",
        &all,
    );
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("tcb_level_not_found"), "{out}");

    // Outside the window.
    let (q, c) = (
        fx("phala_tdx_v4_quote.bin"),
        fx("phala_tdx_v4_collateral.json"),
    );
    let (code, out, _) = run(&[
        "verify",
        "evidence",
        &q,
        "--collateral",
        &c,
        "--at",
        "2025-08-01T00:00:00Z",
        "--json",
    ]);
    assert_eq!(code, 3);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["error"]["code"], "expired");
    assert_eq!(report["quote"]["tee"], "tdx");

    // Usage errors.
    let (code, _, err) = verify(
        "phala_tdx_v4_quote.bin",
        "phala_tdx_v4_collateral.json",
        &["--accept-tcb", "Revoked"],
    );
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = run(&["verify", "evidence", &q, "--collateral", &q]);
    assert_eq!(code, 1, "a quote is not collateral: {err}");
    // No collateral: a named failure, not a pass.
    let (code, out, _) = run(&["verify", "evidence", &q, "--at", IN_WINDOW]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("bad_collateral"), "{out}");
}

#[test]
fn a_directory_of_raw_pcs_responses_is_collateral() {
    let col: Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("phala_tdx_v4_collateral.json")).unwrap(),
    )
    .unwrap();
    let s = |k: &str| col[k].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
    // The signed objects are embedded byte for byte, as PCS serves them.
    write(
        "tcb_info.json",
        format!(
            "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
            s("tcb_info"),
            s("tcb_info_signature")
        )
        .as_bytes(),
    );
    write(
        "qe_identity.json",
        format!(
            "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
            s("qe_identity"),
            s("qe_identity_signature")
        )
        .as_bytes(),
    );
    write("pck_crl.der", &hex::decode(s("pck_crl")).unwrap());
    write("root_ca_crl.der", &hex::decode(s("root_ca_crl")).unwrap());
    write(
        "tcb_signing_chain.pem",
        s("tcb_info_issuer_chain").as_bytes(),
    );
    let (q, d) = (
        fx("phala_tdx_v4_quote.bin"),
        dir.path().display().to_string(),
    );
    let (code, out, _) = run(&[
        "verify",
        "evidence",
        &q,
        "--collateral",
        &d,
        "--at",
        IN_WINDOW,
    ]);
    assert_eq!(code, 0, "{out}");
    // Re-serialised JSON (not the signed text) fails its signature.
    let pretty = serde_json::to_string_pretty(&json!({
        "tcbInfo": serde_json::from_str::<Value>(&s("tcb_info")).unwrap(),
        "signature": s("tcb_info_signature"),
    }))
    .unwrap();
    write("tcb_info.json", pretty.as_bytes());
    let (code, out, _) = run(&[
        "verify",
        "evidence",
        &q,
        "--collateral",
        &d,
        "--at",
        IN_WINDOW,
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("collateral_signature"), "{out}");
}

#[test]
fn envelopes_carry_collateral_and_their_platform_is_checked() {
    let quote = std::fs::read(fixtures().join("phala_tdx_v4_quote.bin")).unwrap();
    let col: Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("phala_tdx_v4_collateral.json")).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (platform, want) in [("tdx", 0), ("sgx", 3), ("dev-tdx", 3)] {
        let platform_id: attesta_evidence::Platform =
            serde_json::from_value(json!(platform)).unwrap();
        let env = attesta_evidence::Envelope {
            collateral: Some(col.clone()),
            ..attesta_evidence::Envelope::new(platform_id, quote.clone())
        };
        let path = dir.path().join(format!("{platform}.json"));
        std::fs::write(&path, env.to_json()).unwrap();
        let (code, out, _) = run(&[
            "verify",
            "evidence",
            &path.display().to_string(),
            "--at",
            IN_WINDOW,
        ]);
        assert_eq!(code, want, "{platform}: {out}");
        if want != 0 {
            assert!(out.contains("platform_mismatch"), "{platform}: {out}");
        }
    }
}

#[test]
fn pccs_fetches_the_collateral_of_a_bare_quote() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let collateral: Value =
        serde_json::from_slice(&std::fs::read(fx("phala_tdx_v4_collateral.json")).unwrap())
            .unwrap();
    let pccs = rt.block_on(attesta_test_support::standins::Pccs::serve(
        collateral,
        "tdx",
        "B0C06F000000",
    ));
    let q = fx("phala_tdx_v4_quote.bin");
    let (code, out, err) = run(&[
        "verify", "evidence", &q, "--pccs", &pccs.base, "--at", IN_WINDOW,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(pccs.hits(), 4);
    // A PCCS that does not know the platform: a named error, exit 1 (I/O), never a pass.
    let other = rt.block_on(attesta_test_support::standins::Pccs::serve(
        serde_json::from_slice(&std::fs::read(fx("phala_tdx_v4_collateral.json")).unwrap())
            .unwrap(),
        "tdx",
        "000000000000",
    ));
    let (code, _, err) = run(&[
        "verify",
        "evidence",
        &q,
        "--pccs",
        &other.base,
        "--at",
        IN_WINDOW,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("fetching DCAP collateral"), "{err}");
    // Without collateral at all the quote is refused (exit 3).
    let (code, _, _) = run(&["verify", "evidence", &q, "--at", IN_WINDOW]);
    assert_eq!(code, 3);
}
