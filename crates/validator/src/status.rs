//! In-memory view of the validator for `/v1/nodes`, `/metrics` and the
//! devnet table: the [`leaderboard`](crate::leaderboard) and the
//! [`metrics`](crate::metrics), updated together after each committed round.
//! Never read by the scoring path, so HTTP readers cannot disturb rounds.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};

pub use crate::leaderboard::{Board, Counts, MEASUREMENT_MISMATCH, NodeStatus};
use crate::metrics::Metrics;
use crate::state::{EpochWeights, NodeRound};

/// Rounds kept for `/v1/history` (the dashboard's plots).
pub const HISTORY_ROUNDS: usize = 120;

/// One node in one committed round, for plots.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistoryNode {
    /// Node id.
    pub id: String,
    /// Score after the round.
    pub score: f64,
    /// Weight of the latest epoch at that round.
    pub weight: f64,
    /// Mean latency of the round's correct answers (ms).
    pub latency_ms: Option<f64>,
}

/// One committed round, for plots.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistoryPoint {
    /// Round number.
    pub round: u64,
    /// When it was committed (Unix ms).
    pub at_ms: u64,
    /// Every node on the board then.
    pub nodes: Vec<HistoryNode>,
}

/// Wall-clock milliseconds for display timestamps (injected in tests).
pub type WallClock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn system_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Shared status: the board, the recent rounds and Prometheus metrics.
pub struct Status {
    board: RwLock<Board>,
    history: RwLock<VecDeque<HistoryPoint>>,
    metrics: Metrics,
    clock: WallClock,
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Status").finish_non_exhaustive()
    }
}

impl Default for Status {
    fn default() -> Self {
        Status {
            board: RwLock::default(),
            history: RwLock::default(),
            metrics: Metrics::default(),
            clock: Arc::new(system_ms),
        }
    }
}

impl Status {
    /// Empty board, metrics registered, the system clock for timestamps.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same with `clock` stamping committed rounds.
    pub fn with_clock(clock: WallClock) -> Self {
        Status {
            clock,
            ..Self::default()
        }
    }

    /// The URL of node `id` on the board (without copying the board: the gateway asks per request).
    pub fn node_url(&self, id: &str) -> Option<String> {
        self.board
            .read()
            .ok()?
            .nodes
            .iter()
            .find(|n| n.id == id)
            .map(|n| n.url.clone())
    }

    /// The last [`HISTORY_ROUNDS`] committed rounds, oldest first.
    pub fn history(&self) -> Vec<HistoryPoint> {
        self.history
            .read()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default()
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
        self.metrics.set_round(round);
        if let Ok(mut b) = self.board.write() {
            b.seed(round, counts, scores, weights);
            self.set_node_gauges(&b);
        }
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
        self.metrics.record_round(round, duration_ms, nodes);
        let now = (self.clock)();
        if let Ok(mut b) = self.board.write() {
            b.record_round(round, duration_ms, nodes, scores, weights);
            for n in &mut b.nodes {
                if n.last_attested_round == Some(round) {
                    n.last_attested_ms = Some(now);
                }
            }
            self.set_node_gauges(&b);
            let point = HistoryPoint {
                round,
                at_ms: now,
                nodes: b
                    .nodes
                    .iter()
                    .map(|n| HistoryNode {
                        id: n.id.clone(),
                        score: n.score,
                        weight: n.weight,
                        latency_ms: nodes
                            .iter()
                            .any(|r| r.node.id == n.id)
                            .then_some(n.last_latency_ms)
                            .flatten(),
                    })
                    .collect(),
            };
            if let Ok(mut h) = self.history.write() {
                if h.len() >= HISTORY_ROUNDS {
                    h.pop_front();
                }
                h.push_back(point);
            }
        }
    }

    /// Mirrors every node's score and weight on the board into the gauges.
    fn set_node_gauges(&self, board: &Board) {
        for n in &board.nodes {
            self.metrics.set_node(&n.id, n.score, n.weight);
        }
    }

    /// Counts one attempt of the chain weight sink (`attesta_validator_chain_weights`).
    pub fn record_chain_weights(&self, outcome: &str) {
        self.metrics.record_chain_weights(outcome);
    }

    /// Prometheus text exposition.
    pub fn render_metrics(&self) -> String {
        self.metrics.render()
    }
}
