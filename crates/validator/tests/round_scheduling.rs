//! The round runner's own guarantees, with scripted channels: per-node
//! timeout around the whole check, no head-of-line blocking, bounded
//! concurrency, and "no credit, ever" for each failure kind. (The real
//! attested channel is exercised in `rounds_e2e.rs`.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use attesta_validator::challenge::{Challenge, Tolerance};
use attesta_validator::probe::{Answer, Attested, ChannelFactory, NodeChannel, ProbeError};
use attesta_validator::registry::NodeEntry;
use attesta_validator::round::{NodeCheck, RoundSettings, SystemClock, run_checks};
use attesta_validator::state::{Outcome, Step};
use futures::future::BoxFuture;
use serde_json::json;

#[derive(Clone, Copy, Debug)]
enum Script {
    Honest(u64),
    Hang,
    Wrong,
    BadAttestation,
    BadReceipt,
    OtherModel,
    Refused,
    /// 0.1 % off the expected answer, from the named engine.
    SlightlyOff(&'static str),
}

struct Scripted {
    script: Script,
    inflight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl NodeChannel for Scripted {
    fn attest(&self) -> BoxFuture<'_, Result<Attested, ProbeError>> {
        Box::pin(async move {
            match self.script {
                Script::BadAttestation => Err(ProbeError::Attestation {
                    reason: "PCR0 differs".into(),
                    measurement: Some("mismatch: PCR0".into()),
                    platform: Some("dev (insecure)".into()),
                }),
                Script::Refused => Err(ProbeError::Transport("connection refused".into())),
                _ => Ok(Attested {
                    nonce: vec![7; 32],
                    platform: "dev (insecure)".into(),
                    measurement: "matches release `t`".into(),
                }),
            }
        })
    }

    fn infer<'a>(&'a self, c: &'a Challenge) -> BoxFuture<'a, Result<Answer, ProbeError>> {
        Box::pin(async move {
            let now = self.inflight.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            let started = Instant::now();
            let r = match self.script {
                Script::Honest(ms) => {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Ok(c.expected.clone())
                }
                Script::Hang => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(c.expected.clone())
                }
                Script::Wrong => {
                    Ok(json!([{"name":"y","shape":[1],"result":[42.0],"type":"number"}]))
                }
                Script::BadReceipt => Err(ProbeError::Receipt("signature invalid".into())),
                Script::OtherModel => Ok(c.expected.clone()),
                Script::SlightlyOff(_) => {
                    Ok(json!([{"name":"y","shape":[1],"result":[1.5015],"type":"number"}]))
                }
                Script::BadAttestation | Script::Refused => {
                    Err(ProbeError::Protocol("unreachable".into()))
                }
            };
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            let output = r?;
            let cid = if matches!(self.script, Script::OtherModel) {
                "bafyother".to_string()
            } else {
                c.model_cid.clone()
            };
            let engine = match self.script {
                Script::SlightlyOff(e) => e,
                _ => "tract",
            };
            Ok(Answer {
                output,
                receipt_model_cid: cid,
                receipt_model_sha256: c.model_sha256.clone(),
                receipt_engine: engine.into(),
                latency: started.elapsed(),
                bundle: "{}".into(),
            })
        })
    }
}

