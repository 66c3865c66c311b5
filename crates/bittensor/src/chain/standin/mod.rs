//! **A test double of a subtensor node** (feature `standin`): a WebSocket JSON-RPC server on
//! 127.0.0.1 for tests and `attesta devnet --bittensor`. It is not a chain: no consensus, no
//! runtime, no signature checks unless the write side's handler ([`writes`]) is installed;
//! blocks advance only when told to (or when it accepts an extrinsic); storage reads ignore the block they name. It says so in its log line and in
//! `system_name` (`attesta-standin (NOT A CHAIN)`).
//!
//! Served: `chain_getBlockHash`, `chain_getHeader`, `chain_getFinalizedHead`,
//! `chain_getBlock`, `state_getRuntimeVersion`, `state_getMetadata`, `state_getStorage`, `state_call`
//! (`NeuronInfoRuntimeApi_get_neurons_lite`, `Metadata_metadata_at_version`,
//! `Metadata_metadata_versions`), `system_accountNextIndex`, `system_name`,
//! `author_submitExtrinsic`, `author_submitAndWatchExtrinsic`.
//!
//! The metadata is given (tests pass the real fixture blobs) or [`runtime::devnet_metadata`],
//! a genuine V15 subset. Neurons registered with [`Standin::register`] are served by
//! `get_neurons_lite` and written to the storage entries the metadata declares (`Axons`,
//! `Uids`, `Keys`, `SubnetworkN`). Submitted extrinsics are recorded raw; an
//! [`ExtrinsicHandler`] (the write side's) may decode and apply them to [`ChainState`].

pub mod runtime;
pub mod writes;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use blake2::Blake2b;
use blake2::digest::Digest;
use blake2::digest::consts::U32;
use futures::{SinkExt, StreamExt};
use parity_scale_codec::{Compact, Decode, Encode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::client::RuntimeVersion;
use super::metadata::{Metadata, MetadataError};
use super::neurons::{AxonInfo, NeuronInfoLite, PrometheusInfo};
use super::{from_hex, to_hex};
use crate::ss58::AccountId;

/// What `system_name` answers: nobody may mistake the stand-in for a node.
pub const STANDIN_NAME: &str = "attesta-standin (NOT A CHAIN)";

/// Largest request the stand-in reads (an extrinsic is a few KiB).
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// How the stand-in starts.
#[derive(Debug, Clone)]
pub struct StandinConfig {
    /// `meta`-prefixed metadata served by `state_getMetadata` (and `metadata_at_version`
    /// for its own version).
    pub metadata: Vec<u8>,
    /// The genesis hash (`chain_getBlockHash(0)`).
    pub genesis_hash: [u8; 32],
    /// `state_getRuntimeVersion`.
    pub runtime: RuntimeVersion,
    /// The first head block number.
    pub start_block: u64,
}

impl StandinConfig {
    /// A devnet stand-in: the built-in V15 subset metadata, spec `attesta-standin`.
    pub fn devnet() -> Self {
        StandinConfig {
            metadata: runtime::devnet_metadata(),
            genesis_hash: block_hash_of(0),
            runtime: RuntimeVersion {
                spec_name: "attesta-standin".into(),
                spec_version: 1,
                transaction_version: 1,
                impl_version: 0,
            },
            start_block: 1,
        }
    }

    /// A stand-in serving `metadata` (e.g. a real fixture blob) with this runtime version.
    pub fn with_metadata(metadata: Vec<u8>, spec_version: u32, transaction_version: u32) -> Self {
        StandinConfig {
            metadata,
            runtime: RuntimeVersion {
                spec_name: "node-subtensor".into(),
                spec_version,
                transaction_version,
                impl_version: 0,
            },
            ..Self::devnet()
        }
    }
}

/// A neuron to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeuronSpec {
    /// Hotkey.
    pub hotkey: AccountId,
    /// Coldkey.
    pub coldkey: AccountId,
    /// The served axon, if any.
    pub axon: Option<SocketAddr>,
    /// Validator permit.
    pub validator_permit: bool,
    /// Stake (rao), credited to the coldkey.
    pub stake: u64,
}

