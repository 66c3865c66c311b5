//! Submitting signed extrinsics and following them to a block: `author_submitAndWatchExtrinsic`
//! (ready → in block → finalized, or dropped / invalid / usurped / timeout), then the
//! inclusion block's `System.Events` decoded through the metadata: `ExtrinsicSuccess`, or
//! `ExtrinsicFailed` with its module error resolved to `Pallet::Error` names.

use std::time::Duration;

use serde_json::{Value as Json, json};

use super::calls::{self, CallError};
use super::client::ChainClient;
use super::extrinsic::{self, Era, ExtrinsicError, TxParams};
use super::metadata::{Metadata, MetadataError};
use super::value::Value;
use super::{ChainError, from_hex, hash_from_hex, to_hex};
use crate::keys::Hotkey;

/// The JSON-RPC error code a node answers an invalid transaction with.
const INVALID_TRANSACTION: i64 = 1010;
/// Extrinsics of a `chain_getBlock` answer looked at, at most (the answer itself is
/// bounded by the connection's message cap).
const MAX_BLOCK_EXTRINSICS: usize = 100_000;

/// Why a submission failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The connection or a chain read failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The call could not be built from the metadata.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The extrinsic could not be built.
    #[error(transparent)]
    Extrinsic(#[from] ExtrinsicError),
    /// The metadata lacks something the events need.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The node refused the transaction before inclusion (bad nonce, signature, fees,
    /// a runtime check in the transaction extensions).
    #[error("transaction refused by the node: {reason}")]
    Invalid {
        /// The node's explanation (JSON-RPC error data, or the watch status).
        reason: String,
    },
    /// The node dropped it from its pool (e.g. replaced, pool full).
    #[error("transaction dropped from the pool: {status}")]
    Dropped {
        /// The watch status.
        status: String,
    },
    /// No inclusion (or finalization) within the deadline.
    #[error("transaction {hash} not {want} within {after:?}")]
    Timeout {
        /// The extrinsic hash.
        hash: String,
        /// `in a block` or `finalized`.
        want: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// It was included and failed: a pallet's error, by name.
    #[error("dispatch failed: {pallet}::{error}")]
    Dispatch {
        /// The pallet (`SubtensorModule`).
        pallet: String,
        /// The error's name (`SettingWeightsTooFast`).
        error: String,
    },
    /// It was included and failed with a non-module dispatch error (`BadOrigin`, ...).
    #[error("dispatch failed: {0}")]
    DispatchOther(String),
    /// The inclusion block's events did not say what happened to it.
    #[error("no ExtrinsicSuccess/ExtrinsicFailed event for extrinsic {index} of block {block}")]
    NoOutcome {
        /// The block hash.
        block: String,
        /// The extrinsic's index in it.
        index: usize,
    },
}

/// Where an extrinsic ended up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Inclusion {
    /// The extrinsic's hash (`0x` hex).
    pub extrinsic_hash: String,
    /// The including block's hash (`0x` hex).
    pub block_hash: String,
    /// Its number.
    pub block_number: u64,
    /// The extrinsic's index in the block.
    pub index: usize,
    /// Whether the block was seen finalized.
    pub finalized: bool,
}

/// How submissions are made and followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitOptions {
    /// Mortal era length in blocks.
    pub era_period: u64,
    /// Tip to the block author.
    pub tip: u64,
    /// Wait for finalization (else the first inclusion counts).
    pub wait_finalized: bool,
    /// Deadline for the whole submission.
    pub timeout: Duration,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        SubmitOptions {
            era_period: extrinsic::DEFAULT_ERA_PERIOD,
            tip: 0,
            wait_finalized: false,
            // 64 blocks of 12 s: past that the mortal era has expired anyway.
            timeout: Duration::from_secs(64 * 12),
        }
    }
}

