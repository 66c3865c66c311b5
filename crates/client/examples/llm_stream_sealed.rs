//! Sealed side of bench/llm.sh's node end to end: the same greedy streamed completion as
//! bench/llm_stream.py sends in plaintext, through the attested sealed channel. Not a test.
//!
//! ```sh
//! cargo run --release -p attesta-client --example llm_stream_sealed -- \
//!     http://127.0.0.1:8080 CID PROMPT_IDS_FILE DEV_ROOT.pem [MAX_TOKENS=64] [RUNS=3]
//! ```
//! The key set is attested once (cached for the run); each request is sealed, each chunk
//! opened as it arrives, the streamed text checked against the signed one and the receipt
//! verified, as `attesta chat` does. Timings as llm_stream.py takes them: TTFT (request
//! sealed → first chunk carrying a token), decode tokens/s ((tokens - 1) / first → last
//! token chunk), total tokens/s (tokens / request → verified end). One warm-up request,
//! then RUNS timed ones; prints one JSON line in llm_stream.py's shape.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::time::{Duration, Instant};

use attesta_client::{Client, ClientConfig};
use attesta_evidence::{Policy, TrustedRoot, danger};
use serde_json::{Value, json};

struct Run {
    ttft_ms: f64,
    decode_tps: f64,
    total_tps: f64,
    tokens: u64,
    finish_reason: Option<String>,
    token_ids: Vec<u64>,
}

async fn one(client: &Client, cid: &str, body: &str) -> Run {
    let t0 = Instant::now();
    let mut first: Option<Duration> = None;
    let mut last = Duration::ZERO;
    let mut ids = Vec::new();
    let mut finish = None;
    let out = client
        .complete("/v1/completions", cid, body, |chunk: &Value| {
            let now = t0.elapsed();
            for c in chunk["choices"].as_array().into_iter().flatten() {
                let got = c["token_ids"].as_array().map(Vec::len).unwrap_or(0) > 0
                    || c["text"].as_str().is_some_and(|t| !t.is_empty());
                if got {
                    first.get_or_insert(now);
                    last = now;
                }
                ids.extend(
                    c["token_ids"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_u64),
                );
                if let Some(f) = c["finish_reason"].as_str() {
                    finish = Some(f.to_string());
                }
            }
        })
        .await
        .unwrap();
    let total = t0.elapsed();
    let n = out.output["usage"]["completion_tokens"].as_u64().unwrap();
    let first = first.expect("no token chunk");
    let span = last.saturating_sub(first).as_secs_f64();
    Run {
        ttft_ms: first.as_secs_f64() * 1e3,
        decode_tps: if n > 1 && span > 0.0 {
            (n - 1) as f64 / span
        } else {
            f64::NAN
        },
        total_tps: n as f64 / total.as_secs_f64(),
        tokens: n,
        // The sealed stream's data chunks are the tokens; the finish reason is in the
        // signed final answer (the last chunk), as PROTOCOL.md describes.
        finish_reason: finish.or_else(|| {
            out.output["choices"][0]["finish_reason"]
                .as_str()
                .map(str::to_string)
        }),
        token_ids: ids,
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!(
            "usage: llm_stream_sealed NODE_URL CID PROMPT_IDS_FILE DEV_ROOT.pem [MAX_TOKENS=64] [RUNS=3]"
        );
        std::process::exit(2);
    }
    let (url, cid) = (args[1].as_str(), args[2].as_str());
    let prompt: Vec<u32> = std::fs::read_to_string(&args[3])
        .unwrap()
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .map(|t| t.trim().parse().unwrap())
        .collect();
    let root =
        TrustedRoot::from_pem("dev root", &std::fs::read_to_string(&args[4]).unwrap()).unwrap();
    let max_tokens: u64 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(64);
    let runs: usize = args.get(6).and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut cfg = ClientConfig::new(danger::accept_dev_root(Policy::aws_nitro().unwrap(), root));
    cfg.key_cache_ttl = Duration::from_secs(3600);
    cfg.timeout = Duration::from_secs(300);
    let client = Client::new(url, cfg).unwrap();
    let body = json!({
        "model": cid,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": true,
        "stream_options": {"include_usage": true},
        "return_token_ids": true,
    })
    .to_string();
    one(&client, cid, &body).await; // warm-up: attests, loads the model
    let mut rs = Vec::new();
    for _ in 0..runs {
        rs.push(one(&client, cid, &body).await);
    }
    let med = |f: fn(&Run) -> f64| median(rs.iter().map(f).collect());
    let line = json!({
        "engine": "node",
        "runs": rs.iter().map(|r| json!({
            "ttft_ms": r.ttft_ms,
            "decode_tps": r.decode_tps,
            "total_tps": r.total_tps,
            "tokens": r.tokens,
            "finish_reason": r.finish_reason,
        })).collect::<Vec<_>>(),
        "ttft_ms_median": med(|r| r.ttft_ms),
        "decode_median": med(|r| r.decode_tps),
        "total_median": med(|r| r.total_tps),
        "tokens": rs.last().map(|r| r.token_ids.clone()).unwrap_or_default(),
    });
    println!("{line}");
}
