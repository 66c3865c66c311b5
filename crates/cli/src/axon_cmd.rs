//! `attesta axon`: a miner's host process that serves the Bittensor SDK's axon wire format
//! and relays attesta's synapses to the enclave node (the host never sees plaintext).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use attesta_bittensor::chain::announce::{
    AnnounceError, AnnounceOutcome, announce as chain_announce,
};
use attesta_bittensor::chain::calls::ServeAxon;
use attesta_bittensor::chain::submit::SubmitOptions;
use attesta_bittensor::chain::{ChainClient, RpcConfig};
use attesta_bittensor::{AccountId, AxonConfig, CallerPolicy, Hotkey};
use attesta_node::server::{ConnectionMetrics, HttpLimits, serve};
use clap::Args;

use crate::chain_args::ChainArgs;
use crate::wallet_args::WalletArgs;

/// Flags of `attesta axon`.
#[derive(Args, Debug)]
pub struct AxonArgs {
    /// Base URL of the node to relay to (its /v1/attestation and /v1/infer).
    #[arg(long, value_name = "URL")]
    node: String,
    /// Address to serve the axon on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8091")]
    listen: SocketAddr,
    #[command(flatten)]
    wallet: WalletArgs,
    /// A validator hotkey (SS58) allowed to call; repeat for more. With --chain-endpoint,
    /// allowed besides the subnet's validator-permit holders.
    #[arg(long = "allow-caller", value_name = "SS58")]
    allow_caller: Vec<String>,
    /// Allow any hotkey whose signature verifies (tests and open subnets).
    #[arg(long, conflicts_with = "allow_caller")]
    allow_any_caller: bool,
    /// With --chain-endpoint and without --allow-any-caller, the callers are the hotkeys
    /// registered on --netuid with a validator permit (and --allow-caller's).
    #[command(flatten)]
    chain: ChainArgs,
    /// Seconds between two reads of the subnet's validator permits.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    permit_refresh: u64,
    /// Announce the axon on the chain at start (`serve_axon`; needs --chain-endpoint and
    /// --netuid): skipped when the chain already has this address, delayed while the
    /// subnet's ServingRateLimit runs; exit status 4 when the hotkey is not registered.
    #[arg(long, requires = "chain_endpoint")]
    announce: bool,
    /// The public IP to announce (btcli's --axon.external_ip); default: the --listen address
    /// when it is a specific one.
    #[arg(long, value_name = "IP", requires = "announce")]
    external_ip: Option<std::net::IpAddr>,
    /// The public port to announce (btcli's --axon.external_port); default: the bound port.
    #[arg(long, value_name = "PORT", requires = "announce",
          value_parser = clap::value_parser!(u16).range(1..))]
    external_port: Option<u16>,
    /// Largest request body in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Deadline of one relayed call to the node, in seconds (a language-model call: its
    /// whole sealed stream).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    node_timeout: u64,
    /// Largest sealed stream relayed back from one language-model call, in bytes (a synapse
    /// answers once, so the stream is held whole).
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    max_stream_bytes: usize,
}

