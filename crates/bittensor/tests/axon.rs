//! The axon against a stub node on 127.0.0.1: every synapse relayed through the Rust
//! dendrite (a language-model call's sealed stream returned whole, bounded), the node's
//! refusals passed on, and every recorded negative case (replay,
//! stale nonce, missing or wrong signature, body-hash mismatch, blacklisted hotkey, parse
//! errors) refused with the right status and code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::time::Duration;

use attesta_bittensor::axon::{
    AxonConfig, CallerPolicy, SEALED_MEDIA_TYPE, SEALED_STREAM_MEDIA_TYPE, router, system_nanos,
};
use attesta_bittensor::dendrite::{AxonTarget, CompletionReply, Dendrite, DendriteError};
use attesta_bittensor::keys::Hotkey;
use attesta_bittensor::synapse::{Synapse, signed_message};
use axum::Router;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A stub node: attestation echoes the nonce; infer answers the reversed envelope as
/// sealed, or refuses an envelope starting with `R` as a plaintext 401 `unknown_key_set`.
async fn stub_node() -> String {
    async fn attestation(
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> impl IntoResponse {
        axum::Json(json!({
            "platform": "dev", "evidence": "ZXZpZGVuY2U=",
            "keyset": {"hpke_pk": "aa", "sign_pk": "bb"}, "nonce": q.get("nonce"),
        }))
    }
    async fn infer(headers: HeaderMap, body: Bytes) -> axum::response::Response {
        assert_eq!(headers[header::CONTENT_TYPE], SEALED_MEDIA_TYPE);
        if body.first() == Some(&b'R') {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"error":{"code":"unknown_key_set","message":"restarted"}}"#,
            )
                .into_response();
        }
        let mut v = body.to_vec();
        v.reverse();
        ([(header::CONTENT_TYPE, SEALED_MEDIA_TYPE)], v).into_response()
    }
    /// A sealed stream of the reversed envelope, sent in pieces; a single sealed envelope
    /// for an envelope starting with `V` (the node's verdict); `L` asks for a stream of
    /// 64 KiB.
    async fn completions(headers: HeaderMap, body: Bytes) -> axum::response::Response {
        assert_eq!(headers[header::CONTENT_TYPE], SEALED_MEDIA_TYPE);
        assert_eq!(headers[header::ACCEPT], SEALED_STREAM_MEDIA_TYPE);
        if body.first() == Some(&b'V') {
            return (
                [(header::CONTENT_TYPE, SEALED_MEDIA_TYPE)],
                b"verdict".to_vec(),
            )
                .into_response();
        }
        let mut v = body.to_vec();
        v.reverse();
        if body.first() == Some(&b'L') {
            v = vec![7; 64 << 10];
        }
        let pieces: Vec<Result<Bytes, std::convert::Infallible>> =
            v.chunks(3).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        (
            [(header::CONTENT_TYPE, SEALED_STREAM_MEDIA_TYPE)],
            axum::body::Body::from_stream(futures::stream::iter(pieces)),
        )
            .into_response()
    }
    let app = Router::new()
        .route("/v1/attestation", get(attestation))
        .route("/v1/infer", post(infer))
        .route("/v1/completions", post(completions));
    serve(app).await
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn key(uri: &str) -> Hotkey {
    Hotkey::from_dev_uri(uri).unwrap()
}

/// An axon as //Alice in front of a stub node, allowing //Bob only.
async fn axon() -> AxonTarget {
    let node = stub_node().await;
    let policy = CallerPolicy::Allow(BTreeSet::from([key("//Bob").account()]));
    let mut config = AxonConfig::new(key("//Alice"), node, policy);
    config.max_stream_bytes = 32 << 10;
    let url = serve(router(config).unwrap()).await;
    AxonTarget {
        url,
        hotkey: key("//Alice").account(),
    }
}

fn dendrite(uri: &str) -> Dendrite {
    Dendrite::new(key(uri), Duration::from_secs(10)).unwrap()
}

#[tokio::test]
async fn relays_both_synapses_and_the_nodes_refusals() {
    let axon = axon().await;
    let d = dendrite("//Bob");
    let att = d.attestation(&axon, NONCE).await.unwrap();
    assert_eq!(att.platform.as_deref(), Some("dev"));
    assert_eq!(att.evidence.as_deref(), Some("ZXZpZGVuY2U="));
    assert_eq!(att.keyset.unwrap()["hpke_pk"], "aa");
    let sealed = d.inference(&axon, b"abc").await.unwrap();
    assert_eq!(sealed, b"cba", "the envelope went through untouched");
    match d.inference(&axon, b"Rxyz").await {
        Err(DendriteError::Refused {
            status: 401, code, ..
        }) => assert_eq!(code, "unknown_key_set"),
        other => panic!("{other:?}"),
    }
    // A request field the node would refuse is refused by the axon first.
    match d.attestation(&axon, "abcd").await {
        Err(DendriteError::Refused {
            status: 400, code, ..
        }) => assert_eq!(code, "invalid_nonce"),
        other => panic!("{other:?}"),
    }
    // Addressed to another hotkey: refused (the signature binds the axon's hotkey).
    let wrong = AxonTarget {
        url: axon.url.clone(),
        hotkey: key("//Charlie").account(),
    };
    match d.attestation(&wrong, NONCE).await {
        Err(DendriteError::Refused {
            status: 401, code, ..
        }) => assert_eq!(code, "wrong_axon_hotkey"),
        other => panic!("{other:?}"),
    }
}

