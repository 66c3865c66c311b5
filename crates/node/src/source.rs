//! Where the node gets model files from: the local store, and (when
//! configured) a fetcher that brings unknown CIDs from IPFS into it.

use std::future::Future;
use std::pin::Pin;

use attesta_content::Cid;
use attesta_content::store::{ModelStore, StoredModel};
use thiserror::Error;

/// A boxed future, as returned by [`ModelSource::resolve`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A model file on local disk, kept from eviction while `guard` lives.
pub struct Resolved {
    /// The stored file and its metadata.
    pub stored: StoredModel,
    /// Keeps the file pinned in the store until the model is read.
    pub guard: Box<dyn Send + Sync>,
}

/// Why a CID could not be turned into a local model file.
#[derive(Debug, Error, Clone)]
#[non_exhaustive]
pub enum ResolveError {
    /// Not in the store and not obtainable.
    #[error("{0}")]
    NotFound(String),
    /// Fetching this CID is not allowed by the node's policy.
    #[error("{0}")]
    NotAllowed(String),
    /// Every source failed to deliver verified bytes (gateway errors).
    #[error("{0}")]
    Fetch(String),
    /// The model is larger than the node accepts.
    #[error("{0}")]
    TooLarge(String),
    /// The local store failed (disk, permissions).
    #[error("model store: {0}")]
    Store(String),
}

/// Resolves a CID to a local, verified model file.
pub trait ModelSource: Send + Sync {
    /// Finds (or obtains) the model stored under `cid`.
    fn resolve<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<Resolved, ResolveError>>;
}

/// Serves only what is already in the store.
pub struct LocalStore {
    store: ModelStore,
}

impl LocalStore {
    /// Wraps a store.
    pub fn new(store: ModelStore) -> Self {
        LocalStore { store }
    }
}

/// Looks `cid` up in `store` without blocking the async runtime.
pub async fn lookup(store: &ModelStore, cid: &Cid) -> Result<Option<Resolved>, ResolveError> {
    let store = store.clone();
    let cid = cid.clone();
    tokio::task::spawn_blocking(move || {
        let guard = store.pin(&cid);
        match store.get(&cid) {
            Ok(Some(stored)) => Ok(Some(Resolved {
                stored,
                guard: Box::new(guard),
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(ResolveError::Store(e.to_string())),
        }
    })
    .await
    .map_err(|e| ResolveError::Store(format!("lookup task failed: {e}")))?
}

impl ModelSource for LocalStore {
    fn resolve<'a>(&'a self, cid: &'a Cid) -> BoxFuture<'a, Result<Resolved, ResolveError>> {
        Box::pin(async move {
            lookup(&self.store, cid).await?.ok_or_else(|| {
                ResolveError::NotFound(format!(
                    "model {cid} is not in this node's store (add it with `attesta models add`; fetching from IPFS is not enabled on this node)"
                ))
            })
        })
    }
}
