//! The client against an in-test node on 127.0.0.1 built from the seal
//! node-side API and the dev TEE, with a logging relay in the middle.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use attesta_attester::dev::{self, Clock, DevAttester, DevOptions, Entropy};
use attesta_attester::{AttestError, AttestRequest, Attester};
use attesta_client::{Client, ClientConfig, ClientError};
use attesta_evidence::{Policy, TrustedRoot, UnixTime, danger};
use attesta_seal::bundle::BundleChecks;
use attesta_seal::channel::SealedOutput;
use attesta_seal::rand_core::{TryCryptoRng, TryRng};
use attesta_seal::{
    MEDIA_TYPE, NodeKeys, ReplayConfig, ReplayGuard, RequestPlaintext, seal_request, sha256,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;

const T0_MS: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const MODEL: &str = "QmWATWQ7fVPP2EFGu71UkfnqhYXDYH566qy47CnJDgvs8u";
/// Distinctive input and output digits a relay must never see.
const INPUTS: &str = r#"{"numbers":[{"name":"x","shape":[2],"values":[{"value":"987654321","decimals":3},{"value":"-4242","decimals":0}]}],"strings":[]}"#;
const INPUT_MARKER: &str = "987654321";
const OUTPUT_MARKER: &str = "1975308.642";

struct SharedClock(Arc<AtomicU64>);
impl Clock for SharedClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_millis(self.0.load(Ordering::SeqCst))
    }
}

struct CounterEntropy(Mutex<u64>);
impl Entropy for CounterEntropy {
    fn fill(&self, dest: &mut [u8]) -> Result<(), AttestError> {
        let mut c = self.0.lock().unwrap();
        for chunk in dest.chunks_mut(32) {
            *c += 1;
            chunk.copy_from_slice(&sha256(&c.to_le_bytes())[..chunk.len()]);
        }
        Ok(())
    }
}

struct TestRng(u64);
impl TryRng for TestRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0 += 1;
        Ok(u64::from_le_bytes(
            sha256(&self.0.to_le_bytes())[..8].try_into().unwrap(),
        ))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let v = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}
impl TryCryptoRng for TestRng {}

#[derive(Default)]
struct Faults {
    wrong_nonce: AtomicBool,
    announce_other: AtomicBool,
    impostor_receipts: AtomicBool,
    tamper_answer: AtomicBool,
}

struct Node {
    keys: RwLock<Arc<NodeKeys>>,
    other: NodeKeys,
    attester: DevAttester,
    replay: ReplayGuard,
    rng: Mutex<TestRng>,
    clock: Arc<AtomicU64>,
    faults: Faults,
    attestations: AtomicUsize,
    infers: AtomicUsize,
    /// Data chunks `flooding_completion` sends.
    flood_chunks: AtomicUsize,
}

impl Node {
    fn now(&self) -> UnixTime {
        UnixTime::from_millis(self.clock.load(Ordering::SeqCst))
    }
}

/// The model: y = 2x over the fixed-point inputs.
fn run_model(inputs: &str) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_str(inputs).unwrap();
    let xs: Vec<f64> = v["numbers"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let value: f64 = x["value"].as_str().unwrap().parse().unwrap();
            let decimals = x["decimals"].as_i64().unwrap() as i32;
            2.0 * value / 10f64.powi(decimals)
        })
        .collect();
    serde_json::to_vec(
        &serde_json::json!([{"name": "y", "shape": [xs.len()], "result": xs, "type": "number"}]),
    )
    .unwrap()
}

#[derive(serde::Deserialize)]
struct NonceQ {
    nonce: String,
}

async fn attestation(State(node): State<Arc<Node>>, Query(q): Query<NonceQ>) -> Response {
    node.attestations.fetch_add(1, Ordering::SeqCst);
    let mut nonce = hex::decode(&q.nonce).unwrap();
    let keys = node.keys.read().unwrap().clone();
    let echoed = nonce.clone();
    if node.faults.wrong_nonce.load(Ordering::SeqCst) {
        nonce[0] ^= 1;
    }
    let b = keys.attestation_binding(&nonce);
    let ev = node
        .attester
        .attest(&AttestRequest {
            nonce: b.nonce,
            user_data: Some(b.user_data),
            public_key: Some(b.public_key),
            report_data: b.report_data,
        })
        .unwrap();
    let announced = if node.faults.announce_other.load(Ordering::SeqCst) {
        *node.other.public()
    } else {
        *keys.public()
    };
    axum::Json(serde_json::json!({
        "platform": "dev",
        "evidence": base64::engine::general_purpose::STANDARD.encode(&ev.bytes),
        "keyset": announced,
        "nonce": hex::encode(echoed),
    }))
    .into_response()
}

