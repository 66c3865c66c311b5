//! Checking every node of a round: each node in its own task, bounded
//! concurrency, one timeout around the node's whole check, so a slow or
//! hanging node costs the round at most its timeout and never delays the
//! others' timing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;

use crate::challenge::{Challenge, compare};
use crate::llm_challenge::{self, LlmChallenge};
use crate::probe::{Attested, ChannelFactory, ProbeError};
use crate::registry::NodeEntry;
use crate::state::{Attempt, NodeRound, Outcome, Step};

/// The validator's clock, injected so tests control time.
pub trait Clock: Send + Sync {
    /// Current wall-clock time.
    fn now(&self) -> SystemTime;
    /// Current time as unix milliseconds.
    fn now_ms(&self) -> u64 {
        self.now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Concurrency and timeout of a round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundSettings {
    /// Nodes checked at once.
    pub concurrency: usize,
    /// Budget for one node's whole check (attestation + challenges).
    pub node_timeout: Duration,
}

/// What to do with one node this round.
#[derive(Debug, Clone)]
pub struct NodeCheck {
    /// The node.
    pub node: NodeEntry,
    /// Its challenges, expected answers included.
    pub challenges: Vec<Challenge>,
    /// Its language-model challenges (checked after the answer arrives).
    pub llm: Vec<LlmChallenge>,
}

#[derive(Default)]
struct Progress {
    attested: Option<Attested>,
    attempts: Vec<Attempt>,
}

/// Runs all checks; returns one [`NodeRound`] per check, in input order.
pub async fn run_checks(
    checks: Vec<NodeCheck>,
    factory: Arc<dyn ChannelFactory>,
    clock: Arc<dyn Clock>,
    settings: RoundSettings,
) -> Vec<NodeRound> {
    let sem = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut handles = Vec::with_capacity(checks.len());
    for check in checks {
        let sem = Arc::clone(&sem);
        let factory = Arc::clone(&factory);
        let clock = Arc::clone(&clock);
        let node = check.node.clone();
        let handle = tokio::spawn(async move {
            // Waiting for a slot is not the node's fault: the timeout starts after.
            let _permit = sem.acquire_owned().await;
            check_one(
                check,
                factory.as_ref(),
                clock.as_ref(),
                settings.node_timeout,
            )
            .await
        });
        handles.push((node, handle));
    }
    let mut out = Vec::with_capacity(handles.len());
    for (node, handle) in handles {
        let attempts = match handle.await {
            Ok(a) => a,
            // A panicking check is the validator's bug, but the node still gets a row.
            Err(e) => vec![failed(
                0,
                0,
                "",
                None,
                Outcome::Protocol,
                format!("check task failed: {e}"),
            )],
        };
        out.push(NodeRound { node, attempts });
    }
    out
}

fn failed(
    seq: u32,
    time_ms: u64,
    nonce_hex: &str,
    model: Option<String>,
    outcome: Outcome,
    reason: String,
) -> Attempt {
    Attempt {
        seq,
        time_ms,
        nonce_hex: nonce_hex.to_string(),
        model,
        attestation: Step::Fail,
        receipt: Step::Skipped,
        correctness: Step::Skipped,
        outcome,
        latency_us: None,
        reason: Some(reason),
        platform: None,
        measurement: None,
        bundle: None,
        llm: None,
    }
}

async fn check_one(
    check: NodeCheck,
    factory: &dyn ChannelFactory,
    clock: &dyn Clock,
    timeout: Duration,
) -> Vec<Attempt> {
    let start_ms = clock.now_ms();
    let mut progress = Progress::default();
    let finished =
        tokio::time::timeout(timeout, drive(&check, factory, clock, &mut progress)).await;
    let mut attempts = progress.attempts;
    if finished.is_err() {
        let seq = u32::try_from(attempts.len()).unwrap_or(u32::MAX);
        let in_flight = progress.attested.as_ref().and_then(|_| {
            let i = attempts.len();
            match check.challenges.get(i) {
                Some(c) => Some(c.model_cid.clone()),
                None => check
                    .llm
                    .get(i.saturating_sub(check.challenges.len()))
                    .map(|c| c.model_cid().to_string()),
            }
        });
        let nonce_hex = progress
            .attested
            .as_ref()
            .map(|a| hex::encode(&a.nonce))
            .unwrap_or_default();
        let mut a = failed(
            seq,
            start_ms,
            &nonce_hex,
            in_flight,
            Outcome::Timeout,
            format!("no answer within {} ms", timeout.as_millis()),
        );
        if let Some(att) = &progress.attested {
            a.attestation = Step::Pass;
            a.platform = Some(att.platform.clone());
            a.measurement = Some(att.measurement.clone());
        }
        attempts.push(a);
    }
    attempts
}

async fn drive(
    check: &NodeCheck,
    factory: &dyn ChannelFactory,
    clock: &dyn Clock,
    p: &mut Progress,
) {
    let t0 = clock.now_ms();
    let channel = match factory.channel(&check.node) {
        Ok(c) => c,
        Err(e) => {
            p.attempts
                .push(failed(0, t0, "", None, e.outcome(), e.to_string()));
            return;
        }
    };
    let attested = match channel.attest().await {
        Ok(a) => a,
        Err(e) => {
            let mut a = failed(0, t0, "", None, e.outcome(), e.to_string());
            if let ProbeError::Attestation {
                measurement,
                platform,
                ..
            } = &e
            {
                a.measurement = measurement.clone();
                a.platform = platform.clone();
            }
            p.attempts.push(a);
            return;
        }
    };
    p.attested = Some(attested.clone());
    for (i, ch) in check.challenges.iter().enumerate() {
        let seq = u32::try_from(i).unwrap_or(u32::MAX);
        let t = clock.now_ms();
        let mut a = Attempt {
            seq,
            time_ms: t,
            nonce_hex: hex::encode(&attested.nonce),
            model: Some(ch.model_cid.clone()),
            attestation: Step::Pass,
            receipt: Step::Skipped,
            correctness: Step::Skipped,
            outcome: Outcome::Protocol,
            latency_us: None,
            reason: None,
            platform: Some(attested.platform.clone()),
            measurement: Some(attested.measurement.clone()),
            bundle: None,
            llm: None,
        };
        match channel.infer(ch).await {
            Err(e) => {
                a.outcome = e.outcome();
                match &e {
                    ProbeError::Receipt(_) => a.receipt = Step::Fail,
                    ProbeError::Attestation { .. } => a.attestation = Step::Fail,
                    _ => {}
                }
                a.reason = Some(e.to_string());
            }
            Ok(ans) => {
                a.latency_us = Some(u64::try_from(ans.latency.as_micros()).unwrap_or(u64::MAX));
                if ans.receipt_model_cid != ch.model_cid
                    || !ans
                        .receipt_model_sha256
                        .eq_ignore_ascii_case(&ch.model_sha256)
                {
                    a.receipt = Step::Fail;
                    a.outcome = Outcome::ReceiptInvalid;
                    a.reason = Some(format!(
                        "receipt names model {} (sha256 {}), challenge was {} (sha256 {})",
                        ans.receipt_model_cid,
                        ans.receipt_model_sha256,
                        ch.model_cid,
                        ch.model_sha256
                    ));
                } else {
                    a.receipt = Step::Pass;
                    let (abs, rel) = ch.tolerance_for(&ans.receipt_engine);
                    match compare(&ch.expected, &ans.output, abs, rel) {
                        Ok(()) => {
                            a.correctness = Step::Pass;
                            a.outcome = Outcome::Correct;
                            a.bundle = Some(ans.bundle);
                        }
                        Err(m) => {
                            a.correctness = Step::Fail;
                            a.outcome = Outcome::Wrong;
                            a.reason = Some(m.to_string());
                        }
                    }
                }
            }
        }
        let stop = a.outcome != Outcome::Correct;
        p.attempts.push(a);
        // After a failure the round is lost for this node anyway; don't spend more of its budget.
        if stop {
            return;
        }
    }
    for (j, ch) in check.llm.iter().enumerate() {
        let seq = u32::try_from(check.challenges.len() + j).unwrap_or(u32::MAX);
        let mut a = failed(
            seq,
            clock.now_ms(),
            &hex::encode(&attested.nonce),
            Some(ch.model_cid().to_string()),
            Outcome::Protocol,
            String::new(),
        );
        a.attestation = Step::Pass;
        a.platform = Some(attested.platform.clone());
        a.measurement = Some(attested.measurement.clone());
        match channel.complete(ch).await {
            Err(e) => {
                a.outcome = e.outcome();
                if let ProbeError::Receipt(_) = &e {
                    a.receipt = Step::Fail;
                }
                a.reason = Some(e.to_string());
            }
            // The channel returns an answer only with a verified receipt bound to `ch`.
            Ok(mut ans) => match (ans.bundle.take(), llm_challenge::verify(ch, ans).await) {
                (bundle, Ok(timing)) => {
                    a.receipt = Step::Pass;
                    a.correctness = Step::Pass;
                    a.outcome = Outcome::Correct;
                    a.reason = None;
                    a.bundle = bundle;
                    // Seconds to µs; the scored time is finite for any verified answer.
                    a.latency_us = Some((timing.scored_secs * 1e6).min(u64::MAX as f64) as u64);
                    a.llm = Some(timing);
                }
                (_, Err(w)) => {
                    a.receipt = Step::Pass;
                    a.correctness = Step::Fail;
                    a.outcome = Outcome::Wrong;
                    a.reason = Some(w.to_string());
                }
            },
        }
        let stop = a.outcome != Outcome::Correct;
        p.attempts.push(a);
        if stop {
            return;
        }
    }
}
