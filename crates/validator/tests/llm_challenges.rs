//! Language-model challenges against real nodes (in-process, serving the tiny test GGUF,
//! attested by the dev TEE) through the round runner and the production channel
//! (`ClientFactory`: the sealed `/v1/completions` stream, its receipt checked): an honest
//! node scores, directly and through its Bittensor axon (`TeeCompletion`); a node whose sealed answer is tampered with or cut on the way, and a node
//! whose completion is not greedy (its declared `wrong-output` fault answers another
//! first token, honestly sealed and signed), score 0, directly and through an axon; a node whose stream is slower scores
//! less. The tampering and slow nodes are a relay in front of the honest node that flips
//! a byte of, cuts or delays its sealed stream. Needs the LLM venv
//! (`ATTESTA_LLM_PYTHON`) to generate the test GGUF.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use attesta_attester::dev::{DevAttester, DevOptions, release_for_executable};
use attesta_content::Profile;
use attesta_content::store::{ModelStore, StoreOptions};
use attesta_engine::tract::TractEngine;
use attesta_evidence::{Policy, Registry, TrustedRoot, danger};
use attesta_llm::LlmModel;
use attesta_node::fault::{ActiveFault, Fault};
use attesta_node::{Node, NodeConfig, NodeParts};
use attesta_validator::client_channel::{ClientFactory, system_rng};
use attesta_validator::llm_challenge::{LlmChallengeSet, LlmChallengeSpec};
use attesta_validator::registry::{NodeEntry, Via};
use attesta_validator::round::{NodeCheck, RoundSettings, SystemClock, run_checks};
use attesta_validator::scoring::{RoundOutcome, ScoringParams, score_round};
use attesta_validator::state::{Attempt, Outcome};
use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use rand_core::SeedableRng;

const MODEL: &str = "tiny-spm-q8_0";

fn gguf_bytes() -> Vec<u8> {
    std::fs::read(attesta_test_support::llm::test_gguf(MODEL)).unwrap()
}

/// The dev TEE of the tests: one trusted root, one measured "release" executable.
struct Tee {
    root: std::path::PathBuf,
    exe: std::path::PathBuf,
}

impl Tee {
    fn new(dir: &Path) -> Self {
        let exe = dir.join("attesta-release");
        std::fs::write(&exe, b"the released build").unwrap();
        Tee {
            root: dir.join("root"),
            exe,
        }
    }

    fn attester(&self) -> DevAttester {
        let mut opts = DevOptions::new(&self.root).unwrap();
        opts.executable = self.exe.clone();
        DevAttester::open(opts).unwrap()
    }

    /// The validator's policy: the dev root, the release measurement, and declared faults
    /// accepted, so a faulty node is judged by its answers (as on the devnet).
    fn policy(&self) -> Policy {
        let root = TrustedRoot::from_der("dev root", self.attester().root_der()).unwrap();
        danger::accept_declared_faults(
            danger::accept_dev_root(Policy::aws_nitro().unwrap(), root).with_measurements(
                Registry::new(vec![release_for_executable(&self.exe, "release").unwrap()]),
            ),
        )
    }
}

