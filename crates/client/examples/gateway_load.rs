//! Sealed requests straight to a node vs through a validator's gateway to that same node,
//! same inputs, same load, interleaved rounds. Not a test; `bench/gateway.sh` runs it on a
//! one-node devnet.
//!
//! ```sh
//! cargo run --release -p attesta-client --example gateway_load -- \
//!     GATEWAY_URL NODE_URL CID DEV_ROOT.pem [SECONDS] [CONNECTIONS] [ROUNDS]
//! ```
//! The model's inputs are read from the node's `/v1/models` (filled with fixed values).
//! Every request is sealed, opened and receipt-checked as `attesta infer` does.
//!
//! With `GATEWAY_LOAD_PIDS="node=PID validator=PID"` (Linux), it also prints the CPU each
//! process spent per request on either path (from `/proc/PID/stat`), this client included:
//! on a machine where all three share the cores, that is what bounds the ratio.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::sync::Arc;
use std::time::Duration;

use attesta_client::{Client, ClientConfig, GatewayTransport};
use attesta_evidence::{Policy, TrustedRoot, danger};

#[path = "support/drive.rs"]
mod drive;

use drive::drive;

/// Inputs for `cid` as the node declares it (`x: float32[batch, 16]` → one row of 16).
async fn inputs_for(http: &reqwest::Client, node: &str, cid: &str) -> String {
    // Any request loads the model, so the listing shows its signature.
    let _ = http
        .post(format!("{node}/infer"))
        .json(&serde_json::json!({"ipfs_hash": cid, "model_inputs": {}}))
        .send()
        .await;
    let models: serde_json::Value = http
        .get(format!("{node}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let model = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["cid"] == cid)
        .unwrap();
    let sig = model["inputs"][0].as_str().unwrap();
    let (name, rest) = sig.split_once(':').unwrap();
    let dims = rest.split_once('[').unwrap().1.trim_end_matches(']');
    let width: usize = dims.rsplit(',').next().unwrap().trim().parse().unwrap();
    let values: Vec<_> = (0..width)
        .map(|i| serde_json::json!({"value": 1000 + i as i64, "decimals": 3}))
        .collect();
    serde_json::json!({"numbers": [{"name": name.trim(), "shape": [1, width], "values": values}]})
        .to_string()
}

/// CPU time (user + system) of process `pid` so far, in clock ticks (fields 14 and 15 of
/// `/proc/PID/stat`, counted after the parenthesised command name, which may hold spaces).
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The processes whose CPU is accounted: this client first, then `GATEWAY_LOAD_PIDS`.
fn watched() -> Vec<(String, String)> {
    let mut out = vec![("client".to_owned(), "self".to_owned())];
    if let Ok(v) = std::env::var("GATEWAY_LOAD_PIDS") {
        for pair in v.split_whitespace() {
            if let Some((name, pid)) = pair.split_once('=') {
                out.push((name.to_owned(), pid.to_owned()));
            }
        }
    }
    out
}

/// Ticks of each watched process now.
fn snapshot(w: &[(String, String)]) -> Vec<Option<u64>> {
    w.iter().map(|(_, pid)| cpu_ticks(pid)).collect()
}

/// Microseconds of CPU per request of each watched process between two snapshots
/// (Linux's `USER_HZ` is 100 on every common build).
fn per_request(before: &[Option<u64>], after: &[Option<u64>], done: usize) -> Vec<Option<f64>> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| Some((a.as_ref()? - b.as_ref()?) as f64 * 1e4 / done.max(1) as f64))
        .collect()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!(
            "usage: gateway_load GATEWAY_URL NODE_URL CID DEV_ROOT.pem [SECONDS=8] [CONNECTIONS=8] [ROUNDS=3]"
        );
        std::process::exit(2);
    }
    let (gateway, node, cid) = (args[1].clone(), args[2].clone(), args[3].clone());
    let root =
        TrustedRoot::from_pem("dev root", &std::fs::read_to_string(&args[4]).unwrap()).unwrap();
    let seconds: u64 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(8);
    let conns: usize = args.get(6).and_then(|s| s.parse().ok()).unwrap_or(8);
    let rounds: usize = args.get(7).and_then(|s| s.parse().ok()).unwrap_or(3);
    let http = reqwest::Client::new();
    let inputs = inputs_for(&http, &node, &cid).await;
    let config = || {
        let mut cfg = ClientConfig::new(danger::accept_dev_root(
            Policy::aws_nitro().unwrap(),
            root.clone(),
        ));
        cfg.key_cache_ttl = Duration::from_secs(3600);
        cfg
    };
    let direct = Arc::new(Client::new(&node, config()).unwrap());
    let transport = GatewayTransport::new(&gateway, Duration::from_secs(30))
        .unwrap()
        .with_model(&cid);
    let via = Arc::new(Client::with_transport(Arc::new(transport), config()).unwrap());
    let a = direct.infer(&cid, &inputs).await.unwrap();
    let b = via.infer(&cid, &inputs).await.unwrap();
    assert_eq!(
        a.output.get(),
        b.output.get(),
        "direct and gateway answers differ"
    );

    let mut rows = Vec::new();
    let watch = watched();
    let mut cpu = Vec::new();
    // Alternate the two paths so drifting background load hits both alike.
    for round in 0..rounds {
        let (c, id, inp) = (direct.clone(), cid.clone(), inputs.clone());
        let t0 = snapshot(&watch);
        let d = drive(seconds, conns, move || {
            let (c, id, inp) = (c.clone(), id.clone(), inp.clone());
            async move {
                c.infer(&id, &inp).await.unwrap();
            }
        })
        .await;
        let t1 = snapshot(&watch);
        let (c, id, inp) = (via.clone(), cid.clone(), inputs.clone());
        let g = drive(seconds, conns, move || {
            let (c, id, inp) = (c.clone(), id.clone(), inp.clone());
            async move {
                c.infer(&id, &inp).await.unwrap();
            }
        })
        .await;
        let t2 = snapshot(&watch);
        cpu.push((per_request(&t0, &t1, d.done), per_request(&t1, &t2, g.done)));
        rows.push((round, d, g));
    }
    println!(
        "| round | direct req/s | via gateway req/s | gateway/direct | direct p50 / p99 ms | gateway p50 / p99 ms | p50 added ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for (round, d, g) in rows {
        let added = g.pct(0.5) - d.pct(0.5);
        ratios.push((g.rps() / d.rps(), added));
        println!(
            "| {} | {:.1} | {:.1} | {:.3} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} |",
            round,
            d.rps(),
            g.rps(),
            g.rps() / d.rps(),
            d.pct(0.5),
            d.pct(0.99),
            g.pct(0.5),
            g.pct(0.99),
            added
        );
    }
    if watch.len() > 1 {
        println!();
        let names: Vec<_> = watch.iter().map(|(n, _)| n.as_str()).collect();
        println!(
            "| round | CPU µs/request direct ({}) | via gateway ({}) |",
            names.join(" / "),
            names.join(" / ")
        );
        println!("|---|---|---|");
        let show = |v: &[Option<f64>]| {
            v.iter()
                .map(|x| x.map_or("?".to_owned(), |x| format!("{x:.0}")))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        for (round, (d, g)) in cpu.iter().enumerate() {
            println!("| {round} | {} | {} |", show(d), show(g));
        }
    }
    ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((ratio, added)) = ratios.get(ratios.len() / 2) {
        println!(
            "median round: gateway/direct throughput {ratio:.3}, p50 added {added:.2} ms ({conns} connections)"
        );
    }
}
