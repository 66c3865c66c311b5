//! attesta side of `bench/llm.sh`: prefill and greedy decode tokens/s of the engine on
//! one GGUF, measured exactly as `bench/llm_llama_cpp.py` measures llama.cpp.
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run --release -p attesta-llm --example llm_bench -- \
//!     MODEL.gguf --prompt IDS_FILE [--decode 64] [--runs 3] [--check-prompt 32]
//! ```
//!
//! Threads: candle's CPU kernels size their pool from `RAYON_NUM_THREADS` (all cores when
//! unset), so the script sets it. Per run: `Generation::start` (the batched prefill of the
//! prompt, logits of the last token only), then `decode + 1` greedy steps; a step feeds the
//! previous token lazily, so they make `decode` single-token forward passes, each with its
//! argmax: the same work the llama.cpp side times. One warm-up run, then `--runs` timed
//! runs; prints one JSON line with the per-run numbers, their medians and the greedy
//! tokens of the last run (the script checks them against llama.cpp's).
//!
//! Then the validator's side (attesta only): a challenge-sized request, the first
//! `--check-prompt` prompt ids and `--decode` greedy tokens, timed as the node generates
//! it (prefill + steps) and as a validator checks it (`check::check_greedy`, one
//! teacher-forced pass); `check_ratio` is check ÷ generation, the cost the issue bounds.

use std::path::PathBuf;
use std::time::Instant;

use attesta_llm::LlmModel;
use attesta_llm::check::{DEFAULT_TOLERANCE, check_greedy};
use attesta_llm::generate::Generation;
use attesta_llm::sample::SamplingParams;

struct Args {
    model: PathBuf,
    prompt: PathBuf,
    decode: usize,
    runs: usize,
    check_prompt: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut model = None;
    let mut prompt = None;
    let mut decode = 64;
    let mut runs = 3;
    let mut check_prompt = 32;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--prompt" => prompt = Some(PathBuf::from(value("--prompt")?)),
            "--decode" => {
                decode = value("--decode")?
                    .parse()
                    .map_err(|e| format!("--decode: {e}"))?
            }
            "--runs" => {
                runs = value("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?
            }
            "--check-prompt" => {
                check_prompt = value("--check-prompt")?
                    .parse()
                    .map_err(|e| format!("--check-prompt: {e}"))?
            }
            _ if !a.starts_with("--") && model.is_none() => model = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument {a}")),
        }
    }
    Ok(Args {
        model: model
            .ok_or("usage: llm_bench MODEL.gguf --prompt IDS_FILE [--decode N] [--runs N]")?,
        prompt: prompt.ok_or("--prompt IDS_FILE is required")?,
        decode,
        runs: runs.max(1),
        check_prompt: check_prompt.max(1),
    })
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let prompt: Vec<u32> = std::fs::read_to_string(&args.prompt)?
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let t = Instant::now();
    let llm = LlmModel::open(&args.model)?;
    let load_s = t.elapsed().as_secs_f64();
    let model = llm.model();

    let one_run = || -> Result<(f64, f64, Vec<u32>), Box<dyn std::error::Error>> {
        let t0 = Instant::now();
        let mut g =
            Generation::start(model, &prompt, SamplingParams::greedy(), args.decode + 1, 0)?;
        let t1 = Instant::now();
        let mut tokens = Vec::with_capacity(args.decode + 1);
        while let Some(step) = g.step()? {
            tokens.push(step.token);
        }
        let t2 = Instant::now();
        tokens.truncate(args.decode);
        Ok((
            prompt.len() as f64 / (t1 - t0).as_secs_f64(),
            args.decode as f64 / (t2 - t1).as_secs_f64(),
            tokens,
        ))
    };

    one_run()?; // warm-up: page in the weights, fill the allocator's free lists
    let mut runs = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        runs.push(one_run()?);
    }
    // The validator's check against the node's generation of the same challenge.
    let challenge = &prompt[..args.check_prompt.min(prompt.len())];
    let check_run = || -> Result<(f64, f64), Box<dyn std::error::Error>> {
        let t0 = Instant::now();
        let mut g = Generation::start(model, challenge, SamplingParams::greedy(), args.decode, 0)?;
        let mut tokens = Vec::with_capacity(args.decode);
        while let Some(step) = g.step()? {
            tokens.push(step.token);
        }
        let t1 = Instant::now();
        let report = check_greedy(model, challenge, &tokens, DEFAULT_TOLERANCE)?;
        let t2 = Instant::now();
        if !report.passed() {
            return Err(format!("the check refused a greedy completion: {report:?}").into());
        }
        Ok(((t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64()))
    };
    check_run()?;
    let mut checks = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        checks.push(check_run()?);
    }
    let generate_s: Vec<f64> = checks.iter().map(|c| c.0).collect();
    let check_s: Vec<f64> = checks.iter().map(|c| c.1).collect();

    let prefill: Vec<f64> = runs.iter().map(|r| r.0).collect();
    let decode: Vec<f64> = runs.iter().map(|r| r.1).collect();
    let threads = candle_core::utils::get_num_threads();
    let out = serde_json::json!({
        "engine": "attesta",
        "threads": threads,
        "load_s": load_s,
        "prompt_tokens": prompt.len(),
        "decode_tokens": args.decode,
        "prefill_tps": prefill,
        "decode_tps": decode,
        "prefill_median": median(&prefill),
        "decode_median": median(&decode),
        "check_prompt_tokens": challenge.len(),
        "generate_s": generate_s,
        "check_s": check_s,
        "check_ratio": median(&check_s) / median(&generate_s),
        "tokens": runs.last().map(|r| r.2.clone()).unwrap_or_default(),
    });
    println!("{out}");
    Ok(())
}
