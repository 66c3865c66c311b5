//! The leaderboard behind `GET /v1/nodes` and the devnet table: per-node
//! counts, scores, weights and last verdicts, updated from committed rounds.
//! Plain data (no locks, no metrics) so it can be tested and serialised alone.

use std::collections::BTreeMap;

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
    /// Last round whose attestation verified.
    #[serde(default)]
    pub last_attested_round: Option<u64>,
    /// When that round was committed (Unix ms, the validator's clock).
    #[serde(default)]
    pub last_attested_ms: Option<u64>,
    /// Language models the node answered a challenge for correctly (by CID), kept until
    /// it fails one for that model: what the gateway routes OpenAI requests by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub llms: Vec<ServedLlm>,
}

/// A language model a node was verified to serve.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServedLlm {
    /// The model's CID.
    pub cid: String,
    /// Its context length in tokens.
    pub context_length: usize,
}

impl NodeStatus {
    /// Whether the node was verified to serve the language model `cid`.
    pub fn serves_llm(&self, cid: &str) -> bool {
        self.llms.iter().any(|m| m.cid == cid)
    }

    /// Updates [`NodeStatus::llms`] from one attempt: a verified language-model answer adds
    /// its model, any failed attempt on a listed model removes it (routing follows the
    /// latest evidence, so a node that lost a model stops getting its requests).
    fn note_llm(&mut self, a: &crate::state::Attempt) {
        let Some(cid) = &a.model else { return };
        match (&a.llm, a.outcome) {
            (Some(t), Outcome::Correct) => {
                let served = ServedLlm {
                    cid: cid.clone(),
                    context_length: t.context_length,
                };
                match self.llms.iter_mut().find(|m| m.cid == *cid) {
                    Some(m) => *m = served,
                    None => self.llms.push(served),
                }
            }
            (_, Outcome::Correct) => {}
            _ => self.llms.retain(|m| m.cid != *cid),
        }
    }
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

impl Board {
    /// Seeds counts and scores from the database at startup.
    pub fn seed(
        &mut self,
        round: u64,
        counts: BTreeMap<String, Counts>,
        scores: &BTreeMap<String, f64>,
        weights: Option<&EpochWeights>,
    ) {
        self.round = round;
        for (id, c) in counts {
            ensure(&mut self.nodes, &id).counts = c;
        }
        self.set_scores(scores);
        if let Some(w) = weights {
            self.apply_weights(w);
        }
    }