struct Factory {
    scripts: Vec<(String, Script)>,
    inflight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl ChannelFactory for Factory {
    fn channel(&self, node: &NodeEntry) -> Result<Arc<dyn NodeChannel>, ProbeError> {
        let script = self
            .scripts
            .iter()
            .find(|(id, _)| *id == node.id)
            .map(|(_, s)| *s)
            .ok_or_else(|| ProbeError::Transport("unknown node".into()))?;
        Ok(Arc::new(Scripted {
            script,
            inflight: Arc::clone(&self.inflight),
            peak: Arc::clone(&self.peak),
        }))
    }
}

fn challenge() -> Challenge {
    Challenge {
        model_cid: "bafymodel".into(),
        model_sha256: "ab".repeat(32),
        inputs: json!({"numbers": [], "strings": []}),
        expected: json!([{"name":"y","shape":[1],"result":[1.5],"type":"number"}]),
        abs_tolerance: 0.0,
        rel_tolerance: 0.0,
        engine_tolerances: [(
            "onnxruntime".to_string(),
            Tolerance {
                abs: 0.0,
                rel: 1e-2,
            },
        )]
        .into(),
    }
}

fn checks(scripts: &[(String, Script)], per_node: usize) -> Vec<NodeCheck> {
    scripts
        .iter()
        .map(|(id, _)| NodeCheck {
            node: NodeEntry {
                id: id.clone(),
                url: "http://127.0.0.1:9".into(),
                hotkey: None,
                via: Default::default(),
            },
            challenges: vec![challenge(); per_node],
            llm: Vec::new(),
        })
        .collect()
}

fn factory(scripts: &[(String, Script)]) -> Arc<Factory> {
    Arc::new(Factory {
        scripts: scripts.to_vec(),
        inflight: Arc::default(),
        peak: Arc::default(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_kind_is_recorded_and_the_hang_costs_only_its_timeout() {
    let scripts: Vec<(String, Script)> = [
        ("honest", Script::Honest(5)),
        ("hang", Script::Hang),
        ("wrong", Script::Wrong),
        ("badatt", Script::BadAttestation),
        ("badreceipt", Script::BadReceipt),
        ("othermodel", Script::OtherModel),
        ("refused", Script::Refused),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b))
    .collect();
    let f = factory(&scripts);
    let timeout = Duration::from_millis(400);
    let t = Instant::now();
    let rounds = run_checks(
        checks(&scripts, 2),
        f,
        Arc::new(SystemClock),
        RoundSettings {
            concurrency: 16,
            node_timeout: timeout,
        },
    )
    .await;
    let took = t.elapsed();
    assert!(
        took < timeout + Duration::from_millis(300),
        "round took {took:?}"
    );
    let by_id = |id: &str| rounds.iter().find(|r| r.node.id == id).unwrap();

    let honest = by_id("honest");
    assert_eq!(honest.attempts.len(), 2);
    assert!(
        honest
            .attempts
            .iter()
            .all(|a| a.outcome == Outcome::Correct && a.correctness == Step::Pass)
    );
    assert!(
        honest
            .attempts
            .iter()
            .all(|a| a.latency_us.unwrap() >= 5_000)
    );
    assert!(honest.attempts.iter().all(|a| a.bundle.is_some()));

    let hang = by_id("hang");
    assert_eq!(hang.attempts.len(), 1);
    assert_eq!(hang.attempts[0].outcome, Outcome::Timeout);
    assert_eq!(
        hang.attempts[0].attestation,
        Step::Pass,
        "attested before hanging"
    );
    assert_eq!(hang.attempts[0].model.as_deref(), Some("bafymodel"));

    let wrong = by_id("wrong");
    assert_eq!(
        wrong.attempts.len(),
        1,
        "stops after the first wrong answer"
    );
    assert_eq!(wrong.attempts[0].outcome, Outcome::Wrong);
    assert_eq!(wrong.attempts[0].correctness, Step::Fail);
    assert!(
        wrong.attempts[0].bundle.is_none(),
        "no bundle for a wrong answer"
    );

    let badatt = by_id("badatt");
    assert_eq!(badatt.attempts[0].outcome, Outcome::AttestationFailed);
    assert_eq!(
        badatt.attempts[0].measurement.as_deref(),
        Some("mismatch: PCR0")
    );
    assert!(badatt.attempts[0].model.is_none());

    assert_eq!(
        by_id("badreceipt").attempts[0].outcome,
        Outcome::ReceiptInvalid
    );
    assert_eq!(by_id("badreceipt").attempts[0].receipt, Step::Fail);
    assert_eq!(
        by_id("othermodel").attempts[0].outcome,
        Outcome::ReceiptInvalid,
        "receipt must name the challenge model"
    );
    assert_eq!(by_id("refused").attempts[0].outcome, Outcome::Transport);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_bounded_and_a_slow_node_does_not_delay_the_fast_ones() {
    let mut scripts: Vec<(String, Script)> = (0..12)
        .map(|i| (format!("n{i:02}"), Script::Honest(30)))
        .collect();
    scripts.push(("slow".into(), Script::Honest(600)));
    let f = factory(&scripts);
    let peak = Arc::clone(&f.peak);
    let rounds = run_checks(
        checks(&scripts, 1),
        f,
        Arc::new(SystemClock),
        RoundSettings {
            concurrency: 4,
            node_timeout: Duration::from_secs(5),
        },
    )
    .await;
    assert!(
        peak.load(Ordering::SeqCst) <= 4,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert!(peak.load(Ordering::SeqCst) >= 2, "checks ran concurrently");
    for r in &rounds {
        let lat = r.attempts[0].latency_us.unwrap();
        if r.node.id == "slow" {
            assert!(lat >= 600_000);
        } else {
            // Latency is the node's own time, not time spent queued behind the slow node.
            assert!(lat < 300_000, "{} latency {lat} µs", r.node.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tolerance_follows_the_engine_the_receipt_names() {
    let scripts: Vec<(String, Script)> = [
        ("ort", Script::SlightlyOff("onnxruntime")),
        ("tract", Script::SlightlyOff("tract")),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b))
    .collect();
    let rounds = run_checks(
        checks(&scripts, 1),
        factory(&scripts),
        Arc::new(SystemClock),
        RoundSettings {
            concurrency: 4,
            node_timeout: Duration::from_secs(10),
        },
    )
    .await;
    let by_id = |id: &str| rounds.iter().find(|r| r.node.id == id).unwrap();
    assert_eq!(by_id("ort").attempts[0].outcome, Outcome::Correct);
    assert_eq!(
        by_id("tract").attempts[0].outcome,
        Outcome::Wrong,
        "an engine without its own tolerance gets the model's (exact here)"
    );
}
