//! Content addressing for attesta models.
//!
//! - [`Cid`]: CIDv0/CIDv1 over sha2-256 with dag-pb or raw codecs.
//! - [`importer`]: a streaming UnixFS importer that reproduces `ipfs add` CIDs.
//! - [`store`]: the on-disk model store (atomic writes, byte budget, LRU, pins).
//! - `fetch` (feature `gateway`, on by default): the trustless-gateway client that
//!   downloads, verifies and stores models.
//! - [`car`] and [`verify`]: a CARv1 stream decoder and the DAG verifier for untrusted blocks.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use attesta_content::{Fetcher, GatewayConfig, ModelStore, NoProgress, Profile, StoreOptions};
//!
//! let store = ModelStore::open("models", StoreOptions { max_bytes: Some(20 << 30), ..Default::default() })?;
//! // Local file: the CID is computed while copying, as `ipfs add` would compute it.
//! let added = store.add_file(std::path::Path::new("model.onnx"), Profile::KuboDefaultV0)?;
//! println!("{} sha256={}", added.cid, added.sha256_hex());
//!
//! // Unknown CID: fetched from untrusted gateways, verified block by block, then stored.
//! let config = GatewayConfig { urls: vec!["http://127.0.0.1:8080".into()], ..Default::default() }.with_env();
//! let fetcher = Fetcher::new(config, store.clone());
//! let (model, _pin) = fetcher.fetch_pinned(&"QmTMdR3F3Dkc5fwGhVTHiruQUTbnVia6a8bFcdtK7Yh4hr".parse()?, &NoProgress).await?;
//! println!("{} bytes at {}", model.size, model.path.display());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
// Parsers of untrusted bytes: no indexing that can panic, anywhere in the crate.
#![deny(clippy::indexing_slicing)]

pub mod car;
pub mod cid;
#[cfg(feature = "gateway")]
pub mod fetch;
pub mod importer;
mod multibase;
mod pb;
pub mod store;
pub mod unixfs;
mod varint;
pub mod verify;

pub use cid::{Cid, CidError, Codec, Version};
#[cfg(feature = "gateway")]
pub use fetch::{
    Chain as ErrorChain, FetchError, FetchObserver, FetchProgress, Fetcher, GatewayConfig,
    NoProgress,
};
pub use importer::{
    BlockSink, ContentError, Importer, NoBlocks, Profile, cid_of_bytes, cid_of_reader,
    import_reader,
};
pub use pb::PbError;
pub use store::{GcReport, ModelStore, PinGuard, StoreError, StoreOptions, StoredModel};
pub use verify::{DagVerifier, Limits, VerifyError};
