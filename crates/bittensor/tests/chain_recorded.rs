//! Real Finney answers recorded by the Bittensor SDK's integration tests
//! (`integration_websocket_data.py`) decoded by our code, and cross-checked with an
//! independent decoder (scalecodec in the SDK 10.5.0 venv, `tests/bittensor/chain_oracle.py`)
//! given the same metadata. The cross-checks are skipped, with the reason printed, when that
//! venv is missing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write;
use std::process::{Command, Stdio};

use attesta_bittensor::chain::metadata::Metadata;
use attesta_bittensor::chain::neurons::{decode_neurons, decode_neurons_lite};
use parity_scale_codec::Encode;
use serde_json::Value;

const RECORDED: &str =
    "bittensor/chain/opentensor-bittensor_tests_helpers_integration_websocket_data.py";
const V15: &str = "bittensor/chain/opentensor-bittensor_integration_v15.scale";

/// The `"result": "0x…"` recorded for the first request key starting with `request`.
fn recorded(request: &str) -> Vec<u8> {
    let text = String::from_utf8(attesta_test_support::read_fixture(RECORDED)).unwrap();
    let at = text
        .find(request)
        .unwrap_or_else(|| panic!("{request} not recorded"));
    let rest = &text[at..];
    let r = rest.find("\"result\": \"0x").unwrap() + "\"result\": \"".len();
    let hex_text: String = rest[r..].chars().take_while(|c| *c != '"').collect();
    hex::decode(hex_text.trim_start_matches("0x")).unwrap()
}

