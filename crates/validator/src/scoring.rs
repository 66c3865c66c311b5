//! Omron's (Bittensor subnet 2) reward curve, the moving-average score update
//! and the weight forms. Pure and time-free: every input is a parameter, so a
//! replay of the stored attempts reproduces the stored scores bit for bit.

use std::collections::BTreeMap;

/// Upper clamp of the normalised response time: even the slowest verified
/// answer keeps a sliver of credit (f(0.99) < 1).
pub const T_HAT_MAX: f64 = 0.99;

/// Score-update parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoringParams {
    /// EMA step for verified answers: `s ← s + alpha·(max_score·fraction − s)`.
    pub alpha: f64,
    /// Multiplier applied on any failure: `s ← decay·s`.
    pub failure_decay: f64,
    /// `t_min = fastest verified − t_min_offset` (seconds).
    pub t_min_offset_secs: f64,
    /// Fraction of the slowest verified times whose median is `t_max`.
    pub slowest_fraction: f64,
    /// How many recent rounds of verified times define `t_min`/`t_max`.
    pub window_rounds: u64,
}

impl Default for ScoringParams {
    fn default() -> Self {
        ScoringParams {
            alpha: 0.1,
            failure_decay: 0.6,
            t_min_offset_secs: 0.5,
            slowest_fraction: 0.05,
            window_rounds: 10,
        }
    }
}

/// The curve `f(x) = [tan(0.9π(x − ½)) − tan(−0.45π)] / [tan(0.45π) − tan(−0.45π)]`.
pub fn curve(x: f64) -> f64 {
    use std::f64::consts::PI;
    let lo = (-0.45 * PI).tan();
    let hi = (0.45 * PI).tan();
    ((0.9 * PI * (x - 0.5)).tan() - lo) / (hi - lo)
}

/// Credit fraction for a normalised time: `clamp(1 − f(t̂), 0, 1)`.
pub fn fraction(t_hat: f64) -> f64 {
    (1.0 - curve(t_hat.clamp(0.0, T_HAT_MAX))).clamp(0.0, 1.0)
}

/// `t̂ = clamp((t − t_min)/(t_max − t_min), 0, 0.99)`; a degenerate window
/// (t_max ≤ t_min) treats every verified time as the fastest.
pub fn normalised_time(t: f64, t_min: f64, t_max: f64) -> f64 {
    let span = t_max - t_min;
    // `span > 0.0` is false for NaN too.
    let usable = span > 0.0 && t.is_finite();
    if !usable {
        return 0.0;
    }
    ((t - t_min) / span).clamp(0.0, T_HAT_MAX)
}

/// The response-time window `[t_min, t_max]` (seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeWindow {
    /// Fastest verified time minus the offset.
    pub t_min: f64,
    /// Median of the slowest fraction of verified times, capped by the timeout.
    pub t_max: f64,
}

impl TimeWindow {
    /// Derives the window from recent verified times; `None` when there are none.
    pub fn from_times(times: &[f64], params: &ScoringParams, timeout_secs: f64) -> Option<Self> {
        let mut sorted: Vec<f64> = times.iter().copied().filter(|t| t.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let fastest = sorted.first().copied()?;
        // The slowest ⌈fraction·n⌉ times (at least one), then their median.
        let k = ((sorted.len() as f64) * params.slowest_fraction)
            .ceil()
            .max(1.0) as usize;
        let slowest = sorted.get(sorted.len().saturating_sub(k)..)?;
        let t_max = median_sorted(slowest)?.min(timeout_secs);
        Some(TimeWindow {
            t_min: fastest - params.t_min_offset_secs,
            t_max,
        })
    }

    /// Credit fraction for a verified time under this window.
    pub fn fraction(&self, t: f64) -> f64 {
        fraction(normalised_time(t, self.t_min, self.t_max))
    }
}

fn median_sorted(v: &[f64]) -> Option<f64> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let hi = v.get(n / 2).copied()?;
    if n % 2 == 1 {
        Some(hi)
    } else {
        Some((v.get(n / 2 - 1).copied()? + hi) / 2.0)
    }
}