/// Runs the axon until Ctrl-C or SIGTERM.
pub fn run(args: AxonArgs) -> anyhow::Result<ExitCode> {
    let mut listed = BTreeSet::new();
    for s in &args.allow_caller {
        listed.insert(AccountId::from_ss58(s).with_context(|| format!("--allow-caller {s}"))?);
    }
    // The permit holders are read by a task on the runtime below (started with the server).
    let mut permits = None;
    let policy = if args.allow_any_caller {
        CallerPolicy::AnyCaller
    } else if let Some((endpoint, netuid)) = args.chain.chain() {
        let permitted = attesta_bittensor::chain::callers::PermittedCallers::new();
        permits = Some((endpoint, netuid, permitted.clone()));
        CallerPolicy::Chain {
            permitted,
            also: listed,
        }
    } else if listed.is_empty() {
        eprintln!(
            "error: no caller policy: pass --allow-caller SS58 (repeatable), --chain-endpoint URL \
             --netuid N (the subnet's validator-permit holders) or --allow-any-caller"
        );
        return Ok(ExitCode::from(crate::EXIT_USAGE));
    } else {
        CallerPolicy::Allow(listed)
    };
    let external_ip = match (args.announce, args.external_ip) {
        (true, None) if args.listen.ip().is_unspecified() => {
            eprintln!(
                "error: --announce with --listen {} needs --external-ip: the address validators \
                 reach this axon at",
                args.listen
            );
            return Ok(ExitCode::from(crate::EXIT_USAGE));
        }
        (_, ip) => ip.unwrap_or(args.listen.ip()),
    };
    let hotkey = args.wallet.load()?;
    let account = hotkey.account();
    let announcer = hotkey.clone();
    let mut config = AxonConfig::new(hotkey, args.node.clone(), policy);
    config.max_body_bytes = args.max_body_bytes;
    config.node_timeout = Duration::from_secs(args.node_timeout);
    config.max_stream_bytes = args.max_stream_bytes;
    let app = attesta_bittensor::router(config).context("building the axon")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        println!("listening on {addr}");
        println!("axon hotkey {account}");
        let mut _announcing = None;
        if args.announce
            && let Some((endpoint, netuid)) = args.chain.chain()
        {
            let public = SocketAddr::new(external_ip, args.external_port.unwrap_or(addr.port()));
            match announce(&endpoint, netuid, &announcer, public).await {
                Ok(Some(later)) => _announcing = Some(AbortOnDrop(later)),
                Ok(None) => {}
                Err(AnnounceError::NotRegistered { hotkey, netuid }) => {
                    eprintln!(
                        "error: hotkey {hotkey} is not registered on netuid {netuid}: register it \
                         (e.g. btcli subnets register) before announcing its axon"
                    );
                    return Ok(ExitCode::from(crate::EXIT_NOT_REGISTERED));
                }
                Err(e) => return Err(e).context(format!("announcing {public} on netuid {netuid}")),
            }
        }
        let _refresh = permits.map(|(endpoint, netuid, permitted)| {
            tracing::info!(%endpoint, netuid, "callers: the subnet's validator-permit holders");
            AbortOnDrop(attesta_bittensor::chain::callers::spawn_refresh(
                endpoint,
                netuid,
                attesta_bittensor::chain::RpcConfig::default(),
                Duration::from_secs(args.permit_refresh),
                permitted,
            ))
        });
        tracing::info!(%addr, hotkey = %account, node = %args.node, "axon listening");
        serve(
            listener.into(),
            app,
            HttpLimits::default(),
            ConnectionMetrics::default(),
            async {
                crate::signals::stop_requested().await;
                tracing::info!("shutting down");
            },
        )
        .await
        .context("serving")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The axon's version as the SDK writes its own (`100·major + 10·minor + patch`).
fn version_as_int() -> u32 {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b, c) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    100 * a + 10 * b + c
}

/// Announces `public` now; while the serving rate limit runs, returns a task that announces
/// once it has passed (12 s blocks).
async fn announce(
    endpoint: &str,
    netuid: u16,
    hotkey: &Hotkey,
    public: SocketAddr,
) -> Result<Option<tokio::task::JoinHandle<()>>, AnnounceError> {
    let client = ChainClient::connect(endpoint, RpcConfig::default()).await?;
    let axon = ServeAxon::new(netuid, version_as_int(), public);
    match chain_announce(&client, hotkey, &axon, SubmitOptions::default()).await? {
        AnnounceOutcome::Announced(inc) => {
            println!(
                "announced {public} on netuid {netuid} (block {})",
                inc.block_number
            );
            tracing::info!(%public, netuid, block = inc.block_number, extrinsic = %inc.extrinsic_hash, "axon announced");
            Ok(None)
        }
        AnnounceOutcome::Unchanged => {
            println!("axon {public} already announced on netuid {netuid}");
            Ok(None)
        }
        AnnounceOutcome::RateLimited { blocks_left } => {
            let wait = Duration::from_secs(12 * blocks_left);
            tracing::warn!(%public, netuid, blocks_left, "serving rate limit: announcing later");
            println!("serving rate limit: announcing {public} in {blocks_left} blocks");
            let hotkey = hotkey.clone();
            Ok(Some(tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                match chain_announce(&client, &hotkey, &axon, SubmitOptions::default()).await {
                    Ok(o) => tracing::info!(%public, netuid, outcome = ?o, "axon announcement"),
                    Err(e) => {
                        tracing::warn!(%public, netuid, error = %e, "axon announcement failed")
                    }
                }
            })))
        }
    }
}

/// Stops the permit refresher when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