async fn sealed_infer(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    node.infers.fetch_add(1, Ordering::SeqCst);
    let keys = node.keys.read().unwrap().clone();
    let plain = |r: attesta_seal::Rejected| {
        let status = StatusCode::from_u16(r.http_status()).unwrap();
        let (ctype, body) = r.into_body();
        (status, [(header::CONTENT_TYPE, ctype)], body).into_response()
    };
    let opened = match keys.open_request(&body, &node.replay, node.now()) {
        Ok(o) => o,
        Err(r) => return plain(r),
    };
    // The one model this node has; anything else is refused before acceptance.
    if opened.request.model != MODEL {
        let sealed = opened
            .seal_error(
                "model_not_found",
                "no such model",
                &mut *node.rng.lock().unwrap(),
            )
            .unwrap();
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, MEDIA_TYPE)],
            sealed,
        )
            .into_response();
    }
    let opened = match opened.admit(&node.replay, node.now()) {
        Ok(o) => o,
        Err(r) => return plain(r),
    };
    let output = run_model(opened.request.inputs.get());
    let signer: &NodeKeys = if node.faults.impostor_receipts.load(Ordering::SeqCst) {
        &node.other
    } else {
        &keys
    };
    let out = SealedOutput {
        output_json: &output,
        model_sha256: sha256(b"model"),
        engine: "test",
        engine_version: "1",
        fault: None,
    };
    let mut bytes = opened
        .responder
        .seal_output(signer, &out, node.now(), &mut *node.rng.lock().unwrap())
        .unwrap();
    if node.faults.tamper_answer.load(Ordering::SeqCst) {
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
    }
    ([(header::CONTENT_TYPE, MEDIA_TYPE)], bytes).into_response()
}

/// A language-model route that answers a sealed stream of `flood_chunks` data chunks, each
/// an OpenAI completion chunk with 1 MiB of text, then a correctly signed last chunk whose
/// final text is only the first chunk's: a node that keeps streaming text no signed answer
/// could hold.
async fn flooding_completion(State(node): State<Arc<Node>>, body: Bytes) -> Response {
    let keys = node.keys.read().unwrap().clone();
    let opened = keys.open_request(&body, &node.replay, node.now()).unwrap();
    let opened = opened.admit(&node.replay, node.now()).unwrap();
    let mut rng = node.rng.lock().unwrap();
    let (mut sealer, mut out) = opened.responder.start_stream(&mut *rng).unwrap();
    let text = "a".repeat(1 << 20);
    let chunk =
        serde_json::to_vec(&serde_json::json!({"choices": [{"index": 0, "text": text}]})).unwrap();
    for _ in 0..node.flood_chunks.load(Ordering::SeqCst) {
        out.extend(sealer.seal_chunk(&chunk).unwrap());
    }
    let output =
        serde_json::to_vec(&serde_json::json!({"choices": [{"index": 0, "text": text}]})).unwrap();
    let last = sealer
        .finish(
            &keys,
            &SealedOutput {
                output_json: &output,
                model_sha256: sha256(b"model"),
                engine: "test",
                engine_version: "1",
                fault: None,
            },
            node.now(),
        )
        .unwrap();
    out.extend(last);
    (
        [(header::CONTENT_TYPE, attesta_seal::STREAM_MEDIA_TYPE)],
        out,
    )
        .into_response()
}

