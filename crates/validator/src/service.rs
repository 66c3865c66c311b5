//! Assembling a [`Validator`] from a [`ValidatorConfig`], and serving its
//! status over HTTP. The binary's `attesta validator` is a thin shell on this.

use std::net::SocketAddr;
use std::sync::Arc;

use attesta_content::{ModelStore, StoreOptions};
use attesta_engine::tract::TractEngine;

use attesta_bittensor::chain::RpcConfig;
use attesta_bittensor::chain::weights::WeightsConfig;

use crate::chain_sink::{ChainWeightSink, os_seed, record_path};
use crate::challenge::{ChallengeError, ChallengeSet};
use crate::config::{ConfigError, ValidatorConfig};
use crate::llm_challenge::LlmChallengeSet;
use crate::probe::ChannelFactory;
use crate::round::{Clock, RoundSettings};
use crate::runner::{Parts, Validator, ValidatorRng};
use crate::state::{CommitSettings, State, StateError};
use crate::status::Status;
use crate::weights::{FileSink, WeightSink};

/// Why the validator could not be assembled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// Config problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Challenge models problem.
    #[error(transparent)]
    Challenge(#[from] ChallengeError),
    /// Database problem.
    #[error(transparent)]
    State(#[from] StateError),
    /// Model store, database directory or HTTP listener problem.
    #[error("{context}: {source}")]
    Open {
        /// What was being opened (`model store <dir>`, `<dir>`, `listen <addr>`).
        context: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Loads the challenge models named by the config from its store.
pub fn load_challenges(
    cfg: &ValidatorConfig,
    engine: &TractEngine,
) -> Result<ChallengeSet, ServiceError> {
    let store = ModelStore::open(&cfg.challenges.store, StoreOptions::default()).map_err(|e| {
        ServiceError::Open {
            context: format!("model store {}", cfg.challenges.store.display()),
            source: e.into(),
        }
    })?;
    Ok(ChallengeSet::load(&store, &cfg.challenges.models, engine)?)
}

/// Loads `[[validator.challenges.llm]]` from the challenge store (each GGUF once; the
/// set is shared by every round). Empty when none is configured.
pub fn load_llm_challenges(cfg: &ValidatorConfig) -> Result<LlmChallengeSet, ServiceError> {
    if cfg.challenges.llm.is_empty() {
        return Ok(LlmChallengeSet::default());
    }
    let store = ModelStore::open(&cfg.challenges.store, StoreOptions::default()).map_err(|e| {
        ServiceError::Open {
            context: format!("model store {}", cfg.challenges.store.display()),
            source: e.into(),
        }
    })?;
    Ok(LlmChallengeSet::load(&store, &cfg.challenges.llm)?)
}

/// Builds the validator described by `cfg`, reaching nodes through
/// `channels`; also returns sink errors from re-emitting the last weights.
pub async fn build(
    cfg: &ValidatorConfig,
    channels: Arc<dyn ChannelFactory>,
    rng: ValidatorRng,
    clock: Arc<dyn Clock>,
    status: Arc<Status>,
) -> Result<(Validator, Vec<String>), ServiceError> {
    let engine = TractEngine::new(1);
    let challenges = load_challenges(cfg, &engine)?;
    let llm_challenges = load_llm_challenges(cfg)?;
    if let Some(dir) = cfg.database.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ServiceError::Open {
            context: dir.display().to_string(),
            source: e.into(),
        })?;
    }
    let state = State::open(&cfg.database)?;
    let mut sinks: Vec<Box<dyn WeightSink>> = vec![Box::new(FileSink::new(&cfg.weights_file))];
    if let Some(sink) = chain_sink(cfg, Arc::clone(&clock), Arc::clone(&status))? {
        sinks.push(Box::new(sink));
    }
    let parts = Parts {
        source: crate::metagraph::source_for(cfg),
        channels,
        challenges,
        llm_challenges,
        state,
        sinks,
        commit: CommitSettings {
            scoring: cfg.scoring,
            epoch_rounds: cfg.rounds.epoch_rounds,
            max_bundles: cfg.rounds.max_bundles,
        },
        round: RoundSettings {
            concurrency: cfg.rounds.concurrency,
            node_timeout: cfg.node_timeout(),
        },
        challenges_per_node: cfg.rounds.challenges_per_node,
        rng,
        clock,
        status,
    };
    Ok(Validator::start(parts).await?)
}

/// The chain weight sink a config asks for: `[validator.bittensor]` with `endpoint` and
/// `netuid` (unless `chain_weights = false`), signing with its hotkey and recording beside
/// the weights file.
pub fn chain_sink(
    cfg: &ValidatorConfig,
    clock: Arc<dyn Clock>,
    status: Arc<Status>,
) -> Result<Option<ChainWeightSink>, ServiceError> {
    let Some(bt) = &cfg.bittensor else {
        return Ok(None);
    };
    let (Some(endpoint), Some(netuid)) = (&bt.endpoint, bt.netuid) else {
        return Ok(None);
    };
    if bt.chain_weights == Some(false) {
        return Ok(None);
    }
    let mut weights = WeightsConfig::new(netuid);
    weights.commit_reveal = bt.commit_reveal.unwrap_or_default();
    weights.version_key = bt.version_key;
    if let Some(ms) = bt.block_time_ms {
        weights.block_time = std::time::Duration::from_millis(ms);
    }
    let rpc = RpcConfig {
        request_timeout: cfg.node_timeout().max(std::time::Duration::from_secs(10)),
        ..RpcConfig::default()
    };
    Ok(Some(ChainWeightSink::new(
        endpoint.clone(),
        rpc,
        bt.hotkey()?,
        weights,
        record_path(&cfg.weights_file),
        clock,
        os_seed(),
        status,
    )))
}

/// Binds `addr` and serves `/v1/nodes` and `/metrics` (and, given a gateway, its routes)
/// until `stop` resolves. Returns the bound address (useful with port 0) and the server task.
pub async fn serve(
    addr: SocketAddr,
    status: Arc<Status>,
    gateway: Option<Arc<crate::gateway::Gateway>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServiceError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ServiceError::Open {
            context: format!("listen {addr}"),
            source: e.into(),
        })?;
    let local = listener.local_addr().map_err(|e| ServiceError::Open {
        context: "listener address".into(),
        source: e.into(),
    })?;
    let mut app = crate::http::router(status);
    match gateway {
        Some(gw) => app = app.merge(crate::gateway::router(gw)),
        // The dashboard asks; without a gateway the answer says so (not a 404).
        None => {
            app = app.route(
                "/gateway/stats",
                axum::routing::get(|| async { axum::Json(serde_json::json!({"enabled": false})) }),
            );
        }
    }
    let task = tokio::spawn(async move {
        // The gateway keys rate limits by peer address when no API key is sent.
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::warn!(error = %e, "status server stopped");
        }
    });
    Ok((local, task))
}
