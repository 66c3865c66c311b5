//! Choosing the next token: greedy, or temperature + nucleus (top-p) sampling from a
//! seeded generator, so that a seed reproduces a completion exactly on the same build.

use chacha20::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// How to pick tokens, as the request stated them (validated by [`SamplingParams::check`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy; otherwise logits are divided by it before the softmax.
    pub temperature: f32,
    /// Nucleus mass in (0, 1]: sample among the most likely tokens whose mass reaches it.
    pub top_p: f32,
    /// Seed of the generator (the caller picks one when the request has none).
    pub seed: u64,
}

/// A sampling parameter out of range (an HTTP 400 upstream).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    /// Temperature outside [0, 2] or not finite.
    #[error("temperature must be between 0 and 2, got {0}")]
    Temperature(f32),
    /// top_p outside (0, 1] or not finite.
    #[error("top_p must be in (0, 1], got {0}")]
    TopP(f32),
}

impl SamplingParams {
    /// Greedy decoding (what validators challenge with).
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        }
    }

    /// Checks the ranges OpenAI documents for these parameters.
    pub fn check(&self) -> Result<(), ParamError> {
        if !(self.temperature.is_finite() && (0.0..=2.0).contains(&self.temperature)) {
            return Err(ParamError::Temperature(self.temperature));
        }
        if !(self.top_p.is_finite() && self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(ParamError::TopP(self.top_p));
        }
        Ok(())
    }

    /// Whether this is greedy decoding.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// Picks tokens for one sequence.
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha20Rng,
    /// Scratch: (index, probability) of the current step.
    probs: Vec<(u32, f64)>,
}

impl Sampler {
    /// A sampler with its own generator seeded from `params.seed`.
    pub fn new(params: SamplingParams) -> Self {
        Sampler {
            params,
            rng: ChaCha20Rng::seed_from_u64(params.seed),
            probs: Vec::new(),
        }
    }

    /// The next token for these logits.
    pub fn next(&mut self, logits: &[f32]) -> u32 {
        if self.params.is_greedy() || logits.len() < 2 {
            return crate::model::argmax(logits) as u32;
        }
        let inv_t = 1.0 / f64::from(self.params.temperature);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        self.probs.clear();
        let mut total = 0.0;
        for (i, &l) in logits.iter().enumerate() {
            let p = ((f64::from(l) - f64::from(max)) * inv_t).exp();
            total += p;
            self.probs.push((i as u32, p));
        }
        let mut mass = total;
        if self.params.top_p < 1.0 {
            // Most likely first; ties by index so the order (and the draw) is reproducible.
            self.probs
                .sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let want = f64::from(self.params.top_p) * total;
            let mut acc = 0.0;
            let mut keep = self.probs.len();
            for (n, &(_, p)) in self.probs.iter().enumerate() {
                acc += p;
                if acc >= want {
                    keep = n + 1;
                    break;
                }
            }
            self.probs.truncate(keep);
            mass = acc.min(total);
        }
        let u = unit(&mut self.rng) * mass;
        let mut acc = 0.0;
        for &(i, p) in &self.probs {
            acc += p;
            if u < acc {
                return i;
            }
        }
        self.probs.last().map_or(0, |&(i, _)| i)
    }
}

/// A uniform draw in [0, 1) with 53 bits.
fn unit(rng: &mut ChaCha20Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Log-probabilities (natural log) of the model's distribution: the chosen token's and
/// the `k` most likely, most likely first, as OpenAI's `logprobs` report them.
pub fn logprobs(logits: &[f32], chosen: u32, k: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = f64::from(max)
        + logits
            .iter()
            .map(|&l| (f64::from(l) - f64::from(max)).exp())
            .sum::<f64>()
            .ln();
    let lp = |l: f32| (f64::from(l) - lse) as f32;
    let chosen_lp = logits
        .get(chosen as usize)
        .map_or(f32::NEG_INFINITY, |&l| lp(l));
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &l) in logits.iter().enumerate() {
        if top.len() < k || top.last().is_some_and(|&(_, m)| l > m) {
            let at = top.partition_point(|&(_, m)| m >= l);
            top.insert(at, (i as u32, l));
            top.truncate(k);
        }
    }
    (
        chosen_lp,
        top.into_iter().map(|(i, l)| (i, lp(l))).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32, p: f32, seed: u64) -> SamplingParams {
        SamplingParams {
            temperature: t,
            top_p: p,
            seed,
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplingParams::greedy());
        assert_eq!(s.next(&[0.1, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn a_seed_reproduces_the_draws_and_another_seed_differs() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 / 25.0).collect();
        let draw = |seed| {
            let mut s = Sampler::new(params(1.0, 0.9, seed));
            (0..64).map(|_| s.next(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(42), draw(42));
        assert_ne!(draw(42), draw(43));
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // One token holds ~88 % of the mass: with top_p 0.5 it is the only candidate.
        let mut logits = vec![0.0f32; 50];
        logits[7] = 8.0;
        let mut s = Sampler::new(params(1.0, 0.5, 1));
        assert!((0..200).all(|_| s.next(&logits) == 7));
        // With the whole mass, others appear.
        let mut s = Sampler::new(params(1.0, 1.0, 1));
        assert!((0..2000).any(|_| s.next(&logits) != 7));
    }

    #[test]
    fn parameter_ranges_are_checked() {
        assert!(params(2.5, 1.0, 0).check().is_err());
        assert!(params(f32::NAN, 1.0, 0).check().is_err());
        assert!(params(1.0, 0.0, 0).check().is_err());
        assert!(params(1.0, 1.5, 0).check().is_err());
        assert!(params(0.7, 0.95, 0).check().is_ok());
    }

    #[test]
    fn logprobs_are_normalised_and_sorted() {
        let logits = [1.0f32, 2.0, 3.0, 0.5];
        let (lp, top) = logprobs(&logits, 2, 3);
        let total: f32 = logits.iter().map(|&l| (l - 3.0).exp()).sum();
        assert!((lp - (-(total.ln()))).abs() < 1e-5);
        assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![2, 1, 0]);
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
    }
}
