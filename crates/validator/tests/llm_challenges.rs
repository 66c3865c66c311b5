//! Language-model challenges against a real node (in-process, serving the tiny test
//! GGUF on its OpenAI route) through the round runner: an honest node scores, a node
//! whose stream swaps one token for a plausible other one scores 0, a node whose stream
//! is slower scores less. The lying and slow nodes are test doubles: a proxy in front of
//! the real node that rewrites or delays its server-sent events. Needs the LLM venv
//! (`ATTESTA_LLM_PYTHON`) to generate the test GGUF.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use attesta_content::Profile;
use attesta_content::store::{ModelStore, StoreOptions};
use attesta_engine::tract::TractEngine;
use attesta_llm::LlmModel;
use attesta_node::{Node, NodeConfig, NodeParts};
use attesta_validator::challenge::Challenge;
use attesta_validator::llm_challenge::{self, LlmChallenge, LlmChallengeSet, LlmChallengeSpec};
use attesta_validator::probe::{Answer, Attested, ChannelFactory, NodeChannel, ProbeError};
use attesta_validator::registry::NodeEntry;
use attesta_validator::round::{NodeCheck, RoundSettings, SystemClock, run_checks};
use attesta_validator::scoring::{RoundOutcome, ScoringParams, score_round};
use attesta_validator::state::Outcome;
use axum::body::Body;
use axum::extract::State as AxState;
use axum::response::Response;
use futures::future::BoxFuture;
use rand_core::SeedableRng;
use serde_json::Value;

const MODEL: &str = "tiny-spm-q8_0";

fn gguf_bytes() -> Vec<u8> {
    std::fs::read(attesta_test_support::llm::test_gguf(MODEL)).unwrap()
}

/// A real node serving the test GGUF; returns its address and the model's CID.
async fn llm_node(dir: &std::path::Path) -> (SocketAddr, String) {
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
    let node = Node::build(config, NodeParts::new(Arc::new(TractEngine::new(1)), store));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(node.serve(listener, std::future::pending::<()>()));
    (addr, cid)
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// Passes the stream on unchanged.
    Pass,
    /// Replaces the first token by another ordinary token (id and text).
    Lie,
    /// Delays every event.
    Slow,
}

#[derive(Clone)]
struct Proxy {
    upstream: SocketAddr,
    mode: Mode,
    llm: Arc<LlmModel>,
}

/// An ordinary single-ASCII-word token other than `not`.
fn other_token(llm: &LlmModel, not: u32) -> u32 {
    let tok = llm.tokenizer();
    (0..tok.n_vocab() as u32)
        .find(|&id| {
            id != not
                && !tok.is_control(id)
                && !tok.is_eog(id)
                && tok.decode(&[id], false).len() >= 3
                && tok
                    .decode(&[id], false)
                    .bytes()
                    .all(|b| b.is_ascii_alphabetic())
        })
        .unwrap()
}

/// Rewrites one `data:` payload (the first carrying a token id, in `Lie` mode).
fn rewrite(p: &Proxy, data: &str, lied: &mut bool) -> String {
    if p.mode != Mode::Lie || *lied || data == "[DONE]" {
        return data.to_string();
    }
    let mut v: Value = serde_json::from_str(data).unwrap();
    let Some(id) = v["choices"][0]["token_ids"][0].as_u64() else {
        return data.to_string();
    };
    let tok = p.llm.tokenizer();
    if tok.is_eog(id as u32) {
        return data.to_string();
    }
    let new = other_token(&p.llm, id as u32);
    v["choices"][0]["token_ids"] = serde_json::json!([new]);
    v["choices"][0]["text"] = Value::String(tok.decode(&[new], false));
    *lied = true;
    v.to_string()
}

