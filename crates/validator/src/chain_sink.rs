//! Weights on chain: a [`WeightSink`] that maps the epoch's nodes to the subnet's uids by
//! hotkey (the metagraph), u16-normalises them (the one [`to_u16`]) and commits them
//! (commit-reveal v4) or sets them, as the subnet's rules say
//! ([`attesta_bittensor::chain::weights`]). Every attempt, skipped or failed ones included,
//! is appended as one JSON line to a record beside the weights file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use attesta_bittensor::Hotkey;
use attesta_bittensor::chain::weights::{self, WeightsAction, WeightsConfig, WeightsRecord};
use attesta_bittensor::chain::{ChainClient, ChainError, RpcConfig};
use futures::future::BoxFuture;
use tokio::sync::Mutex;

use crate::round::Clock;
use crate::scoring::to_u16;
use crate::state::EpochWeights;
use crate::status::Status;
use crate::weights::{SinkError, WeightSink};

/// Fresh secret randomness for each commit (the OS in production; constants in tests).
pub type SeedSource = Arc<dyn Fn() -> Result<[u8; 32], getrandom::Error> + Send + Sync>;

/// The operating system's randomness.
pub fn os_seed() -> SeedSource {
    Arc::new(|| {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)?;
        Ok(seed)
    })
}

/// Why the chain sink could not emit (kept as the [`SinkError`]'s cause).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainSinkError {
    /// Reading the chain failed.
    #[error("chain: {0}")]
    Chain(#[from] ChainError),
    /// The validator's hotkey is not a neuron of the subnet.
    #[error("validator hotkey {hotkey} is not registered on netuid {netuid}")]
    NotRegistered {
        /// SS58.
        hotkey: String,
        /// The subnet.
        netuid: u16,
    },
    /// Committing or setting failed (refused, dropped, timed out, a dispatch error).
    #[error(transparent)]
    Weights(#[from] weights::WeightsError),
    /// The commit's randomness could not be drawn.
    #[error("randomness: {0}")]
    Random(#[from] getrandom::Error),
}

/// One line of the record file.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RecordLine {
    /// Wall time (unix ms).
    pub time_ms: u64,
    /// The validator's epoch.
    pub epoch: u64,
    /// The validator's round the weights come from.
    pub round: u64,
    /// What was done, when the attempt got that far.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub record: Option<WeightsRecord>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// The record file beside a weights file: `weights.json` → `weights.chain.jsonl`.
pub fn record_path(weights_file: &Path) -> PathBuf {
    let stem = weights_file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("weights");
    weights_file.with_file_name(format!("{stem}.chain.jsonl"))
}

/// Emits weights to the chain.
pub struct ChainWeightSink {
    endpoint: String,
    rpc: RpcConfig,
    hotkey: Hotkey,
    config: WeightsConfig,
    record: PathBuf,
    clock: Arc<dyn Clock>,
    seed: SeedSource,
    status: Arc<Status>,
    client: Mutex<Option<ChainClient>>,
}

impl std::fmt::Debug for ChainWeightSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainWeightSink")
            .field("endpoint", &self.endpoint)
            .field("netuid", &self.config.netuid)
            .finish_non_exhaustive()
    }
}

impl ChainWeightSink {
    /// A sink signing as `hotkey` at `endpoint`, recording to `record`.
    #[allow(clippy::too_many_arguments)] // every part is injected: time, randomness, status
    pub fn new(
        endpoint: impl Into<String>,
        rpc: RpcConfig,
        hotkey: Hotkey,
        config: WeightsConfig,
        record: impl Into<PathBuf>,
        clock: Arc<dyn Clock>,
        seed: SeedSource,
        status: Arc<Status>,
    ) -> Self {
        ChainWeightSink {
            endpoint: endpoint.into(),
            rpc,
            hotkey,
            config,
            record: record.into(),
            clock,
            seed,
            status,
            client: Mutex::new(None),
        }
    }

    async fn client(&self) -> Result<ChainClient, ChainError> {
        let mut slot = self.client.lock().await;
        match slot.as_ref() {
            Some(c) if !c.rpc().is_closed() => Ok(c.clone()),
            _ => {
                let c = ChainClient::connect(&self.endpoint, self.rpc).await?;
                *slot = Some(c.clone());
                Ok(c)
            }
        }
    }

