//! `attesta devnet`: N dev-TEE nodes and one validator as real child
//! processes on 127.0.0.1, generated challenge models, a live table.
//! `--faulty K` makes K nodes misbehave in distinct ways; `--rounds R --json`
//! runs R rounds and prints the final state for scripts and tests.
//!
//! Faulty nodes declare their fault in every (dev) document, so the devnet's
//! validator accepts declared faults on purpose (`accept_declared_faults`) and
//! catches a wrong-output node by its answers. A node that dies is shown as
//! dead; the others, and the validator, keep running.
//!
//! `--llm PATH.gguf` adds a language model to every node and to the validator's
//! challenge set (`[[validator.challenges.llm]]`): each round every node gets a random
//! prompt through the sealed channel (directly, or through its axon with `--bittensor`),
//! answers greedily under a receipt, and is checked and scored.

use std::collections::BTreeMap;

use attesta_attester::TeeKind;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use attesta_content::{ModelStore, Profile, StoreOptions};
use attesta_engine::demo;
use attesta_validator::challenge::ChallengeSpec;
use attesta_validator::config::{ChallengesConfig, PolicyConfig, RoundConfig, ValidatorConfig};
use attesta_validator::llm_challenge::LlmChallengeSpec;
use attesta_validator::registry::NodeEntry;
use attesta_validator::scoring::ScoringParams;
use attesta_validator::status::{Board, NodeStatus};
use clap::Args;
use tokio::process::{Child, Command};

use crate::Global;
use crate::units::parse_duration;

/// Options of `attesta devnet`.
#[derive(Args)]
pub struct DevnetArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    nodes: u16,
    /// How many nodes misbehave, in this order: wrong outputs, slow, hanging,
    /// wrong measurement, bad evidence (then repeating).
    #[arg(long, default_value_t = 0)]
    faulty: u16,
    /// Run this many rounds, print the final state and exit 0.
    #[arg(long, value_name = "R")]
    rounds: Option<u64>,
    /// With --rounds: print the final state as JSON instead of a table.
    #[arg(long, requires = "rounds")]
    json: bool,
    /// Pause between rounds, e.g. 1s or 500ms.
    #[arg(long, default_value = "1s", value_name = "DURATION")]
    interval: String,
    /// Per-node timeout of a round, e.g. 2s.
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    timeout: String,
    /// Put every node behind an `attesta axon` (dev hotkey `//devnet-node-<i>`), register the
    /// axons on a JSON-RPC chain stand-in (a test double, not a chain) and let the validator
    /// (dev hotkey `//devnet-validator`, with a validator permit there) discover them from the
    /// stand-in's metagraph and reach them with its dendrite.
    #[arg(long)]
    bittensor: bool,
    /// The dev TEE every node runs: `dev` (Nitro-format documents), `dev-snp` (SEV-SNP
    /// reports, through the SNP verifier) or `dev-tdx` (TDX quotes with their collateral,
    /// through the DCAP verifier). All INSECURE; --faulty needs `dev` (faults are declared
    /// in dev documents).
    #[arg(long, default_value = "dev", value_name = "TEE",
          value_parser = ["dev", "dev-snp", "dev-tdx"])]
    tee: String,
    /// Working directory (kept afterwards) [default: a temporary one, removed at exit].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Requests per second (and burst) one client may send through the validator's gateway.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    gateway_rate: u32,
    /// Also serve this GGUF language model on every node (OpenAI API: /v1/completions,
    /// /v1/chat/completions) and challenge it every round: a random token prompt, a
    /// greedy streamed completion, every token checked by the validator's own
    /// teacher-forced pass, scored by time to first token and tokens per second. No model
    /// is bundled or downloaded: bring a small one (e.g. one made by
    /// scripts/make-test-gguf) and raise --timeout for bigger models. The challenge
    /// travels sealed to the attested node and its answer carries a receipt; with
    /// --bittensor it goes through the node's axon (`TeeCompletion`), which returns the
    /// whole stream at once, so such answers are timed by their total.
    #[arg(long, value_name = "PATH.gguf")]
    llm: Option<PathBuf>,
}