/// An extrinsic the stand-in received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmittedExtrinsic {
    /// The raw bytes (SCALE, with its compact length prefix, as submitted).
    pub bytes: Vec<u8>,
    /// Its hash (blake2-256 of the bytes), as `author_submitExtrinsic` answers.
    pub hash: [u8; 32],
    /// The block it was put in (`None` when the handler refused it).
    pub block: Option<u64>,
}

/// The stand-in's state, open to an [`ExtrinsicHandler`].
#[derive(Debug)]
pub struct ChainState {
    /// The decoded metadata (to build storage keys, decode calls).
    pub metadata: Arc<Metadata>,
    /// The raw metadata served.
    pub metadata_bytes: Vec<u8>,
    /// Raw storage, key → SCALE value.
    pub storage: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The head block number.
    pub block: u64,
    /// Genesis hash.
    pub genesis_hash: [u8; 32],
    /// Runtime version.
    pub runtime: RuntimeVersion,
    /// Neurons per subnet, by uid.
    pub neurons: BTreeMap<u16, Vec<NeuronInfoLite>>,
    /// Every extrinsic received, in order.
    pub extrinsics: Vec<SubmittedExtrinsic>,
    /// `system_accountNextIndex` answers.
    pub nonces: HashMap<AccountId, u64>,
}

impl ChainState {
    /// Writes `value` at `pallet.entry[keys]` when the metadata declares the entry (the
    /// real blobs and the devnet subset do); returns whether it did.
    pub fn put(&mut self, pallet: &str, entry: &str, keys: &[&[u8]], value: Vec<u8>) -> bool {
        match self.metadata.storage_key(pallet, entry, keys) {
            Ok(k) => {
                self.storage.insert(k, value);
                true
            }
            Err(_) => false,
        }
    }

    /// The hash of block `n`.
    pub fn block_hash(&self, n: u64) -> [u8; 32] {
        if n == 0 {
            self.genesis_hash
        } else {
            block_hash_of(n)
        }
    }

    /// Adds `n` blocks; returns the new head. Like a chain, a new block starts with no
    /// events (`System.Events` is cleared).
    pub fn advance(&mut self, n: u64) -> u64 {
        self.block = self.block.saturating_add(n);
        let number = u32::try_from(self.block).unwrap_or(u32::MAX);
        self.put("System", "Number", &[], number.encode());
        if let Ok(k) = self.metadata.storage_key("System", "Events", &[]) {
            self.storage.remove(&k);
        }
        self.block
    }

    /// Appends one SCALE-encoded `EventRecord` (of the served metadata's event type; for the
    /// devnet metadata, [`runtime::EventRecord`]) to `System.Events` of the head block.
    /// Returns false when the metadata has no `System.Events` or the stored list is not a
    /// SCALE `Vec` (then nothing changes).
    pub fn push_event(&mut self, record: &[u8]) -> bool {
        let Ok(key) = self.metadata.storage_key("System", "Events", &[]) else {
            return false;
        };
        let (count, items) = match self.storage.get(&key) {
            None => (0u32, Vec::new()),
            Some(v) => {
                let mut input = v.as_slice();
                match Compact::<u32>::decode(&mut input) {
                    Ok(c) => (c.0, input.to_vec()),
                    Err(_) => return false,
                }
            }
        };
        let mut out = Compact(count.saturating_add(1)).encode();
        out.extend_from_slice(&items);
        out.extend_from_slice(record);
        self.storage.insert(key, out);
        true
    }
}

/// What a handler decides about a submitted extrinsic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtrinsicVerdict {
    /// Put it in the next block (the stand-in advances one block).
    Include,
    /// Refuse it at submission: JSON-RPC error 1010 ("Invalid Transaction") with this data.
    Invalid(String),
}

/// Decodes and applies a submitted extrinsic (the write side installs one); the default
/// includes everything without looking.
pub type ExtrinsicHandler = Arc<dyn Fn(&mut ChainState, &[u8]) -> ExtrinsicVerdict + Send + Sync>;

