//! Model source that fetches unknown CIDs from IPFS gateways, verifying every
//! byte against the CID before the model is stored, and reports to Prometheus.

use std::collections::HashSet;

use attesta_content::fetch::{
    AttemptError, FetchError, FetchObserver, Fetcher, GatewayConfig, NoProgress,
};
use attesta_content::store::ModelStore;
use attesta_content::{Cid, VerifyError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::Metrics;
use crate::source::{BoxFuture, ModelSource, ResolveError, Resolved, lookup};

/// Which unknown CIDs the node may fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchPolicy {
    /// Any CID (downloads are verified and size-capped).
    Any,
    /// Only these CIDs.
    AllowList(HashSet<Cid>),
}

/// How a node obtains models it does not have: which gateways, and which CIDs.
#[derive(Debug, Clone)]
pub struct FetchPlan {
    /// Gateways in order (their `max_model_bytes` is set from the node's limits).
    pub gateways: GatewayConfig,
    /// Which unknown CIDs may be fetched.
    pub policy: FetchPolicy,
}

/// Local store first, then the gateways.
pub struct FetchingSource {
    store: ModelStore,
    fetcher: Fetcher,
    policy: FetchPolicy,
}

impl FetchingSource {
    /// A source fetching through `fetcher` (whose store must be `store`) under `policy`.
    pub fn new(store: ModelStore, fetcher: Fetcher, policy: FetchPolicy) -> Self {
        FetchingSource {
            store,
            fetcher,
            policy,
        }
    }
}

impl ModelSource for FetchingSource {
    fn resolve<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<Resolved, ResolveError>> {
        Box::pin(async move {
            if let Some(found) = lookup(&self.store, cid).await? {
                return Ok(found);
            }
            if let FetchPolicy::AllowList(allowed) = &self.policy
                && !allowed.contains(cid)
            {
                return Err(ResolveError::NotAllowed(format!(
                    "model {cid} is not in the store and not on this node's fetch allow-list"
                )));
            }
            tracing::info!(model = %cid, "fetching model from IPFS");
            let (stored, pin) = self
                .fetcher
                .fetch_pinned(cid, &NoProgress)
                .await
                .map_err(fetch_error)?;
            Ok(Resolved {
                stored,
                guard: Box::new(pin),
            })
        })
    }
}

fn fetch_error(e: FetchError) -> ResolveError {
    match &e {
        FetchError::AllGatewaysFailed(f)
            if f.iter().all(|g| matches!(g.error, AttemptError::NotFound)) =>
        {
            ResolveError::NotFound(format!("no gateway has this model: {e}"))
        }
        FetchError::AllGatewaysFailed(f)
            if f.iter().all(|g| {
                matches!(
                    &g.error,
                    AttemptError::Verify(VerifyError::FileTooLarge { .. })
                )
            }) =>
        {
            ResolveError::TooLarge(e.to_string())
        }
        FetchError::NoGateways => ResolveError::NotFound(e.to_string()),
        FetchError::Store(_) | FetchError::Local(_) | FetchError::Task(_) => {
            ResolveError::Store(e.to_string())
        }
        _ => ResolveError::Fetch(e.to_string()),
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GatewayLabels {
    gateway: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GatewayResultLabels {
    gateway: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GatewayKindLabels {
    gateway: String,
    kind: String,
}

/// Fetch metrics per gateway: fetches by result, bytes, verification failures by kind.
pub struct FetchMetrics {
    fetches: Family<GatewayResultLabels, Counter>,
    bytes: Family<GatewayLabels, Counter>,
    verification_failures: Family<GatewayKindLabels, Counter>,
}

impl FetchMetrics {
    /// Creates the counters and registers them with the node's registry.
    pub fn register(metrics: &Metrics) -> Self {
        let m = FetchMetrics {
            fetches: Family::default(),
            bytes: Family::default(),
            verification_failures: Family::default(),
        };
        metrics.with_registry(|r| {
            r.register(
                "ipfs_fetches",
                "Model fetches by gateway and result",
                m.fetches.clone(),
            );
            r.register(
                "ipfs_bytes_received",
                "Body bytes received from each gateway",
                m.bytes.clone(),
            );
            r.register(
                "ipfs_verification_failures",
                "Data from a gateway that failed verification, by check",
                m.verification_failures.clone(),
            );
        });
        m
    }

    fn fetch(&self, gateway: &str, result: &str) {
        self.fetches
            .get_or_create(&GatewayResultLabels {
                gateway: gateway.to_string(),
                result: result.to_string(),
            })
            .inc();
    }
}

impl FetchObserver for FetchMetrics {
    fn fetch_succeeded(&self, gateway: &str, _bytes: u64) {
        self.fetch(gateway, "ok");
    }
    fn fetch_failed(&self, gateway: &str, error: &AttemptError) {
        self.fetch(gateway, error.kind());
    }
    fn verification_failed(&self, gateway: &str, kind: &'static str) {
        self.verification_failures
            .get_or_create(&GatewayKindLabels {
                gateway: gateway.to_string(),
                kind: kind.to_string(),
            })
            .inc();
    }
    fn bytes_received(&self, gateway: &str, bytes: u64) {
        self.bytes
            .get_or_create(&GatewayLabels {
                gateway: gateway.to_string(),
            })
            .inc_by(bytes);
    }
}
