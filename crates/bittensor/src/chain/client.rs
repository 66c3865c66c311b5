//! A read client for subtensor: what the chain is (genesis, runtime version, metadata),
//! where it is (head and finalized blocks), storage, runtime calls and the subnet's neurons.

use std::sync::Arc;

use parity_scale_codec::{Decode, Encode};
use serde_json::{Value, json};

use super::metadata::Metadata;
use super::neurons::{self, Neuron};
use super::rpc::{RpcClient, RpcConfig};
use super::{ChainError, from_hex, hash_from_hex, to_hex};
use crate::ss58::AccountId;

/// The runtime version (`state_getRuntimeVersion`), the fields a signed extrinsic needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeVersion {
    /// `node-subtensor`.
    pub spec_name: String,
    /// The runtime's spec version (signed payloads carry it).
    pub spec_version: u32,
    /// The transaction version (signed payloads carry it).
    pub transaction_version: u32,
    /// Implementation version.
    #[serde(default)]
    pub impl_version: u32,
}

/// Metadata versions asked for, newest first (`Metadata_metadata_at_version`).
const METADATA_VERSIONS: [u32; 2] = [16, 15];

/// A connected chain with its metadata.
#[derive(Debug, Clone)]
pub struct ChainClient {
    rpc: RpcClient,
    metadata: Arc<Metadata>,
    genesis_hash: [u8; 32],
    runtime: RuntimeVersion,
}

impl ChainClient {
    /// Connects to `url` and reads genesis hash, runtime version and metadata.
    pub async fn connect(url: &str, config: RpcConfig) -> Result<Self, ChainError> {
        let rpc = RpcClient::connect(url, config).await?;
        Self::from_rpc(rpc).await
    }

    /// Reads genesis hash, runtime version and metadata over an open connection.
    pub async fn from_rpc(rpc: RpcClient) -> Result<Self, ChainError> {
        let genesis: String = rpc.request("chain_getBlockHash", json!([0])).await?;
        let genesis_hash = hash_from_hex(&genesis, "chain_getBlockHash")?;
        let runtime: RuntimeVersion = rpc.request("state_getRuntimeVersion", json!([])).await?;
        let metadata = Arc::new(fetch_metadata(&rpc).await?);
        tracing::info!(
            endpoint = rpc.url(),
            spec = %runtime.spec_name,
            spec_version = runtime.spec_version,
            metadata = metadata.version(),
            "connected to chain"
        );
        Ok(ChainClient {
            rpc,
            metadata,
            genesis_hash,
            runtime,
        })
    }

    /// The JSON-RPC connection (for calls this client does not wrap).
    pub fn rpc(&self) -> &RpcClient {
        &self.rpc
    }

    /// The metadata read at connect.
    pub fn metadata(&self) -> &Arc<Metadata> {
        &self.metadata
    }

    /// The genesis block hash.
    pub fn genesis_hash(&self) -> [u8; 32] {
        self.genesis_hash
    }

    /// The runtime version read at connect.
    pub fn runtime_version(&self) -> &RuntimeVersion {
        &self.runtime
    }

    /// The runtime version now (to notice an upgrade; re-connect to re-read the metadata).
    pub async fn current_runtime_version(&self) -> Result<RuntimeVersion, ChainError> {
        self.rpc.request("state_getRuntimeVersion", json!([])).await
    }

    /// The number of the best block.
    pub async fn head_block_number(&self) -> Result<u64, ChainError> {
        let header: Value = self.rpc.request("chain_getHeader", json!([])).await?;
        header_number(&header, "chain_getHeader")
    }

    /// The hash of the last finalized block.
    pub async fn finalized_head(&self) -> Result<[u8; 32], ChainError> {
        let h: String = self
            .rpc
            .request("chain_getFinalizedHead", json!([]))
            .await?;
        hash_from_hex(&h, "chain_getFinalizedHead")
    }

    /// The hash of block `number` (`None` for the best block).
    pub async fn block_hash(&self, number: Option<u64>) -> Result<[u8; 32], ChainError> {
        let params = match number {
            Some(n) => json!([n]),
            None => json!([]),
        };
        let h: Option<String> = self.rpc.request("chain_getBlockHash", params).await?;
        let h = h.ok_or_else(|| ChainError::BadResponse {
            method: "chain_getBlockHash".into(),
            reason: format!("no block {number:?}"),
        })?;
        hash_from_hex(&h, "chain_getBlockHash")
    }

    /// The number of block `hash`.
    pub async fn block_number(&self, hash: [u8; 32]) -> Result<u64, ChainError> {
        let header: Value = self
            .rpc
            .request("chain_getHeader", json!([to_hex(&hash)]))
            .await?;
        header_number(&header, "chain_getHeader")
    }

    /// Raw storage at `key` (at block `at`, or the best block).
    pub async fn storage(
        &self,
        key: &[u8],
        at: Option<[u8; 32]>,
    ) -> Result<Option<Vec<u8>>, ChainError> {
        let params = match at {
            Some(h) => json!([to_hex(key), to_hex(&h)]),
            None => json!([to_hex(key)]),
        };
        let v: Option<String> = self.rpc.request("state_getStorage", params).await?;
        v.map(|s| from_hex(&s, "state_getStorage")).transpose()
    }