/// A real attested node serving the test GGUF (with `fault` declared and applied when
/// given); returns its address and the model's CID.
async fn llm_node(dir: &Path, tee: &Tee, fault: Option<Fault>) -> (SocketAddr, String) {
    let store = ModelStore::open(dir.join("store"), StoreOptions::default()).unwrap();
    let path = dir.join("model.gguf");
    std::fs::write(&path, gguf_bytes()).unwrap();
    let cid = store
        .add_file(&path, Profile::KuboDefaultV0)
        .unwrap()
        .cid
        .to_string();
    let mut config = NodeConfig {
        workers: 2,
        ..NodeConfig::default()
    };
    // The test binary cannot be the load probe: load in-process.
    config.loading.isolation = attesta_node::loader::Isolation::InsecureInProcess;
    let attester: Arc<dyn attesta_attester::Attester> = match fault {
        None => Arc::new(tee.attester()),
        Some(f) => {
            let (active, dev) = ActiveFault::declare(f, tee.attester()).unwrap();
            config.fault = Some(active);
            dev
        }
    };
    let mut parts = NodeParts::new(Arc::new(TractEngine::new(1)), store);
    parts.attester = Some(attester);
    let node = Node::build(config, parts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(node.serve(listener, std::future::pending::<()>()));
    (addr, cid)
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// Passes everything on unchanged.
    Pass,
    /// Flips one byte in the middle of the sealed stream.
    Tamper,
    /// Drops the end of the sealed stream (its last chunk with the receipt).
    Cut,
    /// Delays every piece of the stream.
    Slow,
}

#[derive(Clone)]
struct Relay {
    upstream: SocketAddr,
    mode: Mode,
}

/// An untrusted relay in front of a node: attestation passes through, the sealed
/// completion stream is read whole and sent on as `mode` says.
async fn relay(
    AxState(r): AxState<Arc<Relay>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let url = format!("http://{}{}", r.upstream, uri);
    let http = reqwest::Client::new();
    let req = if uri.path() == "/v1/attestation" {
        http.get(&url)
    } else {
        let mut req = http.post(&url).body(body);
        for h in ["content-type", "accept"] {
            if let Some(v) = headers.get(h) {
                req = req.header(h, v.to_str().unwrap());
            }
        }
        req
    };
    let upstream = req.send().await.unwrap();
    let status = upstream.status();
    let ct = upstream
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let mut bytes = upstream.bytes().await.unwrap().to_vec();
    let streamed = ct.starts_with(attesta_seal::STREAM_MEDIA_TYPE);
    if streamed {
        match r.mode {
            Mode::Tamper => {
                let i = bytes.len() / 2;
                bytes[i] ^= 0x01;
            }
            Mode::Cut => bytes.truncate(bytes.len() * 3 / 4),
            Mode::Pass | Mode::Slow => {}
        }
    }
    let mode = r.mode;
    let pieces: Vec<Vec<u8>> = bytes.chunks(96).map(<[u8]>::to_vec).collect();
    let stream = futures::stream::iter(pieces).then(move |p| async move {
        if mode == Mode::Slow && streamed {
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        Ok::<_, std::convert::Infallible>(Bytes::from(p))
    });
    Response::builder()
        .status(status.as_u16())
        .header("content-type", ct)
        .body(Body::from_stream(stream))
        .unwrap()
}

use futures::StreamExt as _;

async fn start_relay(upstream: SocketAddr, mode: Mode) -> SocketAddr {
    let app = axum::Router::new()
        .fallback(relay)
        .with_state(Arc::new(Relay { upstream, mode }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn entry(id: &str, addr: SocketAddr) -> NodeEntry {
    NodeEntry {
        id: id.into(),
        url: format!("http://{addr}"),
        hotkey: None,
        via: Default::default(),
    }
}

/// A node reached through its axon at `url`, whose hotkey is `//Alice` (see [`behind_axon`]).
fn axon_entry(id: &str, url: String) -> NodeEntry {
    let hotkey = attesta_bittensor::Hotkey::from_dev_uri("//Alice").unwrap();
    NodeEntry {
        id: id.into(),
        url,
        hotkey: Some(hotkey.account().to_ss58()),
        via: Via::Axon,
    }
}

/// Puts `node` behind an in-process `attesta axon` (hotkey `//Alice`, only `//Bob` may
/// call); returns its URL.
async fn behind_axon(node: SocketAddr) -> String {
    use attesta_bittensor::{AxonConfig, CallerPolicy, Hotkey};
    let bob = Hotkey::from_dev_uri("//Bob").unwrap().account();
    let config = AxonConfig::new(
        Hotkey::from_dev_uri("//Alice").unwrap(),
        format!("http://{node}"),
        CallerPolicy::Allow([bob].into()),
    );
    let app = attesta_bittensor::router(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn challenge_set(cid: &str) -> LlmChallengeSet {
    let mut spec = LlmChallengeSpec::new(cid);
    spec.prompt_tokens = 8;
    spec.completion_tokens = 12;
    LlmChallengeSet::from_bytes(vec![(spec, gguf_bytes())]).unwrap()
}

/// Runs `nodes` through rounds of one fresh challenge each and returns the last round's
/// attempts by node and the scores.
async fn rounds(
    set: &LlmChallengeSet,
    factory: Arc<ClientFactory>,
    nodes: &[NodeEntry],
    n: usize,
) -> (BTreeMap<String, Attempt>, BTreeMap<String, f64>) {
    let llm = LlmModel::from_bytes(&gguf_bytes()).unwrap();
    let mut rng = attesta_validator::ValidatorRng::seed_from_u64(13);
    let mut prev = BTreeMap::new();
    let mut last = BTreeMap::new();
    for round in 0..n {
        let ch = set.generate(&mut rng).unwrap();
        assert!(
            ch.prompt
                .iter()
                .skip(1)
                .all(|&id| !llm.tokenizer().is_control(id) && !llm.tokenizer().is_eog(id)),
            "random prompts use ordinary tokens only"
        );
        let checks: Vec<NodeCheck> = nodes
            .iter()
            .map(|node| NodeCheck {
                node: node.clone(),
                challenges: Vec::new(),
                llm: vec![ch.clone()],
            })
            .collect();
        let results = run_checks(
            checks,
            factory.clone(),
            Arc::new(SystemClock),
            RoundSettings {
                concurrency: 1,
                node_timeout: Duration::from_secs(60),
            },
        )
        .await;
        let mut outcomes = BTreeMap::new();
        let mut times = Vec::new();
        for nr in results {
            let a = nr.attempts.last().unwrap().clone();
            let o = if a.outcome == Outcome::Correct {
                let secs = a.latency_us.unwrap() as f64 / 1e6;
                times.push(secs);
                RoundOutcome::Verified { latency_secs: secs }
            } else {
                RoundOutcome::Failed
            };
            outcomes.insert(nr.node.id.clone(), o);
            last.insert(nr.node.id.clone(), a);
        }
        prev = score_round(&prev, &outcomes, &times, 60.0, &ScoringParams::default());
        eprintln!("round {round}: {prev:?}");
    }
    (last, prev)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn honest_and_axon_nodes_score_tampered_cut_and_non_greedy_score_zero_slow_scores_less() {
    let dir = tempfile::tempdir().unwrap();
    let tee = Tee::new(dir.path());
    std::fs::create_dir_all(dir.path().join("honest")).unwrap();
    std::fs::create_dir_all(dir.path().join("faulty")).unwrap();
    let (node, cid) = llm_node(&dir.path().join("honest"), &tee, None).await;
    let (faulty, faulty_cid) =
        llm_node(&dir.path().join("faulty"), &tee, Some(Fault::WrongOutput)).await;
    assert_eq!(cid, faulty_cid);
    let set = challenge_set(&cid);
    assert_eq!(set.cids(), vec![cid.clone()]);
    let nodes = vec![
        entry("honest", node),
        entry("relayed", start_relay(node, Mode::Pass).await),
        entry("tampered", start_relay(node, Mode::Tamper).await),
        entry("cut", start_relay(node, Mode::Cut).await),
        entry("slow", start_relay(node, Mode::Slow).await),
        entry("non-greedy", faulty),
        axon_entry("axon", behind_axon(node).await),
        axon_entry("non-greedy-axon", behind_axon(faulty).await),
    ];
    let timeout = Duration::from_secs(60);
    let dendrite = attesta_bittensor::Dendrite::new(
        attesta_bittensor::Hotkey::from_dev_uri("//Bob").unwrap(),
        timeout,
    )
    .unwrap();
    let factory = Arc::new(
        ClientFactory::new(tee.policy(), timeout, Arc::new(SystemClock), system_rng())
            .with_dendrite(Arc::new(dendrite)),
    );
    let (last, scores) = rounds(&set, factory, &nodes, 2).await;
    for (id, a) in &last {
        match id.as_str() {
            "tampered" => {
                assert_eq!(a.outcome, Outcome::ReceiptInvalid, "{a:?}");
                assert!(a.bundle.is_none());
            }
            "cut" => {
                assert_eq!(a.outcome, Outcome::Protocol, "{a:?}");
                let reason = a.reason.as_deref().unwrap();
                assert!(
                    reason.contains("truncated") || reason.contains("frame"),
                    "{reason}"
                );
            }
            "non-greedy" | "non-greedy-axon" => {
                assert_eq!(a.outcome, Outcome::Wrong, "{a:?}");
                assert!(a.bundle.is_none(), "only correct answers keep a bundle");
                let reason = a.reason.as_deref().unwrap();
                assert!(reason.contains("greedy token"), "{reason}");
            }
            _ => {
                assert_eq!(a.outcome, Outcome::Correct, "{id}: {a:?}");
                // A correct answer keeps its proof bundle, and it verifies offline.
                let bundle = attesta_seal::ProofBundle::from_json(
                    a.bundle
                        .as_deref()
                        .expect("a correct answer keeps its bundle")
                        .as_bytes(),
                )
                .unwrap();
                assert_eq!(bundle.receipt.receipt.model_cid, cid, "{id}");
                let verification = bundle.verify(
                    &attesta_evidence::EvidenceVerifier::new(tee.policy()),
                    Default::default(),
                );
                assert!(
                    verification.outcome.is_ok(),
                    "{id}: {:?}",
                    verification.report
                );
                let t = a.llm.unwrap();
                assert!(t.tokens >= 1 && t.scored_secs > 0.0, "{t:?}");
                if id == "axon" {
                    // The stream came whole: no decode rate, TTFT is the whole answer's time.
                    assert_eq!(t.tokens_per_sec, None, "{t:?}");
                }
                eprintln!("{id}: {t:?}");
            }
        }
    }
    assert!(scores["honest"] > 0.0);
    assert!(scores["axon"] > 0.0, "{scores:?}");
    for id in ["tampered", "cut", "non-greedy", "non-greedy-axon"] {
        assert_eq!(scores[id], 0.0, "{id}: {scores:?}");
    }
    assert!(scores["slow"] < scores["relayed"], "{scores:?}");
}
