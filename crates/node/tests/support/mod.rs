//! In-process test helpers: a node on 127.0.0.1:0 inside the test's runtime, a raw
//! HTTP/1.1 client (so tests control every byte and header), and a fake engine whose models
//! are JSON descriptions of how they behave.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use attesta_content::store::{ModelStore, StoreOptions};
use attesta_content::{Cid, Profile};
use attesta_engine::{
    DType, Dim, Engine, EngineError, Limits, Model, ModelInfo, NamedTensor, Tensor, TensorInfo,
};
use attesta_node::{AppState, Node, NodeConfig, NodeParts};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A node serving in the background; stopped when dropped.
pub struct TestNode {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub store: ModelStore,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A store in a fresh temporary directory.
pub fn temp_store() -> (tempfile::TempDir, ModelStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path().join("store"), StoreOptions::default()).unwrap();
    (dir, store)
}

/// Small limits suitable for tests (nothing waits long).
pub fn test_config() -> NodeConfig {
    let mut c = NodeConfig {
        workers: 2,
        ..NodeConfig::default()
    };
    c.http.header_timeout = Duration::from_secs(5);
    c.http.body_timeout = Duration::from_secs(5);
    c.http.idle_timeout = Duration::from_secs(5);
    c.http.shutdown_grace = Duration::from_secs(1);
    // The test binary is not `attesta`, so it cannot be the load probe: load in-process
    // (the probe itself is tested in tests/probe_process.rs and the cli's load_budget_e2e).
    c.loading.isolation = attesta_node::loader::Isolation::InsecureInProcess;
    c
}

/// Builds a node from `config` and `parts` and serves it on an ephemeral port.
pub async fn start_with(config: NodeConfig, parts: NodeParts) -> TestNode {
    let store = parts.store.clone();
    let node = Node::build(config, parts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = node.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(node.serve(listener, async {
        let _ = rx.await;
    }));
    TestNode {
        addr,
        state,
        store,
        stop: Some(tx),
        _dir: None,
    }
}

/// A store-only node on the fake engine with a fresh store.
pub async fn start(config: NodeConfig, engine: Arc<FakeEngine>) -> TestNode {
    let (dir, store) = temp_store();
    let mut node = start_with(config, NodeParts::new(engine, store)).await;
    node._dir = Some(dir);
    node
}

/// Stores `bytes` as a model and returns its CID.
pub fn add_model(store: &ModelStore, bytes: &[u8]) -> Cid {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model");
    std::fs::write(&p, bytes).unwrap();
    store.add_file(&p, Profile::KuboDefaultV0).unwrap().cid
}

pub use attesta_test_support::http::Response;

/// Sends one request with `Connection: close` and reads the whole answer (30 s cap).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413, 415) before reading everything: ignore write errors.
    let _ = s.write_all(body).await;
    read_response(&mut s).await
}

/// Reads one answer until the server closes the connection.
pub async fn read_response(s: &mut TcpStream) -> Response {
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 8192];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no complete answer within 30 s");
    parse_response(&raw)
}

/// `POST /infer` with a JSON body.
pub async fn infer(addr: SocketAddr, body: &Value) -> Response {
    request(
        addr,
        "POST",
        "/infer",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
}

/// An `/infer` body in OpenGradient's format.
pub fn og_request(cid: &str, numbers: Value) -> Value {
    let inputs = serde_json::json!({ "numbers": numbers, "strings": [] });
    serde_json::json!({ "ipfs_hash": cid, "model_inputs": inputs.to_string() })
}

/// The usual input of a fake model: `x: float32[2]`.
pub fn x2(cid: &Cid) -> Value {
    og_request(
        &cid.to_string(),
        serde_json::json!([{"name": "x", "shape": [2], "values": [
            {"value": 15, "decimals": 1}, {"value": -2, "decimals": 0}
        ]}]),
    )
}

/// Splits a raw `Connection: close` answer into status, headers and body. The node sends
/// every answer with a `Content-Length`, so the body is the rest of the stream.
pub fn parse_response(raw: &[u8]) -> Response {
    let response = Response::parse(raw);
    assert!(
        response.header("transfer-encoding").is_none(),
        "unexpected chunked answer"
    );
    response
}

/// How a fake model behaves, written into its "ONNX" file as JSON.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FakeSpec {
    /// What `memory_estimate` reports.
    pub bytes: usize,
    /// Milliseconds a load takes.
    #[serde(default)]
    pub load_ms: u64,
    /// Milliseconds a run takes.
    #[serde(default)]
    pub run_ms: u64,
    /// `ok` (echo the inputs), `invalid` (engine rejects an input) or `fail` (graph fails).
    #[serde(default = "ok")]
    pub run: String,
    /// Inputs as (name, dtype name, shape); default `x: float32[2]`.
    #[serde(default = "default_inputs")]
    pub inputs: Vec<(String, String, Vec<usize>)>,
    /// Makes otherwise equal specs distinct files (distinct CIDs).
    #[serde(default)]
    pub tag: u32,
}