    /// The value of `pallet.entry` for these SCALE-encoded keys, decoded through the
    /// metadata (the entry's default when absent; `None` for an absent `Option` entry).
    pub async fn storage_value(
        &self,
        pallet: &str,
        entry: &str,
        keys: &[&[u8]],
        at: Option<[u8; 32]>,
    ) -> Result<Option<super::value::Value>, ChainError> {
        let key = self.metadata.storage_key(pallet, entry, keys)?;
        let raw = self.storage(&key, at).await?;
        Ok(self
            .metadata
            .decode_storage(pallet, entry, raw.as_deref())?)
    }

    /// An unsigned integer entry (u8..u64 or a newtype of one) as u64; an absent `Option`
    /// entry is 0.
    pub async fn storage_u64(
        &self,
        pallet: &str,
        entry: &str,
        keys: &[&[u8]],
    ) -> Result<u64, ChainError> {
        match self.storage_value(pallet, entry, keys, None).await? {
            Some(v) => Ok(Metadata::value_u64(&v, &format!("{pallet}.{entry}"))?),
            None => Ok(0),
        }
    }

    /// A boolean entry; an absent `Option` entry is false.
    pub async fn storage_bool(
        &self,
        pallet: &str,
        entry: &str,
        keys: &[&[u8]],
    ) -> Result<bool, ChainError> {
        match self.storage_value(pallet, entry, keys, None).await? {
            Some(v) => Ok(Metadata::value_bool(&v, &format!("{pallet}.{entry}"))?),
            None => Ok(false),
        }
    }

    /// `state_call(method, args)`: a runtime API call with SCALE arguments, SCALE answer.
    pub async fn state_call(
        &self,
        method: &str,
        args: &[u8],
        at: Option<[u8; 32]>,
    ) -> Result<Vec<u8>, ChainError> {
        state_call(&self.rpc, method, args, at).await
    }

    /// The subnet's neurons (`NeuronInfoRuntimeApi_get_neurons_lite`).
    pub async fn neurons(&self, netuid: u16) -> Result<Vec<Neuron>, ChainError> {
        let bytes = self
            .state_call(
                "NeuronInfoRuntimeApi_get_neurons_lite",
                &netuid.encode(),
                None,
            )
            .await?;
        neurons::decode_neurons(&bytes).map_err(|e| ChainError::BadResponse {
            method: "NeuronInfoRuntimeApi_get_neurons_lite".into(),
            reason: e.to_string(),
        })
    }

    /// The next nonce of `account`, counting its extrinsics in the pool
    /// (`system_accountNextIndex`).
    pub async fn account_next_index(&self, account: &AccountId) -> Result<u64, ChainError> {
        self.rpc
            .request("system_accountNextIndex", json!([account.to_ss58()]))
            .await
    }
}

/// `state_call` over a bare connection.
pub async fn state_call(
    rpc: &RpcClient,
    method: &str,
    args: &[u8],
    at: Option<[u8; 32]>,
) -> Result<Vec<u8>, ChainError> {
    let params = match at {
        Some(h) => json!([method, to_hex(args), to_hex(&h)]),
        None => json!([method, to_hex(args)]),
    };
    let v: String = rpc.request("state_call", params).await?;
    from_hex(&v, method)
}

/// The newest metadata the chain offers: `Metadata_metadata_at_version(16)`, then 15, then
/// `state_getMetadata` (V14 on nodes without the versioned API).
pub async fn fetch_metadata(rpc: &RpcClient) -> Result<Metadata, ChainError> {
    for v in METADATA_VERSIONS {
        match state_call(rpc, "Metadata_metadata_at_version", &v.encode(), None).await {
            Ok(bytes) => {
                let opaque =
                    Option::<Vec<u8>>::decode(&mut bytes.as_slice()).map_err(|source| {
                        ChainError::Decode {
                            what: "Metadata_metadata_at_version".into(),
                            source,
                        }
                    })?;
                if let Some(m) = opaque {
                    return Ok(Metadata::decode(&m)?);
                }
            }
            // An old runtime without the versioned call: fall back below.
            Err(ChainError::Rpc { .. }) => break,
            Err(e) => return Err(e),
        }
    }
    let hex: String = rpc.request("state_getMetadata", json!([])).await?;
    Ok(Metadata::decode(&from_hex(&hex, "state_getMetadata")?)?)
}

fn header_number(header: &Value, method: &str) -> Result<u64, ChainError> {
    let n = header
        .get("number")
        .and_then(Value::as_str)
        .ok_or_else(|| ChainError::BadResponse {
            method: method.to_owned(),
            reason: "header without a number".into(),
        })?;
    u64::from_str_radix(n.trim_start_matches("0x"), 16).map_err(|e| ChainError::BadResponse {
        method: method.to_owned(),
        reason: format!("block number {n:?}: {e}"),
    })
}
