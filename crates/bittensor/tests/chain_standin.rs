//! The JSON-RPC stand-in and the chain client against each other: the devnet's built-in
//! metadata and the real fixture blobs, neurons, storage, extrinsic submission.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use attesta_bittensor::chain::metadata::{Hasher, Metadata};
use attesta_bittensor::chain::standin::{
    ExtrinsicVerdict, NeuronSpec, STANDIN_NAME, Standin, StandinConfig, runtime,
};
use attesta_bittensor::chain::{ChainClient, ChainError, RpcConfig};
use attesta_bittensor::{AccountId, Hotkey};
use parity_scale_codec::Encode;
use serde_json::json;

fn key(uri: &str) -> AccountId {
    Hotkey::from_dev_uri(uri).unwrap().account()
}

#[test]
fn the_devnet_metadata_is_genuine_v15_with_the_subset_a_client_needs() {
    let m = Metadata::decode(&runtime::devnet_metadata()).unwrap();
    assert_eq!(m.version(), 15);
    for (call, index) in [
        ("set_weights", 0),
        ("serve_axon", 4),
        ("commit_timelocked_weights", 113),
    ] {
        let c = m.call("SubtensorModule", call).unwrap();
        assert_eq!((c.pallet_index, c.call_index), (7, index), "{call}");
    }
    let axons = m.storage_entry("SubtensorModule", "Axons").unwrap();
    assert_eq!(
        axons.hashers(),
        &[Hasher::Identity, Hasher::Blake2_128Concat]
    );
    assert_eq!(m.type_name(axons.value_ty()), "AxonInfo");
    let ids: Vec<_> = m
        .transaction_extensions(0)
        .iter()
        .map(|e| e.identifier.clone())
        .collect();
    assert_eq!(ids, runtime::EXTENSIONS);
    let mortality = m
        .transaction_extensions(0)
        .into_iter()
        .find(|e| e.identifier == "CheckMortality")
        .unwrap()
        .clone();
    assert_eq!(m.type_name(mortality.ty), "CheckMortality");
    assert_eq!(
        m.has_runtime_api("NeuronInfoRuntimeApi", "get_neurons_lite"),
        Some(true)
    );
    let rl = m
        .decode_storage("SubtensorModule", "WeightsSetRateLimit", None)
        .unwrap()
        .unwrap();
    assert_eq!(Metadata::value_u64(&rl, "rl").unwrap(), 100);
    // The same keys as on Finney (a real blob) for the same arguments.
    let finney = Metadata::decode(&attesta_test_support::read_fixture(
        "bittensor/chain/cortexlm-bittensor-rs_finney.scale",
    ))
    .unwrap();
    let hk = key("//Alice");
    for (entry, keys) in [
        ("Axons", vec![1u16.encode(), hk.0.to_vec()]),
        ("Uids", vec![1u16.encode(), hk.0.to_vec()]),
        ("LastUpdate", vec![1u16.encode()]),
        (
            "TimelockedWeightCommits",
            vec![1u16.encode(), 9u64.encode()],
        ),
    ] {
        let k: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        assert_eq!(
            m.storage_key("SubtensorModule", entry, &k).unwrap(),
            finney.storage_key("SubtensorModule", entry, &k).unwrap(),
            "{entry}"
        );
    }
}

async fn devnet_with_neurons() -> Standin {
    let s = Standin::start(StandinConfig::devnet()).await.unwrap();
    s.register(
        1,
        NeuronSpec {
            hotkey: key("//Alice"),
            coldkey: key("//Alice//stash"),
            axon: None,
            validator_permit: true,
            stake: 1_000,
        },
    );
    s.register(
        1,
        NeuronSpec {
            hotkey: key("//Bob"),
            coldkey: key("//Bob//stash"),
            axon: Some("127.0.0.1:8091".parse().unwrap()),
            validator_permit: false,
            stake: 7,
        },
    );
    s
}