/// Why the stand-in could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StandinError {
    /// The metadata given does not decode.
    #[error("stand-in metadata: {0}")]
    Metadata(#[from] MetadataError),
    /// The listener could not be bound.
    #[error("stand-in listener: {0}")]
    Bind(#[source] std::io::Error),
}

struct Shared {
    state: Mutex<ChainState>,
    handler: Mutex<Option<ExtrinsicHandler>>,
    /// Set when the stand-in stops: open connections close too.
    stop: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, ChainState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running stand-in. Dropping it stops the listener.
pub struct Standin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Standin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standin").field("addr", &self.addr).finish()
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.shared.stop.send(true);
    }
}

/// Deterministic block hashes: blake2-256 of a tag and the number.
fn block_hash_of(n: u64) -> [u8; 32] {
    let mut h = Blake2b::<U32>::new();
    h.update(b"attesta-standin block");
    h.update(n.to_le_bytes());
    h.finalize().into()
}

fn blake2_256(data: &[u8]) -> [u8; 32] {
    Blake2b::<U32>::digest(data).into()
}

impl Standin {
    /// Starts on 127.0.0.1 (a free port).
    pub async fn start(config: StandinConfig) -> Result<Self, StandinError> {
        let metadata = Arc::new(Metadata::decode(&config.metadata)?);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(StandinError::Bind)?;
        let addr = listener.local_addr().map_err(StandinError::Bind)?;
        let mut state = ChainState {
            metadata,
            metadata_bytes: config.metadata,
            storage: BTreeMap::new(),
            block: 0,
            genesis_hash: config.genesis_hash,
            runtime: config.runtime,
            neurons: BTreeMap::new(),
            extrinsics: Vec::new(),
            nonces: HashMap::new(),
        };
        state.advance(config.start_block);
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            handler: Mutex::new(None),
            stop: tokio::sync::watch::channel(false).0,
        });
        tracing::warn!(
            url = %format!("ws://{addr}"),
            "JSON-RPC chain STAND-IN started: a test double, NOT a subtensor chain"
        );
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Standin { addr, shared, task })
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs `f` on the state (under its lock: keep it short).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut ChainState) -> R) -> R {
        f(&mut self.shared.state())
    }

    /// Registers a neuron on `netuid` (the next uid); returns its uid.
    pub fn register(&self, netuid: u16, spec: NeuronSpec) -> u16 {
        let mut st = self.shared.state();
        let block = st.block;
        let list = st.neurons.entry(netuid).or_default();
        let uid = u16::try_from(list.len()).unwrap_or(u16::MAX);
        let axon_info = match spec.axon {
            Some(a) => axon_info_for(a, block),
            None => AxonInfo::default(),
        };
        list.push(NeuronInfoLite {
            hotkey: spec.hotkey.0,
            coldkey: spec.coldkey.0,
            uid: Compact(uid),
            netuid: Compact(netuid),
            active: true,
            axon_info,
            prometheus_info: PrometheusInfo::default(),
            stake: vec![(spec.coldkey.0, Compact(spec.stake))],
            rank: Compact(0),
            emission: Compact(0),
            incentive: Compact(0),
            consensus: Compact(0),
            trust: Compact(0),
            validator_trust: Compact(0),
            dividends: Compact(0),
            last_update: Compact(0),
            validator_permit: spec.validator_permit,
            pruning_score: Compact(0),
        });
        let n = list.len();
        let (net, hk, u) = (netuid.encode(), spec.hotkey.0, uid.encode());
        st.put("SubtensorModule", "Uids", &[&net, &hk], uid.encode());
        st.put("SubtensorModule", "Keys", &[&net, &u], hk.encode());
        st.put("SubtensorModule", "Axons", &[&net, &hk], axon_info.encode());
        let n = u16::try_from(n).unwrap_or(u16::MAX);
        st.put("SubtensorModule", "SubnetworkN", &[&net], n.encode());
        uid
    }

    /// Sets (or clears) the axon of a registered hotkey, as `serve_axon` would.
    pub fn set_axon(&self, netuid: u16, hotkey: &AccountId, axon: Option<SocketAddr>) -> bool {
        let mut st = self.shared.state();
        let block = st.block;
        let info = axon.map_or_else(AxonInfo::default, |a| axon_info_for(a, block));
        let Some(n) = st
            .neurons
            .get_mut(&netuid)
            .and_then(|l| l.iter_mut().find(|n| n.hotkey == hotkey.0))
        else {
            return false;
        };
        n.axon_info = info;
        st.put(
            "SubtensorModule",
            "Axons",
            &[&netuid.encode(), &hotkey.0],
            info.encode(),
        );
        true
    }

    /// Sets a raw storage value.
    pub fn set_storage(&self, key: Vec<u8>, value: Vec<u8>) {
        self.shared.state().storage.insert(key, value);
    }

    /// Adds `n` blocks; returns the new head.
    pub fn advance_blocks(&self, n: u64) -> u64 {
        self.shared.state().advance(n)
    }

    /// The head block number.
    pub fn head(&self) -> u64 {
        self.shared.state().block
    }

    /// Every extrinsic received so far.
    pub fn extrinsics(&self) -> Vec<SubmittedExtrinsic> {
        self.shared.state().extrinsics.clone()
    }

    /// Installs the handler that judges submitted extrinsics.
    pub fn set_extrinsic_handler(&self, handler: ExtrinsicHandler) {
        *self
            .shared
            .handler
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(handler);
    }
}

