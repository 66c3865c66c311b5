//! `attesta node`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use attesta_attester::Attester;
use attesta_attester::dev::{DevAttester, DevOptions};
use attesta_attester::{SelectOptions, TeeKind};
use attesta_content::Cid;
use attesta_content::fetch::GatewayConfig;
use attesta_content::store::{ModelStore, StoreOptions};
use attesta_engine::Limits;
use attesta_node::fault::{ActiveFault, Fault};
use attesta_node::fetching::{FetchPlan, FetchPolicy};
use attesta_node::transport::Addr;
use attesta_node::{Node, NodeConfig, NodeParts};
use clap::Args;

use crate::Global;
use crate::units::{duration_setting as duration, parse_duration, size_setting as size};

/// Options of `attesta node`.
#[derive(Args)]
pub struct NodeArgs {
    /// Address to listen on: HOST:PORT, vsock:PORT (inside a Nitro enclave; the parent's
    /// `attesta proxy` forwards to it) or unix:PATH [default: 127.0.0.1:8000].
    #[arg(long, env = "ATTESTA_LISTEN", value_name = "ADDR")]
    listen: Option<Addr>,
    /// Model store directory [default: <data-dir>/models].
    #[arg(long, env = "ATTESTA_STORE", value_name = "DIR")]
    store: Option<PathBuf>,
    /// Memory budget for loaded models, e.g. 2GiB [default: 2GiB].
    #[arg(long, env = "ATTESTA_CACHE_BYTES", value_name = "SIZE")]
    cache_bytes: Option<String>,
    /// Inferences that may run at once [default: number of CPUs].
    #[arg(long, env = "ATTESTA_WORKERS")]
    workers: Option<usize>,
    /// Threads one inference may use for matrix products [default: 1].
    #[arg(long, env = "ATTESTA_INTRA_OP_THREADS")]
    intra_op_threads: Option<usize>,
    /// Largest request body accepted, e.g. 16MiB [default: 16MiB].
    #[arg(long, env = "ATTESTA_MAX_BODY_BYTES", value_name = "SIZE")]
    max_body_bytes: Option<String>,
    /// Deadline for one inference including queueing, e.g. 30s or 500ms [default: 30s].
    #[arg(long, env = "ATTESTA_REQUEST_TIMEOUT", value_name = "DURATION")]
    request_timeout: Option<String>,
    /// Largest model file the node will load, e.g. 1GiB [default: 1GiB].
    #[arg(long, env = "ATTESTA_MAX_MODEL_BYTES", value_name = "SIZE")]
    max_model_bytes: Option<String>,
    /// Most operators (graph nodes) a model may have; larger graphs are refused before they
    /// are parsed [default: 50000].
    #[arg(long, env = "ATTESTA_MAX_MODEL_NODES", value_name = "N")]
    max_model_nodes: Option<usize>,
    /// Disk budget of the model store (least recently used models are removed first).
    #[arg(long, env = "ATTESTA_STORE_MAX_BYTES", value_name = "SIZE")]
    store_max_bytes: Option<String>,
    /// Longest time a client may take to send a request's headers (counted from the
    /// connection's start or the head's first byte) [default: 10s].
    #[arg(long, env = "ATTESTA_HEADER_TIMEOUT", value_name = "DURATION")]
    header_timeout: Option<String>,
    /// Longest time a client may take to send a request body after its headers; slower
    /// bodies are answered 408 `body_timeout` [default: 30s].
    #[arg(long, env = "ATTESTA_BODY_TIMEOUT", value_name = "DURATION")]
    body_timeout: Option<String>,
    /// Longest silence on a keep-alive connection between requests [default: 60s].
    #[arg(long, env = "ATTESTA_IDLE_TIMEOUT", value_name = "DURATION")]
    idle_timeout: Option<String>,
    /// Connections open at once; beyond it the longest-idle connection is closed to make
    /// room, and when all are busy new ones wait [default: 1024].
    #[arg(long, env = "ATTESTA_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    #[command(flatten)]
    fetch: FetchArgs,
    #[command(flatten)]
    loading: crate::load_args::LoadArgs,
    #[command(flatten)]
    engine: crate::engine_args::EngineArgs,
    #[command(flatten)]
    endorse: crate::endorse_args::EndorseArgs,
    /// Trusted execution environment to attest with: `auto` (probe /dev/nsm, configfs-tsm,
    /// Gramine; never falls back to dev), `nitro`, `tsm`, `gramine`, `dev` (INSECURE: local
    /// root written to <data-dir>/dev-root.pem), `dev-snp` (INSECURE: SEV-SNP format reports,
    /// local ARK written to <data-dir>/dev-snp-ark.pem), `dev-tdx` (INSECURE: TDX quotes with
    /// their collateral, local root written to <data-dir>/dev-dcap-root.pem), or
    /// `none` (plain /infer only, no attestation).
    #[arg(long, env = "ATTESTA_TEE", value_name = "TEE")]
    tee: Option<String>,
    /// How old a sealed request may be (its `issued_at`, on the node clock) [default: 60s];
    /// clocks up to 10 s ahead are tolerated. Accepted requests are remembered while they could
    /// pass this check, to refuse replays.
    #[arg(long, env = "ATTESTA_REPLAY_WINDOW", value_name = "DURATION")]
    replay_window: Option<String>,
    /// INSECURE, for demos and validator tests only: misbehave on purpose
    /// (`wrong-output`, `slow:MS`, `hang`, `bad-evidence`). Only with `--tee dev`, where every
    /// document declares the fault in a signed field, or `--tee none`; under any hardware TEE
    /// (or `auto`) the node refuses to start (exit 2).
    #[arg(long, value_name = "FAULT")]
    insecure_fault: Option<Fault>,
}