#[tokio::test]
async fn client_reads_neurons_and_storage_from_the_standin() {
    let s = devnet_with_neurons().await;
    let c = ChainClient::connect(&s.url(), RpcConfig::default())
        .await
        .unwrap();
    assert_eq!(c.metadata().version(), 15);
    assert_eq!(c.runtime_version().spec_name, "attesta-standin");
    let name: String = c.rpc().request("system_name", json!([])).await.unwrap();
    assert_eq!(name, STANDIN_NAME);
    assert_eq!(c.head_block_number().await.unwrap(), 1);
    s.advance_blocks(4);
    assert_eq!(c.head_block_number().await.unwrap(), 5);
    let h3 = c.block_hash(Some(3)).await.unwrap();
    assert_eq!(c.block_number(h3).await.unwrap(), 3);

    let n = c.neurons(1).await.unwrap();
    assert_eq!(n.len(), 2);
    assert_eq!((n[0].uid, n[0].hotkey), (0, key("//Alice")));
    assert_eq!(n[0].axon, None);
    assert!(n[0].validator_permit);
    assert_eq!(n[1].hotkey, key("//Bob"));
    assert_eq!(n[1].axon, Some("127.0.0.1:8091".parse().unwrap()));
    assert_eq!(n[1].stake, 7);
    assert!(c.neurons(2).await.unwrap().is_empty());

    // Storage written by register(), read back through the metadata.
    let bob = key("//Bob");
    let uid = c
        .storage_u64("SubtensorModule", "Uids", &[&1u16.encode(), &bob.0])
        .await
        .unwrap();
    assert_eq!(uid, 1);
    let axon = c
        .storage_value("SubtensorModule", "Axons", &[&1u16.encode(), &bob.0], None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        axon.field("port").and_then(|v| v.as_u128()),
        Some(8091),
        "{axon:?}"
    );
    let n_ = c
        .storage_u64("SubtensorModule", "SubnetworkN", &[&1u16.encode()])
        .await
        .unwrap();
    assert_eq!(n_, 2);
    // Absent entries decode their defaults.
    assert_eq!(
        c.storage_u64("SubtensorModule", "WeightsSetRateLimit", &[&1u16.encode()])
            .await
            .unwrap(),
        100
    );
    assert!(
        c.storage_bool(
            "SubtensorModule",
            "CommitRevealWeightsEnabled",
            &[&1u16.encode()]
        )
        .await
        .unwrap()
    );
    assert_eq!(c.account_next_index(&bob).await.unwrap(), 0);
    // Clearing an axon.
    assert!(s.set_axon(1, &bob, None));
    assert_eq!(c.neurons(1).await.unwrap()[1].axon, None);
}

#[tokio::test]
async fn extrinsics_are_recorded_and_the_handler_decides() {
    let s = devnet_with_neurons().await;
    let c = ChainClient::connect(&s.url(), RpcConfig::default())
        .await
        .unwrap();
    let xt = vec![0x10, 0x84, 1, 2, 3];
    let hex_xt = format!("0x{}", hex::encode(&xt));
    let mut sub = c
        .rpc()
        .subscribe(
            "author_submitAndWatchExtrinsic",
            json!([hex_xt]),
            "author_unwatchExtrinsic",
        )
        .await
        .unwrap();
    assert_eq!(sub.next().await.unwrap().unwrap(), json!("ready"));
    let in_block = sub.next().await.unwrap().unwrap();
    let hash = in_block["inBlock"].as_str().unwrap().to_owned();
    assert_eq!(
        sub.next().await.unwrap().unwrap(),
        json!({"finalized": hash})
    );
    let recorded = s.extrinsics();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].bytes, xt);
    assert_eq!(recorded[0].block, Some(2));
    assert_eq!(c.head_block_number().await.unwrap(), 2);

    s.set_extrinsic_handler(std::sync::Arc::new(|st, bytes| {
        if bytes.first() == Some(&0xff) {
            ExtrinsicVerdict::Invalid("stale nonce".into())
        } else {
            st.nonces.insert(AccountId([1; 32]), 9);
            ExtrinsicVerdict::Include
        }
    }));
    match c
        .rpc()
        .request::<String>("author_submitExtrinsic", json!(["0xff00"]))
        .await
    {
        Err(ChainError::Rpc { code, data, .. }) => {
            assert_eq!(code, 1010);
            assert_eq!(data.as_deref(), Some("\"stale nonce\""));
        }
        other => panic!("{other:?}"),
    }
    let h: String = c
        .rpc()
        .request("author_submitExtrinsic", json!(["0x0100"]))
        .await
        .unwrap();
    assert_eq!(h.len(), 66);
    assert_eq!(c.account_next_index(&AccountId([1; 32])).await.unwrap(), 9);
    assert_eq!(s.extrinsics().len(), 3);
    assert_eq!(s.extrinsics()[1].block, None);
}

