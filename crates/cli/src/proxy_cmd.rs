//! `attesta proxy`: the parent instance's side of a node in a Nitro enclave.

use std::process::ExitCode;

use anyhow::Context;
use attesta_node::proxy::{ProxyLimits, Route, run_route};
use attesta_node::transport::Listener;
use clap::Args;

use crate::units::parse_duration;

/// Options of `attesta proxy`.
#[derive(Args)]
pub struct ProxyArgs {
    /// Inbound route LISTEN=CONNECT for the node's API, e.g. `0.0.0.0:8443=vsock:16:8000`
    /// (clients' TCP to the enclave's `--listen vsock:8000`; repeatable).
    #[arg(long = "inbound", value_name = "LISTEN=CONNECT")]
    inbound: Vec<Route>,
    /// Outbound route LISTEN=CONNECT for the enclave's IPFS gateway fetches, e.g.
    /// `vsock:8081=127.0.0.1:8080` (the node runs with `--gateway vsock:3:8081`; repeatable).
    #[arg(long = "outbound", value_name = "LISTEN=CONNECT")]
    outbound: Vec<Route>,
    /// Connections relayed at once per route; further clients wait in the accept backlog.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_connections: usize,
    /// Longest wait to connect to a route's target.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    connect_timeout: String,
    /// A relayed connection is closed after this long without a byte in either direction.
    #[arg(long, default_value = "120s", value_name = "DURATION")]
    idle_timeout: String,
}

/// Runs the routes until Ctrl-C or SIGTERM. Relaying is stateless: restarting the proxy
/// drops the connections in flight and nothing else (the enclave keeps its keys).
pub fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let routes: Vec<Route> = args.inbound.into_iter().chain(args.outbound).collect();
    anyhow::ensure!(
        !routes.is_empty(),
        "give at least one --inbound or --outbound route"
    );
    anyhow::ensure!(
        args.max_connections > 0,
        "max-connections must be at least 1"
    );
    let limits = ProxyLimits {
        max_connections: args.max_connections,
        connect_timeout: parse_duration(&args.connect_timeout)
            .map_err(|e| anyhow::anyhow!("--connect-timeout: {e}"))?,
        idle_timeout: parse_duration(&args.idle_timeout)
            .map_err(|e| anyhow::anyhow!("--idle-timeout: {e}"))?,
        ..ProxyLimits::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for route in routes {
            let listener = Listener::bind(&route.listen)
                .await
                .with_context(|| format!("binding {}", route.listen))?;
            let bound = listener.local_addr().context("reading the bound address")?;
            tracing::info!(listen = %bound, connect = %route.connect, "proxy route");
            println!("listening on {bound} -> {}", route.connect);
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(run_route(
                listener,
                route.connect,
                limits.clone(),
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            )));
        }
        crate::signals::stop_requested().await;
        tracing::info!("proxy stopping");
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
