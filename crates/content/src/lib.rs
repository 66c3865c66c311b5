//! Content addressing for attesta models.
//!
//! - [`Cid`]: CIDv0/CIDv1 over sha2-256 with dag-pb or raw codecs.
//! - [`importer`]: a streaming UnixFS importer that reproduces `ipfs add` CIDs.
//! - [`store`]: the on-disk model store (atomic writes, byte budget, LRU, pins).
//! - [`fetch`]: the trustless-gateway client that downloads, verifies and stores models.
//! - [`car`] and [`verify`]: a CARv1 stream decoder and the DAG verifier for untrusted blocks.
#![forbid(unsafe_code)]

pub mod car;
pub mod cid;
pub mod fetch;
pub mod importer;
mod multibase;
mod pb;
pub mod store;
pub mod unixfs;
mod varint;
pub mod verify;

pub use cid::{Cid, CidError, Codec, Version};
pub use fetch::{FetchError, FetchObserver, FetchProgress, Fetcher, GatewayConfig, NoProgress};
pub use importer::{
    BlockSink, ContentError, Importer, NoBlocks, Profile, cid_of_bytes, cid_of_reader,
    import_reader,
};
pub use pb::PbError;
pub use store::{GcReport, ModelStore, PinGuard, StoreError, StoreOptions, StoredModel};
pub use verify::{DagVerifier, Limits, VerifyError};