/// Signs `call` with `signer` (nonce from `system_accountNextIndex`, mortal era from the
/// finalized head), submits it and follows it to its block; `Ok` only when the block's
/// events say it succeeded.
pub async fn sign_and_submit(
    client: &ChainClient,
    signer: &Hotkey,
    call: &[u8],
    options: SubmitOptions,
) -> Result<Inclusion, SubmitError> {
    let md = client.metadata();
    extrinsic::check_version(&md.extrinsic().versions)?;
    let exts = calls::extensions(md);
    let nonce = client.account_next_index(&signer.account()).await?;
    let head_hash = client.finalized_head().await?;
    let head = client.block_number(head_hash).await?;
    let era = Era::mortal(options.era_period, head);
    // `Era::mortal` starts the era at the head itself, so the head's hash is its block hash.
    let era_block_hash = if era.birth(head) == head {
        head_hash
    } else {
        client.block_hash(Some(era.birth(head))).await?
    };
    let runtime = client.runtime_version();
    let params = TxParams {
        nonce,
        tip: options.tip,
        era,
        era_block_hash,
        genesis_hash: client.genesis_hash(),
        spec_version: runtime.spec_version,
        transaction_version: runtime.transaction_version,
    };
    let xt = extrinsic::build_signed(call, &exts, &params, signer)?;
    let hash = to_hex(&xt.hash);
    tracing::debug!(%hash, nonce, era_birth = head, "submitting extrinsic");
    let included = tokio::time::timeout(options.timeout, watch(client, &xt, options))
        .await
        .map_err(|_| SubmitError::Timeout {
            hash: hash.clone(),
            want: if options.wait_finalized {
                "finalized"
            } else {
                "in a block"
            },
            after: options.timeout,
        })??;
    let (block_hash, finalized) = included;
    let block_number = client.block_number(block_hash).await?;
    let index = extrinsic_index(client, block_hash, &xt.hash).await?;
    let events = client
        .storage_value("System", "Events", &[], Some(block_hash))
        .await?;
    let outcome = extrinsic_outcome(md, events.as_ref(), index);
    match outcome {
        Some(Ok(())) => Ok(Inclusion {
            extrinsic_hash: hash,
            block_hash: to_hex(&block_hash),
            block_number,
            index,
            finalized,
        }),
        Some(Err(e)) => Err(e),
        None => Err(SubmitError::NoOutcome {
            block: to_hex(&block_hash),
            index,
        }),
    }
}