/// A hand-built call, with each part open to tampering.
struct Call {
    synapse: Synapse,
    value: String,
    signer: Hotkey,
    claimed: String,
    nonce: u64,
    uuid: String,
    hash: Option<String>,
    signature: Option<String>,
    body: Option<String>,
}

impl Call {
    fn new(value: &str, signer: &str) -> Self {
        let signer = key(signer);
        Call {
            synapse: Synapse::TeeAttestation,
            value: value.into(),
            claimed: signer.account().to_ss58(),
            signer,
            nonce: system_nanos()(),
            uuid: "5f0e0c9a-0000-4000-8000-000000000001".into(),
            hash: None,
            signature: None,
            body: None,
        }
    }

    fn build(&self, axon: &AxonTarget) -> reqwest::RequestBuilder {
        let hash = self.synapse.body_hash(&self.value);
        let message = signed_message(
            self.nonce,
            &self.signer.account(),
            &axon.hotkey,
            &self.uuid,
            &hash,
        );
        let sig = self
            .signature
            .clone()
            .unwrap_or_else(|| self.signer.sign(message.as_bytes()).to_header());
        let body = self.body.clone().unwrap_or_else(|| {
            json!({"name": self.synapse.name(), "timeout": 12.0, self.synapse.hashed_field(): self.value})
                .to_string()
        });
        let mut r = reqwest::Client::new()
            .post(format!("{}/{}", axon.url, self.synapse.name()))
            .header("content-type", "application/json")
            .header("timeout", "12.0")
            .header("bt_header_dendrite_version", "10005000")
            .header("bt_header_dendrite_nonce", self.nonce.to_string())
            .header("bt_header_dendrite_uuid", &self.uuid)
            .header("bt_header_dendrite_hotkey", &self.claimed)
            .header("computed_body_hash", self.hash.clone().unwrap_or(hash))
            .body(body);
        if !sig.is_empty() {
            r = r.header("bt_header_dendrite_signature", sig);
        }
        r
    }

    async fn send(&self, axon: &AxonTarget) -> (u16, HeaderMap, Value) {
        let resp = self.build(axon).send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json::<Value>().await.unwrap();
        (status, headers, body)
    }
}

async fn refused(axon: &AxonTarget, call: &Call, status: u16, code: &str) {
    let (s, headers, body) = call.send(axon).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{body}"
    );
    assert_eq!(
        headers["bt_header_axon_status_code"],
        status.to_string().as_str()
    );
    assert_eq!(headers["content-type"], "application/json");
    assert!(body["message"].is_string(), "the SDK reads `message`");
}

#[tokio::test]
async fn completions_return_the_whole_sealed_stream_bounded() {
    let axon = axon().await;
    let d = dendrite("//Bob");
    assert_eq!(
        d.completion(&axon, "/v1/completions", b"abcdefg")
            .await
            .unwrap(),
        CompletionReply::Stream(b"gfedcba".to_vec()),
        "the stream read to its end and returned whole"
    );
    assert_eq!(
        d.completion(&axon, "/v1/completions", b"Vx").await.unwrap(),
        CompletionReply::Envelope(b"verdict".to_vec())
    );
    match d.completion(&axon, "/v1/completions", b"Lx").await {
        Err(DendriteError::Refused {
            status: 502, code, ..
        }) => assert_eq!(code, "stream_too_long"),
        other => panic!("{other:?}"),
    }
    // Only the language-model routes have a synapse.
    assert!(matches!(
        d.completion(&axon, "/v1/infer", b"x").await,
        Err(DendriteError::Malformed(_))
    ));
}

#[tokio::test]
async fn a_signed_fresh_call_passes_with_the_headers_a_python_dendrite_needs() {
    let axon = axon().await;
    let (status, headers, body) = Call::new(NONCE, "//Bob").send(&axon).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["bt_header_axon_status_code"], "200");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(body["nonce"], NONCE, "the request field is echoed");
    assert_eq!(body["platform"], "dev");
    assert_eq!(body["axon"]["status_code"], 200);
}

