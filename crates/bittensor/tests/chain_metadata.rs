//! Runtime metadata lookups against the three real metadata blobs in the shared fixtures
//! (Finney V15 spec 343, Finney V16 spec 393, devnet V16 spec 381).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use attesta_bittensor::chain::metadata::{Hasher, Metadata, StorageKind, twox_128};
use parity_scale_codec::Encode;

pub const BLOBS: [(&str, u32); 3] = [
    (
        "bittensor/chain/opentensor-bittensor_integration_v15.scale",
        15,
    ),
    ("bittensor/chain/cortexlm-bittensor-rs_finney.scale", 16),
    (
        "bittensor/chain/opentensor-subtensor_contract-tests_devnet_2026-06.scale",
        16,
    ),
];

fn load(rel: &str) -> Metadata {
    Metadata::decode(&attesta_test_support::read_fixture(rel)).unwrap()
}

#[test]
fn all_three_blobs_decode_with_their_versions() {
    for (rel, v) in BLOBS {
        let m = load(rel);
        assert_eq!(m.version(), v, "{rel}");
        assert_eq!(m.pallet("SubtensorModule").unwrap().index, 7, "{rel}");
        assert_eq!(m.pallet("System").unwrap().index, 0, "{rel}");
    }
}

#[test]
fn calls_have_the_indices_and_arguments_of_the_summary() {
    // finney_spec393_metadata_summary.txt: set_weights = 0, serve_axon = 4,
    // commit_timelocked_weights = 113.
    let m = load(BLOBS[1].0);
    let c = m.call("SubtensorModule", "set_weights").unwrap();
    assert_eq!((c.pallet_index, c.call_index), (7, 0));
    let names: Vec<_> = c.args.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["netuid", "dests", "weights", "version_key"]);
    let c = m.call("SubtensorModule", "serve_axon").unwrap();
    assert_eq!(c.call_index, 4);
    let names: Vec<_> = c.args.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "netuid",
            "version",
            "ip",
            "port",
            "ip_type",
            "protocol",
            "placeholder1",
            "placeholder2"
        ]
    );
    assert_eq!(m.type_name(c.args[2].ty), "u128");
    let c = m
        .call("SubtensorModule", "commit_timelocked_weights")
        .unwrap();
    assert_eq!(c.call_index, 113);
    assert_eq!(c.args.len(), 4);
    // The V15 blob (spec 343) has set_weights and serve_axon at the same indices.
    let old = load(BLOBS[0].0);
    assert_eq!(
        old.call("SubtensorModule", "serve_axon")
            .unwrap()
            .call_index,
        4
    );
    assert!(m.call("SubtensorModule", "no_such_call").is_err());
    assert!(m.call("NoSuchPallet", "set_weights").is_err());
}

#[test]
fn storage_entries_have_the_hashers_of_the_summary() {
    for (rel, _) in BLOBS {
        let m = load(rel);
        let axons = m.storage_entry("SubtensorModule", "Axons").unwrap();
        match &axons.kind {
            StorageKind::Map {
                hashers, key_tys, ..
            } => {
                assert_eq!(
                    hashers,
                    &[Hasher::Identity, Hasher::Blake2_128Concat],
                    "{rel}"
                );
                assert_eq!(key_tys.len(), 2);
            }
            other => panic!("{rel}: Axons is {other:?}"),
        }
        assert_eq!(m.type_name(axons.value_ty()), "AxonInfo");
        let lu = m.storage_entry("SubtensorModule", "LastUpdate").unwrap();
        assert_eq!(lu.hashers(), &[Hasher::Identity]);
    }
}

#[test]
fn storage_keys_are_prefix_entry_and_hashed_keys() {
    let m = load(BLOBS[1].0);
    let hotkey = [7u8; 32];
    let key = m
        .storage_key("SubtensorModule", "Axons", &[&1u16.encode(), &hotkey])
        .unwrap();
    let mut want = twox_128(b"SubtensorModule").to_vec();
    want.extend(twox_128(b"Axons"));
    want.extend(1u16.to_le_bytes());
    want.extend(Hasher::Blake2_128.hash(&hotkey));
    want.extend(hotkey);
    assert_eq!(key, want);
    // The well-known System.Account prefix (every substrate explorer shows it).
    let sys = m.storage_key("System", "Account", &[]).unwrap();
    assert_eq!(
        hex::encode(sys),
        "26aa394eea5630e07c48ae0c9558cef7b99d880ec681799c0cf30e8886371da9"
    );
    // Too many keys is refused.
    assert!(
        m.storage_key("SubtensorModule", "Tempo", &[&[1, 0], &[2, 0]])
            .is_err()
    );
}