/// How the node obtains models it does not have.
#[derive(Args)]
pub struct FetchArgs {
    /// Trustless IPFS gateway to fetch unknown models from, tried in order (repeatable;
    /// ATTESTA_IPFS_GATEWAYS, comma-separated, is tried first). `vsock:CID:PORT` or
    /// `unix:PATH` instead of a URL sends plain HTTP through that socket: in a Nitro enclave,
    /// `vsock:3:PORT` reaches the parent's `attesta proxy --outbound vsock:PORT=GATEWAY`
    /// (every block is verified in the enclave, so the host only relays content-addressed bytes).
    #[arg(long = "gateway", value_name = "URL")]
    gateways: Vec<String>,
    /// Which unknown CIDs may be fetched: `any`, `allow-list` (only --allow-cid), or `off`
    /// [default: any when a gateway is configured].
    #[arg(long, env = "ATTESTA_FETCH")]
    fetch: Option<FetchMode>,
    /// A CID the node may fetch under `--fetch allow-list` (repeatable).
    #[arg(long = "allow-cid", value_name = "CID")]
    allow_cids: Vec<String>,
    /// Per-gateway timeout for connecting and for each stall of a download.
    #[arg(long, env = "ATTESTA_GATEWAY_TIMEOUT", value_name = "DURATION")]
    gateway_timeout: Option<String>,
}

/// `--fetch` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FetchMode {
    /// Fetch any CID.
    Any,
    /// Fetch only allow-listed CIDs.
    AllowList,
    /// Never fetch.
    Off,
}

fn to_usize(v: u64, what: &str) -> anyhow::Result<usize> {
    usize::try_from(v).with_context(|| format!("{what} does not fit this platform"))
}