/// The chain's record of an axon at `addr`, served at `block`.
pub fn axon_info_for(addr: SocketAddr, block: u64) -> AxonInfo {
    let (ip, ip_type) = match addr.ip() {
        std::net::IpAddr::V4(v4) => (u128::from(u32::from(v4)), 4),
        std::net::IpAddr::V6(v6) => (u128::from(v6), 6),
    };
    AxonInfo {
        block,
        version: 1,
        ip,
        port: addr.port(),
        ip_type,
        protocol: 4,
        placeholder1: 0,
        placeholder2: 0,
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let config = WebSocketConfig::default()
                .max_message_size(Some(MAX_REQUEST_BYTES))
                .max_frame_size(Some(MAX_REQUEST_BYTES));
            let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await
            else {
                return;
            };
            serve_connection(ws, shared).await;
        });
    }
}

async fn serve_connection(
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    shared: Arc<Shared>,
) {
    let (mut sink, mut source) = ws.split();
    // One writer, so subscription notifications and answers never interleave mid-message.
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
        }
    });
    let mut next_sub = 0u64;
    let mut stop = shared.stop.subscribe();
    loop {
        let msg = tokio::select! {
            m = source.next() => m,
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(Ok(msg)) = msg else { break };
        let Message::Text(text) = msg else { continue };
        let Ok(req) = serde_json::from_str::<Value>(text.as_str()) else {
            let _ = tx.send(error_answer(&Value::Null, -32700, "Parse error", None));
            continue;
        };
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let method = req.get("method").and_then(Value::as_str).unwrap_or("");
        let params = req.get("params").cloned().unwrap_or(json!([]));
        if method == "author_submitAndWatchExtrinsic" {
            next_sub += 1;
            let sub = format!("standin-{next_sub}");
            match submit(&shared, &params) {
                Ok((hash, block)) => {
                    let _ = tx.send(ok_answer(&id, json!(sub)));
                    let block_hash = to_hex(&shared.state().block_hash(block));
                    for status in [
                        json!("ready"),
                        json!({"inBlock": block_hash}),
                        json!({"finalized": block_hash}),
                    ] {
                        let note = json!({"jsonrpc": "2.0", "method": "author_extrinsicUpdate",
                            "params": {"subscription": sub, "result": status}});
                        let _ = tx.send(note.to_string());
                    }
                    tracing::debug!(hash = %to_hex(&hash), block, "stand-in included an extrinsic");
                }
                Err(e) => {
                    let _ = tx.send(e.answer(&id));
                }
            }
            continue;
        }
        let answer = match handle(&shared, method, &params) {
            Ok(v) => ok_answer(&id, v),
            Err(e) => e.answer(&id),
        };
        let _ = tx.send(answer);
    }
    drop(tx);
    let _ = writer.await;
}

