//! Where `attesta infer` and `attesta chat` send their sealed requests: a node directly
//! (`--node`) or a validator's gateway in sealed mode (`--gateway`, `--api-key`).

use anyhow::Context;
use attesta_client::{Client, ClientConfig, ClientError, GatewayTransport};
use clap::Args;

/// `--node URL` or `--gateway URL [--api-key KEY]`.
#[derive(Args)]
pub struct TargetArgs {
    /// Base URL of the node, e.g. http://127.0.0.1:8000.
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "gateway",
        conflicts_with = "gateway"
    )]
    node: Option<String>,
    /// Go through a validator's gateway instead (sealed mode): it chooses a verified node and
    /// relays ciphertext; this client still verifies the node's evidence and receipt itself.
    #[arg(long, value_name = "URL")]
    gateway: Option<String>,
    /// API key for a gateway that requires one (`Authorization: Bearer`).
    #[arg(
        long,
        env = "ATTESTA_API_KEY",
        value_name = "KEY",
        requires = "gateway"
    )]
    api_key: Option<String>,
}

impl TargetArgs {
    /// The client for these options (`model` lets a gateway prefer nodes that hold it).
    pub fn client(&self, model: &str, config: ClientConfig) -> anyhow::Result<Client> {
        match (&self.node, &self.gateway) {
            (Some(node), _) => Client::new(node, config),
            (None, Some(gw)) => {
                let mut t = GatewayTransport::new(gw, config.timeout)
                    .context("--gateway")?
                    .with_model(model);
                if let Some(k) = &self.api_key {
                    t = t.with_api_key(k);
                }
                Client::with_transport(std::sync::Arc::new(t), config)
            }
            (None, None) => anyhow::bail!("give --node or --gateway"),
        }
        .context("creating the client")
    }

    /// Attempts per request: through a gateway a node that went away is routed around.
    pub fn attempts(&self) -> u32 {
        if self.gateway.is_some() { 3 } else { 1 }
    }
}

/// Whether a failure through a gateway is worth another route: the node went away or
/// the gateway could not reach it.
pub fn gateway_retryable(e: &ClientError) -> bool {
    e.is_retryable()
        || matches!(e, ClientError::Unauthenticated { status, .. } | ClientError::Refused { status, .. } if matches!(*status, 502..=504))
}
