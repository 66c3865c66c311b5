//! The round loop: registry → nonces and challenges → node checks →
//! one committed transaction → weights to the sinks → status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chacha20::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::challenge::{ChallengeError, ChallengeSet};
use crate::llm_challenge::LlmChallengeSet;
use crate::probe::ChannelFactory;
use crate::registry::{NodeSource, RegistryError};
use crate::round::{Clock, NodeCheck, RoundSettings, run_checks};
use crate::state::{CommitSettings, NodeRound, Outcome, State, StateError};
use crate::status::{Counts, Status};
use crate::weights::WeightSink;

/// Why a round could not run or commit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoundError {
    /// The node source failed; the round was not run.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A challenge could not be generated (the validator's own model failed).
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
    /// The database failed; the round was not committed.
    #[error(transparent)]
    State(#[from] StateError),
}

impl RoundError {
    /// Whether trying again next interval may help (registry/IO hiccups).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RoundError::Registry(_) | RoundError::State(StateError::Sqlite(_))
        )
    }
}

/// A seedable, cryptographically strong RNG for nonces and challenge inputs.
pub type ValidatorRng = ChaCha20Rng;

/// An RNG seeded from the operating system.
pub fn os_rng() -> Result<ValidatorRng, getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    Ok(ValidatorRng::from_seed(seed))
}

/// Summary of one committed round.
#[derive(Debug, Clone)]
pub struct RoundSummary {
    /// Round number.
    pub round: u64,
    /// Wall time of the node checks + commit.
    pub duration: Duration,
    /// What each node did.
    pub nodes: Vec<NodeRound>,
    /// Scores after the round.
    pub scores: BTreeMap<String, f64>,
    /// Whether the round closed an epoch.
    pub epoch: Option<u64>,
    /// Weight sinks that failed (the round is committed regardless).
    pub sink_errors: Vec<String>,
}

/// Everything a [`Validator`] is made of; time and randomness included.
pub struct Parts {
    /// Who to validate.
    pub source: Arc<dyn NodeSource>,
    /// How to reach them.
    pub channels: Arc<dyn ChannelFactory>,
    /// What to ask.
    pub challenges: ChallengeSet,
    /// Language-model challenges: one per node per round when the set is not empty.
    pub llm_challenges: LlmChallengeSet,
    /// Durable state.
    pub state: State,
    /// Where weights go.
    pub sinks: Vec<Box<dyn WeightSink>>,
    /// Commit settings (scoring, epoch, retention).
    pub commit: CommitSettings,
    /// Round settings (concurrency, timeout).
    pub round: RoundSettings,
    /// Challenges per node per round.
    pub challenges_per_node: u32,
    /// Nonces and inputs.
    pub rng: ValidatorRng,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Shared status (HTTP, devnet table).
    pub status: Arc<Status>,
}

/// The validator.
pub struct Validator {
    p: Parts,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator").finish_non_exhaustive()
    }
}

impl Validator {
    /// Builds the validator, seeds the status board from the database and
    /// re-emits the latest weights (a crash may have come between commit and sink).
    pub async fn start(parts: Parts) -> Result<(Validator, Vec<String>), StateError> {
        let v = Validator { p: parts };
        let next = v.p.state.next_round()?;
        let scores = v.p.state.latest_scores()?;
        let weights = v.p.state.latest_weights()?;
        let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
        for (id, outcome, n) in v.p.state.all_outcome_counts()? {
            counts.entry(id).or_default().add(outcome, n);
        }
        v.p.status.seed(next - 1, counts, &scores, weights.as_ref());
        let mut errors = Vec::new();
        if let Some(w) = &weights {
            for sink in &v.p.sinks {
                if let Err(e) = sink.emit(w).await {
                    errors.push(e.to_string());
                }
            }
        }
        Ok((v, errors))
    }

    /// The shared status.
    pub fn status(&self) -> Arc<Status> {
        Arc::clone(&self.p.status)
    }

    /// The next round number (one past the last committed).
    pub fn next_round(&self) -> Result<u64, StateError> {
        self.p.state.next_round()
    }

