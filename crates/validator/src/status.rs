//! In-memory view of the validator for `/v1/nodes`, `/metrics` and the
//! devnet table. Updated after each committed round; never read by the
//! scoring path, so HTTP readers cannot disturb rounds.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::{EpochWeights, NodeRound, Outcome};

/// Prefix of the measurement verdict of evidence rejected for its measurement.
pub const MEASUREMENT_MISMATCH: &str = "mismatch";

/// Per-outcome attempt counts of one node (all rounds, survives restarts).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Correct, verified answers.
    pub correct: u64,
    /// Wrong answers.
    pub wrong: u64,
    /// Timeouts.
    pub timeouts: u64,
    /// Attestation failures.
    pub attestation_failures: u64,
    /// Invalid receipts.
    pub receipt_failures: u64,
    /// Transport errors.
    pub transport_errors: u64,
    /// Protocol errors.
    pub protocol_errors: u64,
}

impl Counts {
    /// Adds `n` attempts with `outcome`.
    pub fn add(&mut self, outcome: Outcome, n: u64) {
        let slot = match outcome {
            Outcome::Correct => &mut self.correct,
            Outcome::Wrong => &mut self.wrong,
            Outcome::Timeout => &mut self.timeouts,
            Outcome::AttestationFailed => &mut self.attestation_failures,
            Outcome::ReceiptInvalid => &mut self.receipt_failures,
            Outcome::Transport => &mut self.transport_errors,
            Outcome::Protocol => &mut self.protocol_errors,
        };
        *slot += n;
    }
}

/// One row of `GET /v1/nodes`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeStatus {
    /// Node id.
    pub id: String,
    /// Base URL.
    pub url: String,
    /// Hotkey when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotkey: Option<String>,
    /// Whether the last round's attestation verified.
    pub attested: bool,
    /// Platform of the last evidence (`dev (insecure)` for the dev TEE).
    pub platform: Option<String>,
    /// Last measurement verdict.
    pub measurement: Option<String>,
    /// Whether the last evidence passed the measurement check (`None` = not reached).
    pub measurement_ok: Option<bool>,
    /// Current score.
    pub score: f64,
    /// Weight from the latest epoch.
    pub weight: f64,
    /// Latest epoch weight in u16 form.
    pub weight_u16: u16,
    /// Mean latency of the last round's correct answers (ms).
    pub last_latency_ms: Option<f64>,
    /// Last round's outcome for this node (worst attempt).
    pub last_outcome: Option<Outcome>,
    /// Last failure reason, kept until the next failure.
    pub last_failure: Option<String>,
    /// Round of the last failure.
    pub last_failure_round: Option<u64>,
    /// Attempt counts.
    pub counts: Counts,
}

/// The whole `/v1/nodes` document.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Board {
    /// Last committed round (0 = none yet).
    pub round: u64,
    /// Duration of the last round (ms).
    pub last_round_ms: u64,
    /// Latest epoch, if any.
    pub epoch: Option<u64>,
    /// Nodes by id.
    pub nodes: Vec<NodeStatus>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

/// Shared status: the board plus Prometheus metrics.
pub struct Status {
    board: RwLock<Board>,
    registry: Mutex<Registry>,
    attempts: Family<OutcomeLabels, Counter>,
    rounds: Counter,
    round_seconds: Gauge<f64, AtomicU64>,
    latency: Histogram,
    score: Family<NodeLabels, Gauge<f64, AtomicU64>>,
    weight: Family<NodeLabels, Gauge<f64, AtomicU64>>,
    current_round: Gauge,
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Status").finish_non_exhaustive()
    }
}

impl Default for Status {
    fn default() -> Self {
        Self::new()
    }
}