async fn plain_infer(body: Bytes) -> Response {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let output: serde_json::Value =
        serde_json::from_slice(&run_model(v["model_inputs"].as_str().unwrap())).unwrap();
    axum::Json(serde_json::json!({"output": output, "model_hash": hex::encode(sha256(b"model"))}))
        .into_response()
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

struct Relay {
    upstream: String,
    http: reqwest::Client,
    seen: Mutex<Vec<u8>>,
    last_request: Mutex<Vec<u8>>,
    /// The genuine answer to the last sealed request.
    last_answer: Mutex<Vec<u8>>,
    /// Hostile: keep the genuine answer, replay the request, hand the client the refusal.
    swap_in_replay_refusal: AtomicBool,
}

impl Relay {
    fn new(upstream: &str) -> Arc<Self> {
        Arc::new(Relay {
            upstream: upstream.to_owned(),
            http: reqwest::Client::new(),
            seen: Mutex::new(Vec::new()),
            last_request: Mutex::new(Vec::new()),
            last_answer: Mutex::new(Vec::new()),
            swap_in_replay_refusal: AtomicBool::new(false),
        })
    }

    async fn forward(
        &self,
        method: axum::http::Method,
        url: &str,
        content_type: Option<&str>,
        body: &Bytes,
    ) -> (StatusCode, String, Bytes) {
        let mut req = self.http.request(method, url).body(body.to_vec());
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let resp = req.send().await.unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = resp.bytes().await.unwrap();
        self.seen.lock().unwrap().extend_from_slice(&bytes);
        (status, ct, bytes)
    }
}

/// Forwards everything and logs every byte it forwards, both ways.
async fn relay(
    State(r): State<Arc<Relay>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    method: axum::http::Method,
    body: Bytes,
) -> Response {
    let url = format!(
        "{}{}",
        r.upstream,
        uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    r.seen.lock().unwrap().extend_from_slice(url.as_bytes());
    r.seen.lock().unwrap().extend_from_slice(&body);
    let post = method == axum::http::Method::POST;
    if post {
        *r.last_request.lock().unwrap() = body.to_vec();
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let (mut status, mut ct_out, mut bytes) =
        r.forward(method.clone(), &url, ct.as_deref(), &body).await;
    if post {
        *r.last_answer.lock().unwrap() = bytes.to_vec();
        if r.swap_in_replay_refusal.load(Ordering::SeqCst) {
            (status, ct_out, bytes) = r.forward(method, &url, ct.as_deref(), &body).await;
        }
    }
    (status, [(header::CONTENT_TYPE, ct_out)], bytes).into_response()
}

/// A relay in front of the world's node, and its URL.
async fn relayed(w: &World) -> (Arc<Relay>, String) {
    let state = Relay::new(&w.url);
    let url = serve(Router::new().fallback(relay).with_state(state.clone())).await;
    (state, url)
}

struct World {
    _dir: tempfile::TempDir,
    node: Arc<Node>,
    url: String,
    root: TrustedRoot,
    clock: Arc<AtomicU64>,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("fake-attesta");
    std::fs::write(&exe, b"pretend attesta build").unwrap();
    let clock = Arc::new(AtomicU64::new(T0_MS));
    let attester = DevAttester::open(DevOptions {
        data_dir: dir.path().join("data"),
        executable: exe,
        clock: Arc::new(SharedClock(clock.clone())),
        entropy: Arc::new(CounterEntropy(Mutex::new(1))),
    })
    .unwrap();
    let pem = std::fs::read_to_string(dir.path().join("data").join(dev::DEV_ROOT_FILE)).unwrap();
    let root = TrustedRoot::from_pem("dev root", &pem).unwrap();
    let node = Arc::new(Node {
        keys: RwLock::new(Arc::new(NodeKeys::generate(&mut TestRng(100)))),
        other: NodeKeys::generate(&mut TestRng(200)),
        attester,
        // Room for 1000 requests: floods below go well beyond it.
        replay: ReplayGuard::new(ReplayConfig {
            capacity: 1000,
            ..ReplayConfig::default()
        }),
        rng: Mutex::new(TestRng(500)),
        clock: clock.clone(),
        faults: Faults::default(),
        attestations: AtomicUsize::new(0),
        infers: AtomicUsize::new(0),
        flood_chunks: AtomicUsize::new(0),
    });
    let router = Router::new()
        .route("/v1/attestation", get(attestation))
        .route("/v1/infer", post(sealed_infer))
        .route("/infer", post(plain_infer))
        .route("/v1/completions", post(flooding_completion))
        .with_state(node.clone());
    let url = serve(router).await;
    World {
        _dir: dir,
        node,
        url,
        root,
        clock,
    }
}

fn config(w: &World, policy: Policy) -> ClientConfig {
    let mut c = ClientConfig::new(policy);
    let clock = w.clock.clone();
    c.clock = Arc::new(move || UnixTime::from_millis(clock.load(Ordering::SeqCst)));
    c.rng = Arc::new(Mutex::new(TestRng(7)));
    c.key_cache_ttl = Duration::from_secs(60);
    c.timeout = Duration::from_secs(10);
    c
}

fn dev_policy(w: &World) -> Policy {
    danger::accept_dev_root(Policy::aws_nitro().unwrap(), w.root.clone())
}

fn client(w: &World, url: &str) -> Client {
    Client::new(url, config(w, dev_policy(w))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_infer_matches_plaintext_and_relay_sees_nothing() {
    let w = world().await;
    let (relay_state, relay_url) = relayed(&w).await;
    let c = client(&w, &relay_url);

    let out = c.infer(MODEL, INPUTS).await.unwrap();
    assert!(out.attested);
    assert!(
        out.output.get().contains(OUTPUT_MARKER),
        "{}",
        out.output.get()
    );
    // Same answer as the plaintext OpenGradient route.
    let plain: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/infer", w.url))
        .json(&serde_json::json!({"ipfs_hash": MODEL, "model_inputs": INPUTS}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sealed_output: serde_json::Value = serde_json::from_str(out.output.get()).unwrap();
    assert_eq!(sealed_output, plain["output"]);
    assert_eq!(out.model_hash, plain["model_hash"].as_str().unwrap());

    // The relay forwarded attestation and the sealed exchange, but no plaintext.
    let seen = relay_state.seen.lock().unwrap().clone();
    assert!(seen.len() > 1000, "relay saw {} bytes", seen.len());
    let contains = |needle: &[u8]| seen.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"/v1/infer") && contains(b"/v1/attestation"));
    for needle in [
        INPUT_MARKER.as_bytes(),
        OUTPUT_MARKER.as_bytes(),
        b"4242",
        b"numbers",
        MODEL.as_bytes(),
    ] {
        assert!(
            !contains(needle),
            "relay saw {:?}",
            String::from_utf8_lossy(needle)
        );
    }

    // The bundle verifies offline, with the request and output digests.
    let json = out.bundle.to_json().unwrap();
    let bundle = attesta_seal::ProofBundle::from_json(&json).unwrap();
    let checks = BundleChecks {
        request: Some(&out.request),
        output: Some(out.output.get().as_bytes()),
        ..Default::default()
    };
    let res = bundle.verify(c.verifier(), checks);
    assert!(res.report.verified, "{}", res.report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_set_is_cached_for_the_ttl_then_reattested() {
    let w = world().await;
    let c = client(&w, &w.url);
    assert!(c.infer(MODEL, INPUTS).await.unwrap().attested);
    assert!(!c.infer(MODEL, INPUTS).await.unwrap().attested);
    assert_eq!(w.node.attestations.load(Ordering::SeqCst), 1);
    w.clock.fetch_add(61_000, Ordering::SeqCst);
    assert!(c.infer(MODEL, INPUTS).await.unwrap().attested);
    assert_eq!(w.node.attestations.load(Ordering::SeqCst), 2);
    // OpenGradient's string-wrapped model_inputs are accepted too.
    let wrapped = serde_json::to_string(INPUTS).unwrap();
    c.infer(MODEL, &wrapped).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_restart_is_followed_by_one_reattestation() {
    let w = world().await;
    let c = client(&w, &w.url);
    c.infer(MODEL, INPUTS).await.unwrap();
    *w.node.keys.write().unwrap() = Arc::new(NodeKeys::generate(&mut TestRng(300)));
    let out = c.infer(MODEL, INPUTS).await.unwrap();
    assert!(out.attested);
    assert_eq!(w.node.attestations.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_for_another_nonce_is_refused() {
    let w = world().await;
    w.node.faults.wrong_nonce.store(true, Ordering::SeqCst);
    let c = client(&w, &w.url);
    let err = c.infer(MODEL, INPUTS).await.unwrap_err();
    assert!(matches!(err, ClientError::Attestation { .. }), "{err}");
    assert_eq!(err.code(), "nonce_mismatch");
    assert!(!err.is_retryable());
    assert_eq!(
        w.node.infers.load(Ordering::SeqCst),
        0,
        "nothing may be sent to an unverified node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_key_set_must_be_the_bound_one() {
    let w = world().await;
    w.node.faults.announce_other.store(true, Ordering::SeqCst);
    let err = client(&w, &w.url).infer(MODEL, INPUTS).await.unwrap_err();
    assert_eq!(err.code(), "binding_key_set_mismatch");
    assert_eq!(w.node.infers.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_signed_by_an_unbound_key_is_refused_and_forgets_the_node() {
    let w = world().await;
    let c = client(&w, &w.url);
    c.infer(MODEL, INPUTS).await.unwrap();
    w.node
        .faults
        .impostor_receipts
        .store(true, Ordering::SeqCst);
    let err = c.infer(MODEL, INPUTS).await.unwrap_err();
    assert_eq!(err.code(), "receipt_key_set_mismatch");
    assert!(!err.is_retryable());
    assert!(
        c.cached_node().is_none(),
        "a signature failure must drop the cached key set"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_answer_is_refused() {
    let w = world().await;
    w.node.faults.tamper_answer.store(true, Ordering::SeqCst);
    let c = client(&w, &w.url);
    let err = c.infer(MODEL, INPUTS).await.unwrap_err();
    assert_eq!(err.code(), "decryption_failed");
    assert!(c.cached_node().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_and_transport_failures_are_typed() {
    let w = world().await;
    let strict = Client::new(&w.url, config(&w, Policy::aws_nitro().unwrap())).unwrap();
    let err = strict.infer(MODEL, INPUTS).await.unwrap_err();
    assert_eq!(err.code(), "untrusted_root");
    match &err {
        ClientError::Attestation { report, .. } => assert!(!report.verified),
        other => panic!("{other}"),
    }
    // Evidence older than the policy's max age (client clock 10 min ahead).
    let c = client(&w, &w.url);
    let node_clock = w.clock.load(Ordering::SeqCst);
    let mut cfg = config(&w, dev_policy(&w));
    cfg.clock = Arc::new(move || UnixTime::from_millis(node_clock + 600_000));
    let late = Client::new(&w.url, cfg).unwrap();
    assert_eq!(
        late.infer(MODEL, INPUTS).await.unwrap_err().code(),
        "too_old"
    );
    // Nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let err = client(&w, &closed).infer(MODEL, INPUTS).await.unwrap_err();
    assert!(matches!(err, ClientError::Http(_)), "{err}");
    assert_eq!(err.code(), "transport");
    // The HTTP client's error is kept as the cause.
    assert!(
        std::error::Error::source(&err)
            .is_some_and(|s| s.downcast_ref::<reqwest::Error>().is_some()),
        "{err:?}"
    );
    assert!(err.is_retryable());
    // Bad inputs never leave the client.
    assert_eq!(
        c.infer(MODEL, "[1,2]").await.unwrap_err().code(),
        "invalid_input"
    );
    assert_eq!(
        c.infer(MODEL, "{").await.unwrap_err().code(),
        "invalid_input"
    );
}

async fn post_sealed(url: &str, body: Vec<u8>) -> (u16, String, Vec<u8>) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/infer"))
        .header("content-type", MEDIA_TYPE)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    (status, ct, resp.bytes().await.unwrap().to_vec())
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// The v1 two-time pad, live: a relay captures an envelope and its sealed
/// answer, replays the envelope (at once, and after the window) and XORs
/// the answers with the refusal text it can guess. v2 refuses the replays in
/// plaintext before sealing anything, so there is no second ciphertext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_captured_envelope_recovers_nothing() {
    let w = world().await;
    let (relay_state, relay_url) = relayed(&w).await;
    let out = client(&w, &relay_url).infer(MODEL, INPUTS).await.unwrap();
    assert!(out.output.get().contains(OUTPUT_MARKER));
    let captured = relay_state.last_request.lock().unwrap().clone();
    let genuine = relay_state.last_answer.lock().unwrap().clone();
    let ciphertext = &genuine[attesta_seal::envelope::RESPONSE_HEADER_LEN..];

    for (advance_ms, code) in [(1_000, "replayed_request"), (120_000, "stale_request")] {
        w.clock.fetch_add(advance_ms, Ordering::SeqCst);
        let (status, ct, body) = post_sealed(&w.url, captured.clone()).await;
        assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
        assert_eq!(ct, "application/json", "refusals are never sealed");
        let refusal: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(refusal["error"]["code"], code);
        // The attack: C1 ⊕ C2 ⊕ P2. Here C2 is P2 itself, so all it yields is C1.
        let recovered = xor(&xor(ciphertext, &body), &body);
        assert!(!String::from_utf8_lossy(&recovered).contains(OUTPUT_MARKER));
        assert!(!String::from_utf8_lossy(&xor(ciphertext, &body)).contains("output"));
    }
    assert_eq!(
        w.node.replay.len(),
        1,
        "only the genuine request was remembered"
    );
}

/// A relay that keeps the genuine sealed answer and hands the client the
/// node's refusal of a replay instead: the client must report a failure it
/// cannot attribute, never success and never the node's verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_swapping_in_a_replay_refusal_is_reported_unauthenticated() {
    let w = world().await;
    let (relay_state, relay_url) = relayed(&w).await;
    relay_state
        .swap_in_replay_refusal
        .store(true, Ordering::SeqCst);
    let c = client(&w, &relay_url);
    let err = c.infer(MODEL, INPUTS).await.unwrap_err();
    match &err {
        ClientError::Unauthenticated { status, code, .. } => {
            assert_eq!(*status, 409);
            assert_eq!(code, "replayed_request");
        }
        other => panic!("expected an unauthenticated refusal, got {other:?}"),
    }
    assert!(!err.is_node_verdict());
    assert!(err.to_string().contains("may come from a relay"), "{err}");
    // The node did run it: the genuine answer existed and was sealed.
    let genuine = relay_state.last_answer.lock().unwrap().clone();
    assert_eq!(&genuine[..2], &[2, 2]);
    // A sealed error, by contrast, is the node's authenticated verdict.
    relay_state
        .swap_in_replay_refusal
        .store(false, Ordering::SeqCst);
    let err = c.infer("QmNoSuchModel", INPUTS).await.unwrap_err();
    assert!(err.is_node_verdict(), "{err:?}");
    assert_eq!(err.code(), "model_not_found");
}

/// 3,000 valid sealed envelopes for a model the node does not have, three
/// times the replay memory's capacity, while genuine requests run: none of
/// them is charged to the memory (the v1 node remembered each one and then
/// answered every genuine request `busy`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_for_a_missing_model_never_fills_the_replay_memory() {
    let w = world().await;
    let c = client(&w, &w.url);
    c.infer(MODEL, INPUTS).await.unwrap();
    let keyset = *w.node.keys.read().unwrap().public();
    let now = w.clock.load(Ordering::SeqCst) / 1000;
    let started = std::time::Instant::now();
    let http = reqwest::Client::new();
    let mut rng = TestRng(9_000);
    let mut genuine = 1;
    for batch in 0..30 {
        let bodies: Vec<Vec<u8>> = (0..100)
            .map(|i| {
                let req = RequestPlaintext {
                    model: "QmNoSuchModel".into(),
                    inputs: serde_json::value::RawValue::from_string(INPUTS.into()).unwrap(),
                    request_id: format!("flood-{batch}-{i}"),
                    issued_at: now,
                    nonce: None,
                };
                seal_request(&keyset, &req, &mut rng).unwrap().0
            })
            .collect();
        let mut sends = tokio::task::JoinSet::new();
        for b in bodies {
            let send = http
                .post(format!("{}/v1/infer", w.url))
                .header("content-type", MEDIA_TYPE)
                .body(b)
                .send();
            sends.spawn(async move { send.await.unwrap().status().as_u16() });
        }
        while let Some(status) = sends.join_next().await {
            assert_eq!(status.unwrap(), 404);
        }
        c.infer(MODEL, INPUTS).await.unwrap();
        genuine += 1;
    }
    assert_eq!(w.node.replay.len(), genuine);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// Streamed text is bounded by what a signed answer can hold (one frame): a node that keeps
/// sending validly sealed text past it is cut off with a typed error, not buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_streaming_more_text_than_any_answer_holds_is_cut_off() {
    let w = world().await;
    let c = client(&w, &w.url);
    let body = r#"{"model": "m", "prompt": "hi", "max_tokens": 4}"#;

    // Within the bound the stream is read to the end and judged there: the signed text
    // (one chunk's) is not what was streamed.
    w.node.flood_chunks.store(2, Ordering::SeqCst);
    let mut seen = 0;
    let err = c
        .complete("/v1/completions", MODEL, body, |_| seen += 1)
        .await
        .unwrap_err();
    assert_eq!(seen, 2);
    assert!(
        matches!(&err, ClientError::Protocol(m) if m.contains("differs from the signed")),
        "{err:?}"
    );

    // Past it (9 MiB of text, frames hold 8 MiB) the client stops at the chunk that crosses.
    w.node.flood_chunks.store(9, Ordering::SeqCst);
    let mut seen = 0;
    let err = c
        .complete("/v1/completions", MODEL, body, |_| seen += 1)
        .await
        .unwrap_err();
    assert_eq!(seen, 8, "chunks handed out before the cut");
    assert!(
        matches!(&err, ClientError::Protocol(m) if m.contains("more than the signed answer can hold")),
        "{err:?}"
    );
}
