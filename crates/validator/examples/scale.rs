//! Scale benchmark (not a test): one validator against many lightweight
//! simulated dev-TEE nodes on loopback. Run through `bench/validator_scale.sh`.
//!
//! `scale nodes DIR COUNT HANGING [axon]` — serve COUNT nodes (the first HANGING of
//! them never answer challenges) in this process; writes `DIR/nodes.json`
//! and `DIR/dev-root.pem`, then serves until killed. With `axon`, every node
//! also gets its own Bittensor axon (its own hotkey, `attesta_bittensor::router`,
//! strict signature and nonce checks) in this process, and `nodes.json` lists
//! the axons (`via = "axon"`), so the validator's dendrite fans out to them.
//!
//! `scale validator DIR ROUNDS TIMEOUT_MS` — runs ROUNDS rounds against them
//! in this process and prints round wall time and this process's CPU time
//! per node check (from /proc/self/stat). Axon entries are reached with a
//! dendrite signing as `//Validator`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use attesta_attester::dev::{DevAttester, DevOptions};
use attesta_attester::{AttestRequest, Attester};
use attesta_bittensor::{AxonConfig, CallerPolicy, Dendrite, Hotkey};
use attesta_engine::demo;
use attesta_engine::tract::TractEngine;
use attesta_engine::{Engine, Limits, Model, og};
use attesta_evidence::{Policy, TrustedRoot, UnixTime, danger};
use attesta_seal::channel::SealedOutput;
use attesta_seal::rand_core::UnwrapErr;
use attesta_seal::{MEDIA_TYPE, NodeKeys, ReplayGuard, sha256};
use attesta_validator::challenge::{ChallengeSet, ChallengeSpec};
use attesta_validator::client_channel::{ClientFactory, system_rng};
use attesta_validator::registry::{FixedNodes, NodeEntry, Via};
use attesta_validator::round::{RoundSettings, SystemClock};
use attesta_validator::scoring::ScoringParams;
use attesta_validator::state::{CommitSettings, State};
use attesta_validator::status::Status;
use attesta_validator::{Parts, Validator};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;

struct Sim {
    keys: NodeKeys,
    attester: Arc<DevAttester>,
    replay: ReplayGuard,
    model: Arc<dyn Model>,
    model_sha: [u8; 32],
    hang: bool,
}

fn now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

#[derive(serde::Deserialize)]
struct NonceQ {
    nonce: String,
}

async fn attestation(AxState(s): AxState<Arc<Sim>>, Query(q): Query<NonceQ>) -> Response {
    let Ok(nonce) = hex::decode(&q.nonce) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let b = s.keys.attestation_binding(&nonce);
    let ev = s
        .attester
        .attest(&AttestRequest {
            nonce: b.nonce,
            user_data: Some(b.user_data),
            public_key: Some(b.public_key),
            report_data: b.report_data,
        })
        .unwrap();
    axum::Json(serde_json::json!({
        "platform": "dev",
        "evidence": base64::engine::general_purpose::STANDARD.encode(&ev.bytes),
        "keyset": s.keys.public(),
        "nonce": q.nonce,
    }))
    .into_response()
}

async fn infer(AxState(s): AxState<Arc<Sim>>, body: Bytes) -> Response {
    if s.hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let opened = match s
        .keys
        .open_request(&body, &s.replay, now())
        .and_then(|o| o.admit(&s.replay, now()))
    {
        Ok(o) => o,
        Err(r) => {
            let status = StatusCode::from_u16(r.http_status()).unwrap();
            let (ct, b) = r.into_body();
            return (status, [(header::CONTENT_TYPE, ct)], b).into_response();
        }
    };
    let inputs = og::parse_inputs(opened.request.inputs.get()).unwrap();
    let tensors = og::to_tensors(&inputs, s.model.info()).unwrap();
    let outputs = s.model.run(tensors).unwrap();
    let hash = hex::encode(s.model_sha);
    let resp = og::encode_response(&outputs, &hash);
    let output_json = serde_json::to_vec(&resp.output).unwrap();
    let out = SealedOutput {
        output_json: &output_json,
        model_sha256: s.model_sha,
        engine: "tract",
        engine_version: "sim",
        fault: None,
    };
    let sealed = opened
        .responder
        .seal_output(&s.keys, &out, now(), &mut UnwrapErr(getrandom::SysRng))
        .unwrap();
    ([(header::CONTENT_TYPE, MEDIA_TYPE)], sealed).into_response()
}

fn model_bytes() -> Vec<u8> {
    demo::mlp(&demo::devnet_set()[0].1)
}

/// The validator's hotkey in axon mode (a public dev key: a benchmark, not a wallet).
fn validator_hotkey() -> Hotkey {
    Hotkey::from_dev_uri("//Validator").unwrap()
}