#[tokio::test]
async fn replays_and_stale_or_future_nonces_are_refused() {
    let axon = axon().await;
    let call = Call::new(NONCE, "//Bob");
    assert_eq!(call.send(&axon).await.0, 200);
    refused(&axon, &call, 401, "replayed_nonce").await;
    // A lower nonce on the same uuid, even fresh, is refused.
    let mut lower = Call::new(NONCE, "//Bob");
    lower.nonce = call.nonce - 1_000_000;
    refused(&axon, &lower, 401, "replayed_nonce").await;
    let mut stale = Call::new(NONCE, "//Bob");
    stale.uuid = "another".into();
    stale.nonce -= 20_000_000_000;
    refused(&axon, &stale, 401, "stale_nonce").await;
    let mut future = Call::new(NONCE, "//Bob");
    future.uuid = "yet-another".into();
    future.nonce += 60_000_000_000;
    refused(&axon, &future, 401, "future_nonce").await;
}

#[tokio::test]
async fn unsigned_forged_and_tampered_calls_are_refused() {
    let axon = axon().await;
    let mut missing = Call::new(NONCE, "//Bob");
    missing.signature = Some(String::new());
    refused(&axon, &missing, 401, "missing_signature").await;
    // Eve signs but claims to be Bob.
    let mut forged = Call::new(NONCE, "//Eve");
    forged.claimed = key("//Bob").account().to_ss58();
    refused(&axon, &forged, 401, "bad_signature").await;
    let mut zeros = Call::new(NONCE, "//Bob");
    zeros.hash = Some("0".repeat(64));
    refused(&axon, &zeros, 400, "body_hash_mismatch").await;
    // The body says another nonce than the one hashed and signed.
    let mut swapped = Call::new(NONCE, "//Bob");
    swapped.body = Some(json!({"nonce": NONCE.replace('0', "1")}).to_string());
    refused(&axon, &swapped, 400, "body_hash_mismatch").await;
    // A refused signature leaves nothing behind: the same uuid with a lower nonce passes.
    let mut high = Call::new(NONCE, "//Bob");
    high.nonce += 5_000_000_000;
    high.signature = Some(key("//Eve").sign(b"x").to_header());
    refused(&axon, &high, 401, "bad_signature").await;
    assert_eq!(Call::new(NONCE, "//Bob").send(&axon).await.0, 200);
}

#[tokio::test]
async fn callers_outside_the_policy_are_refused() {
    let axon = axon().await;
    refused(&axon, &Call::new(NONCE, "//Eve"), 403, "caller_not_allowed").await;
}

#[tokio::test]
async fn parse_errors_are_400_not_500() {
    let axon = axon().await;
    let mut not_json = Call::new(NONCE, "//Bob");
    not_json.body = Some("{not json".into());
    refused(&axon, &not_json, 400, "invalid_synapse").await;
    let mut no_field = Call::new(NONCE, "//Bob");
    no_field.body = Some("{}".into());
    refused(&axon, &no_field, 400, "invalid_synapse").await;
    let mut wrong_type = Call::new(NONCE, "//Bob");
    wrong_type.body = Some(json!({"nonce": 5}).to_string());
    refused(&axon, &wrong_type, 400, "invalid_synapse").await;
    let mut bad_hotkey = Call::new(NONCE, "//Bob");
    bad_hotkey.claimed = "not-an-address".into();
    refused(&axon, &bad_hotkey, 400, "invalid_header").await;
    let mut bad_sig = Call::new(NONCE, "//Bob");
    bad_sig.signature = Some("0x1234".into());
    refused(&axon, &bad_sig, 400, "invalid_header").await;
    let mut inference = Call::new("***not base64***", "//Bob");
    inference.synapse = Synapse::TeeInference;
    refused(&axon, &inference, 400, "invalid_sealed_request").await;
    let resp = reqwest::Client::new()
        .post(format!("{}/NoSuchSynapse", axon.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["bt_header_axon_status_code"], "404");
}

#[tokio::test]
async fn the_node_down_is_a_gateway_error() {
    let policy = CallerPolicy::AnyCaller;
    // A port nobody listens on (bound, then closed).
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let url = serve(router(AxonConfig::new(key("//Alice"), dead, policy)).unwrap()).await;
    let axon = AxonTarget {
        url,
        hotkey: key("//Alice").account(),
    };
    let d = dendrite("//Eve");
    match d.attestation(&axon, NONCE).await {
        Err(DendriteError::Refused {
            status: 502, code, ..
        }) => assert_eq!(code, "node_unreachable"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_sealed_media_type_is_the_nodes() {
    assert_eq!(SEALED_MEDIA_TYPE, attesta_seal::MEDIA_TYPE);
    assert_eq!(SEALED_STREAM_MEDIA_TYPE, attesta_seal::STREAM_MEDIA_TYPE);
}
