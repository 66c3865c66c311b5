//! Model loading under a budget, in-process (no child processes): single
//! flight, failure memory, bounded concurrency, waits bounded by the request
//! deadline, and the in-flight memory budget.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use attesta_content::Cid;
use attesta_content::importer::Profile;
use attesta_content::store::{ModelStore, StoreOptions};
use attesta_engine::{
    DType, Dim, Engine, EngineError, Limits, Model, ModelInfo, NamedTensor, Tensor, TensorInfo,
};
use attesta_node::cache::ModelCache;
use attesta_node::infer::Executor;
use attesta_node::loader::{Isolation, LoadConfig, Loader};
use attesta_node::metrics::Metrics;
use attesta_node::source::LocalStore;
use attesta_node::{AppState, NodeConfig};

/// Generous bound for anything that should be quick.
const QUICK: Duration = Duration::from_secs(10);

/// An engine whose "model files" are instructions: `sleep:MS` loads after
/// MS milliseconds, `fail` is refused, anything else loads at once. It
/// counts loads and the most that ever ran at once.
#[derive(Default)]
struct ScriptedEngine {
    loads: AtomicUsize,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl Engine for ScriptedEngine {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn version(&self) -> &'static str {
        "0"
    }
    fn load(&self, onnx: &[u8], _limits: &Limits) -> Result<Arc<dyn Model>, EngineError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let text = String::from_utf8_lossy(onnx).to_string();
        let word = text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        if let Some(ms) = word.strip_prefix("sleep:") {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap()));
        }
        self.running.fetch_sub(1, Ordering::SeqCst);
        if word == "fail" {
            return Err(EngineError::Load("scripted refusal".into()));
        }
        Ok(Arc::new(EchoModel::default()))
    }
}

/// `y = x` for a float vector of any length.
struct EchoModel {
    info: ModelInfo,
}

impl Default for EchoModel {
    fn default() -> Self {
        let t = |name: &str| TensorInfo {
            name: name.into(),
            dtype: DType::F32,
            shape: Some(vec![Dim::Symbolic("n".into())]),
        };
        EchoModel {
            info: ModelInfo {
                inputs: vec![t("x")],
                outputs: vec![t("y")],
            },
        }
    }
}

impl Model for EchoModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn run(&self, mut inputs: Vec<Tensor>) -> Result<Vec<NamedTensor>, EngineError> {
        Ok(vec![NamedTensor {
            name: "y".into(),
            tensor: inputs.pop().unwrap(),
        }])
    }
    fn memory_estimate(&self) -> usize {
        1000
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: ModelStore,
    engine: Arc<ScriptedEngine>,
    metrics: Arc<Metrics>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::open(dir.path().join("models"), StoreOptions::default()).unwrap();
        Fixture {
            _dir: dir,
            store,
            engine: Arc::new(ScriptedEngine::default()),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Stores a model file with the given script (plus `tag` to make its CID unique).
    fn add(&self, script: &str, tag: usize) -> Cid {
        let path = self._dir.path().join(format!("m{tag}"));
        std::fs::write(&path, format!("{script} #{tag}")).unwrap();
        self.store
            .add_file(&path, Profile::KuboDefaultV0)
            .unwrap()
            .cid
    }

    fn cache(&self, config: LoadConfig, wait: Duration) -> Arc<ModelCache> {
        let loader = Loader::new(self.engine.clone(), Limits::default(), config);
        Arc::new(ModelCache::new(
            loader,
            1 << 30,
            wait,
            Arc::new(LocalStore::new(self.store.clone())),
            self.metrics.clone(),
        ))
    }
}

fn in_process(timeout: Duration, max_concurrent: usize) -> LoadConfig {
    LoadConfig {
        timeout,
        max_concurrent,
        isolation: Isolation::InsecureInProcess,
        ..LoadConfig::default()
    }
}

/// Starts one `get` per CID, concurrently.
fn spawn_gets(
    cache: &Arc<ModelCache>,
    cids: impl Iterator<Item = Cid>,
) -> Vec<tokio::task::JoinHandle<Result<(), attesta_node::error::ApiError>>> {
    cids.map(|cid| {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get(&cid).await.map(|_| ()) })
    })
    .collect()
}

/// The error of a request that must fail.
fn refused<T>(r: Result<T, attesta_node::error::ApiError>) -> attesta_node::error::ApiError {
    match r {
        Ok(_) => panic!("the request succeeded"),
        Err(e) => e,
    }
}

