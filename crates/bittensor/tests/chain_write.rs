//! The write side end to end against the JSON-RPC stand-in (with its write handler: it
//! decodes our extrinsics, checks the sr25519 signature, era and nonce, and applies the calls
//! with the chain's rules), and calls/extensions built from the real metadata blobs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use attesta_bittensor::chain::calls::{self, ArgValue, CallError, ServeAxon};
use attesta_bittensor::chain::extrinsic::{self, Era, TxParams};
use attesta_bittensor::chain::metadata::Metadata;
use attesta_bittensor::chain::reveal;
use attesta_bittensor::chain::standin::{
    ExtrinsicVerdict, NeuronSpec, Standin, StandinConfig, writes,
};
use attesta_bittensor::chain::submit::{self, SubmitError, SubmitOptions};
use attesta_bittensor::chain::tlock::{self, DrandKey, TestBeacon};
use attesta_bittensor::chain::weights::{
    self, CommitReveal, SkipReason, WeightsAction, WeightsConfig, WeightsError,
};
use attesta_bittensor::chain::{ChainClient, ChainError, RpcConfig};
use attesta_bittensor::{AccountId, Hotkey};
use parity_scale_codec::Encode;
use serde_json::Value;

const NETUID: u16 = 1;

fn blobs() -> Vec<(&'static str, Metadata)> {
    [
        "cortexlm-bittensor-rs_finney.scale",
        "opentensor-bittensor_integration_v15.scale",
        "opentensor-subtensor_contract-tests_devnet_2026-06.scale",
    ]
    .into_iter()
    .map(|f| {
        let bytes = attesta_test_support::read_fixture(&format!("bittensor/chain/{f}"));
        (f, Metadata::decode(&bytes).unwrap())
    })
    .collect()
}

#[test]
fn calls_and_extensions_from_the_real_metadata() {
    let key = Hotkey::from_dev_uri("//Alice").unwrap();
    for (name, md) in blobs() {
        let exts = calls::extensions(&md);
        assert!(
            exts.iter().any(|e| e.identifier == "CheckMortality"),
            "{name}"
        );
        extrinsic::check_version(&md.extrinsic().versions).unwrap();
        let sw = calls::set_weights(&md, 3, &[0, 1], &[65535, 1], 7).unwrap();
        let c = md.call("SubtensorModule", "set_weights").unwrap();
        assert_eq!(sw[..2], [c.pallet_index, c.call_index], "{name}");
        let mut args = Vec::new();
        (3u16, vec![0u16, 1], vec![65535u16, 1], 7u64).encode_to(&mut args);
        assert_eq!(sw[2..], args[..], "{name}");
        let axon = ServeAxon::new(3, 1, "203.0.113.7:8091".parse().unwrap());
        let sa = calls::serve_axon(&md, &axon).unwrap();
        assert_eq!(sa.len(), 2 + 2 + 4 + 16 + 2 + 4, "{name}");
        // Every extension of the real runtimes is either known or carries nothing: a signed
        // extrinsic can be built for each.
        let p = TxParams {
            nonce: 0,
            tip: 0,
            era: Era::mortal(64, 10),
            era_block_hash: [1; 32],
            genesis_hash: [2; 32],
            spec_version: 1,
            transaction_version: 1,
        };
        let x = extrinsic::build_signed(&sw, &exts, &p, &key).unwrap();
        let d = extrinsic::decode_signed(&x.bytes, &exts).unwrap();
        assert_eq!(d.call, sw);
        d.verify(&exts, &p).unwrap();
        if md
            .call("SubtensorModule", "commit_timelocked_weights")
            .is_ok()
        {
            let c = calls::commit_timelocked_weights(&md, 3, &[9; 300], 1000, 4).unwrap();
            assert_eq!(c.len(), 2 + 2 + 2 + 300 + 8 + 2, "{name}");
        }
        // Arguments are checked against the metadata's types and names.
        assert!(matches!(
            calls::encode_call(
                &md,
                "SubtensorModule",
                "set_weights",
                &[
                    ("netuid", ArgValue::U64(3)),
                    ("dests", ArgValue::U16s(vec![])),
                    ("weights", ArgValue::U16s(vec![])),
                    ("version_key", ArgValue::U64(0)),
                ],
            ),
            Err(CallError::ArgumentType { arg, .. }) if arg == "netuid"
        ));
        assert!(matches!(
            calls::encode_call(&md, "SubtensorModule", "set_weights", &[]),
            Err(CallError::Arguments { .. })
        ));
    }
    // V16 lists the spec-393 runtime's own extensions; the unknown ones carry nothing.
    let (_, finney) = &blobs()[0];
    let names: Vec<String> = calls::extensions(finney)
        .into_iter()
        .map(|e| e.identifier)
        .collect();
    for n in [
        "SudoTransactionExtension",
        "DrandPriority",
        "CheckMetadataHash",
    ] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
}