/// Submits and follows the watch subscription to the block (hash, finalized?).
async fn watch(
    client: &ChainClient,
    xt: &extrinsic::SignedExtrinsic,
    options: SubmitOptions,
) -> Result<([u8; 32], bool), SubmitError> {
    let mut sub = match client
        .rpc()
        .subscribe(
            "author_submitAndWatchExtrinsic",
            json!([xt.to_hex()]),
            "author_unwatchExtrinsic",
        )
        .await
    {
        Ok(s) => s,
        Err(ChainError::Rpc {
            code,
            message,
            data,
            ..
        }) if code == INVALID_TRANSACTION => {
            return Err(SubmitError::Invalid {
                reason: data.unwrap_or(message),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let mut in_block: Option<[u8; 32]> = None;
    let result = loop {
        let Some(status) = sub.next().await else {
            break match in_block {
                // The connection closed after inclusion: what we saw stands.
                Some(h) => Ok((h, false)),
                None => Err(ChainError::Closed.into()),
            };
        };
        match classify(&status?) {
            Status::Pending => {}
            Status::InBlock(h) => {
                in_block = Some(h);
                if !options.wait_finalized {
                    break Ok((h, false));
                }
            }
            Status::Retracted => in_block = None,
            Status::Finalized(h) => break Ok((h, true)),
            Status::Invalid(s) => break Err(SubmitError::Invalid { reason: s }),
            Status::Dropped(s) => break Err(SubmitError::Dropped { status: s }),
            Status::Unknown(s) => {
                break Err(ChainError::BadResponse {
                    method: "author_extrinsicUpdate".into(),
                    reason: format!("unknown status {s}"),
                }
                .into());
            }
        }
    };
    // Best effort: the node forgets the watch on its own once it is final.
    let _ = sub.unsubscribe().await;
    result
}

enum Status {
    Pending,
    InBlock([u8; 32]),
    Retracted,
    Finalized([u8; 32]),
    Invalid(String),
    Dropped(String),
    Unknown(String),
}

/// Substrate's `TransactionStatus` as JSON: strings for the unit variants, one-key objects
/// for the others.
fn classify(status: &Json) -> Status {
    let unknown = || Status::Unknown(status.to_string());
    if let Some(s) = status.as_str() {
        return match s {
            "future" | "ready" => Status::Pending,
            "invalid" => Status::Invalid("invalid".into()),
            "dropped" | "usurped" | "finalityTimeout" => Status::Dropped(s.into()),
            _ => unknown(),
        };
    }
    let Some((key, v)) = status.as_object().and_then(|o| o.iter().next()) else {
        return unknown();
    };
    let hash = || v.as_str().and_then(|s| hash_from_hex(s, key).ok());
    match key.as_str() {
        "broadcast" => Status::Pending,
        "inBlock" => hash().map_or_else(unknown, Status::InBlock),
        "retracted" => Status::Retracted,
        "finalized" => hash().map_or_else(unknown, Status::Finalized),
        "usurped" | "finalityTimeout" | "dropped" => Status::Dropped(status.to_string()),
        "invalid" => Status::Invalid(status.to_string()),
        _ => unknown(),
    }
}

/// The position of the extrinsic `hash` in block `block` (`chain_getBlock`).
async fn extrinsic_index(
    client: &ChainClient,
    block: [u8; 32],
    hash: &[u8; 32],
) -> Result<usize, SubmitError> {
    let method = "chain_getBlock";
    let answer: Json = client
        .rpc()
        .request(method, json!([to_hex(&block)]))
        .await?;
    let list = answer
        .pointer("/block/extrinsics")
        .and_then(Json::as_array)
        .ok_or_else(|| ChainError::BadResponse {
            method: method.into(),
            reason: "no block.extrinsics".into(),
        })?;
    for (i, x) in list.iter().take(MAX_BLOCK_EXTRINSICS).enumerate() {
        let bytes = from_hex(x.as_str().unwrap_or_default(), method)?;
        if extrinsic::blake2_256(&bytes) == *hash {
            return Ok(i);
        }
    }
    Err(ChainError::BadResponse {
        method: method.into(),
        reason: format!(
            "extrinsic {} is not in block {}",
            to_hex(hash),
            to_hex(&block)
        ),
    }
    .into())
}

/// The fields of a composite or variant value, named when the type names them.
type Fields = [(Option<String>, Value)];

/// A variant's name and fields, seeing through single-field wrappers.
fn variant(v: &Value) -> Option<(&str, &Fields)> {
    match v {
        Value::Variant { name, fields, .. } => Some((name.as_str(), fields.as_slice())),
        Value::Composite(f) if f.len() == 1 => variant(&f[0].1),
        _ => None,
    }
}

/// What `System.Events` says about extrinsic `index`: `Some(Ok)` for `ExtrinsicSuccess`,
/// `Some(Err)` for `ExtrinsicFailed` (module errors by name), `None` when neither is there.
pub fn extrinsic_outcome(
    md: &Metadata,
    events: Option<&Value>,
    index: usize,
) -> Option<Result<(), SubmitError>> {
    let Some(Value::Sequence(records)) = events else {
        return None;
    };
    for record in records {
        let phase_ok = record
            .field("phase")
            .and_then(variant)
            .is_some_and(|(name, fields)| {
                name == "ApplyExtrinsic"
                    && fields.first().and_then(|(_, v)| v.as_u128()) == u128::try_from(index).ok()
            });
        if !phase_ok {
            continue;
        }
        let Some(("System", inner)) = record.field("event").and_then(variant) else {
            continue;
        };
        let Some((name, fields)) = inner.first().and_then(|(_, v)| variant(v)) else {
            continue;
        };
        match name {
            "ExtrinsicSuccess" => return Some(Ok(())),
            "ExtrinsicFailed" => {
                let err = fields
                    .iter()
                    .find(|(n, _)| n.as_deref() == Some("dispatch_error"))
                    .or_else(|| fields.first())
                    .map(|(_, v)| dispatch_error(md, v))
                    .unwrap_or_else(|| SubmitError::DispatchOther("no dispatch error".into()));
                return Some(Err(err));
            }
            _ => {}
        }
    }
    None
}

/// A `DispatchError` value as a typed error; `Module { index, error }` is resolved through
/// the pallet's error enum in the metadata.
pub fn dispatch_error(md: &Metadata, v: &Value) -> SubmitError {
    let Some((name, fields)) = variant(v) else {
        return SubmitError::DispatchOther("undecodable dispatch error".into());
    };
    if name != "Module" {
        return SubmitError::DispatchOther(name.to_owned());
    }
    let Some(module) = fields.first().map(|(_, v)| v) else {
        return SubmitError::DispatchOther("Module without its error".into());
    };
    let pallet_index = module.field("index").and_then(Value::as_u128);
    let error_index = module
        .field("error")
        .and_then(Value::as_bytes)
        .and_then(|b| b.first().copied())
        .map(u128::from)
        .or_else(|| module.field("error").and_then(Value::as_u128));
    let (Some(pi), Some(ei)) = (pallet_index, error_index) else {
        return SubmitError::DispatchOther("Module error without indices".into());
    };
    let pallet = u8::try_from(pi).ok().and_then(|i| md.pallet_by_index(i));
    let Some(pallet) = pallet else {
        return SubmitError::Dispatch {
            pallet: format!("pallet #{pi}"),
            error: format!("error #{ei}"),
        };
    };
    let error = pallet
        .error_ty
        .and_then(|ty| md.variants(ty).ok())
        .and_then(|vs| vs.iter().find(|v| u128::from(v.index) == ei))
        .map_or_else(|| format!("error #{ei}"), |v| v.name.clone());
    SubmitError::Dispatch {
        pallet: pallet.name.clone(),
        error,
    }
}
