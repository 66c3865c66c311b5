//! `attesta validator`: rounds against the nodes of the `[validator]`
//! section of the config file, until Ctrl-C / SIGTERM or `--max-rounds`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use attesta_validator::client_channel::ClientFactory;
use attesta_validator::config::ValidatorConfig;
use attesta_validator::round::SystemClock;
use attesta_validator::service;
use attesta_validator::status::Status;
use clap::Args;

use crate::Global;
use crate::chain_args::ChainArgs;

/// Options of `attesta validator` (the rest is the config file's `[validator]` section).
#[derive(Args)]
pub struct ValidatorArgs {
    /// Address for GET /v1/nodes and /metrics (overrides `listen` in the config).
    #[arg(long, env = "ATTESTA_VALIDATOR_LISTEN")]
    listen: Option<SocketAddr>,
    /// Stop once this many rounds are committed in total (overrides `rounds.max_rounds`).
    #[arg(long, value_name = "N")]
    max_rounds: Option<u64>,
    /// Overrides `[validator.bittensor] endpoint` and `netuid`.
    #[command(flatten)]
    chain: ChainArgs,
}

/// Runs `attesta validator`.
pub fn run(args: ValidatorArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let table = global
        .file
        .validator
        .clone()
        .context("the config file (--config FILE) has no [validator] section")?;
    // Relative paths in the section are relative to the working directory, like `[node]`'s.
    let mut cfg = ValidatorConfig::from_table(table, Path::new(""))?;
    if let Some(l) = args.listen {
        cfg.listen = Some(l);
    }
    if let Some(m) = args.max_rounds {
        cfg.rounds.max_rounds = Some(m);
    }
    if let Some((endpoint, netuid)) = args.chain.chain() {
        let bt = cfg.bittensor.get_or_insert_with(Default::default);
        bt.endpoint = Some(endpoint);
        bt.netuid = Some(netuid);
        cfg.validate()?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(cfg))
}

async fn run_async(cfg: ValidatorConfig) -> anyhow::Result<ExitCode> {
    let policy = cfg.policy()?;
    if policy.dev_root().is_some() {
        tracing::warn!(
            "accepting dev TEE evidence: dev (insecure) nodes carry no hardware guarantee"
        );
    }
    let clock = Arc::new(SystemClock);
    let mut factory = ClientFactory::new(
        policy,
        cfg.node_timeout(),
        clock.clone(),
        attesta_validator::client_channel::system_rng(),
    );
    if let Some(bt) = &cfg.bittensor {
        let hotkey = bt.hotkey()?;
        if bt.hotkey_uri.is_some() {
            tracing::warn!(hotkey = %hotkey.account(), "signing axon calls with a PUBLIC dev key");
        }
        let dendrite = attesta_bittensor::Dendrite::new(hotkey, cfg.node_timeout())
            .context("building the dendrite")?;
        factory = factory.with_dendrite(Arc::new(dendrite));
    }
    let channels = Arc::new(factory);
    let status = Arc::new(Status::new());
    let rng = attesta_validator::os_rng().context("seeding the RNG")?;
    let (mut validator, sink_errors) =
        service::build(&cfg, channels, rng, clock.clone(), Arc::clone(&status)).await?;
    for e in sink_errors {
        tracing::warn!(error = %e, "re-emitting the last weights failed");
    }
    let gateway = match &cfg.gateway {
        Some(g) if g.enabled => {
            if cfg.listen.is_none() {
                anyhow::bail!(
                    "[validator.gateway] is enabled but the validator has no `listen` address"
                );
            }
            let parts = attesta_validator::gateway::GatewayParts {
                status: Arc::clone(&status),
                policy: cfg.policy()?,
                node_timeout: cfg.node_timeout(),
                clock: clock.clone(),
                rng: attesta_validator::os_rng().context("seeding the RNG")?,
                client_rng: attesta_validator::client_channel::system_rng(),
            };
            Some(
                attesta_validator::gateway::Gateway::new(g.clone(), parts)
                    .context("building the gateway")?,
            )
        }
        _ => None,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = match cfg.listen {
        Some(addr) => {
            let rx = stop_rx.clone();
            let with_gateway = gateway.is_some();
            let (local, task) = serve_http(addr, Arc::clone(&status), gateway, rx).await?;
            tracing::info!(%local, gateway = with_gateway, "validator status on /v1/nodes and /metrics");
            Some(task)
        }
        None => None,
    };
    tracing::info!(next_round = validator.next_round()?, "validator starting");
    let result = validator
        .run(
            Duration::from_millis(cfg.rounds.interval_ms),
            cfg.rounds.max_rounds,
            crate::signals::stop_requested(),
        )
        .await;
    let _ = stop_tx.send(true);
    if let Some(task) = server {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    result?;
    tracing::info!("validator stopped");
    Ok(ExitCode::SUCCESS)
}

/// Serves the status, dashboard and gateway routes on a thread of their own with a
/// single-threaded runtime: a relayed request is then handled start to end without
/// waking other workers (measured: cross-thread wake-ups were most of the relay's cost on a
/// small machine), and users' traffic never competes with the rounds for runtime workers.
/// Returns the bound address and a task that ends when the server has stopped.
async fn serve_http(
    addr: SocketAddr,
    status: Arc<Status>,
    gateway: Option<Arc<attesta_validator::gateway::Gateway>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("validator-http".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = bound_tx.send(Err(anyhow::Error::new(e).context("HTTP runtime")));
                    return;
                }
            };
            rt.block_on(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                match service::serve(addr, status, gateway, stopped).await {
                    Ok((local, task)) => {
                        let _ = bound_tx.send(Ok(local));
                        let _ = task.await;
                    }
                    Err(e) => {
                        let _ = bound_tx.send(Err(e.into()));
                    }
                }
            });
            let _ = done_tx.send(());
        })
        .context("starting the HTTP thread")?;
    let local = bound_rx
        .await
        .context("the HTTP thread ended before binding")??;
    Ok((
        local,
        tokio::spawn(async move {
            let _ = done_rx.await;
        }),
    ))
}
