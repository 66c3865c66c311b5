//! The validator's Prometheus metrics (`GET /metrics`), fed from committed rounds.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::{NodeRound, Outcome};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChainWeightsLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

/// Counters, gauges and the latency histogram, registered under `attesta_validator_`.
pub struct Metrics {
    registry: Mutex<Registry>,
    attempts: Family<OutcomeLabels, Counter>,
    rounds: Counter,
    round_seconds: Gauge<f64, AtomicU64>,
    latency: Histogram,
    llm_ttft: Histogram,
    llm_rate: Histogram,
    llm_check: Histogram,
    score: Family<NodeLabels, Gauge<f64, AtomicU64>>,
    weight: Family<NodeLabels, Gauge<f64, AtomicU64>>,
    current_round: Gauge,
    chain_weights: Family<ChainWeightsLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric registered, all zero.
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
        let llm_ttft = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "llm_ttft_seconds",
            "Time to first token of correct language-model answers (validator-side)",
            llm_ttft.clone(),
        );
        let llm_rate = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "llm_tokens_per_second",
            "Decode rate of correct language-model answers (validator-side)",
            llm_rate.clone(),
        );
        let llm_check = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "llm_check_seconds",
            "The validator's teacher-forced check of a language-model answer",
            llm_check.clone(),
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
        let chain_weights = Family::<ChainWeightsLabels, Counter>::default();
        registry.register(
            "chain_weights",
            "Epoch weights sent to the chain, by outcome (committed, set, error, or why skipped)",
            chain_weights.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            attempts,
            rounds,
            round_seconds,
            latency,
            llm_ttft,
            llm_rate,
            llm_check,
            score,
            weight,
            current_round,
            chain_weights,
        }
    }

    /// Counts one chain weights attempt by outcome.
    pub fn record_chain_weights(&self, outcome: &str) {
        self.chain_weights
            .get_or_create(&ChainWeightsLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Sets the round gauge (at startup, from the database).
    pub fn set_round(&self, round: u64) {
        self.current_round
            .set(i64::try_from(round).unwrap_or(i64::MAX));
    }

    /// Sets one node's score and weight gauges.
    pub fn set_node(&self, id: &str, score: f64, weight: f64) {
        let labels = NodeLabels {
            node: id.to_owned(),
        };
        self.score.get_or_create(&labels).set(score);
        self.weight.get_or_create(&labels).set(weight);
    }

    /// Counts a committed round's attempts and latencies.
    pub fn record_round(&self, round: u64, duration_ms: u64, nodes: &[NodeRound]) {
        self.rounds.inc();
        self.set_round(round);
        self.round_seconds.set(duration_ms as f64 / 1e3);
        for a in nodes.iter().flat_map(|nr| &nr.attempts) {
            self.attempts
                .get_or_create(&OutcomeLabels {
                    outcome: a.outcome.as_str().to_string(),
                })
                .inc();
            if a.outcome == Outcome::Correct
                && let Some(us) = a.latency_us
            {
                self.latency.observe(us as f64 / 1e6);
            }
            if let (Outcome::Correct, Some(t)) = (a.outcome, &a.llm) {
                self.llm_ttft.observe(t.ttft_us as f64 / 1e6);
                self.llm_check.observe(t.check_us as f64 / 1e6);
                if let Some(r) = t.tokens_per_sec {
                    self.llm_rate.observe(r);
                }
            }
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Ok(reg) = self.registry.lock() {
            let _ = encode(&mut out, &reg);
        }
        out
    }
}