/// Serves `app` on a fresh loopback port.
async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn nodes(dir: &Path, count: usize, hanging: usize, axons: bool) {
    let attester = Arc::new(DevAttester::open(DevOptions::new(dir.join("root")).unwrap()).unwrap());
    std::fs::write(dir.join("dev-root.pem"), attester.root_pem()).unwrap();
    let bytes = model_bytes();
    let model = TractEngine::new(1)
        .load(&bytes, &Limits::default())
        .unwrap();
    let mut entries = Vec::new();
    let mut rng = attesta_seal::rand_core::UnwrapErr(getrandom::SysRng);
    for i in 0..count {
        let sim = Arc::new(Sim {
            keys: NodeKeys::generate(&mut rng),
            attester: Arc::clone(&attester),
            replay: ReplayGuard::new(attesta_seal::ReplayConfig {
                capacity: 1 << 14,
                ..Default::default()
            }),
            model: Arc::clone(&model),
            model_sha: sha256(&bytes),
            hang: i < hanging,
        });
        let app = Router::new()
            .route("/v1/attestation", get(attestation))
            .route("/v1/infer", post(infer))
            .with_state(sim);
        let addr = serve(app).await;
        let node_url = format!("http://{addr}");
        let entry = if axons {
            let hotkey = Hotkey::from_dev_uri(&format!("//Miner//{i}")).unwrap();
            let account = hotkey.account();
            let allowed = [validator_hotkey().account()].into_iter().collect();
            let mut config = AxonConfig::new(hotkey, node_url, CallerPolicy::Allow(allowed));
            config.node_timeout = Duration::from_secs(3600);
            let axon = serve(attesta_bittensor::router(config).unwrap()).await;
            NodeEntry {
                id: format!("sim-{i:03}"),
                url: format!("http://{axon}"),
                hotkey: Some(account.to_ss58()),
                via: Via::Axon,
            }
        } else {
            NodeEntry {
                id: format!("sim-{i:03}"),
                url: node_url,
                hotkey: None,
                via: Via::Http,
            }
        };
        entries.push(entry);
    }
    std::fs::write(
        dir.join("nodes.json"),
        serde_json::to_vec(&entries).unwrap(),
    )
    .unwrap();
    let how = if axons { " behind axons" } else { "" };
    eprintln!("serving {count} simulated nodes{how} ({hanging} hanging)");
    std::future::pending::<()>().await;
}

/// utime + stime of this process, seconds (Linux /proc, 100 Hz ticks).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f[11].parse().unwrap();
    let stime: f64 = f[12].parse().unwrap();
    (utime + stime) / 100.0
}

async fn validator(dir: &Path, rounds: u64, timeout_ms: u64) {
    let entries: Vec<NodeEntry> =
        serde_json::from_slice(&std::fs::read(dir.join("nodes.json")).unwrap()).unwrap();
    let n = entries.len();
    let root = TrustedRoot::from_pem(
        "dev root",
        &std::fs::read_to_string(dir.join("dev-root.pem")).unwrap(),
    )
    .unwrap();
    let policy = danger::accept_dev_root(Policy::aws_nitro().unwrap(), root);
    let timeout = Duration::from_millis(timeout_ms);
    let clock = Arc::new(SystemClock);
    let mut factory = ClientFactory::new(policy, timeout, clock.clone(), system_rng());
    let entries_via_axon = entries.iter().any(|e| e.via == Via::Axon);
    if entries_via_axon {
        factory = factory.with_dendrite(Arc::new(
            Dendrite::new(validator_hotkey(), timeout).unwrap(),
        ));
    }
    let channels = Arc::new(factory);
    let engine = TractEngine::new(1);
    let challenges = ChallengeSet::from_bytes(
        vec![(ChallengeSpec::new("bafy-bench-model"), model_bytes())],
        &engine,
    )
    .unwrap();
    // Cost of the validator's own expected answers, measured apart.
    let mut rng = attesta_validator::os_rng().unwrap();
    let t = Instant::now();
    for _ in 0..1000 {
        challenges.generate(&mut rng).unwrap();
    }
    let gen_us = t.elapsed().as_secs_f64() * 1e6 / 1000.0;
    let _ = std::fs::remove_file(dir.join("bench.sqlite"));
    let parts = Parts {
        source: Arc::new(FixedNodes(entries)),
        channels,
        challenges,
        llm_challenges: Default::default(),
        state: State::open(&dir.join("bench.sqlite")).unwrap(),
        sinks: Vec::new(),
        commit: CommitSettings {
            scoring: ScoringParams::default(),
            epoch_rounds: 10,
            max_bundles: 1000,
        },
        round: RoundSettings {
            concurrency: n,
            node_timeout: timeout,
        },
        challenges_per_node: 1,
        rng,
        clock,
        status: Arc::new(Status::new()),
    };
    let (mut v, _) = Validator::start(parts).await.unwrap();
    let via = if entries_via_axon { "axon" } else { "http" };
    println!("nodes={n} via={via} timeout_ms={timeout_ms} challenge_generation_us={gen_us:.1}");
    for _ in 0..rounds {
        let cpu0 = cpu_secs();
        let t = Instant::now();
        let s = v.run_round().await.unwrap();
        let wall = t.elapsed();
        let cpu = cpu_secs() - cpu0;
        let correct = s
            .nodes
            .iter()
            .filter(|r| r.attempts.iter().all(|a| a.outcome.as_str() == "correct"))
            .count();
        println!(
            "round={} wall_ms={:.1} cpu_ms={:.0} cpu_per_check_ms={:.3} correct={correct}/{n}",
            s.round,
            wall.as_secs_f64() * 1e3,
            cpu * 1e3,
            cpu * 1e3 / n as f64
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = Path::new(&args[2]).to_path_buf();
    match args[1].as_str() {
        "nodes" => rt.block_on(nodes(
            &dir,
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
            args.get(5).is_some_and(|a| a == "axon"),
        )),
        "validator" => rt.block_on(validator(
            &dir,
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
        )),
        other => panic!("unknown mode {other}"),
    }
}
