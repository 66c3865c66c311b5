//! attesta side of `bench/llm.sh`: prefill and greedy decode tokens/s of the engine on
//! one GGUF, measured exactly as `bench/llm_llama_cpp.py` measures llama.cpp.
//!
//! ```sh
//! RAYON_NUM_THREADS=2 cargo run --release -p attesta-llm --example llm_bench -- \
//!     MODEL.gguf --prompt IDS_FILE [--decode 64] [--runs 3]
//! ```
//!
//! Threads: candle's CPU kernels size their pool from `RAYON_NUM_THREADS` (all cores when
//! unset), so the script sets it. Per run: `Generation::start` (the batched prefill of the
//! prompt, logits of the last token only), then `decode + 1` greedy steps; a step feeds the
//! previous token lazily, so they make `decode` single-token forward passes, each with its
//! argmax: the same work the llama.cpp side times. One warm-up run, then `--runs` timed
//! runs; prints one JSON line with the per-run numbers, their medians and the greedy
//! tokens of the last run (the script checks them against llama.cpp's).

use std::path::PathBuf;
use std::time::Instant;

use attesta_llm::LlmModel;
use attesta_llm::generate::Generation;
use attesta_llm::sample::SamplingParams;

struct Args {
    model: PathBuf,
    prompt: PathBuf,
    decode: usize,
    runs: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut model = None;
    let mut prompt = None;
    let mut decode = 64;
    let mut runs = 3;
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
        "tokens": runs.last().map(|r| r.2.clone()).unwrap_or_default(),
    });
    println!("{out}");
    Ok(())
}
