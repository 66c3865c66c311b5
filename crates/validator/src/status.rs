//! In-memory view of the validator for `/v1/nodes`, `/metrics` and the
//! devnet table: the [`leaderboard`](crate::leaderboard) and the
//! [`metrics`](crate::metrics), updated together after each committed round.
//! Never read by the scoring path, so HTTP readers cannot disturb rounds.

use std::collections::BTreeMap;
use std::sync::RwLock;

pub use crate::leaderboard::{Board, Counts, MEASUREMENT_MISMATCH, NodeStatus};
use crate::metrics::Metrics;
use crate::state::{EpochWeights, NodeRound};

/// Shared status: the board plus Prometheus metrics.
#[derive(Debug, Default)]
pub struct Status {
    board: RwLock<Board>,
    metrics: Metrics,
}

impl Status {
    /// Empty board, metrics registered.
    pub fn new() -> Self {
        Self::default()
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
        if let Ok(mut b) = self.board.write() {
            b.record_round(round, duration_ms, nodes, scores, weights);
            self.set_node_gauges(&b);
        }
    }

    /// Mirrors every node's score and weight on the board into the gauges.
    fn set_node_gauges(&self, board: &Board) {
        for n in &board.nodes {
            self.metrics.set_node(&n.id, n.score, n.weight);
        }
    }

    /// Prometheus text exposition.
    pub fn render_metrics(&self) -> String {
        self.metrics.render()
    }
}
