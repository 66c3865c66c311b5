//! Sealed vs plaintext inference on a running node, same inputs, same load.
//! Not a test.
//!
//! ```sh
//! cargo run --release -p attesta-client --example load -- \
//!     http://127.0.0.1:8080 CID INPUTS.json DEV_ROOT.pem [SECONDS] [CONNECTIONS] [ROUNDS]
//! ```
//! `INPUTS.json` is the OpenGradient `model_inputs` object. The key set is
//! attested once (cached for the run); every sealed request is sealed,
//! opened and receipt-checked as `attesta infer` does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::sync::Arc;
use std::time::Duration;

use attesta_client::{Client, ClientConfig};
use attesta_evidence::{Policy, TrustedRoot, danger};

#[path = "support/drive.rs"]
mod drive;

use drive::drive;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!(
            "usage: load NODE_URL CID INPUTS.json DEV_ROOT.pem [SECONDS=10] [CONNECTIONS=8] [ROUNDS=3]"
        );
        std::process::exit(2);
    }
    let (url, cid) = (args[1].clone(), args[2].clone());
    let inputs = std::fs::read_to_string(&args[3]).unwrap();
    let root =
        TrustedRoot::from_pem("dev root", &std::fs::read_to_string(&args[4]).unwrap()).unwrap();
    let seconds: u64 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(10);
    let conns: usize = args.get(6).and_then(|s| s.parse().ok()).unwrap_or(8);
    let rounds: usize = args.get(7).and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut cfg = ClientConfig::new(danger::accept_dev_root(Policy::aws_nitro().unwrap(), root));
    cfg.key_cache_ttl = Duration::from_secs(3600);
    let client = Arc::new(Client::new(&url, cfg).unwrap());
    let first = client.infer(&cid, &inputs).await.unwrap();
    let plain_body =
        serde_json::to_vec(&serde_json::json!({"ipfs_hash": cid, "model_inputs": inputs})).unwrap();
    let http = reqwest::Client::new();
    let plain: serde_json::Value = http
        .post(format!("{url}/infer"))
        .body(plain_body.clone())
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sealed_out: serde_json::Value = serde_json::from_str(first.output.get()).unwrap();
    assert_eq!(
        sealed_out, plain["output"],
        "sealed and plaintext answers differ"
    );

    let mut rows = Vec::new();
    // Alternate the two kinds so drifting background load hits both alike.
    for round in 0..rounds {
        let (h, u, b) = (http.clone(), url.clone(), plain_body.clone());
        let p = drive(seconds, conns, move || {
            let (h, u, b) = (h.clone(), u.clone(), b.clone());
            async move {
                let r = h
                    .post(format!("{u}/infer"))
                    .header("content-type", "application/json")
                    .body(b)
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                r.bytes().await.unwrap();
            }
        })
        .await;
        let (c, id, inp) = (client.clone(), cid.clone(), inputs.clone());
        let s = drive(seconds, conns, move || {
            let (c, id, inp) = (c.clone(), id.clone(), inp.clone());
            async move {
                c.infer(&id, &inp).await.unwrap();
            }
        })
        .await;
        rows.push((round, p, s));
    }
    println!(
        "| round | plaintext req/s | sealed req/s | sealed/plain | added machine time per request (µs) | plaintext p50 / p99 ms | sealed p50 / p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for (round, p, s) in rows {
        let added = 1e6 / s.rps() - 1e6 / p.rps();
        ratios.push((s.rps() / p.rps(), added));
        println!(
            "| {} | {:.1} | {:.1} | {:.3} | {:.0} | {:.2} / {:.2} | {:.2} / {:.2} |",
            round,
            p.rps(),
            s.rps(),
            s.rps() / p.rps(),
            added,
            p.pct(0.5),
            p.pct(0.99),
            s.pct(0.5),
            s.pct(0.99)
        );
    }
    ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((ratio, added)) = ratios.get(ratios.len() / 2) {
        println!(
            "median round: sealed/plain throughput {ratio:.3}, {added:.0} µs added machine time per request"
        );
    }
}