async fn standin() -> (Standin, Hotkey, Hotkey) {
    let s = Standin::start(StandinConfig::devnet()).await.unwrap();
    s.set_extrinsic_handler(writes::handler());
    let alice = Hotkey::from_dev_uri("//Alice").unwrap();
    let bob = Hotkey::from_dev_uri("//Bob").unwrap();
    for (k, permit) in [(&alice, true), (&bob, false)] {
        s.register(
            NETUID,
            NeuronSpec {
                hotkey: k.account(),
                coldkey: k.account(),
                axon: None,
                validator_permit: permit,
                stake: 1_000,
            },
        );
    }
    (s, alice, bob)
}

async fn client(s: &Standin) -> ChainClient {
    ChainClient::connect(&s.url(), RpcConfig::default())
        .await
        .unwrap()
}

fn dispatch(e: SubmitError) -> (String, String) {
    match e {
        SubmitError::Dispatch { pallet, error } => (pallet, error),
        other => panic!("not a dispatch error: {other:?}"),
    }
}

#[tokio::test]
async fn serve_axon_updates_the_metagraph_and_respects_the_serving_rate_limit() {
    let (s, _, bob) = standin().await;
    let c = client(&s).await;
    let addr = "203.0.113.7:8091".parse().unwrap();
    let call = calls::serve_axon(c.metadata(), &ServeAxon::new(NETUID, 1, addr)).unwrap();
    let inc = submit::sign_and_submit(&c, &bob, &call, SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(inc.block_number, s.head());
    assert_eq!(inc.index, 0);
    let neurons = c.neurons(NETUID).await.unwrap();
    let n = neurons.iter().find(|n| n.hotkey == bob.account()).unwrap();
    assert_eq!(n.axon, Some(addr));
    assert_eq!(n.axon_info.block, inc.block_number);
    // Again at once: the serving rate limit (50 blocks by default) refuses it, by name.
    let err = submit::sign_and_submit(&c, &bob, &call, SubmitOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        dispatch(err),
        ("SubtensorModule".into(), "ServingRateLimitExceeded".into())
    );
    // An unregistered hotkey.
    let eve = Hotkey::from_dev_uri("//Eve").unwrap();
    let err = submit::sign_and_submit(&c, &eve, &call, SubmitOptions::default())
        .await
        .unwrap_err();
    assert_eq!(dispatch(err).1, "HotKeyNotRegisteredInSubNet");
    // Nonces advance with each included extrinsic, failed ones too (as on chain).
    assert_eq!(c.account_next_index(&bob.account()).await.unwrap(), 2);
}

#[tokio::test]
async fn the_standin_refuses_bad_signatures_stale_nonces_and_expired_eras() {
    let (s, _, bob) = standin().await;
    let c = client(&s).await;
    let md = c.metadata().clone();
    let exts = calls::extensions(&md);
    let call = calls::serve_axon(
        &md,
        &ServeAxon::new(NETUID, 1, "127.0.0.1:1".parse().unwrap()),
    )
    .unwrap();
    let head = s.head();
    let good = TxParams {
        nonce: 0,
        tip: 0,
        era: Era::mortal(64, head),
        era_block_hash: c.block_hash(Some(head)).await.unwrap(),
        genesis_hash: c.genesis_hash(),
        spec_version: c.runtime_version().spec_version,
        transaction_version: c.runtime_version().transaction_version,
    };
    // The node's refusal: JSON-RPC 1010 with the reason in `data`.
    let submit_raw = |p: TxParams| {
        let x = extrinsic::build_signed(&call, &exts, &p, &bob).unwrap();
        let c = c.clone();
        async move {
            c.rpc()
                .request::<Value>("author_submitExtrinsic", serde_json::json!([x.to_hex()]))
                .await
                .map_err(|e| match e {
                    ChainError::Rpc {
                        code: 1010, data, ..
                    } => data.unwrap_or_default(),
                    other => panic!("{other}"),
                })
        }
    };
    // Signed for another genesis: refused (1010), nothing applied.
    let mut p = good.clone();
    p.genesis_hash = [7; 32];
    let err = submit_raw(p).await.unwrap_err();
    assert!(err.contains("signature"), "{err}");
    // A nonce from the future.
    let mut p = good.clone();
    p.nonce = 5;
    assert!(
        submit_raw(p)
            .await
            .unwrap_err()
            .to_string()
            .contains("Future")
    );
    // The good one, then the same nonce again.
    submit_raw(good.clone()).await.unwrap();
    let err = submit_raw(good.clone()).await.unwrap_err();
    assert!(err.contains("Stale"), "{err}");
    // An era that has expired: its birth is now another block, so the signature does not
    // cover that block's hash (Substrate's BadProof).
    s.advance_blocks(100);
    let mut p = good;
    p.nonce = 1;
    let err = submit_raw(p).await.unwrap_err();
    assert!(err.contains("signature"), "{err}");
    // Only one was applied.
    assert_eq!(c.account_next_index(&bob.account()).await.unwrap(), 1);
}

#[tokio::test]
async fn a_refusal_at_submission_is_a_typed_invalid() {
    let (s, _, bob) = standin().await;
    let c = client(&s).await;
    let call = calls::serve_axon(
        c.metadata(),
        &ServeAxon::new(NETUID, 1, "127.0.0.1:1".parse().unwrap()),
    )
    .unwrap();
    let refuse: attesta_bittensor::chain::standin::ExtrinsicHandler =
        std::sync::Arc::new(|_, _| {
            ExtrinsicVerdict::Invalid("Transaction is outdated (Stale)".into())
        });
    s.set_extrinsic_handler(refuse);
    let err = submit::sign_and_submit(&c, &bob, &call, SubmitOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SubmitError::Invalid { reason } if reason.contains("Stale")),
        "{err}"
    );
}