/// The dev TEE of every node: its shared root and the release it reports.
struct DevnetTee {
    kind: TeeKind,
    /// Root certificate first, then its key (copied to every node's data dir).
    root_files: [&'static str; 2],
    /// How reports name it.
    label: &'static str,
}

impl DevnetTee {
    /// Makes the shared root in `root_dir` for the `--tee` value.
    fn new(tee: &str, root_dir: &Path) -> anyhow::Result<Self> {
        let opts = attesta_attester::dev::DevOptions::new(root_dir)?;
        Ok(match tee {
            "dev-snp" => {
                drop(attesta_attester::dev_snp::DevSnpAttester::open(opts)?);
                DevnetTee {
                    kind: TeeKind::DevSnp,
                    root_files: [
                        attesta_attester::dev_snp::DEV_SNP_ARK_FILE,
                        attesta_attester::dev_snp::DEV_SNP_ARK_KEY_FILE,
                    ],
                    label: "dev-snp (insecure)",
                }
            }
            "dev-tdx" => {
                drop(attesta_attester::dev_tdx::DevTdxAttester::open(opts)?);
                DevnetTee {
                    kind: TeeKind::DevTdx,
                    root_files: [
                        attesta_attester::dev_tdx::DEV_DCAP_ROOT_FILE,
                        attesta_attester::dev_tdx::DEV_DCAP_ROOT_KEY_FILE,
                    ],
                    label: "dev-tdx (insecure)",
                }
            }
            _ => {
                drop(attesta_attester::dev::DevAttester::open(opts)?);
                DevnetTee {
                    kind: TeeKind::Dev,
                    root_files: [
                        attesta_attester::dev::DEV_ROOT_FILE,
                        attesta_attester::dev::DEV_ROOT_KEY_FILE,
                    ],
                    label: "dev (insecure)",
                }
            }
        })
    }

    /// The releases file entry of `exe` on this TEE.
    fn release(&self, exe: &Path) -> anyhow::Result<String> {
        const NAME: &str = "attesta devnet";
        Ok(match self.kind {
            TeeKind::DevSnp => attesta_evidence::SnpRelease {
                name: NAME.into(),
                measurement: attesta_attester::dev::measure_executable(exe)?,
                host_data: None,
            }
            .to_toml(),
            TeeKind::DevTdx => attesta_attester::dev_tdx::release_toml(
                &attesta_attester::dev_tdx::release_for(exe, NAME)?,
                "dev-tdx",
            ),
            _ => attesta_attester::dev::release_for_executable(exe, NAME)?.to_toml(),
        })
    }
}

/// What a devnet node is told to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Behaviour {
    Honest,
    WrongOutput,
    Slow(u64),
    Hang,
    WrongMeasurement,
    BadEvidence,
}

impl Behaviour {
    fn name(&self) -> String {
        match self {
            Behaviour::Honest => "honest".into(),
            Behaviour::WrongOutput => "wrong-output".into(),
            Behaviour::Slow(ms) => format!("slow:{ms}"),
            Behaviour::Hang => "hang".into(),
            Behaviour::WrongMeasurement => "wrong-measurement".into(),
            Behaviour::BadEvidence => "bad-evidence".into(),
        }
    }

    /// The node's `--insecure-fault` value (wrong measurement needs none: a different binary).
    fn fault_flag(&self) -> Option<String> {
        match self {
            Behaviour::Honest | Behaviour::WrongMeasurement => None,
            other => Some(other.name()),
        }
    }
}

fn behaviours(nodes: usize, faulty: usize, timeout: Duration) -> Vec<Behaviour> {
    let slow_ms = u64::try_from(timeout.as_millis() / 4)
        .unwrap_or(500)
        .max(50);
    let kinds = [
        Behaviour::WrongOutput,
        Behaviour::Slow(slow_ms),
        Behaviour::Hang,
        Behaviour::WrongMeasurement,
        Behaviour::BadEvidence,
    ];
    (0..nodes)
        .map(|i| {
            // Honest nodes first, so node-0 is always an honest reference.
            let honest = nodes - faulty.min(nodes);
            if i < honest {
                Behaviour::Honest
            } else {
                kinds[(i - honest) % kinds.len()].clone()
            }
        })
        .collect()
}

/// What the devnet knows about a node beyond the validator's board.
#[derive(Debug, Clone, Default)]
struct NodeInfo {
    /// The behaviour it was started with.
    behaviour: String,
    /// The fault its attestation document declares (read once at start).
    declared_fault: Option<String>,
    /// Why its process ended, once it has (`signal 9`, `code 1`).
    exit: Option<String>,
}

impl NodeInfo {
    fn status(&self) -> &'static str {
        if self.exit.is_some() {
            "dead"
        } else {
            "running"
        }
    }
}