/// Runs `fut`, failing the test instead of hanging when it does not end.
async fn bounded<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .expect("did not finish within 30 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_one_model_share_one_load() {
    let fx = Fixture::new();
    let cid = fx.add("sleep:300", 0);
    let cache = fx.cache(in_process(QUICK, 2), QUICK);
    let gets = spawn_gets(&cache, std::iter::repeat_n(cid.clone(), 16));
    for g in gets {
        bounded(g).await.unwrap().unwrap();
    }
    assert_eq!(fx.engine.loads.load(Ordering::SeqCst), 1);
    // Served from memory now, without another load.
    cache.get(&cid).await.unwrap();
    assert_eq!(fx.engine.loads.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_gives_up_does_not_start_a_second_load() {
    let fx = Fixture::new();
    let cid = fx.add("sleep:600", 0);
    let cache = fx.cache(in_process(QUICK, 2), QUICK);
    let first = spawn_gets(&cache, std::iter::once(cid.clone()));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(fx.engine.loads.load(Ordering::SeqCst), 1);
    // The client that started the load goes away (its connection drops)...
    first.iter().for_each(|t| t.abort());
    // ...and the requests after it join the same load instead of starting one.
    let later = spawn_gets(&cache, std::iter::repeat_n(cid.clone(), 4));
    for g in later {
        bounded(g).await.unwrap().unwrap();
    }
    assert_eq!(fx.engine.loads.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_over_its_time_budget_fails_once_and_is_remembered() {
    let fx = Fixture::new();
    let cid = fx.add("sleep:3000", 0);
    let cache = fx.cache(in_process(Duration::from_millis(200), 2), QUICK);
    let started = Instant::now();
    let gets = spawn_gets(&cache, std::iter::repeat_n(cid.clone(), 8));
    for g in gets {
        let e = bounded(g).await.unwrap().unwrap_err();
        assert_eq!(e.status.as_u16(), 422, "{}", e.message);
        assert_eq!(e.code, "model_load_failed");
        assert!(e.message.contains("time budget"), "{}", e.message);
    }
    // Answered at the budget, not when the 3 s load ends.
    assert!(started.elapsed() < Duration::from_millis(2500));
    // Remembered: answered at once, and no second load starts.
    let again = Instant::now();
    let e = refused(cache.get(&cid).await);
    assert_eq!(e.code, "model_load_failed");
    assert!(again.elapsed() < Duration::from_millis(100));
    assert!(cache.failure(&cid).is_some());
    assert_eq!(fx.engine.loads.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_model_is_remembered_by_its_error_kind() {
    let fx = Fixture::new();
    let cid = fx.add("fail", 0);
    let cache = fx.cache(in_process(QUICK, 2), QUICK);
    for _ in 0..3 {
        let e = refused(bounded(cache.get(&cid)).await);
        assert_eq!((e.status.as_u16(), e.code), (422, "model_load_failed"));
        assert!(e.message.contains("scripted refusal"), "{}", e.message);
    }
    assert_eq!(fx.engine.loads.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loads_of_different_models_are_bounded_in_number() {
    let fx = Fixture::new();
    let cids: Vec<Cid> = (0..6).map(|i| fx.add("sleep:200", i)).collect();
    let cache = fx.cache(in_process(QUICK, 2), QUICK);
    let gets = spawn_gets(&cache, cids.iter().cloned());
    for g in gets {
        bounded(g).await.unwrap().unwrap();
    }
    assert_eq!(fx.engine.loads.load(Ordering::SeqCst), 6);
    assert!(
        fx.engine.max_running.load(Ordering::SeqCst) <= 2,
        "{} loads ran at once",
        fx.engine.max_running.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_a_load_no_longer_than_its_deadline() {
    let fx = Fixture::new();
    let cid = fx.add("sleep:2000", 0);
    let cache = fx.cache(in_process(QUICK, 1), Duration::from_millis(200));
    let started = Instant::now();
    let e = refused(bounded(cache.get(&cid)).await);
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!((e.status.as_u16(), e.code), (503, "timeout"));
    // A slow load is not a verdict: nothing is remembered.
    assert!(cache.failure(&cid).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inflight_budget_queues_runs_and_refuses_what_never_fits() {
    let exec = Arc::new(Executor::new(8, Duration::from_millis(300)).with_inflight_bytes(3 << 20));
    // Never fits: refused at once, without waiting for the deadline.
    let e = exec.run_charged(4 << 20, || Ok(())).await.unwrap_err();
    assert_eq!((e.status.as_u16(), e.code), (413, "inference_too_large"));
    // Two runs of 2 MiB do not fit together: the second waits, and its
    // deadline ends the wait while the first still holds its charge.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let first = {
        let exec = exec.clone();
        tokio::spawn(async move {
            exec.run_charged(2 << 20, move || {
                let _ = released.recv();
                Ok(())
            })
            .await
        })
    };
    let available_within = |bytes: usize, at_least: bool| {
        let exec = exec.clone();
        bounded(async move {
            while (exec.budget().available() >= bytes) != at_least {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // The first run holds its charge...
    available_within(2 << 20, false).await;
    let e = exec.run_charged(2 << 20, || Ok(())).await.unwrap_err();
    assert_eq!((e.status.as_u16(), e.code), (503, "timeout"));
    // ...even past its own deadline, until its run really ends.
    let _ = bounded(first).await.unwrap();
    assert!(exec.budget().available() < 2 << 20);
    release.send(()).unwrap();
    available_within(3 << 20, true).await;
    exec.run_charged(2 << 20, || Ok(())).await.unwrap();
}

/// A job that computes until its handle fires (at most 30 s), then reports how long it ran.
fn until_cancelled(
    cancel: &attesta_engine::Cancel,
) -> Result<Duration, attesta_node::error::ApiError> {
    let started = Instant::now();
    while !cancel.is_cancelled() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_deadline_or_abandoned_is_stopped_and_gives_its_slot_back() {
    let exec = Arc::new(Executor::new(1, Duration::from_millis(200)).with_inflight_bytes(3 << 20));
    // The deadline answers 503 and fires the run's handle: the one slot and the charge
    // come back long before the job's own 30 s.
    let started = Instant::now();
    let e = exec
        .run_cancellable(2 << 20, until_cancelled)
        .await
        .unwrap_err();
    assert_eq!((e.status.as_u16(), e.code), (503, "timeout"));
    let ran = bounded(exec.run_cancellable(2 << 20, |_| Ok(Instant::now())))
        .await
        .unwrap();
    assert!(
        ran.duration_since(started) < Duration::from_secs(5),
        "the slot came back only after {:?}",
        ran.duration_since(started)
    );

    // A caller that stops waiting (its client went away) stops the run too.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let waiting = {
        let exec = exec.clone();
        tokio::spawn(async move {
            exec.run_cancellable(0, move |cancel| {
                let _ = tx.send(());
                until_cancelled(cancel)
            })
            .await
        })
    };
    bounded(rx).await.unwrap();
    waiting.abort();
    let started = Instant::now();
    bounded(exec.run_cancellable(0, |_| Ok(()))).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infer_refuses_a_request_over_the_inflight_budget() {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let fx = Fixture::new();
    let cid = fx.add("ok", 0);
    let config = NodeConfig {
        inflight_bytes: 2 << 20,
        loading: in_process(QUICK, 1),
        ..NodeConfig::default()
    };
    let state = AppState::new(
        &config,
        fx.engine.clone(),
        fx.store.clone(),
        Arc::new(LocalStore::new(fx.store.clone())),
        fx.metrics.clone(),
    );
    let app = attesta_node::router(Arc::new(state), &config);
    let body = |n: usize| {
        let values: Vec<_> = (0..n)
            .map(|_| serde_json::json!({"value": 1, "decimals": 0}))
            .collect();
        let inputs = serde_json::json!({"numbers": [{"name": "x", "shape": [n], "values": values}], "strings": []});
        serde_json::json!({"ipfs_hash": cid.to_string(), "model_inputs": inputs.to_string()})
            .to_string()
    };
    let send = |text: String| {
        let app = app.clone();
        async move {
            let req = axum::http::Request::post("/infer")
                .header("content-type", "application/json")
                .body(Body::from(text))
                .unwrap();
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            )
        }
    };
    // 4 floats: within the budget.
    let (status, json) = bounded(send(body(4))).await;
    assert_eq!(status, 200, "{json}");
    // 100k floats are charged 8 x 400 kB = 3.2 MB, over the 2 MiB budget.
    let (status, json) = bounded(send(body(100_000))).await;
    assert_eq!(status, 413, "{json}");
    assert_eq!(json["error"]["code"], "inference_too_large");
}
