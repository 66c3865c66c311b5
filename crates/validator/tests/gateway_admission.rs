//! The gateway's admission on a real listener: API keys, the per-client rate (429 with
//! `Retry-After`), no verified node (503 with `Retry-After`), and typed errors for bad
//! requests — each a JSON `{"error": {"code", "message"}}`, never a 5xx for the user's fault.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use attesta_evidence::Policy;
use attesta_validator::gateway::{Gateway, GatewayConfig, GatewayParts};
use attesta_validator::round::SystemClock;
use attesta_validator::status::Status;

async fn gateway(cfg: GatewayConfig) -> (String, tokio::sync::oneshot::Sender<()>) {
    let status = Arc::new(Status::new());
    let parts = GatewayParts {
        status: Arc::clone(&status),
        policy: Policy::aws_nitro().unwrap(),
        node_timeout: Duration::from_secs(2),
        clock: Arc::new(SystemClock),
        rng: attesta_validator::os_rng().unwrap(),
        client_rng: attesta_validator::client_channel::system_rng(),
    };
    let gw = Gateway::new(cfg, parts).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr, _task) = attesta_validator::service::serve(
        "127.0.0.1:0".parse().unwrap(),
        status,
        Some(gw),
        async {
            let _ = rx.await;
        },
    )
    .await
    .unwrap();
    (format!("http://{addr}"), tx)
}

async fn error_of(resp: reqwest::Response) -> (u16, Option<String>, String) {
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: serde_json::Value = resp.json().await.unwrap();
    (
        status,
        retry,
        body["error"]["code"].as_str().unwrap().to_owned(),
    )
}

const NONCE: &str = "00112233445566778899aabbccddeeff";

#[tokio::test]
async fn over_the_rate_a_client_gets_429_with_retry_after() {
    let (base, _stop) = gateway(GatewayConfig {
        enabled: true,
        rate_per_client: 0.5,
        burst_per_client: 2,
        ..GatewayConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/route?nonce={NONCE}");
    // Within the burst: admitted, and answered 503 because no node is verified yet.
    for _ in 0..2 {
        let (status, retry, code) = error_of(http.get(&url).send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (503, "no_node_available"));
        assert!(retry.is_some());
    }
    let (status, retry, code) = error_of(http.get(&url).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    let secs: u64 = retry.unwrap().parse().unwrap();
    assert!((1..=2).contains(&secs), "{secs}");
    // On an open gateway (no API keys configured) a made-up bearer is not a new identity:
    // it cannot buy a fresh bucket.
    let (status, _, code) = error_of(
        http.get(&url)
            .bearer_auth("someone-else")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
}

#[tokio::test]
async fn api_keys_are_required_when_configured() {
    let (base, _stop) = gateway(GatewayConfig {
        enabled: true,
        api_keys: vec!["k-123".into()],
        ..GatewayConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/route?nonce={NONCE}");
    let (status, _, code) = error_of(http.get(&url).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "missing_api_key"));
    let (status, _, code) =
        error_of(http.get(&url).bearer_auth("k-124").send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    let (status, _, code) =
        error_of(http.get(&url).bearer_auth("k-123").send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (503, "no_node_available"));
}

#[tokio::test]
async fn bad_requests_are_typed_4xx() {
    let (base, _stop) = gateway(GatewayConfig {
        enabled: true,
        max_body_bytes: 1024,
        ..GatewayConfig::default()
    })
    .await;
    let http = reqwest::Client::new();
    for (query, code) in [
        ("", "invalid_nonce"),
        ("nonce=abcd", "invalid_nonce"),
        ("nonce=zz", "invalid_nonce"),
        (
            &format!("nonce={NONCE}&model=not-a-cid") as &str,
            "invalid_model",
        ),
    ] {
        let (status, _, got) = error_of(
            http.get(format!("{base}/v1/route?{query}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, got.as_str()), (400, code), "{query}");
    }
    let (status, _, code) = error_of(
        http.post(format!("{base}/v1/nodes/nobody/infer"))
            .body("x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "unknown_node"));
    let (status, _, code) = error_of(
        http.post(format!("{base}/infer"))
            .body("{\"ipfs_hash\": 1}")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "invalid_body"));
    // Over the body cap: refused before it is read whole.
    let (status, _, code) = error_of(
        http.post(format!("{base}/infer"))
            .body(vec![b'x'; 4096])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (413, "body_too_large"));
}
