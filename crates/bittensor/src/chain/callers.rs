//! The axon's default callers when a chain is configured: the hotkeys registered on the
//! subnet with a validator permit, read from the metagraph and refreshed periodically.
//!
//! Bounded: at most [`MAX_PERMITTED`] hotkeys are kept (a subnet has far fewer permits), and
//! one refresh runs at a time on a fixed period. A failed refresh keeps the last set (the
//! chain being briefly unreachable must not lock validators out); before the first
//! successful read the set is empty, so the axon fails closed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::{ChainClient, ChainError, Neuron, RpcConfig};
use crate::ss58::AccountId;

/// The most permit holders kept (subtensor caps validators per subnet far below this).
pub const MAX_PERMITTED: usize = 4096;

/// The current set of permitted callers, shared between the axon and its refresher.
#[derive(Default)]
pub struct PermittedCallers {
    set: RwLock<Arc<BTreeSet<AccountId>>>,
    loaded: AtomicBool,
}

impl std::fmt::Debug for PermittedCallers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PermittedCallers")
            .field("len", &self.len())
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

/// Two sets are the same only if they are the same object (they change under the axon).
impl PartialEq for PermittedCallers {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for PermittedCallers {}

impl PermittedCallers {
    /// An empty set (nobody allowed until the first refresh).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn current(&self) -> Arc<BTreeSet<AccountId>> {
        self.set.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether `account` holds a validator permit (as of the last refresh).
    pub fn contains(&self, account: &AccountId) -> bool {
        self.current().contains(account)
    }

    /// How many hotkeys are permitted.
    pub fn len(&self) -> usize {
        self.current().len()
    }

    /// True when no hotkey is permitted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True once a refresh succeeded.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::SeqCst)
    }

    /// Replaces the set (capped at [`MAX_PERMITTED`]).
    pub fn replace(&self, set: BTreeSet<AccountId>) {
        let set: BTreeSet<AccountId> = set.into_iter().take(MAX_PERMITTED).collect();
        *self.set.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        self.loaded.store(true, Ordering::SeqCst);
    }
}

/// The hotkeys of these neurons that hold a validator permit.
pub fn permitted_hotkeys(neurons: &[Neuron]) -> BTreeSet<AccountId> {
    neurons
        .iter()
        .filter(|n| n.validator_permit)
        .map(|n| n.hotkey)
        .take(MAX_PERMITTED)
        .collect()
}

/// Reads the subnet's permit holders once into `callers`; returns how many.
pub async fn refresh_once(
    client: &ChainClient,
    netuid: u16,
    callers: &PermittedCallers,
) -> Result<usize, ChainError> {
    let set = permitted_hotkeys(&client.neurons(netuid).await?);
    let n = set.len();
    callers.replace(set);
    Ok(n)
}

/// Keeps `callers` in step with the chain: a refresh now, then every `every`; reconnects
/// after failures. Runs until the task is aborted.
pub fn spawn_refresh(
    endpoint: String,
    netuid: u16,
    rpc: RpcConfig,
    every: Duration,
    callers: Arc<PermittedCallers>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut client: Option<ChainClient> = None;
        loop {
            let result = async {
                let c = match client.take() {
                    Some(c) if !c.rpc().is_closed() => c,
                    _ => ChainClient::connect(&endpoint, rpc).await?,
                };
                let n = refresh_once(&c, netuid, &callers).await;
                client = Some(c);
                n
            }
            .await;
            match result {
                Ok(n) => tracing::debug!(netuid, permitted = n, "validator permits refreshed"),
                Err(e) => {
                    client = None;
                    tracing::warn!(
                        netuid,
                        error = %e,
                        kept = callers.len(),
                        "reading validator permits failed; keeping the last set"
                    );
                }
            }
            tokio::time::sleep(every).await;
        }
    })
}
