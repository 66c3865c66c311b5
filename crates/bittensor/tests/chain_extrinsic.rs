//! Signed extrinsics built here, decoded by an independent decoder: the Python SDK's SCALE
//! codec with real Finney metadata (V15, spec 343). The decoded call, signer, era, nonce and
//! tip are the intended ones, the SDK's own signing payload is byte-equal to ours, the
//! signature verifies over it, and the SDK re-encodes the same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use attesta_bittensor::Hotkey;
use attesta_bittensor::chain::calls;
use attesta_bittensor::chain::extrinsic::{self, Era, ExtensionInfo, TxParams};
use attesta_bittensor::chain::metadata::Metadata;
use parity_scale_codec::Encode;
use serde_json::{Value, json};

/// The spec-343 runtime's transaction extensions, in its metadata's order.
fn spec343_extensions() -> Vec<ExtensionInfo> {
    vec![
        ExtensionInfo::new("CheckNonZeroSender", true, true),
        ExtensionInfo::new("CheckSpecVersion", true, false),
        ExtensionInfo::new("CheckTxVersion", true, false),
        ExtensionInfo::new("CheckGenesis", true, false),
        ExtensionInfo::new("CheckMortality", false, false),
        ExtensionInfo::new("CheckNonce", false, true),
        ExtensionInfo::new("CheckWeight", true, true),
        ExtensionInfo::new("ChargeTransactionPayment", false, true),
        ExtensionInfo::new("SubtensorTransactionExtension", true, true),
        ExtensionInfo::new("DrandPriority", true, true),
        ExtensionInfo::new("CheckMetadataHash", false, false),
    ]
}

fn decode_with_sdk(py: &PathBuf, x: &[u8], p: &TxParams) -> Value {
    let script = attesta_test_support::workspace_root().join("tests/bittensor/chain_extrinsic.py");
    let metadata =
        attesta_test_support::fixture("bittensor/chain/opentensor-bittensor_integration_v15.scale");
    let mut child = Command::new(py)
        .arg(script)
        .arg(metadata)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let req = json!({
        "extrinsic": hex::encode(x),
        "genesis_hash": hex::encode(p.genesis_hash),
        "era_block_hash": hex::encode(p.era_block_hash),
        "spec_version": p.spec_version,
        "transaction_version": p.transaction_version,
    });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "chain_extrinsic.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn params(nonce: u64, tip: u64, block: u64) -> TxParams {
    TxParams {
        nonce,
        tip,
        era: Era::mortal(extrinsic::DEFAULT_ERA_PERIOD, block),
        era_block_hash: [0xbb; 32],
        genesis_hash: [0x2f; 32],
        spec_version: 343,
        transaction_version: 1,
    }
}

#[test]
fn sdk_decodes_our_set_weights_and_serve_axon() {
    let py = attesta_test_support::bittensor_python();
    let key = Hotkey::from_dev_uri("//Alice").unwrap();
    // The extensions as read from the metadata (emptiness from its type registry) are the
    // spec-343 runtime's.
    let md = Metadata::decode(&attesta_test_support::read_fixture(
        "bittensor/chain/opentensor-bittensor_integration_v15.scale",
    ))
    .unwrap();
    let exts = calls::extensions(&md);
    assert_eq!(exts, spec343_extensions());
    assert_eq!(
        calls::set_weights(&md, 3, &[0, 1, 5], &[65535, 32768, 1], 11003).unwrap()[..2],
        [7, 0]
    );

    // SubtensorModule (7).set_weights (0): netuid, dests, weights, version_key.
    let mut call = vec![7u8, 0];
    (3u16, vec![0u16, 1, 5], vec![65535u16, 32768, 1], 11003u64).encode_to(&mut call);
    let p = params(7, 0, 5_000_123);
    let x = extrinsic::build_signed(&call, &exts, &p, &key).unwrap();
    let v = decode_with_sdk(&py, &x.bytes, &p);
    assert_eq!(v["call_module"], "SubtensorModule");
    assert_eq!(v["call_function"], "set_weights");
    assert_eq!(
        v["call_args"],
        json!({"netuid": 3, "dests": [0, 1, 5], "weights": [65535, 32768, 1], "version_key": 11003})
    );
    assert_eq!(v["signer"], format!("0x{}", hex::encode(key.account().0)));
    let Era::Mortal { period, phase } = p.era else {
        unreachable!()
    };
    assert_eq!(v["era"], json!([period, phase]));
    assert_eq!(v["nonce"], 7);
    assert_eq!(v["tip"], 0);
    assert_eq!(v["call_hex"], format!("0x{}", hex::encode(&call)));
    assert_eq!(
        v["payload"],
        format!(
            "0x{}",
            hex::encode(extrinsic::signing_payload(&call, &exts, &p).unwrap())
        )
    );
    assert_eq!(v["signature_verifies"], true);
    assert_eq!(v["reencoded"], format!("0x{}", hex::encode(&x.bytes)));

    // serve_axon (4), with a tip and a large nonce (multi-byte compacts).
    let mut call = vec![7u8, 4];
    (
        3u16,
        9u32,
        u128::from(u32::from_be_bytes([203, 0, 113, 7])),
        8091u16,
        4u8,
        4u8,
        0u8,
        0u8,
    )
        .encode_to(&mut call);
    let p = params(70_000, 1_000_000, 17);
    let x = extrinsic::build_signed(&call, &exts, &p, &key).unwrap();
    let v = decode_with_sdk(&py, &x.bytes, &p);
    assert_eq!(v["call_function"], "serve_axon");
    assert_eq!(v["call_args"]["ip"], 3_405_803_783u64);
    assert_eq!(v["call_args"]["port"], 8091);
    assert_eq!(v["call_args"]["ip_type"], 4);
    assert_eq!(v["nonce"], 70_000);
    assert_eq!(v["tip"], 1_000_000);
    assert_eq!(v["signature_verifies"], true);
    assert_eq!(v["reencoded"], format!("0x{}", hex::encode(&x.bytes)));

    // A payload over 256 bytes is signed as its hash: the SDK agrees.
    let mut call = vec![7u8, 0];
    let uids: Vec<u16> = (0..100).collect();
    (3u16, uids.clone(), uids, 1u64).encode_to(&mut call);
    let p = params(1, 0, 99);
    let x = extrinsic::build_signed(&call, &exts, &p, &key).unwrap();
    let v = decode_with_sdk(&py, &x.bytes, &p);
    assert_eq!(v["call_args"]["dests"].as_array().unwrap().len(), 100);
    assert_eq!(v["payload"].as_str().unwrap().len(), 2 + 64);
    assert_eq!(v["signature_verifies"], true);
}
