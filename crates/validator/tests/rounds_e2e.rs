//! Rounds through the real attested channel (`attesta-client`) against
//! in-test nodes on 127.0.0.1 built from the seal node-side API and the dev
//! TEE: honest, slow, hanging, lying, wrongly measured, signed by an
//! untrusted root, and one replaying a real AWS Nitro document from the
//! fixtures. Checks ranking, "no credit, ever", timeouts and the replay.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use attesta_attester::dev::{DevAttester, DevOptions, release_for_executable};
use attesta_attester::{AttestRequest, Attester};
use attesta_engine::demo;
use attesta_engine::tract::TractEngine;
use attesta_engine::{Engine, Limits, Model, og};
use attesta_evidence::{Policy, Registry, TrustedRoot, UnixTime, danger};
use attesta_seal::channel::SealedOutput;
use attesta_seal::rand_core::UnwrapErr;
use attesta_seal::{MEDIA_TYPE, NodeKeys, ReplayGuard, sha256};
use attesta_validator::challenge::{ChallengeSet, ChallengeSpec};
use attesta_validator::client_channel::{ClientFactory, system_rng};
use attesta_validator::registry::{FixedNodes, NodeEntry};
use attesta_validator::round::{RoundSettings, SystemClock};
use attesta_validator::scoring::ScoringParams;
use attesta_validator::state::{CommitSettings, Outcome, State};
use attesta_validator::status::Status;
use attesta_validator::{Parts, Validator};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State as AxState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;

fn fixtures() -> PathBuf {
    attesta_test_support::fixtures()
}

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    Honest,
    Slow,
    Hang,
    Lie,
    ReplayNitro,
}

struct Sim {
    keys: NodeKeys,
    attester: Arc<DevAttester>,
    replay: ReplayGuard,
    model: Arc<dyn Model>,
    model_sha: [u8; 32],
    behaviour: Behaviour,
    nitro_doc: Vec<u8>,
}

fn now() -> UnixTime {
    UnixTime::from_system(SystemTime::now())
}

#[derive(serde::Deserialize)]
struct NonceQ {
    nonce: String,
}

async fn attestation(AxState(s): AxState<Arc<Sim>>, Query(q): Query<NonceQ>) -> Response {
    let nonce = hex::decode(&q.nonce).unwrap();
    let b = s.keys.attestation_binding(&nonce);
    let evidence = if s.behaviour == Behaviour::ReplayNitro {
        s.nitro_doc.clone()
    } else {
        s.attester
            .attest(&AttestRequest {
                nonce: b.nonce,
                user_data: Some(b.user_data),
                public_key: Some(b.public_key),
                report_data: b.report_data,
            })
            .unwrap()
            .bytes
    };
    axum::Json(serde_json::json!({
        "platform": if s.behaviour == Behaviour::ReplayNitro { "nitro" } else { "dev" },
        "evidence": base64::engine::general_purpose::STANDARD.encode(&evidence),
        "keyset": s.keys.public(),
        "nonce": q.nonce,
    }))
    .into_response()
}

