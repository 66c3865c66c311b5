//! The subnet's metagraph as a [`NodeSource`]: every neuron of `netuid` that serves an axon,
//! reached through that axon (`via = "axon"`) with the validator's dendrite.
//!
//! A node's id is its hotkey (SS58): scores follow the hotkey, so a uid re-registered by
//! another miner starts from nothing. The connection is opened on first use and re-opened
//! after a failure; a failed read fails the round (retried), it never yields an empty list
//! that would zero everyone's score.

use std::sync::Arc;

use attesta_bittensor::chain::{ChainClient, ChainError, Neuron, RpcConfig};
use futures::future::BoxFuture;
use tokio::sync::Mutex;

use crate::registry::{NodeEntry, NodeSource, RegistryError, Via};

/// Nodes from the chain.
pub struct Metagraph {
    endpoint: String,
    netuid: u16,
    rpc: RpcConfig,
    client: Mutex<Option<ChainClient>>,
}

impl std::fmt::Debug for Metagraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metagraph")
            .field("endpoint", &self.endpoint)
            .field("netuid", &self.netuid)
            .finish_non_exhaustive()
    }
}

impl Metagraph {
    /// A source reading subnet `netuid` at `endpoint` (`ws://` or `wss://`).
    pub fn new(endpoint: impl Into<String>, netuid: u16, rpc: RpcConfig) -> Self {
        Metagraph {
            endpoint: endpoint.into(),
            netuid,
            rpc,
            client: Mutex::new(None),
        }
    }

    /// The subnet's neurons now.
    pub async fn neurons(&self) -> Result<Vec<Neuron>, ChainError> {
        let mut slot = self.client.lock().await;
        let client = match slot.as_ref() {
            Some(c) if !c.rpc().is_closed() => c.clone(),
            _ => {
                let c = ChainClient::connect(&self.endpoint, self.rpc).await?;
                *slot = Some(c.clone());
                c
            }
        };
        drop(slot);
        let result = client.neurons(self.netuid).await;
        if result.is_err() {
            // Re-connect next time: the node may have restarted or the socket died.
            *self.client.lock().await = None;
        }
        result
    }
}

/// The node entries of these neurons: those with a served axon, by hotkey.
pub fn entries(neurons: &[Neuron]) -> Vec<NodeEntry> {
    let mut v: Vec<NodeEntry> = neurons
        .iter()
        .filter_map(|n| {
            let addr = n.axon?;
            let hotkey = n.hotkey.to_ss58();
            Some(NodeEntry {
                id: hotkey.clone(),
                url: format!("http://{addr}"),
                hotkey: Some(hotkey),
                via: Via::Axon,
            })
        })
        .collect();
    v.sort();
    // A hotkey is registered at most once per subnet; keep the list's ids unique anyway.
    v.dedup_by(|a, b| a.id == b.id);
    v
}

impl NodeSource for Metagraph {
    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeEntry>, RegistryError>> {
        Box::pin(async move {
            let neurons = self
                .neurons()
                .await
                .map_err(|source| RegistryError::Chain {
                    endpoint: self.endpoint.clone(),
                    netuid: self.netuid,
                    source,
                })?;
            let nodes = entries(&neurons);
            tracing::debug!(
                netuid = self.netuid,
                neurons = neurons.len(),
                served = nodes.len(),
                "metagraph read"
            );
            Ok(nodes)
        })
    }
}

/// The source a config names: the metagraph when `[validator.bittensor]` has an endpoint,
/// else the static node file.
pub fn source_for(cfg: &crate::config::ValidatorConfig) -> Arc<dyn NodeSource> {
    match cfg
        .bittensor
        .as_ref()
        .and_then(|b| Some((b.endpoint.clone()?, b.netuid?)))
    {
        Some((endpoint, netuid)) => {
            let rpc = RpcConfig {
                request_timeout: cfg.node_timeout().max(std::time::Duration::from_secs(10)),
                ..RpcConfig::default()
            };
            Arc::new(Metagraph::new(endpoint, netuid, rpc))
        }
        None => Arc::new(crate::registry::StaticFile::new(&cfg.nodes)),
    }
}