fn genesis_plus(secs: u64) -> Duration {
    Duration::from_secs(tlock::QUICKNET_GENESIS_SECS + secs)
}

#[tokio::test]
async fn weights_are_committed_when_commit_reveal_is_on_and_skipped_within_the_rate_limit() {
    let (s, alice, _) = standin().await;
    let c = client(&s).await;
    let beacon = TestBeacon::from_seed([3; 32]);
    let mut cfg = WeightsConfig::new(NETUID);
    cfg.drand = beacon.key();
    let now = genesis_plus(9_000);
    let rec = weights::emit(&c, &alice, 0, &cfg, &[0, 1], &[65535, 21845], now, [5; 32])
        .await
        .unwrap();
    let WeightsAction::Committed {
        reveal_round,
        commit_reveal_version,
        ref inclusion,
    } = rec.action
    else {
        panic!("{rec:?}")
    };
    assert_eq!(commit_reveal_version, 4);
    // The devnet runtime has no epoch-schedule items: the older rule, tempo 360, period 1.
    assert_eq!(
        reveal_round,
        reveal::legacy_reveal_round(rec.block, NETUID, 360, 1, now, cfg.block_time)
    );
    let commits = s.with_state(|st| writes::commits(st, NETUID));
    assert_eq!(commits.len(), 1);
    let (who, block, ciphertext, round) = &commits[0];
    assert_eq!(
        (*who, *block, *round),
        (alice.account(), inclusion.block_number, reveal_round)
    );
    // The beacon's signature for that round opens it to exactly what we meant.
    let payload = tlock::decrypt_weights(ciphertext, &beacon.sign_round(reveal_round)).unwrap();
    assert_eq!(payload.hotkey, alice.account().0.to_vec());
    assert_eq!(payload.uids, vec![0, 1]);
    assert_eq!(payload.values, vec![65535, 21845]);
    assert!(tlock::decrypt_weights(ciphertext, &beacon.sign_round(reveal_round - 1)).is_err());
    // Within the rate limit (100 blocks): skipped, and no extrinsic is sent.
    let sent = s.extrinsics().len();
    let rec = weights::emit(&c, &alice, 0, &cfg, &[0, 1], &[65535, 1], now, [6; 32])
        .await
        .unwrap();
    assert!(
        matches!(rec.action, WeightsAction::Skipped { reason: SkipReason::RateLimited { blocks_left } } if blocks_left == 100),
        "{rec:?}"
    );
    assert_eq!(s.extrinsics().len(), sent);
    // After it: committed again.
    s.advance_blocks(100);
    let rec = weights::emit(&c, &alice, 0, &cfg, &[1], &[65535], now, [7; 32])
        .await
        .unwrap();
    assert!(
        matches!(rec.action, WeightsAction::Committed { .. }),
        "{rec:?}"
    );
    // The record serializes as the sink persists it.
    let json = serde_json::to_value(&rec).unwrap();
    assert_eq!(json["action"], "committed");
}