impl Status {
    /// Empty board, metrics registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("attesta_validator");
        let attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "attempts",
            "Challenge attempts by outcome",
            attempts.clone(),
        );
        let rounds = Counter::default();
        registry.register("rounds", "Committed rounds (this process)", rounds.clone());
        let round_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "round_duration_seconds",
            "Wall time of the last round",
            round_seconds.clone(),
        );
        let latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "answer_latency_seconds",
            "Validator-side latency of correct answers (request sent to answer received)",
            latency.clone(),
        );
        let score = Family::<NodeLabels, Gauge<f64, AtomicU64>>::default();
        registry.register("node_score", "Current score per node", score.clone());
        let weight = Family::<NodeLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "node_weight",
            "Latest epoch weight per node",
            weight.clone(),
        );
        let current_round = Gauge::default();
        registry.register("round", "Last committed round", current_round.clone());
        Status {
            board: RwLock::new(Board::default()),
            registry: Mutex::new(registry),
            attempts,
            rounds,
            round_seconds,
            latency,
            score,
            weight,
            current_round,
        }
    }

    /// A copy of the board.
    pub fn board(&self) -> Board {
        self.board.read().map(|b| b.clone()).unwrap_or_default()
    }

    /// Seeds counts and scores from the database at startup.
    pub fn seed(
        &self,
        round: u64,
        counts: BTreeMap<String, Counts>,
        scores: &BTreeMap<String, f64>,
        weights: Option<&EpochWeights>,
    ) {
        let Ok(mut b) = self.board.write() else {
            return;
        };
        b.round = round;
        for (id, c) in counts {
            let s = ensure(&mut b.nodes, &id);
            s.counts = c;
        }
        for (id, sc) in scores {
            ensure(&mut b.nodes, id).score = *sc;
            self.score
                .get_or_create(&NodeLabels { node: id.clone() })
                .set(*sc);
        }
        if let Some(w) = weights {
            apply_weights(&mut b, w, &self.weight);
        }
        self.current_round
            .set(i64::try_from(round).unwrap_or(i64::MAX));
    }

    /// Records a committed round.
    pub fn record_round(
        &self,
        round: u64,
        duration_ms: u64,
        nodes: &[NodeRound],
        scores: &BTreeMap<String, f64>,
        weights: Option<&EpochWeights>,
    ) {
        self.rounds.inc();
        self.current_round
            .set(i64::try_from(round).unwrap_or(i64::MAX));
        self.round_seconds.set(duration_ms as f64 / 1e3);
        let Ok(mut b) = self.board.write() else {
            return;
        };
        b.round = round;
        b.last_round_ms = duration_ms;
        for nr in nodes {
            let s = ensure(&mut b.nodes, &nr.node.id);
            s.url = nr.node.url.clone();
            s.hotkey = nr.node.hotkey.clone();
            let mut lat_sum = 0.0;
            let mut lat_n = 0u32;
            let mut worst: Option<Outcome> = None;
            for a in &nr.attempts {
                s.counts.add(a.outcome, 1);
                self.attempts
                    .get_or_create(&OutcomeLabels {
                        outcome: a.outcome.as_str().to_string(),
                    })
                    .inc();
                if a.outcome == Outcome::Correct {
                    if let Some(us) = a.latency_us {
                        lat_sum += us as f64 / 1e3;
                        lat_n += 1;
                        self.latency.observe(us as f64 / 1e6);
                    }
                } else {
                    worst = Some(a.outcome);
                    if let Some(r) = &a.reason {
                        s.last_failure = Some(r.clone());
                        s.last_failure_round = Some(round);
                    }
                }
                if a.platform.is_some() {
                    s.platform = a.platform.clone();
                }
            }
            let first = nr.attempts.first();
            s.attested = nr
                .attempts
                .iter()
                .any(|a| a.attestation == crate::state::Step::Pass);
            s.measurement = first.and_then(|a| a.measurement.clone());
            // Only a verified document or an explicit PCR mismatch says anything about the measurement.
            let mismatch = first
                .and_then(|a| a.measurement.as_ref())
                .is_some_and(|m| m.starts_with(MEASUREMENT_MISMATCH));
            s.measurement_ok = if s.attested {
                Some(true)
            } else if mismatch {
                Some(false)
            } else {
                None
            };
            s.last_outcome = Some(worst.unwrap_or(Outcome::Correct));
            s.last_latency_ms = (lat_n > 0).then(|| lat_sum / f64::from(lat_n));
        }
        for (id, sc) in scores {
            ensure(&mut b.nodes, id).score = *sc;
            self.score
                .get_or_create(&NodeLabels { node: id.clone() })
                .set(*sc);
        }
        if let Some(w) = weights {
            apply_weights(&mut b, w, &self.weight);
        }
    }

    /// Prometheus text exposition.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        if let Ok(reg) = self.registry.lock() {
            let _ = encode(&mut out, &reg);
        }
        out
    }
}

fn ensure<'a>(nodes: &'a mut Vec<NodeStatus>, id: &str) -> &'a mut NodeStatus {
    let pos = match nodes.binary_search_by(|n| n.id.as_str().cmp(id)) {
        Ok(p) => p,
        Err(p) => {
            nodes.insert(
                p,
                NodeStatus {
                    id: id.to_string(),
                    ..NodeStatus::default()
                },
            );
            p
        }
    };
    // `pos` is in bounds by construction of binary_search/insert.
    #[allow(clippy::indexing_slicing)]
    &mut nodes[pos]
}

fn apply_weights(
    b: &mut Board,
    w: &EpochWeights,
    gauges: &Family<NodeLabels, Gauge<f64, AtomicU64>>,
) {
    b.epoch = Some(w.epoch);
    for n in b.nodes.iter_mut() {
        n.weight = w.weights.get(&n.id).copied().unwrap_or(0.0);
        n.weight_u16 = w.weights_u16.get(&n.id).copied().unwrap_or(0);
        gauges
            .get_or_create(&NodeLabels { node: n.id.clone() })
            .set(n.weight);
    }
}