/// A JSON-RPC error to answer with.
struct RpcFault {
    code: i64,
    message: String,
    data: Option<String>,
}

impl RpcFault {
    fn new(code: i64, message: impl Into<String>) -> Self {
        RpcFault {
            code,
            message: message.into(),
            data: None,
        }
    }

    fn params(why: impl Into<String>) -> Self {
        RpcFault::new(-32602, format!("Invalid params: {}", why.into()))
    }

    fn answer(&self, id: &Value) -> String {
        error_answer(id, self.code, &self.message, self.data.as_deref())
    }
}

fn ok_answer(id: &Value, result: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

fn error_answer(id: &Value, code: i64, message: &str, data: Option<&str>) -> String {
    let mut err = json!({"code": code, "message": message});
    if let Some(d) = data {
        err["data"] = json!(d);
    }
    json!({"jsonrpc": "2.0", "id": id, "error": err}).to_string()
}

fn param_str(params: &Value, i: usize) -> Option<&str> {
    params.get(i).and_then(Value::as_str)
}

fn param_bytes(params: &Value, i: usize, what: &str) -> Result<Vec<u8>, RpcFault> {
    let s = param_str(params, i).ok_or_else(|| RpcFault::params(format!("{what} missing")))?;
    from_hex(s, what).map_err(|e| RpcFault::params(e.to_string()))
}

fn header(st: &ChainState, n: u64) -> Value {
    let parent = if n == 0 {
        [0u8; 32]
    } else {
        st.block_hash(n - 1)
    };
    json!({
        "parentHash": to_hex(&parent),
        "number": format!("0x{n:x}"),
        "stateRoot": to_hex(&[0u8; 32]),
        "extrinsicsRoot": to_hex(&[0u8; 32]),
        "digest": {"logs": []},
    })
}

fn handle(shared: &Shared, method: &str, params: &Value) -> Result<Value, RpcFault> {
    let st = shared.state();
    match method {
        "system_name" => Ok(json!(STANDIN_NAME)),
        "system_chain" => Ok(json!("attesta stand-in")),
        "chain_getBlockHash" => {
            let n = match params.get(0) {
                None | Some(Value::Null) => st.block,
                Some(v) => v.as_u64().ok_or_else(|| RpcFault::params("block number"))?,
            };
            Ok(if n <= st.block {
                json!(to_hex(&st.block_hash(n)))
            } else {
                Value::Null
            })
        }
        "chain_getFinalizedHead" => Ok(json!(to_hex(&st.block_hash(st.block)))),
        // The block's extrinsics (the ones the stand-in included in it), for finding an
        // extrinsic's index and so its events.
        "chain_getBlock" => {
            let h = match param_str(params, 0) {
                None => st.block_hash(st.block).to_vec(),
                Some(h) => from_hex(h, "hash").map_err(|e| RpcFault::params(e.to_string()))?,
            };
            let n = (0..=st.block)
                .rev()
                .find(|n| st.block_hash(*n)[..] == h[..]);
            Ok(n.map_or(Value::Null, |n| {
                let xts: Vec<String> = st
                    .extrinsics
                    .iter()
                    .filter(|x| x.block == Some(n))
                    .map(|x| to_hex(&x.bytes))
                    .collect();
                json!({"block": {"header": header(&st, n), "extrinsics": xts}, "justifications": null})
            }))
        }
        "chain_getHeader" => {
            let n = match param_str(params, 0) {
                None => Some(st.block),
                Some(h) => {
                    let h = from_hex(h, "hash").map_err(|e| RpcFault::params(e.to_string()))?;
                    (0..=st.block)
                        .rev()
                        .find(|n| st.block_hash(*n)[..] == h[..])
                }
            };
            Ok(n.map_or(Value::Null, |n| header(&st, n)))
        }
        "state_getRuntimeVersion" => Ok(serde_json::to_value(&st.runtime).unwrap_or(Value::Null)),
        "state_getMetadata" => Ok(json!(to_hex(&st.metadata_bytes))),
        "state_getStorage" => {
            let key = param_bytes(params, 0, "storage key")?;
            Ok(st
                .storage
                .get(&key)
                .map_or(Value::Null, |v| json!(to_hex(v))))
        }
        "system_accountNextIndex" => {
            let who = param_str(params, 0).ok_or_else(|| RpcFault::params("account"))?;
            let acc = AccountId::from_ss58(who).map_err(|e| RpcFault::params(e.to_string()))?;
            Ok(json!(st.nonces.get(&acc).copied().unwrap_or(0)))
        }
        "state_call" => {
            let name = param_str(params, 0).ok_or_else(|| RpcFault::params("method"))?;
            let args = param_bytes(params, 1, "call data")?;
            state_call(&st, name, &args).map(|b| json!(to_hex(&b)))
        }
        "author_submitExtrinsic" => {
            drop(st);
            submit(shared, params).map(|(hash, _)| json!(to_hex(&hash)))
        }
        _ => Err(RpcFault::new(-32601, "Method not found")),
    }
}

fn state_call(st: &ChainState, name: &str, args: &[u8]) -> Result<Vec<u8>, RpcFault> {
    let mut input = args;
    match name {
        "NeuronInfoRuntimeApi_get_neurons_lite" => {
            let netuid = u16::decode(&mut input).map_err(|e| RpcFault::params(e.to_string()))?;
            Ok(st
                .neurons
                .get(&netuid)
                .map(|v| v.encode())
                .unwrap_or_else(|| Vec::<NeuronInfoLite>::new().encode()))
        }
        "Metadata_metadata_at_version" => {
            let v = u32::decode(&mut input).map_err(|e| RpcFault::params(e.to_string()))?;
            let ours = st.metadata.version();
            Ok(if v == ours {
                Some(st.metadata_bytes.clone()).encode()
            } else {
                None::<Vec<u8>>.encode()
            })
        }
        "Metadata_metadata_versions" => Ok(vec![st.metadata.version()].encode()),
        _ => Err(RpcFault::new(
            -32000,
            format!("Client error: stand-in has no runtime API {name}"),
        )),
    }
}

/// Records an extrinsic and asks the handler; returns its hash and block.
fn submit(shared: &Shared, params: &Value) -> Result<([u8; 32], u64), RpcFault> {
    let bytes = param_bytes(params, 0, "extrinsic")?;
    let hash = blake2_256(&bytes);
    let handler = shared
        .handler
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut st = shared.state();
    // The handler's events (push_event) belong to the block that includes the extrinsic:
    // it starts from an empty list, which survives the new block; a refusal restores the
    // head block's events.
    let events_key = st.metadata.storage_key("System", "Events", &[]).ok();
    let head_events = events_key.as_ref().and_then(|k| st.storage.remove(k));
    let verdict = match &handler {
        Some(h) => h(&mut st, &bytes),
        None => ExtrinsicVerdict::Include,
    };
    let new_events = events_key.as_ref().and_then(|k| st.storage.remove(k));
    let restore = |st: &mut ChainState, v: Option<Vec<u8>>| {
        if let (Some(k), Some(v)) = (events_key.clone(), v) {
            st.storage.insert(k, v);
        }
    };
    match verdict {
        ExtrinsicVerdict::Include => {
            let block = st.advance(1);
            restore(&mut st, new_events);
            st.extrinsics.push(SubmittedExtrinsic {
                bytes,
                hash,
                block: Some(block),
            });
            Ok((hash, block))
        }
        ExtrinsicVerdict::Invalid(why) => {
            restore(&mut st, head_events);
            st.extrinsics.push(SubmittedExtrinsic {
                bytes,
                hash,
                block: None,
            });
            Err(RpcFault {
                code: 1010,
                message: "Invalid Transaction".into(),
                data: Some(why),
            })
        }
    }
}