#[tokio::test]
async fn a_quicknet_commit_to_round_1000_opens_with_the_real_round_1000_signature() {
    let (s, alice, _) = standin().await;
    let c = client(&s).await;
    let mut cfg = WeightsConfig::new(NETUID);
    // Zero block time: the round is the one out `now`, here exactly round 1000.
    cfg.block_time = Duration::ZERO;
    let rec = weights::emit(
        &c,
        &alice,
        0,
        &cfg,
        &[0, 1],
        &[65535, 7],
        genesis_plus(3_000),
        [9; 32],
    )
    .await
    .unwrap();
    assert!(
        matches!(
            rec.action,
            WeightsAction::Committed {
                reveal_round: 1000,
                ..
            }
        ),
        "{rec:?}"
    );
    let v: Value = serde_json::from_slice(&attesta_test_support::read_fixture(
        "bittensor/chain/drand_quicknet_tlock_vectors.json",
    ))
    .unwrap();
    let sig = hex::decode(
        v["pulse_round_1000"]["signature_g1_compressed_hex"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let (_, _, ciphertext, _) = s.with_state(|st| writes::commits(st, NETUID)).remove(0);
    let payload = tlock::decrypt_weights(&ciphertext, &sig).unwrap();
    assert_eq!((payload.uids, payload.values), (vec![0, 1], vec![65535, 7]));
    let _ = DrandKey::quicknet();
}

#[tokio::test]
async fn set_weights_when_commit_reveal_is_off_and_dispatch_errors_are_typed() {
    let (s, alice, bob) = standin().await;
    let c = client(&s).await;
    // set_weights while commit-reveal is on: the chain's own refusal, by name.
    let call = calls::set_weights(c.metadata(), NETUID, &[0], &[65535], 0).unwrap();
    let err = submit::sign_and_submit(&c, &alice, &call, SubmitOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        dispatch(err),
        ("SubtensorModule".into(), "CommitRevealEnabled".into())
    );
    // `commit_reveal = off` against a subnet with it on: refused before any extrinsic.
    let mut cfg = WeightsConfig::new(NETUID);
    cfg.commit_reveal = CommitReveal::Off;
    let sent = s.extrinsics().len();
    let err = weights::emit(&c, &alice, 0, &cfg, &[0], &[1], genesis_plus(0), [0; 32])
        .await
        .unwrap_err();
    assert!(
        matches!(err, WeightsError::ModeMismatch { subnet: true, .. }),
        "{err}"
    );
    assert_eq!(s.extrinsics().len(), sent);
    // Turn commit-reveal off on the subnet: auto sets weights in the clear.
    s.with_state(|st| {
        st.put(
            "SubtensorModule",
            "CommitRevealWeightsEnabled",
            &[&NETUID.encode()],
            false.encode(),
        )
    });
    let cfg = WeightsConfig::new(NETUID);
    let rec = weights::emit(
        &c,
        &alice,
        0,
        &cfg,
        &[0, 1],
        &[65535, 3],
        genesis_plus(0),
        [0; 32],
    )
    .await
    .unwrap();
    let WeightsAction::Set { inclusion } = &rec.action else {
        panic!("{rec:?}")
    };
    let lu = c
        .storage_value("SubtensorModule", "LastUpdate", &[&NETUID.encode()], None)
        .await
        .unwrap()
        .unwrap();
    let attesta_bittensor::chain::value::Value::Sequence(items) = lu else {
        panic!()
    };
    assert_eq!(items[0].as_u128(), Some(u128::from(inclusion.block_number)));
    // A version key below the subnet's: skipped with the reason, no extrinsic.
    s.with_state(|st| {
        st.put(
            "SubtensorModule",
            "WeightsVersionKey",
            &[&NETUID.encode()],
            50u64.encode(),
        )
    });
    let mut cfg = WeightsConfig::new(NETUID);
    cfg.version_key = Some(10);
    let rec = weights::emit(&c, &bob, 1, &cfg, &[0], &[1], genesis_plus(0), [0; 32])
        .await
        .unwrap();
    assert!(matches!(
        rec.action,
        WeightsAction::Skipped {
            reason: SkipReason::VersionKeyTooLow {
                ours: 10,
                subnet: 50
            }
        }
    ));
    // Bob (no update yet) with the subnet's key: set; a uid that does not exist is the
    // chain's refusal, by name.
    let err = weights::emit(
        &c,
        &bob,
        1,
        &WeightsConfig::new(NETUID),
        &[0, 9],
        &[1, 1],
        genesis_plus(0),
        [0; 32],
    )
    .await
    .unwrap_err();
    let WeightsError::Submit(e) = err else {
        panic!("{err}")
    };
    assert_eq!(dispatch(e).1, "UidVecContainInvalidOne");
    let _ = AccountId::from_ss58("5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY").unwrap();
}
