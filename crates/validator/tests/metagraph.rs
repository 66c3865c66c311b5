//! The metagraph as the validator's node source, against the JSON-RPC stand-in.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;

use attesta_bittensor::chain::RpcConfig;
use attesta_bittensor::chain::standin::{NeuronSpec, Standin, StandinConfig};
use attesta_bittensor::{AccountId, Hotkey};
use attesta_validator::metagraph::Metagraph;
use attesta_validator::registry::{NodeSource, RegistryError, Via};

fn key(uri: &str) -> AccountId {
    Hotkey::from_dev_uri(uri).unwrap().account()
}

fn spec(uri: &str, axon: Option<&str>, permit: bool) -> NeuronSpec {
    NeuronSpec {
        hotkey: key(uri),
        coldkey: key(uri),
        axon: axon.map(|a| a.parse().unwrap()),
        validator_permit: permit,
        stake: 1,
    }
}

#[tokio::test]
async fn nodes_are_the_neurons_that_serve_an_axon_and_membership_follows_the_chain() {
    let s = Standin::start(StandinConfig::devnet()).await.unwrap();
    s.register(1, spec("//validator", None, true));
    s.register(1, spec("//miner-a", Some("127.0.0.1:9001"), false));
    s.register(1, spec("//miner-b", Some("10.1.2.3:9002"), false));
    s.register(2, spec("//other-subnet", Some("127.0.0.1:9003"), false));
    let m = Metagraph::new(s.url(), 1, RpcConfig::default());
    let nodes = m.nodes().await.unwrap();
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    for n in &nodes {
        assert_eq!(n.via, Via::Axon);
        assert_eq!(n.hotkey.as_deref(), Some(n.id.as_str()));
    }
    let a = nodes
        .iter()
        .find(|n| n.id == key("//miner-a").to_ss58())
        .unwrap();
    assert_eq!(a.url, "http://127.0.0.1:9001");
    let b = nodes
        .iter()
        .find(|n| n.id == key("//miner-b").to_ss58())
        .unwrap();
    assert_eq!(b.url, "http://10.1.2.3:9002");
    // Sorted by id, like every NodeSource.
    let mut sorted = nodes.clone();
    sorted.sort();
    assert_eq!(nodes, sorted);

    // A miner that stops serving leaves the list; a new one joins; asked again each round.
    s.set_axon(1, &key("//miner-b"), None);
    s.register(1, spec("//miner-c", Some("127.0.0.1:9004"), false));
    let ids: Vec<String> = m.nodes().await.unwrap().into_iter().map(|n| n.id).collect();
    let mut want = vec![key("//miner-a").to_ss58(), key("//miner-c").to_ss58()];
    want.sort();
    assert_eq!(ids, want);
}

#[tokio::test]
async fn an_unreachable_chain_fails_the_round_instead_of_emptying_it() {
    let s = Standin::start(StandinConfig::devnet()).await.unwrap();
    s.register(1, spec("//miner-a", Some("127.0.0.1:9001"), false));
    let url = s.url();
    let m = Metagraph::new(url.clone(), 1, RpcConfig::default());
    assert_eq!(m.nodes().await.unwrap().len(), 1);
    drop(s);
    // The listener is gone: the next read is an error (the round is retried), never [].
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let err = m.nodes().await;
    let err2 = m.nodes().await;
    assert!(
        matches!(err, Err(RegistryError::Chain { netuid: 1, .. }))
            || matches!(err2, Err(RegistryError::Chain { netuid: 1, .. })),
        "{err:?} {err2:?}"
    );
    assert!(matches!(err2, Err(RegistryError::Chain { .. })), "{err2:?}");
}

#[tokio::test]
async fn the_config_picks_the_metagraph_when_an_endpoint_is_set() {
    use attesta_validator::config::ValidatorConfig;
    let s = Standin::start(StandinConfig::devnet()).await.unwrap();
    s.register(7, spec("//miner-a", Some("127.0.0.1:9001"), false));
    let base = "[validator]\nnodes = \"no-such-nodes.toml\"\ndatabase = \"v.sqlite\"\n\
                weights_file = \"w.json\"\n[validator.challenges]\nstore = \"m\"\n\
                [[validator.challenges.models]]\ncid = \"bafkreia\"\n";
    let with = format!(
        "{base}[validator.bittensor]\nhotkey_uri = \"//Bob\"\nendpoint = \"{}\"\nnetuid = 7\n",
        s.url()
    );
    let c = ValidatorConfig::parse(&with, Path::new("/")).unwrap();
    let b = c.bittensor.as_ref().unwrap();
    assert_eq!(b.netuid, Some(7));
    // Nodes come from the chain; the (missing) nodes file is not read.
    let nodes = attesta_validator::metagraph::source_for(&c)
        .nodes()
        .await
        .unwrap();
    assert_eq!(nodes.len(), 1);
    // Round trip through the TOML the devnet writes.
    let again = ValidatorConfig::parse(&c.to_toml().unwrap(), Path::new("/")).unwrap();
    assert_eq!(again.bittensor, c.bittensor);
    // The endpoint needs its netuid, and a WebSocket URL.
    let half = format!("{base}[validator.bittensor]\nendpoint = \"ws://x:1\"\n");
    assert!(ValidatorConfig::parse(&half, Path::new("/")).is_err());
    let http = format!("{base}[validator.bittensor]\nendpoint = \"http://x:1\"\nnetuid = 1\n");
    assert!(ValidatorConfig::parse(&http, Path::new("/")).is_err());
    // With a chain, the node file may be left out; without one it may not.
    let no_file = with.replace("nodes = \"no-such-nodes.toml\"\n", "");
    assert_ne!(no_file, with);
    let c2 = ValidatorConfig::parse(&no_file, Path::new("/")).unwrap();
    assert_eq!(
        attesta_validator::metagraph::source_for(&c2)
            .nodes()
            .await
            .unwrap()
            .len(),
        1
    );
    let again = ValidatorConfig::parse(&c2.to_toml().unwrap(), Path::new("/")).unwrap();
    assert!(again.nodes.as_os_str().is_empty());
    let base_no_file = base.replace("nodes = \"no-such-nodes.toml\"\n", "");
    assert!(ValidatorConfig::parse(&base_no_file, Path::new("/")).is_err());
    // Without an endpoint, the nodes file.
    let without = ValidatorConfig::parse(base, Path::new("/")).unwrap();
    let err = attesta_validator::metagraph::source_for(&without)
        .nodes()
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Io { .. }), "{err:?}");
}