/// Runs the node until Ctrl-C or SIGTERM.
pub fn run(args: NodeArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let file = &global.file.node;
    let mut cfg = NodeConfig::default();
    if let Some(l) = args.listen.clone() {
        cfg.listen = l;
    } else if let Some(l) = &file.listen {
        cfg.listen = l
            .parse()
            .with_context(|| format!("config node.listen {l:?}"))?;
    }
    if let Some(v) = size(
        args.cache_bytes.as_ref(),
        file.cache_bytes.as_ref(),
        "cache-bytes",
    )? {
        cfg.cache_bytes = to_usize(v, "cache-bytes")?;
    }
    if let Some(w) = args.workers.or(file.workers) {
        anyhow::ensure!(w > 0, "workers must be at least 1");
        cfg.workers = w;
    }
    if let Some(v) = size(
        args.max_body_bytes.as_ref(),
        file.max_body_bytes.as_ref(),
        "max-body-bytes",
    )? {
        cfg.max_body_bytes = to_usize(v, "max-body-bytes")?;
    }
    if let Some(t) = duration(
        args.request_timeout.as_ref(),
        file.request_timeout.as_ref(),
        "request-timeout",
    )? {
        cfg.request_timeout = t;
    }
    http_limits(&args, file, &mut cfg)?;
    let mut limits = Limits::default();
    if let Some(v) = size(
        args.max_model_bytes.as_ref(),
        file.max_model_bytes.as_ref(),
        "max-model-bytes",
    )? {
        limits.max_model_bytes = to_usize(v, "max-model-bytes")?;
    }
    if let Some(n) = args.max_model_nodes.or(file.max_model_nodes) {
        anyhow::ensure!(n > 0, "max-model-nodes must be at least 1");
        limits.max_nodes = n;
    }
    cfg.limits = limits;
    // Stopping: in-flight requests get at most --shutdown-timeout to finish.
    cfg.http.shutdown_grace = args.loading.apply(file, &mut cfg)?;
    let intra = args
        .intra_op_threads
        .or(file.intra_op_threads)
        .unwrap_or(1)
        .max(1);
    // Before the attester: the engine library it loads is part of the measurement.
    let engines = args.engine.choose(file, intra, cfg.workers)?;
    if let (attesta_node::loader::Isolation::Process(cmd), Some(rt)) =
        (&mut cfg.loading.isolation, engines.ort)
    {
        // The probe loads the very file the node measured.
        cmd.args.push("--ort-lib".into());
        cmd.args.push(rt.path().into());
    }
    // Before anything is opened or served: a fault under hardware is refused here.
    let (attester, fault) = match start_attester(&args, global, &mut cfg, engines.ort) {
        Ok(started) => started,
        Err(e) => match e.downcast_ref::<FaultRefused>() {
            Some(refused) => {
                eprintln!("error: {refused}");
                return Ok(ExitCode::from(crate::EXIT_USAGE));
            }
            None => return Err(e),
        },
    };
    if let Some(f) = &fault {
        tracing::warn!(fault = %f.fault(), "INSECURE: this node misbehaves on purpose (--insecure-fault)");
    }
    cfg.fault = fault;
    let store_dir = args
        .store
        .clone()
        .or_else(|| file.store.clone())
        .unwrap_or_else(|| global.data_dir.join("models"));
    let store_max = size(
        args.store_max_bytes.as_ref(),
        file.store_max_bytes.as_ref(),
        "store-max-bytes",
    )?;
    let store = ModelStore::open(
        &store_dir,
        StoreOptions {
            max_bytes: store_max,
            ..Default::default()
        },
    )
    .with_context(|| format!("opening model store {}", store_dir.display()))?;
    let fetch = fetch_plan(&args.fetch, global)?;
    let endorser = args.endorse.endorser(file, &global.data_dir)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async move {
        let mut fetch = fetch;
        if let Some(plan) = &mut fetch {
            open_tunnels(&mut plan.gateways.urls).await?;
        }
        let mut parts = NodeParts::new(engines.default, store);
        parts.engine_overrides = engines.overrides;
        parts.fetch = fetch;
        parts.attester = attester;
        parts.endorser = endorser;
        let node = Node::build(cfg, parts);
        let listen = node.config().listen.clone();
        let listener = node
            .bind()
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        tracing::info!(%addr, store = %store_dir.display(), workers = node.config().workers, intra_op_threads = intra, "node listening");
        println!("listening on {addr}");
        node.serve(listener, async {
            crate::signals::stop_requested().await;
            tracing::info!("shutting down");
        })
        .await
        .context("serving")?;
        tracing::info!("node stopped");
        Ok(ExitCode::SUCCESS)
    });
    // Dropping a runtime waits for every blocking task (a model load, an inference past its
    // deadline); bound that wait so a stop request ends the process.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

/// Replaces each gateway that names a socket (`vsock:…`, `unix:…`) by the URL of a loopback
/// tunnel to it (inside a Nitro enclave, the only way out is vsock to the parent).
pub async fn open_tunnels(urls: &mut [String]) -> anyhow::Result<()> {
    for url in urls.iter_mut() {
        if let Some(target) = attesta_node::proxy::tunnel_target(url) {
            let target = target.with_context(|| format!("--gateway {url}"))?;
            *url = attesta_node::proxy::gateway_tunnel(target, Default::default())
                .await
                .with_context(|| format!("opening a tunnel for gateway {url}"))?;
        }
    }
    Ok(())
}