fn ok() -> String {
    "ok".into()
}

fn default_inputs() -> Vec<(String, String, Vec<usize>)> {
    vec![("x".into(), "float32".into(), vec![2])]
}

impl FakeSpec {
    /// A fast model of `bytes` estimated bytes, made unique by `tag`.
    pub fn sized(bytes: usize, tag: u32) -> Self {
        FakeSpec {
            bytes,
            load_ms: 0,
            run_ms: 0,
            run: ok(),
            inputs: default_inputs(),
            tag,
        }
    }

    /// The model file.
    pub fn file(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap()
    }
}

fn dtype(name: &str) -> DType {
    [
        DType::F32,
        DType::F64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U16,
        DType::U32,
        DType::U64,
        DType::Bool,
        DType::String,
    ]
    .into_iter()
    .find(|d| d.name() == name)
    .unwrap_or_else(|| panic!("unknown dtype {name}"))
}

/// An engine whose models are [`FakeSpec`]s; counts its loads.
#[derive(Default)]
pub struct FakeEngine {
    pub loads: AtomicUsize,
}

impl FakeEngine {
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

impl Engine for FakeEngine {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn version(&self) -> &'static str {
        "0"
    }

    fn load(&self, onnx: &[u8], _limits: &Limits) -> Result<Arc<dyn Model>, EngineError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let spec: FakeSpec = serde_json::from_slice(onnx)
            .map_err(|e| EngineError::Load(format!("not a fake model: {e}")))?;
        std::thread::sleep(Duration::from_millis(spec.load_ms));
        let info = ModelInfo {
            inputs: spec
                .inputs
                .iter()
                .map(|(name, dt, shape)| TensorInfo {
                    name: name.clone(),
                    dtype: dtype(dt),
                    shape: Some(shape.iter().map(|d| Dim::Fixed(*d)).collect()),
                })
                .collect(),
            outputs: vec![TensorInfo {
                name: "y".into(),
                dtype: DType::F32,
                shape: None,
            }],
        };
        Ok(Arc::new(FakeModel { spec, info }))
    }
}

struct FakeModel {
    spec: FakeSpec,
    info: ModelInfo,
}

impl Model for FakeModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<NamedTensor>, EngineError> {
        std::thread::sleep(Duration::from_millis(self.spec.run_ms));
        match self.spec.run.as_str() {
            "invalid" => Err(EngineError::InvalidInput {
                input: "x".into(),
                reason: "the fake engine refuses this input".into(),
            }),
            "fail" => Err(EngineError::Run("the fake graph failed".into())),
            _ => Ok(inputs
                .into_iter()
                .take(1)
                .map(|tensor| NamedTensor {
                    name: "y".into(),
                    tensor,
                })
                .collect()),
        }
    }

    fn memory_estimate(&self) -> usize {
        self.spec.bytes
    }
}

/// The shared fixtures folder (`ATTESTA_FIXTURES`, else `../shared/fixtures` beside the
/// workspace); a missing folder fails the test.
pub fn fixtures() -> std::path::PathBuf {
    attesta_test_support::fixtures()
}