async fn infer(AxState(s): AxState<Arc<Sim>>, body: Bytes) -> Response {
    match s.behaviour {
        Behaviour::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
        Behaviour::Slow => tokio::time::sleep(Duration::from_millis(300)).await,
        _ => {}
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
    let mut tensors = og::to_tensors(&inputs, s.model.info()).unwrap();
    if s.behaviour == Behaviour::Lie {
        // Answers a different question: a properly signed receipt over a wrong output.
        let t = tensors.remove(0);
        let shape = t.shape().to_vec();
        let n = attesta_engine::element_count(&shape).unwrap();
        tensors.insert(
            0,
            attesta_engine::Tensor::new(shape, attesta_engine::TensorData::F32(vec![0.5; n]))
                .unwrap(),
        );
    }
    let outputs = s.model.run(tensors).unwrap();
    let hash = hex::encode(s.model_sha);
    let output_json = serde_json::to_vec(&og::encode_response(&outputs, &hash).output).unwrap();
    let out = SealedOutput {
        output_json: &output_json,
        model_sha256: s.model_sha,
        engine: "tract",
        engine_version: "test",
        fault: None,
    };
    let sealed = opened
        .responder
        .seal_output(&s.keys, &out, now(), &mut UnwrapErr(getrandom::SysRng))
        .unwrap();
    ([(header::CONTENT_TYPE, MEDIA_TYPE)], sealed).into_response()
}

async fn serve(sim: Sim) -> String {
    let app = Router::new()
        .route("/v1/attestation", get(attestation))
        .route("/v1/infer", post(infer))
        .with_state(Arc::new(sim));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// A simulated node with fresh keys.
fn sim(
    behaviour: Behaviour,
    attester: &Arc<DevAttester>,
    model: &Arc<dyn Model>,
    bytes: &[u8],
    nitro_doc: &[u8],
) -> Sim {
    Sim {
        keys: NodeKeys::generate(&mut UnwrapErr(getrandom::SysRng)),
        attester: Arc::clone(attester),
        replay: ReplayGuard::new(attesta_seal::ReplayConfig {
            capacity: 1 << 12,
            ..Default::default()
        }),
        model: Arc::clone(model),
        model_sha: sha256(bytes),
        behaviour,
        nitro_doc: nitro_doc.to_vec(),
    }
}

fn attester(root_dir: &Path, exe: &Path) -> Arc<DevAttester> {
    let mut opts = DevOptions::new(root_dir).unwrap();
    opts.executable = exe.to_path_buf();
    Arc::new(DevAttester::open(opts).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_rank_the_honest_node_first_and_never_credit_failures() {
    let nitro_doc = std::fs::read(fixtures().join("nitro/veracruz_2022-11-09_euw1.cbor")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good_exe = dir.path().join("attesta-good");
    let odd_exe = dir.path().join("attesta-odd");
    std::fs::write(&good_exe, b"the released build").unwrap();
    std::fs::write(&odd_exe, b"the released build\0").unwrap();
    let root_dir = dir.path().join("root");
    let good = attester(&root_dir, &good_exe);
    let odd = attester(&root_dir, &odd_exe); // same root, different PCR0
    let rogue = attester(&dir.path().join("rogue-root"), &good_exe); // right PCR0, untrusted root

    let bytes = demo::mlp(&demo::devnet_set()[0].1);
    let model = TractEngine::new(1)
        .load(&bytes, &Limits::default())
        .unwrap();
    let plan = [
        ("a-honest", Behaviour::Honest, &good),
        ("b-slow", Behaviour::Slow, &good),
        ("c-hang", Behaviour::Hang, &good),
        ("d-liar", Behaviour::Lie, &good),
        ("e-wrong-measurement", Behaviour::Honest, &odd),
        ("f-untrusted-root", Behaviour::Honest, &rogue),
        ("g-replayed-nitro", Behaviour::ReplayNitro, &good),
    ];
    let mut entries = Vec::new();
    for (id, behaviour, att) in plan {
        let url = serve(sim(behaviour, att, &model, &bytes, &nitro_doc)).await;
        entries.push(NodeEntry {
            id: id.into(),
            url,
            hotkey: None,
            via: Default::default(),
        });
    }

    let root = TrustedRoot::from_der("dev root", good.root_der()).unwrap();
    let policy = danger::accept_dev_root(Policy::aws_nitro().unwrap(), root).with_measurements(
        Registry::new(vec![release_for_executable(&good_exe, "release").unwrap()]),
    );
    let timeout = Duration::from_millis(1200);
    let clock = Arc::new(SystemClock);
    let db = dir.path().join("v.sqlite");
    let settings = CommitSettings {
        scoring: ScoringParams::default(),
        epoch_rounds: 1,
        max_bundles: 100,
    };
    let engine = TractEngine::new(1);
    let challenges = ChallengeSet::from_bytes(
        vec![(ChallengeSpec::new("bafy-test-model"), bytes.clone())],
        &engine,
    )
    .unwrap();
    let status = Arc::new(Status::new());
    let parts = Parts {
        source: Arc::new(FixedNodes(entries)),
        channels: Arc::new(ClientFactory::new(
            policy,
            timeout,
            clock.clone(),
            system_rng(),
        )),
        challenges,
        llm_challenges: Default::default(),
        state: State::open(&db).unwrap(),
        sinks: Vec::new(),
        commit: settings,
        round: RoundSettings {
            concurrency: 8,
            node_timeout: timeout,
        },
        challenges_per_node: 2,
        rng: attesta_validator::os_rng().unwrap(),
        clock,
        status: Arc::clone(&status),
    };
    let (mut v, _) = Validator::start(parts).await.unwrap();
    let rounds = 3;
    for _ in 0..rounds {
        let t = Instant::now();
        let s = v.run_round().await.unwrap();
        assert!(
            t.elapsed() < timeout + Duration::from_millis(800),
            "round {} took {:?}",
            s.round,
            t.elapsed()
        );
    }

    let board = status.board();
    let get = |id: &str| board.nodes.iter().find(|n| n.id == id).unwrap().clone();
    let honest = get("a-honest");
    assert_eq!(honest.counts.correct, 2 * rounds);
    assert_eq!(honest.weight_u16, 65535);
    assert_eq!(honest.platform.as_deref(), Some("dev (insecure)"));
    let slow = get("b-slow");
    assert!(
        slow.weight > 0.0 && slow.weight < honest.weight,
        "{board:#?}"
    );
    assert!(slow.last_latency_ms.unwrap() >= 300.0);
    assert_eq!(get("c-hang").counts.timeouts, rounds);
    assert_eq!(get("d-liar").counts.wrong, rounds);
    let wm = get("e-wrong-measurement");
    assert_eq!(wm.counts.attestation_failures, rounds);
    assert_eq!(wm.measurement_ok, Some(false), "{wm:#?}");
    assert_eq!(get("f-untrusted-root").counts.attestation_failures, rounds);
    assert_eq!(get("g-replayed-nitro").counts.attestation_failures, rounds);
    for id in [
        "c-hang",
        "d-liar",
        "e-wrong-measurement",
        "f-untrusted-root",
        "g-replayed-nitro",
    ] {
        let n = get(id);
        assert_eq!(
            (n.score, n.weight, n.weight_u16, n.counts.correct),
            (0.0, 0.0, 0, 0),
            "{id}: {n:#?}"
        );
    }

    // The database agrees, bundles were kept for correct answers only, and the scores replay.
    let st = v.state();
    assert_eq!(
        st.outcome_counts("d-liar").unwrap().get(&Outcome::Wrong),
        Some(&rounds)
    );
    assert_eq!(
        st.bundle_count().unwrap(),
        2 * rounds * 2,
        "honest + slow, two challenges each"
    );
    let rep = st.replay(&settings.scoring).unwrap();
    assert!(rep.problems.is_empty(), "{:?}", rep.problems);
    let last = st.round_attempts(rounds).unwrap();
    assert!(
        last["g-replayed-nitro"][0]
            .reason
            .as_deref()
            .unwrap()
            .contains("attestation")
    );
    assert_eq!(
        last["a-honest"][0].nonce_hex.len(),
        64,
        "32-byte nonce recorded"
    );
    assert_ne!(
        last["a-honest"][0].nonce_hex,
        st.round_attempts(1).unwrap()["a-honest"][0].nonce_hex
    );
}

/// Puts `node` behind an in-process `attesta axon` (hotkey `//Alice`, only `//Bob` may call).
async fn behind_axon(node: String) -> String {
    use attesta_bittensor::{AxonConfig, CallerPolicy, Hotkey};
    let bob = Hotkey::from_dev_uri("//Bob").unwrap().account();
    let config = AxonConfig::new(
        Hotkey::from_dev_uri("//Alice").unwrap(),
        node,
        CallerPolicy::Allow([bob].into()),
    );
    let app = attesta_bittensor::router(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_reach_nodes_through_their_axons_and_never_credit_lying_ones() {
    use attesta_bittensor::{Dendrite, Hotkey};
    use attesta_validator::registry::Via;
    let nitro_doc = std::fs::read(fixtures().join("nitro/veracruz_2022-11-09_euw1.cbor")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("attesta-good");
    std::fs::write(&exe, b"the released build").unwrap();
    let good = attester(&dir.path().join("root"), &exe);
    let bytes = demo::mlp(&demo::devnet_set()[0].1);
    let model = TractEngine::new(1)
        .load(&bytes, &Limits::default())
        .unwrap();
    let alice = Hotkey::from_dev_uri("//Alice").unwrap().account().to_ss58();
    let charlie = Hotkey::from_dev_uri("//Charlie")
        .unwrap()
        .account()
        .to_ss58();
    // (id, behaviour, the hotkey the node list names for its axon)
    let plan = [
        ("a-honest", Behaviour::Honest, &alice),
        ("b-liar", Behaviour::Lie, &alice),
        ("c-forged-evidence", Behaviour::ReplayNitro, &alice),
        ("d-other-hotkey", Behaviour::Honest, &charlie),
    ];
    let mut entries = Vec::new();
    for (id, behaviour, hotkey) in plan {
        let node = serve(sim(behaviour, &good, &model, &bytes, &nitro_doc)).await;
        entries.push(NodeEntry {
            id: id.into(),
            url: behind_axon(node).await,
            hotkey: Some(hotkey.clone()),
            via: Via::Axon,
        });
    }
    let root = TrustedRoot::from_der("dev root", good.root_der()).unwrap();
    let policy = danger::accept_dev_root(Policy::aws_nitro().unwrap(), root).with_measurements(
        Registry::new(vec![release_for_executable(&exe, "release").unwrap()]),
    );
    let timeout = Duration::from_millis(2000);
    let clock = Arc::new(SystemClock);
    let settings = CommitSettings {
        scoring: ScoringParams::default(),
        epoch_rounds: 1,
        max_bundles: 100,
    };
    let challenges = ChallengeSet::from_bytes(
        vec![(ChallengeSpec::new("bafy-test-model"), bytes.clone())],
        &TractEngine::new(1),
    )
    .unwrap();
    let dendrite = Dendrite::new(Hotkey::from_dev_uri("//Bob").unwrap(), timeout).unwrap();
    let status = Arc::new(Status::new());
    let parts = Parts {
        source: Arc::new(FixedNodes(entries)),
        channels: Arc::new(
            ClientFactory::new(policy, timeout, clock.clone(), system_rng())
                .with_dendrite(Arc::new(dendrite)),
        ),
        challenges,
        llm_challenges: Default::default(),
        state: State::open(&dir.path().join("v.sqlite")).unwrap(),
        sinks: Vec::new(),
        commit: settings,
        round: RoundSettings {
            concurrency: 4,
            node_timeout: timeout,
        },
        challenges_per_node: 2,
        rng: attesta_validator::os_rng().unwrap(),
        clock,
        status: Arc::clone(&status),
    };
    let (mut v, _) = Validator::start(parts).await.unwrap();
    let rounds = 2;
    for _ in 0..rounds {
        v.run_round().await.unwrap();
    }
    let board = status.board();
    let get = |id: &str| board.nodes.iter().find(|n| n.id == id).unwrap().clone();
    let honest = get("a-honest");
    assert_eq!(honest.counts.correct, 2 * rounds, "{board:#?}");
    assert_eq!(honest.weight_u16, 65535);
    assert_eq!(get("b-liar").counts.wrong, rounds);
    assert_eq!(get("c-forged-evidence").counts.attestation_failures, rounds);
    for id in ["b-liar", "c-forged-evidence", "d-other-hotkey"] {
        let n = get(id);
        assert_eq!(
            (n.score, n.weight, n.weight_u16, n.counts.correct),
            (0.0, 0.0, 0, 0),
            "{id}: {n:#?}"
        );
    }
    // The round record says why the misaddressed axon failed: it refused our signature.
    let last = v.state().round_attempts(rounds).unwrap();
    let reason = last["d-other-hotkey"][0].reason.clone().unwrap_or_default();
    assert!(reason.contains("wrong_axon_hotkey"), "{reason}");
}
