//! The axon's callers from the chain: validator-permit holders of the subnet (read from the
//! stand-in's metagraph) may call; a registered hotkey without a permit may not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeSet;
use std::time::Duration;

use attesta_bittensor::axon::{AxonConfig, CallerPolicy, router};
use attesta_bittensor::chain::callers::{PermittedCallers, refresh_once, spawn_refresh};
use attesta_bittensor::chain::standin::{NeuronSpec, Standin, StandinConfig};
use attesta_bittensor::chain::{ChainClient, RpcConfig};
use attesta_bittensor::dendrite::{AxonTarget, Dendrite, DendriteError};
use attesta_bittensor::keys::Hotkey;
use axum::Router;
use axum::routing::get;
use serde_json::json;

const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn key(uri: &str) -> Hotkey {
    Hotkey::from_dev_uri(uri).unwrap()
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn neuron(uri: &str, permit: bool) -> NeuronSpec {
    NeuronSpec {
        hotkey: key(uri).account(),
        coldkey: key(uri).account(),
        axon: None,
        validator_permit: permit,
        stake: 1,
    }
}

async fn call(axon: &AxonTarget, uri: &str) -> Result<(), (u16, String)> {
    let d = Dendrite::new(key(uri), Duration::from_secs(5)).unwrap();
    match d.attestation(axon, NONCE).await {
        Ok(_) => Ok(()),
        Err(DendriteError::Refused { status, code, .. }) => Err((status, code)),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn only_permit_holders_and_listed_hotkeys_may_call() {
    let node = serve(Router::new().route(
        "/v1/attestation",
        get(|| async { axum::Json(json!({"platform": "dev", "evidence": "ZQ==", "keyset": {}})) }),
    ))
    .await;
    let chain = Standin::start(StandinConfig::devnet()).await.unwrap();
    chain.register(1, neuron("//Bob", true));
    chain.register(1, neuron("//Charlie", false));
    chain.register(2, neuron("//Dave", true)); // a permit on another subnet counts for nothing

    let permitted = PermittedCallers::new();
    let policy = CallerPolicy::Chain {
        permitted: permitted.clone(),
        also: BTreeSet::from([key("//Ferdie").account()]),
    };
    let url = serve(router(AxonConfig::new(key("//Alice"), node, policy)).unwrap()).await;
    let axon = AxonTarget {
        url,
        hotkey: key("//Alice").account(),
    };
    // Before the first read nobody with only a permit gets in (fail closed)...
    assert!(!permitted.is_loaded());
    let refused = Err((403, "caller_not_allowed".to_string()));
    assert_eq!(call(&axon, "//Bob").await, refused);
    // ...but the explicit --allow-caller does.
    assert_eq!(call(&axon, "//Ferdie").await, Ok(()));

    let client = ChainClient::connect(&chain.url(), RpcConfig::default())
        .await
        .unwrap();
    assert_eq!(refresh_once(&client, 1, &permitted).await.unwrap(), 1);
    assert_eq!(call(&axon, "//Bob").await, Ok(()));
    assert_eq!(
        call(&axon, "//Charlie").await,
        refused,
        "registered, no permit"
    );
    assert_eq!(
        call(&axon, "//Dave").await,
        refused,
        "permit on another subnet"
    );
    assert_eq!(call(&axon, "//Eve").await, refused, "not registered");

    // The refresher follows the chain: Eve registers with a permit.
    chain.register(1, neuron("//Eve", true));
    let task = spawn_refresh(
        chain.url(),
        1,
        RpcConfig::default(),
        Duration::from_millis(50),
        permitted.clone(),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while permitted.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "refresh did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(call(&axon, "//Eve").await, Ok(()));
    // The chain going away keeps the last set.
    drop(chain);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(permitted.len(), 2);
    assert_eq!(call(&axon, "//Bob").await, Ok(()));
    task.abort();
}
