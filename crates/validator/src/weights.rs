//! Where epoch weights go: a JSON file, and the chain ([`crate::chain_sink`]).

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;

use crate::state::EpochWeights;

/// Why weights could not be emitted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Writing failed.
    #[error("writing weights to {path}: {source}")]
    Io {
        /// Target.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Any other sink-specific failure.
    #[error("weight sink: {0}")]
    Other(String),
    /// The weights could not be encoded as JSON.
    #[error("weight sink: {0}")]
    Encode(#[source] serde_json::Error),
    /// The blocking write task failed (panicked or was cancelled).
    #[error("weight sink: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// The chain sink could not commit or set the weights.
    #[error("chain weights: {0}")]
    Chain(#[source] Box<crate::chain_sink::ChainSinkError>),
}

/// Receives the weights of every epoch (idempotent: the same epoch may be
/// emitted again after a restart).
pub trait WeightSink: Send + Sync {
    /// Publishes one epoch's weights.
    fn emit<'a>(&'a self, weights: &'a EpochWeights) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// One entry of the weights file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WeightEntry {
    /// Node id.
    pub id: String,
    /// Hotkey when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hotkey: Option<String>,
    /// Normalised weight (sums to 1 over the nodes, or all 0).
    pub weight: f64,
    /// Bittensor u16 form (0 = dropped from `set_weights`).
    pub weight_u16: u16,
}

/// The weights file's JSON.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WeightsFile {
    /// Epoch number.
    pub epoch: u64,
    /// Round the scores come from.
    pub round: u64,
    /// Every node, by id.
    pub weights: Vec<WeightEntry>,
    /// `set_weights` argument form: ids and u16 values, zeros dropped.
    pub u16_ids: Vec<String>,
    /// See `u16_ids`.
    pub u16_values: Vec<u16>,
}

impl WeightsFile {
    /// Builds the file content from an epoch.
    pub fn from_epoch(w: &EpochWeights) -> Self {
        WeightsFile {
            epoch: w.epoch,
            round: w.round,
            weights: w
                .weights
                .iter()
                .map(|(id, wt)| WeightEntry {
                    id: id.clone(),
                    hotkey: w.hotkeys.get(id).cloned(),
                    weight: *wt,
                    weight_u16: w.weights_u16.get(id).copied().unwrap_or(0),
                })
                .collect(),
            u16_ids: w.weights_u16.keys().cloned().collect(),
            u16_values: w.weights_u16.values().copied().collect(),
        }
    }
}

/// Writes the weights JSON atomically (temp file in the same directory, fsync, rename).
#[derive(Debug, Clone)]
pub struct FileSink {
    path: PathBuf,
}

impl FileSink {
    /// A sink writing to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSink { path: path.into() }
    }
}

/// Atomically replaces `path` with `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("weights");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

impl WeightSink for FileSink {
    fn emit<'a>(&'a self, weights: &'a EpochWeights) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let mut json = serde_json::to_vec_pretty(&WeightsFile::from_epoch(weights))
                .map_err(SinkError::Encode)?;
            json.push(b'\n');
            let path = self.path.clone();
            tokio::task::spawn_blocking(move || {
                write_atomic(&path, &json).map_err(|source| SinkError::Io { path, source })
            })
            .await
            .map_err(SinkError::Task)?
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[tokio::test]
    async fn file_sink_writes_both_forms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/weights.json");
        let w = EpochWeights {
            epoch: 3,
            round: 30,
            weights: BTreeMap::from([("a".into(), 0.75), ("b".into(), 0.25), ("c".into(), 0.0)]),
            weights_u16: BTreeMap::from([("a".into(), 65535), ("b".into(), 21845)]),
            hotkeys: BTreeMap::from([("a".into(), "5Fa".into())]),
        };
        FileSink::new(&path).emit(&w).await.unwrap();
        let f: WeightsFile = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(f.epoch, 3);
        assert_eq!(f.u16_ids, vec!["a", "b"]);
        assert_eq!(f.u16_values, vec![65535, 21845]);
        assert_eq!(f.weights.len(), 3);
        assert_eq!(f.weights[0].hotkey.as_deref(), Some("5Fa"));
        assert_eq!(f.weights[2].weight_u16, 0);
        // No temp file left behind.
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
