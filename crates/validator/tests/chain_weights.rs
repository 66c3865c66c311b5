//! The chain weight sink against the JSON-RPC stand-in (with its write handler): epoch
//! weights mapped to uids by hotkey, committed with commit-reveal on (decryptable with the
//! test beacon's round signature), set in the clear with it off, skipped within the rate
//! limit, every attempt recorded beside the weights file and counted in the metrics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use attesta_bittensor::chain::RpcConfig;
use attesta_bittensor::chain::standin::{NeuronSpec, Standin, StandinConfig, writes};
use attesta_bittensor::chain::tlock::{self, TestBeacon};
use attesta_bittensor::chain::weights::WeightsConfig;
use attesta_bittensor::{AccountId, Hotkey};
use attesta_validator::chain_sink::{ChainWeightSink, RecordLine, SeedSource, record_path};
use attesta_validator::round::Clock;
use attesta_validator::state::EpochWeights;
use attesta_validator::status::Status;
use attesta_validator::weights::{SinkError, WeightSink};

const NETUID: u16 = 1;

struct Fixed(SystemTime);
impl Clock for Fixed {
    fn now(&self) -> SystemTime {
        self.0
    }
}

fn key(uri: &str) -> AccountId {
    Hotkey::from_dev_uri(uri).unwrap().account()
}

fn register(s: &Standin, uri: &str, permit: bool) -> u16 {
    s.register(
        NETUID,
        NeuronSpec {
            hotkey: key(uri),
            coldkey: key(uri),
            axon: None,
            validator_permit: permit,
            stake: 1,
        },
    )
}

/// Weights of three nodes by hotkey id: two registered miners and one unknown hotkey.
fn epoch(n: u64) -> EpochWeights {
    let (a, b, c) = (
        key("//miner-a").to_ss58(),
        key("//miner-b").to_ss58(),
        key("//stranger").to_ss58(),
    );
    EpochWeights {
        epoch: n,
        round: n * 10,
        weights: BTreeMap::from([(a.clone(), 0.25), (b.clone(), 0.5), (c.clone(), 0.25)]),
        weights_u16: BTreeMap::new(),
        hotkeys: BTreeMap::from([(a.clone(), a), (b.clone(), b), (c.clone(), c)]),
    }
}

fn lines(path: &std::path::Path) -> Vec<RecordLine> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn epoch_weights_are_committed_set_skipped_and_recorded() {
    let s = Standin::start(StandinConfig::devnet()).await.unwrap();
    s.set_extrinsic_handler(writes::handler());
    let me = register(&s, "//validator", true);
    let ua = register(&s, "//miner-a", false);
    let ub = register(&s, "//miner-b", false);
    let dir = tempfile::tempdir().unwrap();
    let record = record_path(&dir.path().join("weights.json"));
    assert_eq!(record.file_name().unwrap(), "weights.chain.jsonl");
    let beacon = TestBeacon::from_seed([4; 32]);
    let mut cfg = WeightsConfig::new(NETUID);
    cfg.drand = beacon.key();
    let status = Arc::new(Status::new());
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(tlock::QUICKNET_GENESIS_SECS + 600);
    let seed: SeedSource = Arc::new(|| Ok([8; 32]));
    let sink = ChainWeightSink::new(
        s.url(),
        RpcConfig::default(),
        Hotkey::from_dev_uri("//validator").unwrap(),
        cfg,
        &record,
        Arc::new(Fixed(now)),
        seed,
        Arc::clone(&status),
    );

    // Commit-reveal on (the devnet default): committed; the unknown hotkey is left out and
    // the largest registered weight is 65535.
    sink.emit(&epoch(1)).await.unwrap();
    let commits = s.with_state(|st| writes::commits(st, NETUID));
    assert_eq!(commits.len(), 1);
    let (who, _, ciphertext, round) = &commits[0];
    assert_eq!(*who, key("//validator"));
    let p = tlock::decrypt_weights(ciphertext, &beacon.sign_round(*round)).unwrap();
    assert_eq!(p.uids, vec![ua, ub]);
    assert_eq!(p.values, vec![32768, 65535]);
    let l = lines(&record);
    assert_eq!(l.len(), 1);
    let r = l[0].record.as_ref().unwrap();
    assert_eq!((l[0].epoch, r.uid), (1, me));
    let j = serde_json::to_value(&l[0]).unwrap();
    assert_eq!(j["record"]["action"], "committed");
    assert_eq!(j["record"]["reveal_round"], *round);
    assert!(
        j["record"]["inclusion"]["extrinsic_hash"]
            .as_str()
            .unwrap()
            .starts_with("0x")
    );

    // The next epoch within the rate limit: skipped (no extrinsic), recorded and counted.
    let sent = s.extrinsics().len();
    sink.emit(&epoch(2)).await.unwrap();
    assert_eq!(s.extrinsics().len(), sent);
    let j = serde_json::to_value(&lines(&record)[1]).unwrap();
    assert_eq!(j["record"]["action"], "skipped");
    assert_eq!(j["record"]["reason"]["why"], "rate_limited");

    // Commit-reveal off on the subnet, rate limit passed: set in the clear.
    s.with_state(|st| {
        st.put(
            "SubtensorModule",
            "CommitRevealWeightsEnabled",
            // SCALE: u16 little-endian key, `false` as one zero byte.
            &[&NETUID.to_le_bytes()],
            vec![0],
        )
    });
    s.advance_blocks(200);
    sink.emit(&epoch(3)).await.unwrap();
    let j = serde_json::to_value(&lines(&record)[2]).unwrap();
    assert_eq!(j["record"]["action"], "set");
    assert_eq!(j["record"]["values"], serde_json::json!([32768, 65535]));

    let metrics = status.render_metrics();
    for outcome in ["committed", "rate_limited", "set"] {
        assert!(
            metrics.contains(&format!(
                "attesta_validator_chain_weights_total{{outcome=\"{outcome}\"}} 1"
            )),
            "{outcome}: {metrics}"
        );
    }
}

#[tokio::test]
async fn an_unregistered_validator_is_an_error_recorded_and_no_extrinsic() {
    let s = Standin::start(StandinConfig::devnet()).await.unwrap();
    s.set_extrinsic_handler(writes::handler());
    register(&s, "//miner-a", false);
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("w.chain.jsonl");
    let sink = ChainWeightSink::new(
        s.url(),
        RpcConfig::default(),
        Hotkey::from_dev_uri("//validator").unwrap(),
        WeightsConfig::new(NETUID),
        &record,
        Arc::new(Fixed(SystemTime::now())),
        Arc::new(|| Ok([0; 32])),
        Arc::new(Status::new()),
    );
    let err = sink.emit(&epoch(1)).await.unwrap_err();
    assert!(matches!(err, SinkError::Chain(_)), "{err}");
    assert!(err.to_string().contains("not registered"), "{err}");
    assert!(s.extrinsics().is_empty());
    let l = lines(&record);
    assert!(l[0].error.as_deref().unwrap().contains("not registered"));
}
