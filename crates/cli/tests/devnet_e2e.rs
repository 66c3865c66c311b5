//! `attesta devnet --rounds R --json` over real processes: one honest and
//! five misbehaving dev-TEE nodes (wrong outputs, slow, hanging, wrong
//! measurement, bad evidence) against a real validator process.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const TIMEOUT_MS: u64 = 1500;

fn node<'a>(state: &'a Value, behaviour: &str) -> &'a Value {
    state["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["behaviour"].as_str().unwrap().starts_with(behaviour))
        .unwrap_or_else(|| panic!("no {behaviour} node in {state:#}"))
}

#[test]
fn honest_fast_node_ranks_first_and_liars_get_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_attesta"))
        .args([
            "devnet", "--nodes", "6", "--faulty", "5", "--rounds", "4", "--json",
        ])
        .args([
            "--interval",
            "200ms",
            "--timeout",
            &format!("{TIMEOUT_MS}ms"),
        ])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "devnet failed: {stderr}");
    assert!(started.elapsed() < Duration::from_secs(120));
    let state: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let rounds = state["rounds"].as_u64().unwrap();
    assert!(rounds >= 4, "{state:#}");
    assert_eq!(state["tee"], "dev (insecure)");

    let honest = node(&state, "honest");
    let weight = |n: &Value| n["weight"].as_f64().unwrap();
    let score = |n: &Value| n["score"].as_f64().unwrap();
    // The honest, fast node ranks first.
    for other in state["nodes"].as_array().unwrap() {
        if other["id"] != honest["id"] {
            assert!(
                weight(honest) > weight(other),
                "{} outranks honest: {state:#}",
                other["id"]
            );
        }
    }
    assert_eq!(honest["weight_u16"], 65535);
    assert_eq!(
        honest["correct"].as_u64().unwrap(),
        2 * rounds,
        "two challenges per round"
    );
    assert_eq!(honest["platform"], "dev (insecure)");

    // Slow but correct: some credit, less than the fast node.
    let slow = node(&state, "slow");
    assert!(
        weight(slow) > 0.0 && score(slow) < score(honest),
        "{state:#}"
    );
    assert!(slow["last_latency_ms"].as_f64().unwrap() >= 300.0);

    // Liars and impostors: weight 0, never any credit.
    for b in ["wrong-output", "wrong-measurement", "bad-evidence", "hang"] {
        let n = node(&state, b);
        assert_eq!(weight(n), 0.0, "{b}: {state:#}");
        assert_eq!(score(n), 0.0, "{b}");
        assert_eq!(n["correct"], 0, "{b}");
        assert_eq!(n["weight_u16"], 0, "{b}");
    }
    assert_eq!(
        node(&state, "wrong-output")["wrong"].as_u64().unwrap(),
        rounds
    );
    let wm = node(&state, "wrong-measurement");
    assert_eq!(wm["attested"], false);
    assert_eq!(wm["measurement_ok"], false);
    assert_eq!(wm["attestation_failures"].as_u64().unwrap(), rounds);
    let be = node(&state, "bad-evidence");
    assert_eq!(be["attested"], false);
    assert_eq!(be["attestation_failures"].as_u64().unwrap(), rounds);

    // Each node shows the fault its signed document declares (read with the dev
    // root); the validator accepted the declarations on purpose, so the
    // wrong-output node above was caught by its answers, not its evidence.
    assert_eq!(honest["declared_fault"], Value::Null, "{state:#}");
    assert_eq!(
        node(&state, "wrong-measurement")["declared_fault"],
        Value::Null
    );
    for b in ["wrong-output", "slow", "hang", "bad-evidence"] {
        let n = node(&state, b);
        assert_eq!(n["declared_fault"], n["behaviour"], "{state:#}");
    }
    for n in state["nodes"].as_array().unwrap() {
        assert_eq!(n["status"], "running", "{state:#}");
    }

    // The hanging node costs each round its timeout, no more.
    let hang = node(&state, "hang");
    assert_eq!(hang["timeouts"].as_u64().unwrap(), rounds);
    let last_round_ms = state["last_round_ms"].as_u64().unwrap();
    assert!(
        last_round_ms >= TIMEOUT_MS,
        "the hang did last the timeout: {last_round_ms} ms"
    );
    assert!(
        last_round_ms < TIMEOUT_MS + 1000,
        "round took {last_round_ms} ms"
    );

    // Weights were written for the last epoch, in both forms.
    let weights: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("validator/weights.json")).unwrap())
            .unwrap();
    let ids: Vec<&str> = weights["u16_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(ids.contains(&honest["id"].as_str().unwrap()));
    assert!(
        !ids.contains(&node(&state, "wrong-output")["id"].as_str().unwrap()),
        "zeros dropped"
    );
    let sum: f64 = weights["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["weight"].as_f64().unwrap())
        .sum();
    assert!((sum - 1.0).abs() < 1e-9);
}

#[test]
fn rejects_more_faulty_nodes_than_nodes() {
    let out = Command::new(env!("CARGO_BIN_EXE_attesta"))
        .args([
            "devnet", "--nodes", "2", "--faulty", "3", "--rounds", "1", "--json",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exceeds"));
}

/// Nodes on the dev-snp and dev-tdx TEEs: the validator verifies them
/// through the SNP and DCAP paths (shared dev root, collateral served by
/// the nodes) and every honest node earns its share.
#[test]
fn dev_snp_and_dev_tdx_nodes_go_through_their_paths() {
    for (tee, label) in [
        ("dev-tdx", "dev-tdx (insecure)"),
        ("dev-snp", "dev-snp (insecure)"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_attesta"))
            .args(["devnet", "--nodes", "2", "--rounds", "2", "--json"])
            // A generous timeout: the check counts correct answers, and a loaded CI machine
            // must not turn a slow first model load into a miss.
            .args(["--tee", tee, "--interval", "200ms", "--timeout", "6s"])
            .arg("--dir")
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{tee}: devnet failed: {stderr}");
        let state: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
        assert_eq!(state["tee"], label, "{state:#}");
        let rounds = state["rounds"].as_u64().unwrap();
        for n in state["nodes"].as_array().unwrap() {
            assert_eq!(n["platform"], label, "{tee}: {state:#}");
            assert_eq!(n["correct"].as_u64().unwrap(), 2 * rounds, "{state:#}");
            assert!(n["weight"].as_f64().unwrap() > 0.0, "{state:#}");
        }
    }
    // Faults are declared in dev documents only.
    let out = Command::new(env!("CARGO_BIN_EXE_attesta"))
        .args(["devnet", "--nodes", "2", "--faulty", "1", "--rounds", "1"])
        .args(["--tee", "dev-tdx"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--faulty needs --tee dev"));
}