    /// Read access to the database (consistency checks, reports).
    pub fn state(&self) -> &State {
        &self.p.state
    }

    /// Runs and commits one round.
    pub async fn run_round(&mut self) -> Result<RoundSummary, RoundError> {
        let wall = Instant::now();
        let round = self.p.state.next_round()?;
        let nodes = self.p.source.nodes().await?;
        let started_ms = self.p.clock.now_ms();
        let mut checks = Vec::with_capacity(nodes.len());
        for node in nodes {
            let mut challenges =
                Vec::with_capacity(usize::try_from(self.p.challenges_per_node).unwrap_or(0));
            for _ in 0..self.p.challenges_per_node {
                challenges.push(self.p.challenges.generate(&mut self.p.rng)?);
            }
            let mut llm = Vec::new();
            if !self.p.llm_challenges.is_empty() {
                llm.push(self.p.llm_challenges.generate(&mut self.p.rng)?);
            }
            checks.push(NodeCheck {
                node,
                challenges,
                llm,
            });
        }
        let results = run_checks(
            checks,
            Arc::clone(&self.p.channels),
            Arc::clone(&self.p.clock),
            self.p.round,
        )
        .await;
        let finished_ms = self.p.clock.now_ms();
        let record = crate::state::RoundRecord {
            round,
            started_ms,
            finished_ms,
            timeout_ms: u64::try_from(self.p.round.node_timeout.as_millis()).unwrap_or(u64::MAX),
            nodes: results,
        };
        let committed = self.p.state.commit_round(&record, &self.p.commit)?;
        let mut sink_errors = Vec::new();
        if let Some(w) = &committed.weights {
            for sink in &self.p.sinks {
                if let Err(e) = sink.emit(w).await {
                    sink_errors.push(e.to_string());
                }
            }
        }
        let duration = wall.elapsed();
        self.p.status.record_round(
            round,
            u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            &record.nodes,
            &committed.scores,
            committed.weights.as_ref(),
        );
        for nr in &record.nodes {
            for a in &nr.attempts {
                if let (Outcome::Correct, Some(t)) = (a.outcome, &a.llm) {
                    tracing::debug!(round, node = %nr.node.id, seq = a.seq, model = a.model.as_deref().unwrap_or(""),
                                    ttft_us = t.ttft_us, tokens_per_sec = t.tokens_per_sec, tokens = t.tokens,
                                    check_us = t.check_us, scored_secs = t.scored_secs, "llm answer correct");
                } else if a.outcome == Outcome::Correct {
                    tracing::debug!(round, node = %nr.node.id, seq = a.seq, latency_us = a.latency_us, "correct");
                } else {
                    tracing::info!(round, node = %nr.node.id, seq = a.seq, outcome = a.outcome.as_str(),
                                   reason = a.reason.as_deref().unwrap_or(""), "attempt failed");
                }
            }
        }
        tracing::info!(
            round,
            nodes = record.nodes.len(),
            ms = duration.as_millis() as u64,
            epoch = committed.weights.as_ref().map(|w| w.epoch),
            "round committed"
        );
        Ok(RoundSummary {
            round,
            duration,
            nodes: record.nodes,
            scores: committed.scores,
            epoch: committed.weights.as_ref().map(|w| w.epoch),
            sink_errors,
        })
    }

    /// Runs rounds until `stop` resolves or `max_rounds` rounds are committed
    /// in total, pausing `interval` between rounds. Retryable errors are
    /// logged and retried next interval; others end the loop.
    pub async fn run(
        &mut self,
        interval: Duration,
        max_rounds: Option<u64>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), RoundError> {
        tokio::pin!(stop);
        loop {
            if let Some(max) = max_rounds
                && self.p.state.next_round()? > max
            {
                return Ok(());
            }
            tokio::select! {
                _ = &mut stop => return Ok(()),
                r = self.run_round() => match r {
                    Ok(s) => {
                        for e in &s.sink_errors {
                            tracing::warn!(round = s.round, error = %e, "weight sink failed");
                        }
                    }
                    Err(e) if e.is_retryable() => tracing::warn!(error = %e, "round failed; retrying"),
                    Err(e) => return Err(e),
                },
            }
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