/// The time an LLM answer is scored by: `TTFT + completion_tokens / tokens_per_second`,
/// the wait for a full-length answer (the challenge's `completion_tokens`) at the node's
/// measured speed. Why this combination: a client waits for the first token (prefill) and
/// then reads at the decode rate, so the sum is what a user of a full-length answer
/// experiences; it weighs TTFT and decode speed exactly as much as they cost that user.
/// Normalising to the configured length (rather than the answer's own length) keeps
/// answers that end early at an end-of-generation token comparable with full ones, and
/// puts LLM answers in seconds, so they go through the same window and Omron curve as
/// every other verified time ([`TimeWindow::fraction`]). A rate that is not positive and
/// finite (one-token answers have no decode interval) falls back to the TTFT per token,
/// which is never better than what the node showed.
pub fn llm_time_secs(ttft_secs: f64, tokens_per_sec: Option<f64>, completion_tokens: u32) -> f64 {
    let ttft = if ttft_secs.is_finite() {
        ttft_secs.max(0.0)
    } else {
        f64::INFINITY
    };
    let per_token = match tokens_per_sec {
        Some(r) if r.is_finite() && r > 0.0 => 1.0 / r,
        _ => ttft,
    };
    ttft + f64::from(completion_tokens) * per_token
}

/// The time an LLM answer that arrived in one piece is scored by (a node reached through
/// its Bittensor axon: a synapse is one request and one response, so the validator sees
/// no first token before the last and no decode rate). The whole answer's time stands for
/// `TTFT + tokens / rate` of the tokens it returned, which is exactly what it is for an
/// answer read at once; it is extended to the configured `completion_tokens` at the
/// answer's own time per token, so an answer that stopped early is compared as if full
/// length, like [`llm_time_secs`] does. A full-length answer is scored by its total time,
/// the same quantity a streamed full-length answer's `TTFT + n / rate` measures, so axon
/// nodes and direct nodes meet in one window (the axon's relay adds its own latency).
pub fn llm_time_at_once_secs(total_secs: f64, tokens: usize, completion_tokens: u32) -> f64 {
    let total = if total_secs.is_finite() {
        total_secs.max(0.0)
    } else {
        return f64::INFINITY;
    };
    let returned = tokens.max(1) as f64;
    total * (f64::from(completion_tokens) / returned).max(1.0)
}

/// One node's outcome in a round, as the score update sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RoundOutcome {
    /// Every step verified and every answer correct; mean latency in seconds.
    Verified {
        /// Validator-side latency (request sent → answer received), seconds.
        latency_secs: f64,
    },
    /// Anything else: no credit, ever.
    Failed,
}

/// One EMA step. `max_score = 1/N` for the `N` nodes of the round.
pub fn update(
    prev: f64,
    outcome: RoundOutcome,
    window: Option<&TimeWindow>,
    max_score: f64,
    params: &ScoringParams,
) -> f64 {
    match (outcome, window) {
        (RoundOutcome::Verified { latency_secs }, Some(w)) => {
            prev + params.alpha * (max_score * w.fraction(latency_secs) - prev)
        }
        // A verified answer always has a window (it is in it); be safe anyway.
        (RoundOutcome::Verified { .. }, None) => prev + params.alpha * (max_score - prev),
        (RoundOutcome::Failed, _) => prev * params.failure_decay,
    }
}

/// Applies one round to the previous scores: the window comes from `window_times`
/// (recent verified times, this round's included), `max_score = 1/N`.
pub fn score_round(
    prev: &BTreeMap<String, f64>,
    outcomes: &BTreeMap<String, RoundOutcome>,
    window_times: &[f64],
    timeout_secs: f64,
    params: &ScoringParams,
) -> BTreeMap<String, f64> {
    let window = TimeWindow::from_times(window_times, params, timeout_secs);
    let max_score = if outcomes.is_empty() {
        0.0
    } else {
        1.0 / outcomes.len() as f64
    };
    outcomes
        .iter()
        .map(|(id, o)| {
            let p = prev.get(id).copied().unwrap_or(0.0);
            (
                id.clone(),
                update(p, *o, window.as_ref(), max_score, params),
            )
        })
        .collect()
}

