//! `attesta axon`: a miner's host process that serves the Bittensor SDK's axon wire format
//! and relays attesta's synapses to the enclave node (the host never sees plaintext).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use attesta_bittensor::{AccountId, AxonConfig, CallerPolicy};
use attesta_node::server::{ConnectionMetrics, HttpLimits, serve};
use clap::Args;

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
    /// The chain's JSON-RPC WebSocket (ws:// or wss://; btcli's --subtensor.chain_endpoint).
    /// Without --allow-any-caller, the callers are then the hotkeys registered on --netuid
    /// with a validator permit, refreshed every --permit-refresh seconds.
    #[arg(
        long,
        env = "ATTESTA_CHAIN_ENDPOINT",
        value_name = "URL",
        requires = "netuid"
    )]
    chain_endpoint: Option<String>,
    /// The subnet (with --chain-endpoint).
    #[arg(
        long,
        env = "ATTESTA_NETUID",
        value_name = "N",
        requires = "chain_endpoint"
    )]
    netuid: Option<u16>,
    /// Seconds between two reads of the subnet's validator permits.
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    permit_refresh: u64,
    /// Largest request body in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Deadline of one relayed call to the node, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    node_timeout: u64,
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
    } else if let (Some(endpoint), Some(netuid)) = (args.chain_endpoint.clone(), args.netuid) {
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
    let hotkey = args.wallet.load()?;
    let account = hotkey.account();
    let mut config = AxonConfig::new(hotkey, args.node.clone(), policy);
    config.max_body_bytes = args.max_body_bytes;
    config.node_timeout = Duration::from_secs(args.node_timeout);
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

/// Stops the permit refresher when the server stops.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