#[test]
fn defaults_and_constants_decode_through_the_registry() {
    for (rel, _) in BLOBS {
        let m = load(rel);
        // ValueQuery entries decode their default when absent.
        let v = m
            .decode_storage("SubtensorModule", "Tempo", None)
            .unwrap()
            .unwrap();
        let tempo = Metadata::value_u64(&v, "Tempo").unwrap();
        assert!(tempo > 0, "{rel}: default tempo {tempo}");
        let rl = m
            .decode_storage("SubtensorModule", "WeightsSetRateLimit", None)
            .unwrap()
            .unwrap();
        assert_eq!(Metadata::value_u64(&rl, "rl").unwrap(), 100, "{rel}");
        let cr = m
            .decode_storage("SubtensorModule", "CommitRevealWeightsEnabled", None)
            .unwrap()
            .unwrap();
        Metadata::value_bool(&cr, "cr").unwrap();
        // A stored value.
        let v = m
            .decode_storage("SubtensorModule", "Tempo", Some(&360u16.encode()))
            .unwrap()
            .unwrap();
        assert_eq!(Metadata::value_u64(&v, "Tempo").unwrap(), 360);
        // Trailing bytes are an error, not ignored.
        assert!(
            m.decode_storage("SubtensorModule", "Tempo", Some(&[1, 0, 0]))
                .is_err()
        );
        let c = m.constant_value("SubtensorModule", "InitialTempo").unwrap();
        let initial = Metadata::value_u64(&c, "InitialTempo").unwrap();
        if rel == BLOBS[1].0 {
            // The summary: InitialTempo = [104, 1].
            assert_eq!(initial, 360);
        } else {
            assert!(initial > 0, "{rel}: {initial}");
        }
        let ss58 = m.constant_value("System", "SS58Prefix").unwrap();
        assert_eq!(Metadata::value_u64(&ss58, "SS58Prefix").unwrap(), 42);
    }
}

#[test]
fn transaction_extensions_and_runtime_apis() {
    let m = load(BLOBS[1].0);
    let ext = m.transaction_extensions(0);
    let ids: Vec<_> = ext.iter().map(|e| e.identifier.as_str()).collect();
    assert_eq!(ids.first(), Some(&"CheckNonZeroSender"));
    assert!(ids.contains(&"CheckMortality"));
    assert_eq!(ids.last(), Some(&"CheckMetadataHash"));
    let genesis = ext.iter().find(|e| e.identifier == "CheckGenesis").unwrap();
    assert_eq!(m.type_name(genesis.implicit_ty), "H256");
    let spec = ext
        .iter()
        .find(|e| e.identifier == "CheckSpecVersion")
        .unwrap();
    assert_eq!(m.type_name(spec.implicit_ty), "u32");
    assert!(m.extrinsic().versions.contains(&4));
    assert_eq!(
        m.has_runtime_api("NeuronInfoRuntimeApi", "get_neurons_lite"),
        Some(true)
    );
    assert_eq!(
        m.has_runtime_api("NeuronInfoRuntimeApi", "nope"),
        Some(false)
    );
    let v15 = load(BLOBS[0].0);
    assert!(!v15.transaction_extensions(0).is_empty());
    assert_eq!(
        v15.has_runtime_api("NeuronInfoRuntimeApi", "get_neurons_lite"),
        Some(true)
    );
}

#[test]
fn hostile_metadata_is_an_error_not_a_panic() {
    let good = attesta_test_support::read_fixture(BLOBS[0].0);
    assert!(Metadata::decode(b"nope").is_err());
    assert!(Metadata::decode(&good[..good.len() / 2]).is_err());
    // A version byte we do not read.
    let mut v13 = good[..5].to_vec();
    v13[4] = 13;
    assert!(Metadata::decode(&v13).is_err());
    // Flipped bytes anywhere decode or fail, never panic.
    for i in (4..good.len()).step_by(good.len() / 64) {
        let mut b = good.clone();
        b[i] ^= 0xff;
        let _ = Metadata::decode(&b);
    }
}