/// Normalised weights `score / Σ scores` (all zero when every score is zero).
pub fn normalise(scores: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let sum: f64 = scores.values().filter(|s| s.is_finite() && **s > 0.0).sum();
    scores
        .iter()
        .map(|(id, s)| {
            let w = if sum > 0.0 && s.is_finite() && *s > 0.0 {
                s / sum
            } else {
                0.0
            };
            (id.clone(), w)
        })
        .collect()
}

/// Bittensor's `set_weights` form: max-upscaled so the largest is 65535,
/// rounded, zeros dropped — exactly the Python SDK's `convert_weights_and_uids_for_emit`
/// (10.5.0): `w / max * 65535` in double precision, rounded half to even (Python's `round`).
/// The one home of this conversion (the weights file and the chain sink both use it).
pub fn to_u16(weights: &BTreeMap<String, f64>) -> BTreeMap<String, u16> {
    let max = weights
        .values()
        .copied()
        .filter(|w| w.is_finite())
        .fold(0.0_f64, f64::max);
    if max <= 0.0 {
        return BTreeMap::new();
    }
    weights
        .iter()
        .filter_map(|(id, w)| {
            let v = (w / max * f64::from(u16::MAX)).round_ties_even();
            (v.is_finite() && v >= 1.0).then(|| (id.clone(), v.min(f64::from(u16::MAX)) as u16))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, eps: f64) -> bool {
        (a - b).abs() <= eps
    }

    #[test]
    fn worked_examples_of_the_curve() {
        assert!(close(fraction(0.0), 1.0, 1e-12));
        assert!(close(fraction(0.25), 0.57, 0.005), "{}", fraction(0.25));
        assert!(close(fraction(0.5), 0.5, 1e-12));
        assert!(close(fraction(0.99), 0.08, 0.005), "{}", fraction(0.99));
        // Clamped: slower than t_max is no worse than t̂ = 0.99, faster than t_min no better than 0.
        assert_eq!(fraction(5.0), fraction(0.99));
        assert_eq!(fraction(-1.0), 1.0);
    }

    #[test]
    fn fraction_is_monotone_decreasing() {
        let mut last = f64::INFINITY;
        for i in 0..=99 {
            let f = fraction(f64::from(i) / 100.0);
            assert!(f < last, "not decreasing at {i}");
            last = f;
        }
    }

    #[test]
    fn window_from_times() {
        let p = ScoringParams::default();
        // 40 times: slowest 5 % = 2 values (3.0, 5.0) → median 4.0.
        let mut times: Vec<f64> = (0..38).map(|i| 1.0 + f64::from(i) / 100.0).collect();
        times.extend([5.0, 3.0]);
        let w = TimeWindow::from_times(&times, &p, 10.0).unwrap();
        assert!(close(w.t_min, 0.5, 1e-12));
        assert!(close(w.t_max, 4.0, 1e-12));
        // Capped by the timeout.
        let w = TimeWindow::from_times(&times, &p, 2.0).unwrap();
        assert!(close(w.t_max, 2.0, 1e-12));
        assert!(TimeWindow::from_times(&[], &p, 1.0).is_none());
        assert!(TimeWindow::from_times(&[f64::NAN], &p, 1.0).is_none());
    }

    #[test]
    fn normalised_time_edges() {
        assert_eq!(normalised_time(1.0, 1.0, 1.0), 0.0);
        assert_eq!(normalised_time(f64::NAN, 0.0, 1.0), 0.0);
        assert!(close(normalised_time(0.5, 0.0, 1.0), 0.5, 1e-12));
        assert_eq!(normalised_time(2.0, 0.0, 1.0), T_HAT_MAX);
    }

    #[test]
    fn ema_and_decay() {
        let p = ScoringParams::default();
        let w = TimeWindow {
            t_min: 0.0,
            t_max: 1.0,
        };
        // Fastest possible: s moves 10 % of the way to max_score.
        let s = update(
            0.0,
            RoundOutcome::Verified { latency_secs: 0.0 },
            Some(&w),
            0.5,
            &p,
        );
        assert!(close(s, 0.05, 1e-15));
        let s2 = update(
            s,
            RoundOutcome::Verified { latency_secs: 0.5 },
            Some(&w),
            0.5,
            &p,
        );
        assert!(close(s2, 0.05 + 0.1 * (0.25 - 0.05), 1e-15));
        // Failure: s ← 0.6 s, never credit.
        assert!(close(
            update(s2, RoundOutcome::Failed, Some(&w), 0.5, &p),
            0.6 * s2,
            1e-15
        ));
        assert_eq!(update(0.0, RoundOutcome::Failed, Some(&w), 0.5, &p), 0.0);
    }

    #[test]
    fn failures_never_outscore_a_verified_node() {
        let p = ScoringParams::default();
        let mut prev = BTreeMap::new();
        for _ in 0..20 {
            let outcomes = BTreeMap::from([
                (
                    "fast".to_string(),
                    RoundOutcome::Verified { latency_secs: 0.01 },
                ),
                (
                    "slow".to_string(),
                    RoundOutcome::Verified { latency_secs: 0.9 },
                ),
                ("liar".to_string(), RoundOutcome::Failed),
            ]);
            prev = score_round(&prev, &outcomes, &[0.01, 0.9], 2.0, &p);
        }
        assert!(prev["fast"] > prev["slow"]);
        assert!(prev["slow"] > 0.0);
        assert_eq!(prev["liar"], 0.0);
        // Converges below max_score = 1/3.
        assert!(prev["fast"] <= 1.0 / 3.0);
    }

    #[test]
    fn llm_time_combines_ttft_and_rate() {
        // 0.2 s to the first token, then 50 tokens/s, 100 tokens: 0.2 + 2.0.
        assert!(close(llm_time_secs(0.2, Some(50.0), 100), 2.2, 1e-12));
        // Faster decode or faster first token both score a shorter time.
        assert!(llm_time_secs(0.2, Some(100.0), 100) < llm_time_secs(0.2, Some(50.0), 100));
        assert!(llm_time_secs(0.1, Some(50.0), 100) < llm_time_secs(0.2, Some(50.0), 100));
        // No usable rate: the TTFT per token.
        assert!(close(llm_time_secs(0.5, None, 4), 2.5, 1e-12));
        assert!(close(llm_time_secs(0.5, Some(f64::NAN), 4), 2.5, 1e-12));
        assert!(close(llm_time_secs(0.5, Some(0.0), 4), 2.5, 1e-12));
        assert_eq!(llm_time_secs(f64::NAN, Some(10.0), 4), f64::INFINITY);
        // Through the curve, the slower node earns less.
        let w = TimeWindow {
            t_min: 0.0,
            t_max: 4.0,
        };
        assert!(
            w.fraction(llm_time_secs(0.2, Some(100.0), 100))
                > w.fraction(llm_time_secs(0.2, Some(50.0), 100))
        );
    }

    #[test]
    fn weights_and_u16() {
        let scores = BTreeMap::from([
            ("a".to_string(), 0.3),
            ("b".to_string(), 0.1),
            ("c".to_string(), 0.0),
        ]);
        let w = normalise(&scores);
        assert!(close(w["a"], 0.75, 1e-12));
        assert!(close(w["b"], 0.25, 1e-12));
        assert_eq!(w["c"], 0.0);
        let u = to_u16(&w);
        assert_eq!(u.get("a"), Some(&65535));
        // The SDK's own outputs (bittensor 10.5.0 convert_weights_and_uids_for_emit),
        // including the ties it rounds to even: 0.5 → 0 (dropped), 32767.5 → 32768.
        let sdk = |ws: &[f64]| {
            to_u16(
                &ws.iter()
                    .enumerate()
                    .map(|(i, w)| (i.to_string(), *w))
                    .collect(),
            )
            .into_values()
            .collect::<Vec<u16>>()
        };
        assert_eq!(sdk(&[131_070.0, 1.0]), vec![65535]);
        assert_eq!(sdk(&[1.0, 0.5]), vec![65535, 32768]);
        assert_eq!(sdk(&[0.75, 0.25, 0.0]), vec![65535, 21845]);
        assert_eq!(sdk(&[0.1, 0.7, 0.2]), vec![9362, 65535, 18724]);
        assert_eq!(sdk(&[3.0, 1.0, 2.0]), vec![65535, 21845, 43690]);
        assert_eq!(u.get("b"), Some(&21845));
        assert!(!u.contains_key("c"), "zeros are dropped");
        assert!(to_u16(&normalise(&BTreeMap::from([("x".to_string(), 0.0)]))).is_empty());
    }
}