/// Header, body and idle timeouts and the connection cap, from flags or the file.
fn http_limits(
    args: &NodeArgs,
    file: &crate::config::NodeSection,
    cfg: &mut NodeConfig,
) -> anyhow::Result<()> {
    let http = &mut cfg.http;
    if let Some(t) = duration(
        args.header_timeout.as_ref(),
        file.header_timeout.as_ref(),
        "header-timeout",
    )? {
        http.header_timeout = t;
    }
    if let Some(t) = duration(
        args.body_timeout.as_ref(),
        file.body_timeout.as_ref(),
        "body-timeout",
    )? {
        http.body_timeout = t;
    }
    if let Some(t) = duration(
        args.idle_timeout.as_ref(),
        file.idle_timeout.as_ref(),
        "idle-timeout",
    )? {
        http.idle_timeout = t;
    }
    for (t, what) in [
        (http.header_timeout, "header-timeout"),
        (http.body_timeout, "body-timeout"),
        (http.idle_timeout, "idle-timeout"),
    ] {
        anyhow::ensure!(!t.is_zero(), "{what} must be longer than zero");
    }
    if let Some(n) = args.max_connections.or(file.max_connections) {
        anyhow::ensure!(n > 0, "max-connections must be at least 1");
        http.max_connections = n;
    }
    // In-flight work is bounded by the body and request timeouts: let it finish on shutdown.
    http.shutdown_grace = http.body_timeout + cfg.request_timeout;
    Ok(())
}

/// Decides whether and how the node fetches: `None` means store-only.
fn fetch_plan(args: &FetchArgs, global: &Global) -> anyhow::Result<Option<FetchPlan>> {
    let file = &global.file.node;
    let mut gw = gateway_config(&args.gateways, file.gateways.as_deref().unwrap_or_default());
    if let Some(t) = args
        .gateway_timeout
        .as_ref()
        .or(file.gateway_timeout.as_ref())
    {
        gw.timeout = parse_duration(t).map_err(|e| anyhow::anyhow!("gateway-timeout: {e}"))?;
    }
    let mode = args.fetch.or(file.fetch).unwrap_or(if gw.urls.is_empty() {
        FetchMode::Off
    } else {
        FetchMode::Any
    });
    let allow: Vec<&String> = args
        .allow_cids
        .iter()
        .chain(file.allow_cids.iter().flatten())
        .collect();
    match mode {
        FetchMode::Off => Ok(None),
        _ if gw.urls.is_empty() => {
            anyhow::bail!("--fetch needs at least one --gateway (or ATTESTA_IPFS_GATEWAYS)")
        }
        FetchMode::Any => Ok(Some(FetchPlan {
            gateways: gw,
            policy: FetchPolicy::Any,
        })),
        FetchMode::AllowList => {
            let cids = allow
                .into_iter()
                .map(|c| {
                    c.parse::<Cid>()
                        .map_err(|e| anyhow::anyhow!("--allow-cid {c}: {e}"))
                })
                .collect::<anyhow::Result<_>>()?;
            Ok(Some(FetchPlan {
                gateways: gw,
                policy: FetchPolicy::AllowList(cids),
            }))
        }
    }
}

/// Gateways from flags, then the config file, with ATTESTA_IPFS_GATEWAYS in front.
pub fn gateway_config(flags: &[String], file: &[String]) -> GatewayConfig {
    let urls = if flags.is_empty() {
        file.to_vec()
    } else {
        flags.to_vec()
    };
    GatewayConfig {
        urls,
        ..GatewayConfig::default()
    }
    .with_env()
}

/// `--insecure-fault` under a TEE that may be hardware: the node does not start.
#[derive(Debug)]
pub struct FaultRefused {
    fault: Fault,
    tee: String,
}

impl std::fmt::Display for FaultRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refusing --insecure-fault {} under --tee {}: a hardware-attested node must never \
             answer wrongly on purpose; faults run only under --tee dev (declared in every \
             document) or --tee none",
            self.fault, self.tee
        )
    }
}

impl std::error::Error for FaultRefused {}

/// The evidence producer (`None` under `--tee none`) and the fault bound to it, if any.
type Started = (Option<Arc<dyn Attester>>, Option<ActiveFault>);