    async fn attempt(&self, w: &EpochWeights) -> Result<WeightsRecord, ChainSinkError> {
        let client = self.client().await?;
        let neurons = match client.neurons(self.config.netuid).await {
            Ok(n) => n,
            Err(e) => {
                // Re-connect next time: the node may have restarted.
                *self.client.lock().await = None;
                return Err(e.into());
            }
        };
        let uid_of: BTreeMap<String, u16> = neurons
            .iter()
            .map(|n| (n.hotkey.to_ss58(), n.uid))
            .collect();
        let me = self.hotkey.account().to_ss58();
        let my_uid = *uid_of
            .get(&me)
            .ok_or_else(|| ChainSinkError::NotRegistered {
                hotkey: me.clone(),
                netuid: self.config.netuid,
            })?;
        // Only registered nodes count; normalising after the filter keeps the largest
        // registered weight at 65535 (the SDK's max-upscaling). `to_u16` is keyed by text:
        // zero-padded uids keep uid order.
        let mut by_uid: BTreeMap<String, f64> = BTreeMap::new();
        let mut uid_by_key: BTreeMap<String, u16> = BTreeMap::new();
        for (id, weight) in &w.weights {
            let Some(uid) = w.hotkeys.get(id).and_then(|h| uid_of.get(h)) else {
                continue;
            };
            let key = format!("{uid:05}");
            by_uid.insert(key.clone(), *weight);
            uid_by_key.insert(key, *uid);
        }
        let u16s = to_u16(&by_uid);
        let (uids, values): (Vec<u16>, Vec<u16>) = u16s
            .iter()
            .filter_map(|(k, v)| Some((*uid_by_key.get(k)?, *v)))
            .unzip();
        let now = self
            .clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let seed = (self.seed)()?;
        Ok(weights::emit(
            &client,
            &self.hotkey,
            my_uid,
            &self.config,
            &uids,
            &values,
            now,
            seed,
        )
        .await?)
    }

    fn persist(&self, line: &RecordLine) -> Result<(), SinkError> {
        use std::io::Write as _;
        let mut text = serde_json::to_vec(line).map_err(SinkError::Encode)?;
        text.push(b'\n');
        let io = |source| SinkError::Io {
            path: self.record.clone(),
            source,
        };
        if let Some(dir) = self.record.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.record)
            .map_err(io)?;
        f.write_all(&text).map_err(io)?;
        f.sync_data().map_err(io)
    }
}

impl WeightSink for ChainWeightSink {
    fn emit<'a>(&'a self, w: &'a EpochWeights) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let result = self.attempt(w).await;
            let mut line = RecordLine {
                time_ms: self.clock.now_ms(),
                epoch: w.epoch,
                round: w.round,
                record: None,
                error: None,
            };
            let outcome = match &result {
                Ok(r) => {
                    match &r.action {
                        WeightsAction::Committed {
                            reveal_round,
                            inclusion,
                            ..
                        } => tracing::info!(
                            epoch = w.epoch, netuid = r.netuid, uids = r.uids.len(), reveal_round,
                            block = inclusion.block_number, extrinsic = %inclusion.extrinsic_hash,
                            "weights committed (commit-reveal v4)"
                        ),
                        WeightsAction::Set { inclusion } => tracing::info!(
                            epoch = w.epoch, netuid = r.netuid, uids = r.uids.len(),
                            block = inclusion.block_number, extrinsic = %inclusion.extrinsic_hash,
                            "weights set"
                        ),
                        WeightsAction::Skipped { reason } => tracing::info!(
                            epoch = w.epoch, netuid = r.netuid, reason = reason.label(), detail = ?reason,
                            "weights not sent to the chain"
                        ),
                    }
                    line.record = Some(r.clone());
                    match &r.action {
                        WeightsAction::Committed { .. } => "committed",
                        WeightsAction::Set { .. } => "set",
                        WeightsAction::Skipped { reason } => reason.label(),
                    }
                }
                Err(e) => {
                    line.error = Some(e.to_string());
                    "error"
                }
            };
            self.status.record_chain_weights(outcome);
            let persisted = self.persist(&line);
            match result {
                Ok(_) => persisted,
                Err(e) => Err(SinkError::Chain(Box::new(e))),
            }
        })
    }
}