async fn proxy(AxState(p): AxState<Arc<Proxy>>, body: axum::body::Bytes) -> Response {
    let upstream = reqwest::Client::new()
        .post(format!("http://{}/v1/completions", p.upstream))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let text = upstream.text().await.unwrap();
    let mut lied = false;
    let events: Vec<String> = text
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| match e.strip_prefix("data: ") {
            Some(d) => format!("data: {}\n\n", rewrite(&p, d, &mut lied)),
            None => format!("{e}\n\n"),
        })
        .collect();
    let mode = p.mode;
    let stream = futures::stream::iter(events).then(move |e| async move {
        if mode == Mode::Slow {
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        Ok::<_, std::convert::Infallible>(axum::body::Bytes::from(e))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

use futures::StreamExt as _;

async fn start_proxy(upstream: SocketAddr, mode: Mode, llm: Arc<LlmModel>) -> SocketAddr {
    let app = axum::Router::new()
        .route("/v1/completions", axum::routing::post(proxy))
        .with_state(Arc::new(Proxy {
            upstream,
            mode,
            llm,
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A channel whose attestation always passes (attestation is the other tests' subject)
/// and whose language-model challenges go to the node's URL.
struct Plain {
    url: String,
}

impl NodeChannel for Plain {
    fn attest(&self) -> BoxFuture<'_, Result<Attested, ProbeError>> {
        Box::pin(async {
            Ok(Attested {
                nonce: vec![7; 32],
                platform: "dev (insecure)".into(),
                measurement: "not checked".into(),
            })
        })
    }

    fn infer<'a>(&'a self, _: &'a Challenge) -> BoxFuture<'a, Result<Answer, ProbeError>> {
        Box::pin(async { Err(ProbeError::Protocol("no ONNX challenges here".into())) })
    }

    fn complete<'a>(
        &'a self,
        ch: &'a LlmChallenge,
    ) -> BoxFuture<'a, Result<llm_challenge::StreamedAnswer, ProbeError>> {
        Box::pin(async move {
            llm_challenge::request(&reqwest::Client::new(), &self.url, ch, &SystemClock).await
        })
    }
}

struct Plains;

impl ChannelFactory for Plains {
    fn channel(&self, node: &NodeEntry) -> Result<Arc<dyn NodeChannel>, ProbeError> {
        Ok(Arc::new(Plain {
            url: node.url.clone(),
        }))
    }
}

fn entry(id: &str, addr: SocketAddr) -> NodeEntry {
    NodeEntry {
        id: id.into(),
        url: format!("http://{addr}"),
        hotkey: None,
        via: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn honest_scores_liar_scores_zero_slow_scores_less() {
    let dir = tempfile::tempdir().unwrap();
    let (node, cid) = llm_node(dir.path()).await;
    let mut spec = LlmChallengeSpec::new(cid.clone());
    spec.prompt_tokens = 8;
    spec.completion_tokens = 12;
    let set = LlmChallengeSet::from_bytes(vec![(spec, gguf_bytes())]).unwrap();
    assert_eq!(set.cids(), vec![cid]);
    let llm = Arc::new(LlmModel::from_bytes(&gguf_bytes()).unwrap());
    let honest = start_proxy(node, Mode::Pass, Arc::clone(&llm)).await;
    let liar = start_proxy(node, Mode::Lie, Arc::clone(&llm)).await;
    let slow = start_proxy(node, Mode::Slow, Arc::clone(&llm)).await;
    let mut rng = attesta_validator::ValidatorRng::seed_from_u64(13);
    let mut prev = BTreeMap::new();
    for round in 0..2 {
        let ch = set.generate(&mut rng).unwrap();
        assert!(
            ch.prompt
                .iter()
                .skip(1)
                .all(|&id| !llm.tokenizer().is_control(id) && !llm.tokenizer().is_eog(id)),
            "random prompts use ordinary tokens only"
        );
        let checks: Vec<NodeCheck> = [("honest", honest), ("liar", liar), ("slow", slow)]
            .into_iter()
            .map(|(id, addr)| NodeCheck {
                node: entry(id, addr),
                challenges: Vec::new(),
                llm: vec![ch.clone()],
            })
            .collect();
        let results = run_checks(
            checks,
            Arc::new(Plains),
            Arc::new(SystemClock),
            RoundSettings {
                concurrency: 1,
                node_timeout: Duration::from_secs(60),
            },
        )
        .await;
        let mut outcomes = BTreeMap::new();
        let mut times = Vec::new();
        for nr in &results {
            let a = &nr.attempts[0];
            match nr.node.id.as_str() {
                "liar" => {
                    assert_eq!(a.outcome, Outcome::Wrong, "{a:?}");
                    let reason = a.reason.as_deref().unwrap();
                    assert!(reason.contains("greedy token"), "{reason}");
                }
                _ => {
                    assert_eq!(a.outcome, Outcome::Correct, "{}: {a:?}", nr.node.id);
                    let t = a.llm.unwrap();
                    assert!(t.tokens >= 1 && t.scored_secs > 0.0, "{t:?}");
                }
            }
            let o = if a.outcome == Outcome::Correct {
                let secs = a.latency_us.unwrap() as f64 / 1e6;
                times.push(secs);
                RoundOutcome::Verified { latency_secs: secs }
            } else {
                RoundOutcome::Failed
            };
            outcomes.insert(nr.node.id.clone(), o);
        }
        prev = score_round(&prev, &outcomes, &times, 60.0, &ScoringParams::default());
        eprintln!("round {round}: {prev:?}");
    }
    assert!(prev["honest"] > 0.0);
    assert_eq!(prev["liar"], 0.0);
    assert!(prev["slow"] < prev["honest"], "{prev:?}");
}

/// A stream cut before `[DONE]` earns nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_stream_without_done_is_a_failed_answer() {
    let app = axum::Router::new().route(
        "/v1/completions",
        axum::routing::post(|| async {
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from(
                    "data: {\"choices\":[{\"text\":\"a\",\"token_ids\":[5]}]}\n\n",
                ))
                .unwrap()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut spec = LlmChallengeSpec::new("bafkreigguf");
    spec.prompt_tokens = 4;
    spec.completion_tokens = 4;
    let set = LlmChallengeSet::from_bytes(vec![(spec, gguf_bytes())]).unwrap();
    let ch = set
        .generate(&mut attesta_validator::ValidatorRng::seed_from_u64(1))
        .unwrap();
    let err = llm_challenge::request(
        &reqwest::Client::new(),
        &format!("http://{addr}"),
        &ch,
        &SystemClock,
    )
    .await
    .unwrap_err();
    assert_eq!(err.outcome(), Outcome::Protocol);
    assert!(err.to_string().contains("[DONE]"), "{err}");
}
