//! The optional TOML config file. Precedence: command-line flag, then
//! environment variable, then this file, then the built-in default.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where attesta keeps its state (model store, dev TEE root).
    pub data_dir: Option<PathBuf>,
    /// `[node]` section.
    #[serde(default)]
    pub node: NodeSection,
    /// `[validator]` section, parsed by `attesta_validator::config::ValidatorConfig`.
    #[serde(default)]
    pub validator: Option<toml::Table>,
}

/// `[node]` section; sizes and durations are strings such as `2GiB`, `30s`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Listen address.
    pub listen: Option<String>,
    /// Model store directory.
    pub store: Option<PathBuf>,
    /// In-memory model cache budget.
    pub cache_bytes: Option<String>,
    /// Concurrent inferences.
    pub workers: Option<usize>,
    /// Threads one inference may use for matrix products.
    pub intra_op_threads: Option<usize>,
    /// Inference engine: `auto`, `tract` or `ort`.
    pub engine: Option<crate::engine_args::EngineMode>,
    /// The onnxruntime shared library for the `ort` engine.
    pub ort_lib: Option<PathBuf>,
    /// Sessions (concurrent runs) per model on the `ort` engine.
    pub ort_sessions_per_model: Option<usize>,
    /// Per-model engine: CID → `tract` or `ort`.
    pub model_engines: Option<std::collections::BTreeMap<String, crate::engine_args::EngineMode>>,
    /// Largest request body.
    pub max_body_bytes: Option<String>,
    /// Per-request deadline.
    pub request_timeout: Option<String>,
    /// Largest model file the node will load.
    pub max_model_bytes: Option<String>,
    /// Most graph nodes a model may have.
    pub max_model_nodes: Option<usize>,
    /// Disk budget of the model store.
    pub store_max_bytes: Option<String>,
    /// Longest time to receive a request's headers.
    pub header_timeout: Option<String>,
    /// Longest time to receive a request's body after its headers.
    pub body_timeout: Option<String>,
    /// Longest silence on a keep-alive connection.
    pub idle_timeout: Option<String>,
    /// Connections open at once.
    pub max_connections: Option<usize>,
    /// Trustless IPFS gateways, in order.
    pub gateways: Option<Vec<String>>,
    /// `any`, `allow-list` or `off`.
    pub fetch: Option<crate::node_cmd::FetchMode>,
    /// Intel PCS/PCCS base URL for DCAP collateral.
    pub pccs_url: Option<String>,
    /// AMD KDS base URL for SEV-SNP VCEKs.
    pub kds_url: Option<String>,
    /// `false`: serve hardware evidence with only what the TEE returned.
    pub endorsement_fetch: Option<bool>,
    /// CIDs allowed under `fetch = "allow-list"`.
    pub allow_cids: Option<Vec<String>>,
    /// Per-gateway timeout.
    pub gateway_timeout: Option<String>,
    /// `auto`, `nitro`, `tsm`, `gramine`, `dev` or `none`.
    pub tee: Option<String>,
    /// Replay window of the sealed channel.
    pub replay_window: Option<String>,
    /// Time budget of one model load.
    pub load_timeout: Option<String>,
    /// Address-space budget of the isolated model-load probe.
    pub load_max_memory: Option<String>,
    /// Model loads that may run at once.
    pub max_concurrent_loads: Option<usize>,
    /// `process` or `insecure-none`.
    pub load_isolation: Option<crate::load_args::IsolationMode>,
    /// Memory budget of the inferences in flight.
    pub inflight_bytes: Option<String>,
    /// Most tokens one language-model request may generate.
    pub max_completion_tokens: Option<usize>,
    /// Drain period after a stop signal.
    pub shutdown_timeout: Option<String>,
}

/// Reads and parses the config file; a missing explicit file is an error.
pub fn load(path: Option<&Path>) -> anyhow::Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// The default data directory: `$XDG_DATA_HOME/attesta`, else `~/.local/share/attesta`, else `./attesta-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("attesta");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/attesta");
    }
    PathBuf::from("attesta-data")
}