    /// Records a committed round.
    pub fn record_round(
        &mut self,
        round: u64,
        duration_ms: u64,
        nodes: &[NodeRound],
        scores: &BTreeMap<String, f64>,
        weights: Option<&EpochWeights>,
    ) {
        self.round = round;
        self.last_round_ms = duration_ms;
        for nr in nodes {
            let s = ensure(&mut self.nodes, &nr.node.id);
            s.url = nr.node.url.clone();
            s.hotkey = nr.node.hotkey.clone();
            let mut lat_sum = 0.0;
            let mut lat_n = 0u32;
            let mut worst: Option<Outcome> = None;
            for a in &nr.attempts {
                s.counts.add(a.outcome, 1);
                s.note_llm(a);
                if a.outcome == Outcome::Correct {
                    if let Some(us) = a.latency_us {
                        lat_sum += us as f64 / 1e3;
                        lat_n += 1;
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
            if s.attested {
                s.last_attested_round = Some(round);
            }
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
        self.set_scores(scores);
        if let Some(w) = weights {
            self.apply_weights(w);
        }
    }

    fn set_scores(&mut self, scores: &BTreeMap<String, f64>) {
        for (id, sc) in scores {
            ensure(&mut self.nodes, id).score = *sc;
        }
    }

    fn apply_weights(&mut self, w: &EpochWeights) {
        self.epoch = Some(w.epoch);
        for n in self.nodes.iter_mut() {
            n.weight = w.weights.get(&n.id).copied().unwrap_or(0.0);
            n.weight_u16 = w.weights_u16.get(&n.id).copied().unwrap_or(0);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::NodeEntry;
    use crate::state::{Attempt, Step};

    fn attempt(outcome: Outcome, latency_us: Option<u64>, reason: Option<&str>) -> Attempt {
        Attempt {
            seq: 0,
            time_ms: 0,
            nonce_hex: String::new(),
            model: None,
            attestation: Step::Pass,
            receipt: Step::Pass,
            correctness: Step::Pass,
            outcome,
            latency_us,
            reason: reason.map(str::to_owned),
            platform: Some("dev (insecure)".into()),
            measurement: None,
            bundle: None,
            llm: None,
        }
    }

    fn round(id: &str, attempts: Vec<Attempt>) -> NodeRound {
        NodeRound {
            node: NodeEntry {
                id: id.into(),
                url: format!("http://{id}"),
                hotkey: None,
                via: Default::default(),
            },
            attempts,
        }
    }

    #[test]
    fn rounds_accumulate_counts_and_keep_the_last_failure() {
        let mut b = Board::default();
        let scores = BTreeMap::from([("a".to_string(), 0.5), ("b".to_string(), 0.0)]);
        b.record_round(
            1,
            40,
            &[
                round("b", vec![attempt(Outcome::Wrong, None, Some("off by 1"))]),
                round("a", vec![attempt(Outcome::Correct, Some(2000), None)]),
            ],
            &scores,
            None,
        );
        b.record_round(
            2,
            30,
            &[round(
                "b",
                vec![attempt(Outcome::Correct, Some(4000), None)],
            )],
            &scores,
            None,
        );
        assert_eq!(b.round, 2);
        let ids: Vec<&str> = b.nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"], "sorted by id");
        let node_b = &b.nodes[1];
        assert_eq!((node_b.counts.wrong, node_b.counts.correct), (1, 1));
        assert_eq!(node_b.last_failure.as_deref(), Some("off by 1"));
        assert_eq!(node_b.last_failure_round, Some(1));
        assert_eq!(node_b.last_outcome, Some(Outcome::Correct));
        assert_eq!(node_b.last_latency_ms, Some(4.0));
        assert_eq!(b.nodes[0].score, 0.5);
    }

    #[test]
    fn a_verified_llm_answer_lists_the_model_and_a_failed_one_unlists_it() {
        let llm = |outcome: Outcome, cid: &str| Attempt {
            model: Some(cid.into()),
            llm: (outcome == Outcome::Correct).then(crate::llm_challenge::LlmTiming::for_tests),
            ..attempt(outcome, Some(10), None)
        };
        let onnx = Attempt {
            model: Some("onnx".into()),
            ..attempt(Outcome::Correct, Some(10), None)
        };
        let mut b = Board::default();
        let scores = BTreeMap::new();
        b.record_round(
            1,
            1,
            &[round("a", vec![onnx.clone(), llm(Outcome::Correct, "m1")])],
            &scores,
            None,
        );
        let served = vec![ServedLlm {
            cid: "m1".into(),
            context_length: 512,
        }];
        assert_eq!(b.nodes[0].llms, served, "ONNX models are not listed");
        assert!(b.nodes[0].serves_llm("m1") && !b.nodes[0].serves_llm("onnx"));
        // Rounds that challenge the node on another model keep it listed.
        b.record_round(2, 1, &[round("a", vec![onnx])], &scores, None);
        assert_eq!(b.nodes[0].llms, served);
        b.record_round(
            3,
            1,
            &[round("a", vec![llm(Outcome::Wrong, "m1")])],
            &scores,
            None,
        );
        assert!(b.nodes[0].llms.is_empty());
    }

    #[test]
    fn an_epoch_zeroes_nodes_it_does_not_name() {
        let mut b = Board::default();
        let scores = BTreeMap::from([("a".to_string(), 1.0), ("b".to_string(), 1.0)]);
        let epoch = |w: &[(&str, f64, u16)]| EpochWeights {
            epoch: 1,
            round: 1,
            weights: w.iter().map(|(k, v, _)| (k.to_string(), *v)).collect(),
            weights_u16: w.iter().map(|(k, _, u)| (k.to_string(), *u)).collect(),
            hotkeys: BTreeMap::new(),
        };
        b.seed(
            1,
            BTreeMap::new(),
            &scores,
            Some(&epoch(&[("a", 0.5, 32768), ("b", 0.5, 32768)])),
        );
        b.record_round(2, 1, &[], &scores, Some(&epoch(&[("a", 1.0, 65535)])));
        assert_eq!(b.epoch, Some(1));
        assert_eq!((b.nodes[0].weight, b.nodes[0].weight_u16), (1.0, 65535));
        assert_eq!((b.nodes[1].weight, b.nodes[1].weight_u16), (0.0, 0));
    }
}
