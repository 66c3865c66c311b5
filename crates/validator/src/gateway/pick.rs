//! Which node serves a user's request: a weighted choice among the nodes the
//! last rounds verified (attested, measurement accepted, score above zero),
//! skipping nodes that failed a user request recently, never the same node
//! twice for one request.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand_core::Rng;

use crate::leaderboard::{Board, NodeStatus};

/// A node chosen for one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Pick {
    /// The node's id in the registry.
    pub id: String,
    /// Its base URL.
    pub url: String,
    /// Whether its evidence is from a dev (insecure) TEE.
    pub insecure: bool,
}

/// Chooses nodes and remembers recent failures. Time is injected so tests can move it.
pub struct Picker {
    cooldown: Duration,
    failed: Mutex<HashMap<String, Instant>>,
}

impl Picker {
    /// A picker that avoids a node for `cooldown` after a failed user request.
    pub fn new(cooldown: Duration) -> Self {
        Picker {
            cooldown,
            failed: Mutex::new(HashMap::new()),
        }
    }

    /// Remembers that `id` failed at `now`.
    pub fn failed(&self, id: &str, now: Instant) {
        if let Ok(mut f) = self.failed.lock() {
            f.insert(id.to_owned(), now);
        }
    }

    /// Forgets `id`'s failure (it answered again).
    pub fn succeeded(&self, id: &str) {
        if let Ok(mut f) = self.failed.lock() {
            f.remove(id);
        }
    }

    /// The nodes eligible at `now`, excluding `tried`; with `llm`, only nodes verified to
    /// serve that language model.
    pub fn eligible<'b>(
        &self,
        board: &'b Board,
        tried: &BTreeSet<String>,
        now: Instant,
        llm: Option<&str>,
    ) -> Vec<&'b NodeStatus> {
        let failed = self.failed.lock().map(|f| f.clone()).unwrap_or_default();
        board
            .nodes
            .iter()
            .filter(|n| verified(n))
            .filter(|n| llm.is_none_or(|cid| n.serves_llm(cid)))
            .filter(|n| !tried.contains(&n.id))
            .filter(|n| {
                failed
                    .get(&n.id)
                    .is_none_or(|at| now.saturating_duration_since(*at) >= self.cooldown)
            })
            .collect()
    }

    /// A weighted choice (by score) among the eligible nodes (see [`Picker::eligible`]);
    /// `None` when there is none.
    pub fn pick(
        &self,
        board: &Board,
        tried: &BTreeSet<String>,
        now: Instant,
        llm: Option<&str>,
        rng: &mut impl Rng,
    ) -> Option<Pick> {
        let nodes = self.eligible(board, tried, now, llm);
        let total: f64 = nodes.iter().map(|n| n.score).sum();
        if nodes.is_empty() || !total.is_finite() || total <= 0.0 {
            return None;
        }
        // 53 random bits give a uniform f64 in [0, 1).
        let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut at = unit * total;
        let chosen = nodes
            .iter()
            .find(|n| {
                at -= n.score;
                at < 0.0
            })
            .or(nodes.last())?;
        Some(Pick {
            id: chosen.id.clone(),
            url: chosen.url.clone(),
            insecure: chosen
                .platform
                .as_deref()
                .is_some_and(|p| p.starts_with("dev")),
        })
    }
}

/// Attested in the last round it was checked, measurement not refused, and scored.
pub fn verified(n: &NodeStatus) -> bool {
    n.attested && n.measurement_ok != Some(false) && n.score > 0.0 && n.score.is_finite()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use chacha20::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn node(id: &str, score: f64, attested: bool, measurement_ok: Option<bool>) -> NodeStatus {
        NodeStatus {
            id: id.into(),
            url: format!("http://{id}"),
            attested,
            measurement_ok,
            score,
            platform: Some("dev".into()),
            ..NodeStatus::default()
        }
    }

    fn board() -> Board {
        Board {
            nodes: vec![
                node("good", 0.9, true, Some(true)),
                node("fair", 0.3, true, None),
                node("unattested", 0.9, false, None),
                node("wrong-measurement", 0.9, true, Some(false)),
                node("zero", 0.0, true, Some(true)),
            ],
            ..Board::default()
        }
    }

    #[test]
    fn only_verified_scored_nodes_are_chosen_in_proportion_to_score() {
        let p = Picker::new(Duration::from_secs(30));
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        let now = Instant::now();
        let mut counts: HashMap<String, u32> = HashMap::new();
        for _ in 0..4000 {
            let pick = p
                .pick(&board(), &BTreeSet::new(), now, None, &mut rng)
                .unwrap();
            *counts.entry(pick.id).or_default() += 1;
        }
        assert_eq!(counts.len(), 2, "{counts:?}");
        let ratio = f64::from(counts["good"]) / f64::from(counts["fair"]);
        assert!(
            (2.5..3.5).contains(&ratio),
            "0.9 : 0.3 expected ~3, got {ratio}"
        );
    }

    #[test]
    fn a_language_model_request_goes_only_to_nodes_verified_to_serve_it() {
        let p = Picker::new(Duration::from_secs(30));
        let mut rng = ChaCha20Rng::from_seed([3; 32]);
        let mut b = board();
        let served = crate::leaderboard::ServedLlm {
            cid: "llm".into(),
            context_length: 512,
        };
        b.nodes[1].llms.push(served.clone());
        // An unverified node serving it is still never chosen.
        b.nodes[2].llms.push(served);
        let now = Instant::now();
        for _ in 0..50 {
            let pick = p.pick(&b, &BTreeSet::new(), now, Some("llm"), &mut rng);
            assert_eq!(pick.unwrap().id, "fair");
        }
        assert_eq!(
            p.pick(&b, &BTreeSet::new(), now, Some("other"), &mut rng),
            None
        );
    }

    #[test]
    fn failed_and_tried_nodes_are_skipped_until_the_cooldown_passes() {
        let p = Picker::new(Duration::from_secs(30));
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let now = Instant::now();
        p.failed("good", now);
        for _ in 0..50 {
            assert_eq!(
                p.pick(&board(), &BTreeSet::new(), now, None, &mut rng)
                    .unwrap()
                    .id,
                "fair"
            );
        }
        let tried = BTreeSet::from(["fair".to_owned()]);
        assert_eq!(p.pick(&board(), &tried, now, None, &mut rng), None);
        let later = now + Duration::from_secs(31);
        assert_eq!(
            p.pick(&board(), &tried, later, None, &mut rng).unwrap().id,
            "good"
        );
        p.failed("good", later);
        p.succeeded("good");
        assert_eq!(
            p.pick(&board(), &tried, later, None, &mut rng).unwrap().id,
            "good"
        );
    }
}