/// Spec 208, netuid 23: the `Vec<u8>`-wrapped form.
fn spec208() -> Vec<u8> {
    recorded(r#"'["NeuronInfoRuntimeApi_get_neurons_lite", "0x1700"]'"#)
}

/// Spec 343, netuid 1 (1024 neurons): the typed form.
fn spec343() -> Vec<u8> {
    recorded(r#"'["NeuronInfoRuntimeApi_get_neurons_lite", "0100", "0xdb13"#)
}

#[test]
fn recorded_neurons_decode_to_the_right_hotkeys_and_axons() {
    let n = decode_neurons(&spec208()).unwrap();
    assert_eq!(n.len(), 19);
    assert!(n.iter().all(|x| x.netuid == 23));
    assert_eq!(
        n[0].hotkey.to_ss58(),
        "5G6coSQnHMttZsH5ZmYWAT6Jtg5zPDGxofirgGE4htow1UXD"
    );
    assert_eq!(
        n[0].coldkey.to_ss58(),
        "5EUWyy11sVKbv2HDxoETL1kKBUNvyAibobdcgt8QvPLGjDQm"
    );
    assert_eq!(n[0].axon, None);
    assert!(n[0].validator_permit);
    assert_eq!(n[0].stake, 2_999_000);
    assert_eq!(
        n[18].hotkey.to_ss58(),
        "5HiWQeBezmc5Jk64GP3Qji9kQhY4wrGMhGFqb2m9kdKU6chm"
    );
    // 2488056972 = 0x944cbc8c = 148.76.188.140
    assert_eq!(n[18].axon, Some("148.76.188.140:19014".parse().unwrap()));
    assert_eq!(n.iter().filter(|x| x.axon.is_some()).count(), 5);

    let n = decode_neurons(&spec343()).unwrap();
    assert_eq!(n.len(), 1024);
    assert!(n.iter().enumerate().all(|(i, x)| usize::from(x.uid) == i));
    assert_eq!(
        n[0].hotkey.to_ss58(),
        "5DkMmXtWf16RNdusZGCrJ7ca7ADPgRnZLVWCWbgA7s7sy1AQ"
    );
    // 3235789677 = 0xc0de3b6d = 192.222.59.109
    assert_eq!(n[0].axon, Some("192.222.59.109:6028".parse().unwrap()));
    assert_eq!(n[0].stake, 2_557_172_316);
    assert_eq!(n.iter().filter(|x| x.axon.is_some()).count(), 827);
    assert_eq!(n.iter().filter(|x| x.validator_permit).count(), 12);
    assert_eq!(n[1023].axon, None);
}

#[test]
fn damaged_answers_are_errors_not_panics() {
    for good in [spec208(), spec343()] {
        for cut in [0, 1, 2, 40, good.len() / 2, good.len() - 1] {
            assert!(decode_neurons_lite(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = good.clone();
        extra.push(0);
        assert!(decode_neurons_lite(&extra).is_err());
        for i in (0..good.len()).step_by(good.len() / 97 + 1) {
            let mut b = good.clone();
            b[i] ^= 0x5a;
            let _ = decode_neurons_lite(&b);
        }
    }
    // A length prefix promising 2^30 neurons in 5 bytes allocates nothing large.
    assert!(decode_neurons_lite(&[0x03, 0, 0, 0, 0x40]).is_err());
}

/// The SDK venv's interpreter running the independent decoder.
fn oracle() -> Command {
    let p = attesta_test_support::bittensor_python();
    let mut c = Command::new(p);
    c.arg(attesta_test_support::workspace_root().join("tests/bittensor/chain_oracle.py"));
    c
}

fn run(mut c: Command, stdin: &str) -> Value {
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chain_oracle.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn recorded_neurons_match_the_independent_decoder() {
    let meta = attesta_test_support::fixture(V15);
    for bytes in [spec208(), spec343()] {
        let mut c = oracle();
        c.arg("neurons").arg(&meta).arg("-");
        let theirs = run(c, &hex::encode(&bytes));
        let ours = decode_neurons_lite(&bytes).unwrap();
        let theirs = theirs.as_array().unwrap();
        assert_eq!(theirs.len(), ours.len());
        for (t, o) in theirs.iter().zip(&ours) {
            let n = attesta_bittensor::chain::Neuron::from(o.clone());
            assert_eq!(t["uid"], u64::from(n.uid));
            assert_eq!(t["netuid"], u64::from(n.netuid));
            assert_eq!(t["hotkey"], n.hotkey.to_ss58());
            assert_eq!(t["coldkey"], n.coldkey.to_ss58());
            assert_eq!(t["ip"].as_u64().map(u128::from), Some(o.axon_info.ip));
            assert_eq!(t["port"], u64::from(o.axon_info.port));
            assert_eq!(t["ip_type"], u64::from(o.axon_info.ip_type));
            assert_eq!(t["validator_permit"], n.validator_permit);
            assert_eq!(t["stake"], n.stake);
        }
    }
}

#[test]
fn storage_keys_decode_back_with_the_independent_decoder() {
    let meta_path = attesta_test_support::fixture(V15);
    let m = Metadata::decode(&attesta_test_support::read_fixture(V15)).unwrap();
    let hotkey =
        attesta_bittensor::AccountId::from_ss58("5G6coSQnHMttZsH5ZmYWAT6Jtg5zPDGxofirgGE4htow1UXD")
            .unwrap();
    let (net, uid) = (23u16.encode(), 5u16.encode());
    let keys = [
        m.storage_key("SubtensorModule", "Axons", &[&net, &hotkey.0])
            .unwrap(),
        m.storage_key("SubtensorModule", "Uids", &[&net, &hotkey.0])
            .unwrap(),
        m.storage_key("SubtensorModule", "Keys", &[&net, &uid])
            .unwrap(),
        m.storage_key("SubtensorModule", "LastUpdate", &[&net])
            .unwrap(),
        m.storage_key("SubtensorModule", "WeightsSetRateLimit", &[&net])
            .unwrap(),
        m.storage_key("SubtensorModule", "Weights", &[&net, &uid])
            .unwrap(),
        m.storage_key("System", "Account", &[&hotkey.0]).unwrap(),
    ];
    // Every blob agrees with this one on these keys (same hashers since spec 343).
    for (rel, _) in [
        ("bittensor/chain/cortexlm-bittensor-rs_finney.scale", 16),
        (
            "bittensor/chain/opentensor-subtensor_contract-tests_devnet_2026-06.scale",
            16,
        ),
    ] {
        let other = Metadata::decode(&attesta_test_support::read_fixture(rel)).unwrap();
        let k = other
            .storage_key("SubtensorModule", "Axons", &[&net, &hotkey.0])
            .unwrap();
        assert_eq!(k, keys[0], "{rel}");
        let k = other
            .storage_key("SubtensorModule", "LastUpdate", &[&net])
            .unwrap();
        assert_eq!(k, keys[3], "{rel}");
    }
    let mut c = oracle();
    c.arg("storage-key").arg(&meta_path);
    for k in &keys {
        c.arg(hex::encode(k));
    }
    let got = run(c, "");
    let hk = hotkey.to_ss58();
    let want = serde_json::json!([
        {"pallet": "SubtensorModule", "entry": "Axons", "args": [23, hk]},
        {"pallet": "SubtensorModule", "entry": "Uids", "args": [23, hk]},
        {"pallet": "SubtensorModule", "entry": "Keys", "args": [23, 5]},
        {"pallet": "SubtensorModule", "entry": "LastUpdate", "args": [23]},
        {"pallet": "SubtensorModule", "entry": "WeightsSetRateLimit", "args": [23]},
        {"pallet": "SubtensorModule", "entry": "Weights", "args": [23, 5]},
        {"pallet": "System", "entry": "Account", "args": [hk]},
    ]);
    assert_eq!(got, want);
}