/// Makes the evidence producer named by `--tee` (the node makes its key set), the active
/// fault, and sets the replay window. A fault can only be made for `none` or bound to the dev
/// attester (which declares it in every document); any other TEE with a fault is refused
/// before its device is opened.
fn start_attester(
    args: &NodeArgs,
    global: &Global,
    cfg: &mut NodeConfig,
    ort: Option<&'static attesta_engine::onnxruntime::OrtRuntime>,
) -> anyhow::Result<Started> {
    let file = &global.file.node;
    let tee = args
        .tee
        .as_deref()
        .or(file.tee.as_deref())
        .unwrap_or("auto");
    if tee == "none" {
        tracing::warn!("running without a TEE (--tee none): no attestation, no sealed channel");
        return Ok((None, args.insecure_fault.map(ActiveFault::unattested)));
    }
    let kind: TeeKind = tee
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--tee: {e}"))?;
    let (attester, fault): (Arc<dyn Attester>, Option<ActiveFault>) = if kind == TeeKind::Dev {
        std::fs::create_dir_all(&global.data_dir)
            .with_context(|| format!("creating data dir {}", global.data_dir.display()))?;
        let opts = DevOptions::new(&global.data_dir).context("preparing the dev TEE")?;
        let mut dev = DevAttester::open(opts).context("starting the dev TEE")?;
        if let Some(rt) = ort {
            // The engine library runs every request: it is measured beside the binary.
            dev.measure_engine_library(rt.sha384());
        }
        tracing::warn!(
            root = %global.data_dir.join("dev-root.pem").display(),
            "INSECURE dev TEE: evidence is signed by a local root; verifiers must name it with --dev-root"
        );
        match args.insecure_fault {
            Some(f) => {
                let (fault, dev) = ActiveFault::declare(f, dev).context("declaring the fault")?;
                (dev, Some(fault))
            }
            None => (Arc::new(dev), None),
        }
    } else if kind == TeeKind::DevSnp {
        if let Some(fault) = args.insecure_fault {
            return Err(FaultRefused {
                fault,
                tee: tee.to_owned(),
            }
            .into());
        }
        std::fs::create_dir_all(&global.data_dir)
            .with_context(|| format!("creating data dir {}", global.data_dir.display()))?;
        let opts = DevOptions::new(&global.data_dir).context("preparing the dev-snp TEE")?;
        let dev = attesta_attester::dev_snp::DevSnpAttester::open(opts)
            .context("starting the dev-snp TEE")?;
        tracing::warn!(
            ark = %global.data_dir.join(attesta_attester::dev_snp::DEV_SNP_ARK_FILE).display(),
            measurement = %hex::encode(dev.measurement()),
            "INSECURE dev-snp TEE: SEV-SNP reports signed by a local ARK; verifiers must name it with --snp-dev-root"
        );
        (Arc::new(dev), None)
    } else if kind == TeeKind::DevTdx {
        if let Some(fault) = args.insecure_fault {
            return Err(FaultRefused {
                fault,
                tee: tee.to_owned(),
            }
            .into());
        }
        let opts = DevOptions::new(&global.data_dir).context("preparing the dev-tdx TEE")?;
        let dev = attesta_attester::dev_tdx::DevTdxAttester::open(opts)
            .context("starting the dev-tdx TEE")?;
        tracing::warn!(
            root = %global.data_dir.join(attesta_attester::dev_tdx::DEV_DCAP_ROOT_FILE).display(),
            mrtd = %hex::encode(dev.measurement()),
            "INSECURE dev-tdx TEE: TDX quotes and collateral signed by a local root; verifiers must name it with --dcap-dev-root"
        );
        (Arc::new(dev), None)
    } else {
        if let Some(fault) = args.insecure_fault {
            return Err(FaultRefused {
                fault,
                tee: tee.to_owned(),
            }
            .into());
        }
        let attester = attesta_attester::select(kind, SelectOptions::default()).map_err(|e| {
            anyhow::anyhow!("{e}\n(use `--tee dev` for the INSECURE dev TEE, or `--tee none` to serve without attestation)")
        })?;
        (Arc::from(attester), None)
    };
    if let Some(window) = args
        .replay_window
        .as_deref()
        .or(file.replay_window.as_deref())
    {
        cfg.replay_window =
            parse_duration(window).map_err(|e| anyhow::anyhow!("--replay-window: {e}"))?;
    }
    Ok((Some(attester), fault))
}