#[tokio::test]
async fn the_standin_serves_a_real_blob_through_metadata_at_version() {
    for (rel, v) in [
        (
            "bittensor/chain/opentensor-bittensor_integration_v15.scale",
            15,
        ),
        ("bittensor/chain/cortexlm-bittensor-rs_finney.scale", 16),
        (
            "bittensor/chain/opentensor-subtensor_contract-tests_devnet_2026-06.scale",
            16,
        ),
    ] {
        let blob = attesta_test_support::read_fixture(rel);
        let s = Standin::start(StandinConfig::with_metadata(blob, 393, 1))
            .await
            .unwrap();
        s.register(
            3,
            NeuronSpec {
                hotkey: key("//Bob"),
                coldkey: key("//Bob"),
                axon: Some("10.0.0.2:9000".parse().unwrap()),
                validator_permit: true,
                stake: 1,
            },
        );
        let c = ChainClient::connect(&s.url(), RpcConfig::default())
            .await
            .unwrap();
        assert_eq!(c.metadata().version(), v, "{rel}");
        assert_eq!(c.runtime_version().spec_version, 393);
        let uid = c
            .storage_u64(
                "SubtensorModule",
                "Uids",
                &[&3u16.encode(), &key("//Bob").0],
            )
            .await
            .unwrap();
        assert_eq!(uid, 0);
        assert_eq!(
            c.neurons(3).await.unwrap()[0].axon,
            Some("10.0.0.2:9000".parse().unwrap())
        );
    }
    // A blob that is not metadata is refused at start.
    assert!(
        Standin::start(StandinConfig::with_metadata(b"nope".to_vec(), 1, 1))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn events_pushed_by_a_handler_decode_through_the_metadata_and_reset_per_block() {
    use attesta_bittensor::chain::standin::runtime::{
        DispatchEventInfo, EventRecord, Phase, RuntimeEvent, SystemEvent,
    };
    let s = Standin::start(StandinConfig::devnet()).await.unwrap();
    let c = ChainClient::connect(&s.url(), RpcConfig::default())
        .await
        .unwrap();
    let ok = EventRecord {
        phase: Phase::ApplyExtrinsic(0),
        event: RuntimeEvent::System(SystemEvent::ExtrinsicSuccess {
            dispatch_info: DispatchEventInfo::default(),
        }),
        topics: vec![],
    };
    s.with_state(|st| {
        assert!(st.push_event(&ok.encode()));
        assert!(st.push_event(&ok.encode()));
    });
    let events = c
        .storage_value("System", "Events", &[], None)
        .await
        .unwrap()
        .unwrap();
    let attesta_bittensor::chain::value::Value::Sequence(list) = &events else {
        panic!("{events:?}")
    };
    assert_eq!(list.len(), 2);
    let ev = list[0].field("event").unwrap();
    let attesta_bittensor::chain::value::Value::Variant { name, fields, .. } = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(name, "System");
    let attesta_bittensor::chain::value::Value::Variant { name, .. } = &fields[0].1 else {
        panic!("{fields:?}")
    };
    assert_eq!(name, "ExtrinsicSuccess");
    s.advance_blocks(1);
    let events = c
        .storage_value("System", "Events", &[], None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        events,
        attesta_bittensor::chain::value::Value::Sequence(vec![])
    );

    // A handler's events are those of the block that includes the extrinsic.
    let encoded = ok.encode();
    s.set_extrinsic_handler(std::sync::Arc::new(move |st, xt| {
        if xt == [0xff] {
            return ExtrinsicVerdict::Invalid("no".into());
        }
        st.push_event(&encoded);
        ExtrinsicVerdict::Include
    }));
    let _: String = c
        .rpc()
        .request("author_submitExtrinsic", json!(["0x01"]))
        .await
        .unwrap();
    let count = |v: attesta_bittensor::chain::value::Value| match v {
        attesta_bittensor::chain::value::Value::Sequence(l) => l.len(),
        other => panic!("{other:?}"),
    };
    let events = c
        .storage_value("System", "Events", &[], None)
        .await
        .unwrap();
    assert_eq!(count(events.unwrap()), 1);
    // A refused one leaves the head block's events alone.
    assert!(
        c.rpc()
            .request::<String>("author_submitExtrinsic", json!(["0xff"]))
            .await
            .is_err()
    );
    let events = c
        .storage_value("System", "Events", &[], None)
        .await
        .unwrap();
    assert_eq!(count(events.unwrap()), 1);
}