/// One row of the final JSON.
#[derive(Debug, serde::Serialize)]
struct FinalNode {
    id: String,
    behaviour: String,
    /// The fault the node's signed document declares (`None` for honest nodes).
    declared_fault: Option<String>,
    /// `running`, or `dead` once its process ended.
    status: &'static str,
    /// How a dead node's process ended.
    exit: Option<String>,
    url: String,
    platform: Option<String>,
    attested: bool,
    measurement_ok: Option<bool>,
    correct: u64,
    wrong: u64,
    timeouts: u64,
    attestation_failures: u64,
    other_failures: u64,
    score: f64,
    weight: f64,
    weight_u16: u16,
    last_latency_ms: Option<f64>,
    last_failure: Option<String>,
}

#[derive(Debug, serde::Serialize)]
struct FinalState {
    rounds: u64,
    last_round_ms: u64,
    tee: &'static str,
    nodes: Vec<FinalNode>,
}

struct Net {
    children: Vec<(String, Child)>,
    workdir: PathBuf,
    remove_workdir: bool,
}

impl Net {
    /// SIGTERM every child by PID, wait (bounded), then SIGKILL what is left.
    async fn stop(&mut self) {
        for (_, child) in &self.children {
            if let Some(pid) = child.id() {
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (name, child) in &mut self.children {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, child.wait()).await.is_err() {
                tracing::warn!(%name, "did not stop on SIGTERM; killing");
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        self.children.clear();
        if self.remove_workdir {
            let _ = std::fs::remove_dir_all(&self.workdir);
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<Stdio> {
    let f = std::fs::File::create(dir.join(format!("{name}.log")))
        .with_context(|| format!("creating the log of {name}"))?;
    Ok(Stdio::from(f))
}

/// Runs `attesta devnet`.
pub fn run(args: DevnetArgs, _global: &Global) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: DevnetArgs) -> anyhow::Result<ExitCode> {
    let interval = parse_duration(&args.interval).map_err(anyhow::Error::msg)?;
    let timeout = parse_duration(&args.timeout).map_err(anyhow::Error::msg)?;
    let n = usize::from(args.nodes);
    let faulty = usize::from(args.faulty);
    if faulty > n {
        bail!("--faulty {faulty} exceeds --nodes {n}");
    }
    if faulty > 0 && args.tee != "dev" {
        bail!("--faulty needs --tee dev (faults are declared in dev documents)");
    }
    let (workdir, remove_workdir) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("attesta-devnet-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&workdir).with_context(|| format!("creating {}", workdir.display()))?;
    let workdir = workdir.canonicalize()?;
    let mut net = Net {
        children: Vec::new(),
        workdir: workdir.clone(),
        remove_workdir,
    };
    let result = tokio::select! {
        r = drive(&args, &workdir, n, faulty, interval, timeout, &mut net.children) => r,
        _ = crate::signals::stop_requested() => {
            eprintln!("stopping devnet…");
            Ok(ExitCode::SUCCESS)
        }
    };
    net.stop().await;
    result
}

async fn drive(
    args: &DevnetArgs,
    workdir: &Path,
    n: usize,
    faulty: usize,
    interval: Duration,
    timeout: Duration,
    children: &mut Vec<(String, Child)>,
) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the attesta executable")?;
    let logs = workdir.join("logs");
    std::fs::create_dir_all(&logs)?;

    // Challenge models, generated (no downloads).
    let model_dir = workdir.join("model-files");
    std::fs::create_dir_all(&model_dir)?;
    let mut model_files = Vec::new();
    for (name, spec) in demo::devnet_set() {
        let path = model_dir.join(format!("{name}.onnx"));
        std::fs::write(&path, demo::mlp(&spec))?;
        model_files.push(path);
    }
    if let Some(p) = &args.llm {
        let mut magic = [0u8; 4];
        std::io::Read::read_exact(
            &mut std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
            &mut magic,
        )
        .with_context(|| format!("reading {}", p.display()))?;
        if !attesta_llm::is_gguf(&magic) {
            bail!("--llm {}: not a GGUF file", p.display());
        }
    }
    // ONNX challenge models, then the language model (if any): CIDs.
    let add_models = |store_dir: &Path| -> anyhow::Result<(Vec<String>, Option<String>)> {
        let store = ModelStore::open(store_dir, StoreOptions::default())
            .with_context(|| format!("opening {}", store_dir.display()))?;
        let onnx = model_files
            .iter()
            .map(|p| Ok(store.add_file(p, Profile::default())?.cid.to_string()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let llm = match &args.llm {
            Some(p) => Some(store.add_file(p, Profile::default())?.cid.to_string()),
            None => None,
        };
        Ok((onnx, llm))
    };
    let validator_dir = workdir.join("validator");
    let (cids, llm_cid) = add_models(&validator_dir.join("models"))?;

    // One dev root shared by every node, so the validator can trust exactly it.
    let root_dir = workdir.join("dev-root");
    let tee = DevnetTee::new(&args.tee, &root_dir)?;
    let measurements = workdir.join("measurements.toml");
    std::fs::write(&measurements, tee.release(&exe)?)?;
    let odd_exe = workdir.join("attesta-other-build");
    let mut bytes = std::fs::read(&exe)?;
    bytes.push(0);
    std::fs::write(&odd_exe, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&odd_exe, std::fs::Permissions::from_mode(0o755))?;
    }

    // Nodes.
    let plan = behaviours(n, faulty, timeout);
    let mut entries = Vec::new();
    let mut info: BTreeMap<String, NodeInfo> = BTreeMap::new();
    for (i, b) in plan.iter().enumerate() {
        let id = format!("node-{i}");
        let data = workdir.join(&id);
        std::fs::create_dir_all(&data)?;
        for f in tee.root_files {
            std::fs::copy(root_dir.join(f), data.join(f))
                .with_context(|| format!("copying {f}"))?;
        }
        add_models(&data.join("models"))?;
        let port = free_port()?;
        let program = if *b == Behaviour::WrongMeasurement {
            &odd_exe
        } else {
            &exe
        };
        let mut cmd = Command::new(program);
        cmd.arg("--data-dir")
            .arg(&data)
            .arg("--log-format")
            .arg("json")
            .arg("node")
            .arg("--tee")
            .arg(&args.tee)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"));
        if let Some(f) = b.fault_flag() {
            cmd.arg("--insecure-fault").arg(f);
        }
        cmd.stdin(Stdio::null())
            .stdout(log_file(&logs, &id)?)
            .stderr(log_file(&logs, &format!("{id}.err"))?)
            .kill_on_drop(true);
        let child = cmd.spawn().with_context(|| format!("starting {id}"))?;
        children.push((id.clone(), child));
        entries.push(NodeEntry {
            id: id.clone(),
            url: format!("http://127.0.0.1:{port}"),
            hotkey: None,
            via: Default::default(),
        });
        info.insert(
            id,
            NodeInfo {
                behaviour: b.name(),
                ..NodeInfo::default()
            },
        );
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    for e in &entries {
        wait_healthy(&http, &e.url, children)
            .await
            .with_context(|| format!("{} did not start", e.id))?;
    }
    let dev_root = root_dir.join(tee.root_files[0]);
    if tee.kind == TeeKind::Dev {
        for e in &entries {
            if let Some(i) = info.get_mut(&e.id) {
                i.declared_fault = declared_fault(&e.url, &dev_root).await?;
            }
        }
    }

    // With --bittensor: a JSON-RPC chain stand-in (a test double, never a chain) holds the
    // subnet; the axons admit its validator-permit holders and the validator discovers the
    // nodes from its metagraph instead of the node file.
    let mut _standin = None;
    // Board ids (hotkeys) -> devnet names (`node-<i>`), for the table and the final state.
    let mut aliases: BTreeMap<String, String> = BTreeMap::new();
    let bittensor = if args.bittensor {
        use attesta_bittensor::chain::standin::{NeuronSpec, Standin, StandinConfig};
        let validator = attesta_bittensor::Hotkey::from_dev_uri(DEVNET_VALIDATOR_URI)?.account();
        let chain = Standin::start(StandinConfig::devnet())
            .await
            .context("starting the chain stand-in")?;
        // Weights go to the stand-in too: its write handler checks and applies them. Its
        // blocks advance only with extrinsics, so the weights rate limit is 0 (SCALE: the u16
        // netuid key, a u64 value) or every epoch after the first would be skipped.
        chain.set_extrinsic_handler(attesta_bittensor::chain::standin::writes::handler());
        chain.with_state(|st| {
            st.put(
                "SubtensorModule",
                "WeightsSetRateLimit",
                &[&DEVNET_NETUID.to_le_bytes()],
                0u64.to_le_bytes().to_vec(),
            )
        });
        chain.register(
            DEVNET_NETUID,
            NeuronSpec {
                hotkey: validator,
                coldkey: validator,
                axon: None,
                validator_permit: true,
                stake: 1_000_000_000,
            },
        );
        for (i, e) in entries.iter_mut().enumerate() {
            put_behind_axon(&exe, i, e, &chain.url(), &logs, children).await?;
            wait_healthy(&http, &e.url, children)
                .await
                .with_context(|| format!("the axon of {} did not start", e.id))?;
            let hotkey =
                attesta_bittensor::AccountId::from_ss58(e.hotkey.as_deref().unwrap_or(""))?;
            let axon = e
                .url
                .trim_start_matches("http://")
                .parse()
                .with_context(|| format!("axon address of {}", e.id))?;
            let uid = chain.register(
                DEVNET_NETUID,
                NeuronSpec {
                    hotkey,
                    coldkey: hotkey,
                    axon: Some(axon),
                    validator_permit: false,
                    stake: 1,
                },
            );
            tracing::info!(node = %e.id, uid, hotkey = %hotkey, %axon, "registered on the stand-in");
            if let Some(i) = info.get(&e.id).cloned() {
                info.insert(hotkey.to_ss58(), i);
            }
            aliases.insert(hotkey.to_ss58(), e.id.clone());
        }
        let cfg = attesta_validator::config::BittensorConfig {
            hotkey_uri: Some(DEVNET_VALIDATOR_URI.into()),
            endpoint: Some(chain.url()),
            netuid: Some(DEVNET_NETUID),
            ..Default::default()
        };
        if !args.json {
            println!(
                "chain stand-in (a test double, NOT a chain): {} netuid {DEVNET_NETUID}, {n} axons \
                 registered; the validator discovers them from its metagraph and commits its \
                 weights there",
                chain.url()
            );
        }
        _standin = Some(chain);
        Some(cfg)
    } else {
        None
    };

    // The validator.
    let nodes_file = workdir.join("nodes.json");
    std::fs::write(&nodes_file, serde_json::to_vec_pretty(&entries)?)?;
    let vport = free_port()?;
    let cfg = ValidatorConfig {
        nodes: nodes_file,
        database: validator_dir.join("validator.sqlite"),
        weights_file: validator_dir.join("weights.json"),
        listen: Some(format!("127.0.0.1:{vport}").parse()?),
        policy: PolicyConfig {
            measurements: Some(measurements.clone()),
            dev_root: (tee.kind == TeeKind::Dev).then(|| dev_root.clone()),
            snp_dev_root: (tee.kind == TeeKind::DevSnp).then(|| dev_root.clone()),
            dcap_dev_root: (tee.kind == TeeKind::DevTdx).then(|| dev_root.clone()),
            max_age_secs: Some(60),
            // The faulty nodes declare their faults; judge them by their answers.
            accept_declared_faults: tee.kind == TeeKind::Dev,
        },
        rounds: RoundConfig {
            interval_ms: u64::try_from(interval.as_millis())?,
            concurrency: n.max(1),
            node_timeout_ms: u64::try_from(timeout.as_millis())?,
            challenges_per_node: 2,
            epoch_rounds: 1,
            max_bundles: 1000,
            // The devnet stops the validator itself once it has read round R.
            max_rounds: None,
        },
        scoring: ScoringParams::default(),
        challenges: ChallengesConfig {
            store: validator_dir.join("models"),
            models: cids.iter().map(ChallengeSpec::new).collect(),
            llm: llm_cid.iter().map(LlmChallengeSpec::new).collect(),
        },
        bittensor,
        // Users' requests go through the validator (sealed: /v1/route + /v1/nodes/{id}/infer).
        gateway: Some(attesta_validator::gateway::GatewayConfig {
            enabled: true,
            rate_per_client: f64::from(args.gateway_rate.max(1)),
            burst_per_client: args.gateway_rate.max(1),
            ..Default::default()
        }),
    };
    let config_file = workdir.join("validator.toml");
    std::fs::write(&config_file, cfg.to_toml()?)?;
    let mut cmd = Command::new(&exe);
    cmd.arg("--config")
        .arg(&config_file)
        .arg("--data-dir")
        .arg(&validator_dir)
        .arg("--log-format")
        .arg("json")
        .arg("validator")
        .stdin(Stdio::null())
        .stdout(log_file(&logs, "validator")?)
        .stderr(log_file(&logs, "validator.err")?)
        .kill_on_drop(true);
    children.push((
        "validator".into(),
        cmd.spawn().context("starting the validator")?,
    ));
    let vurl = format!("http://127.0.0.1:{vport}");
    wait_healthy(&http, &vurl, children)
        .await
        .context("the validator did not start")?;

    // What scripts need to drive the running devnet, written once everything is up.
    let devnet_json = workdir.join("devnet.json");
    let described = serde_json::json!({
        "nodes": entries.iter().map(|e| serde_json::json!({
            "id": e.id,
            "url": e.url,
            "behaviour": info.get(&e.id).map(|i| i.behaviour.clone()),
            // So a script can stop one node to watch the rest take over.
            "pid": children.iter().find(|(name, _)| *name == e.id).and_then(|(_, c)| c.id()),
        })).collect::<Vec<_>>(),
        "gateway": vurl,
        "dashboard": format!("{vurl}/"),
        "status": format!("{vurl}/v1/nodes"),
        "models": cids,
        "llm": llm_cid,
        "dev_root": dev_root,
        "registry": measurements,
    });
    attesta_validator::weights::write_atomic(&devnet_json, &serde_json::to_vec_pretty(&described)?)
        .with_context(|| format!("writing {}", devnet_json.display()))?;
    let tty = std::io::stdout().is_terminal() && !args.json;
    if !args.json {
        println!(
            "devnet: {n} nodes ({faulty} faulty), TEE {}, {} challenge models, logs in {}",
            tee.label,
            cids.len(),
            logs.display()
        );
        println!("dashboard: {vurl}/");
        println!(
            "gateway: {vurl} (sealed: attesta infer --gateway {vurl} …; plaintext: POST {vurl}/infer; \
             OpenAI base URL: {vurl}/v1); described in {}",
            devnet_json.display()
        );
        if let (Some(cid), Some(e)) = (&llm_cid, entries.first()) {
            println!(
                "language model {cid} on every node, challenged each round (sealed, with receipts); \
                 its OpenAI API is also open in plaintext:\n  \
                 curl -sN {url}/v1/completions -H 'Content-Type: application/json' \\\n    \
                 -d '{{\"model\": \"{cid}\", \"prompt\": \"Once upon a time\", \"max_tokens\": 32, \"stream\": true}}'\n  \
                 python: openai.OpenAI(base_url=\"{url}/v1\", api_key=\"none\").completions.create(\
                 model=\"{cid}\", prompt=\"Once upon a time\", max_tokens=32)\n\
                 sealed, through the gateway: attesta chat --gateway {vurl} --model {cid} --stream \
                 --dev-root {root} --measurements {reg} \"Once upon a time\"",
                url = e.url,
                root = dev_root.display(),
                reg = measurements.display(),
            );
        }
    }
    let mut last_round = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some((name, status)) = exited(children) {
            // Without the validator there is nothing left to show.
            if name == "validator" {
                bail!(
                    "{name} exited unexpectedly ({status}); see {}",
                    logs.display()
                );
            }
            children.retain(|(n, _)| *n != name);
            let exit = describe_exit(status);
            if !args.json {
                println!(
                    "{name} died ({exit}); the others keep running (log: {})",
                    logs.join(format!("{name}.err.log")).display()
                );
            }
            tracing::warn!(node = %name, %exit, "node died");
            if let Some(i) = info.get_mut(&name) {
                i.exit = Some(exit.clone());
            }
            // The same node under its hotkey (how the validator's metagraph names it).
            for (hotkey, _) in aliases.iter().filter(|(_, n)| **n == name) {
                if let Some(i) = info.get_mut(hotkey) {
                    i.exit = Some(exit.clone());
                }
            }
        }
        let board = match attesta_validator::http::fetch_board(&http, &vurl).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "validator status not available yet");
                continue;
            }
        };
        if board.round != last_round {
            last_round = board.round;
            if !args.json {
                print!("{}", render_table(&board, &info, tty));
            }
        }
        if let Some(r) = args.rounds
            && board.round >= r
        {
            if args.json {
                let state = final_state(&board, &info, tee.label);
                println!("{}", serde_json::to_string_pretty(&state)?);
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// `code 1`, `signal 9`: how a child process ended.
fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("code {code}"),
        (None, Some(sig)) => format!("signal {sig}"),
        (None, None) => status.to_string(),
    }
}

/// The fault a node's evidence declares: fetched for a fresh nonce and read
/// from the signed document (verified under the dev root with declared faults
/// accepted; a node whose evidence does not verify shows what it claims).
async fn declared_fault(url: &str, dev_root: &Path) -> anyhow::Result<Option<String>> {
    let pem = std::fs::read_to_string(dev_root)
        .with_context(|| format!("reading {}", dev_root.display()))?;
    let root = attesta_evidence::TrustedRoot::from_pem("dev (insecure)", &pem)?;
    let policy = attesta_evidence::danger::accept_declared_faults(
        attesta_evidence::danger::accept_dev_root(attesta_evidence::Policy::aws_nitro()?, root),
    );
    let mut config = attesta_client::ClientConfig::new(policy);
    config.timeout = Duration::from_secs(5);
    let client = attesta_client::Client::new(url, config)?;
    let report = match client.attest().await {
        Ok(node) => node.report.clone(),
        Err(attesta_client::ClientError::Attestation { report, .. }) => *report,
        Err(e) => {
            tracing::debug!(%url, error = %e, "no evidence to read a declared fault from");
            return Ok(None);
        }
    };
    Ok(report.document.and_then(|d| d.insecure_fault))
}

fn exited(children: &mut [(String, Child)]) -> Option<(String, std::process::ExitStatus)> {
    children
        .iter_mut()
        .find_map(|(name, c)| c.try_wait().ok().flatten().map(|s| (name.clone(), s)))
}

/// The devnet validator's PUBLIC dev hotkey.
const DEVNET_VALIDATOR_URI: &str = "//devnet-validator";

/// The devnet's subnet on the chain stand-in.
const DEVNET_NETUID: u16 = 1;

/// Starts `attesta axon` (dev hotkey `//devnet-node-<i>`; callers: the validator-permit
/// holders of the stand-in's subnet, i.e. the devnet validator) in front of node `i` and
/// points its entry at the axon.
async fn put_behind_axon(
    exe: &Path,
    i: usize,
    entry: &mut NodeEntry,
    chain: &str,
    logs: &Path,
    children: &mut Vec<(String, Child)>,
) -> anyhow::Result<()> {
    let uri = format!("//devnet-node-{i}");
    let hotkey = attesta_bittensor::Hotkey::from_dev_uri(&uri)?.account();
    let port = free_port()?;
    let name = format!("{}-axon", entry.id);
    let mut cmd = Command::new(exe);
    cmd.args(["--log-format", "json", "axon", "--node", &entry.url])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--hotkey-uri",
            &uri,
        ])
        .args(["--chain-endpoint", chain])
        .args([
            "--netuid",
            &DEVNET_NETUID.to_string(),
            "--permit-refresh",
            "1",
        ])
        .stdin(Stdio::null())
        .stdout(log_file(logs, &name)?)
        .stderr(log_file(logs, &format!("{name}.err"))?)
        .kill_on_drop(true);
    children.push((
        name.clone(),
        cmd.spawn().with_context(|| format!("starting {name}"))?,
    ));
    entry.url = format!("http://127.0.0.1:{port}");
    entry.hotkey = Some(hotkey.to_ss58());
    entry.via = attesta_validator::registry::Via::Axon;
    Ok(())
}

async fn wait_healthy(
    http: &reqwest::Client,
    url: &str,
    children: &mut [(String, Child)],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some((name, status)) = exited(children) {
            bail!("{name} exited ({status})");
        }
        if let Ok(r) = http.get(format!("{url}/healthz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no answer on {url}/healthz within 60 s")
}

fn final_state(board: &Board, info: &BTreeMap<String, NodeInfo>, tee: &'static str) -> FinalState {
    FinalState {
        rounds: board.round,
        last_round_ms: board.last_round_ms,
        tee,
        nodes: board
            .nodes
            .iter()
            .map(|n| {
                let c = &n.counts;
                let i = info.get(&n.id).cloned().unwrap_or_default();
                FinalNode {
                    id: n.id.clone(),
                    status: i.status(),
                    behaviour: i.behaviour,
                    declared_fault: i.declared_fault,
                    exit: i.exit,
                    url: n.url.clone(),
                    platform: n.platform.clone(),
                    attested: n.attested,
                    measurement_ok: n.measurement_ok,
                    correct: c.correct,
                    wrong: c.wrong,
                    timeouts: c.timeouts,
                    attestation_failures: c.attestation_failures,
                    other_failures: c.receipt_failures + c.transport_errors + c.protocol_errors,
                    score: n.score,
                    weight: n.weight,
                    weight_u16: n.weight_u16,
                    last_latency_ms: n.last_latency_ms,
                    last_failure: n.last_failure.clone(),
                }
            })
            .collect(),
    }
}

fn attestation_cell(n: &NodeStatus) -> String {
    // The dev TEE is never presented as secure.
    let platform = n
        .platform
        .clone()
        .unwrap_or_else(|| "dev (insecure)".into());
    match (n.attested, n.measurement_ok) {
        (true, _) => format!("ok, {platform}"),
        (false, Some(false)) => "FAIL measurement".into(),
        (false, _) => "FAIL".into(),
    }
}

/// The live table (with a clear-screen prefix on a terminal).
fn render_table(board: &Board, info: &BTreeMap<String, NodeInfo>, tty: bool) -> String {
    let mut out = String::new();
    if tty {
        out.push_str("\x1b[2J\x1b[H");
    }
    out.push_str(&format!(
        "round {}  ({} ms)\n",
        board.round, board.last_round_ms
    ));
    out.push_str(&format!(
        "{:<8} {:<18} {:<16} {:<18} {:<24} {:>10} {:>7} {:>6} {:>8} {:>9} {:>7}\n",
        "node",
        "behaviour",
        "declared fault",
        "status",
        "attestation",
        "latency",
        "correct",
        "wrong",
        "timeouts",
        "score",
        "weight"
    ));
    for n in &board.nodes {
        let lat = n
            .last_latency_ms
            .map_or_else(|| "-".to_string(), |l| format!("{l:.1} ms"));
        let i = info.get(&n.id);
        let status = match i.and_then(|i| i.exit.as_deref()) {
            Some(exit) => format!("dead ({exit})"),
            None => "running".into(),
        };
        out.push_str(&format!(
            "{:<8} {:<18} {:<16} {:<18} {:<24} {:>10} {:>7} {:>6} {:>8} {:>9.5} {:>7.3}\n",
            n.id,
            i.map_or("?", |i| i.behaviour.as_str()),
            i.and_then(|i| i.declared_fault.as_deref()).unwrap_or("-"),
            status,
            attestation_cell(n),
            lat,
            n.counts.correct,
            n.counts.wrong,
            n.counts.timeouts,
            n.score,
            n.weight
        ));
    }
    if !tty {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faulty_nodes_get_distinct_behaviours() {
        let b = behaviours(7, 5, Duration::from_secs(2));
        assert_eq!(b[0], Behaviour::Honest);
        assert_eq!(b[1], Behaviour::Honest);
        let faulty: Vec<String> = b[2..].iter().map(Behaviour::name).collect();
        assert_eq!(
            faulty,
            [
                "wrong-output",
                "slow:500",
                "hang",
                "wrong-measurement",
                "bad-evidence"
            ]
        );
        assert!(
            behaviours(3, 0, Duration::from_secs(1))
                .iter()
                .all(|b| *b == Behaviour::Honest)
        );
    }

    #[test]
    fn the_table_and_json_show_declared_faults_and_dead_nodes() {
        let board = Board {
            round: 3,
            nodes: ["node-0", "node-1"]
                .map(|id| NodeStatus {
                    id: id.into(),
                    ..NodeStatus::default()
                })
                .to_vec(),
            ..Board::default()
        };
        let info: BTreeMap<String, NodeInfo> = [
            (
                "node-0".to_string(),
                NodeInfo {
                    behaviour: "honest".into(),
                    declared_fault: None,
                    exit: Some("signal 9".into()),
                },
            ),
            (
                "node-1".to_string(),
                NodeInfo {
                    behaviour: "wrong-output".into(),
                    declared_fault: Some("wrong-output".into()),
                    exit: None,
                },
            ),
        ]
        .into_iter()
        .collect();
        let table = render_table(&board, &info, false);
        let row = |id: &str| {
            table
                .lines()
                .find(|l| l.starts_with(id))
                .unwrap()
                .to_owned()
        };
        assert!(row("node-0").contains("dead (signal 9)"), "{table}");
        assert!(row("node-1").contains("running"), "{table}");
        assert_eq!(row("node-1").matches("wrong-output").count(), 2, "{table}");
        let json = serde_json::to_value(final_state(&board, &info, "dev (insecure)")).unwrap();
        assert_eq!(json["nodes"][0]["status"], "dead");
        assert_eq!(json["nodes"][0]["exit"], "signal 9");
        assert_eq!(json["nodes"][1]["declared_fault"], "wrong-output");
        assert_eq!(json["nodes"][1]["status"], "running");
    }
}
