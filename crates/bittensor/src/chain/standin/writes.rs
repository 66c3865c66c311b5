//! The stand-in's extrinsic handler (still a test double, not a runtime): it decodes each
//! submitted extrinsic with the metadata's transaction extensions, checks the sr25519
//! signature against the stand-in's genesis, runtime version and the era's block, the era's
//! lifetime and the nonce (refusing as a node would, JSON-RPC 1010), then applies the few
//! calls attesta sends with the chain's rules:
//!
//! - `serve_axon`: registered hotkey, ip_type 4 or 6, port ≠ 0, `ServingRateLimit`; updates
//!   the neuron's axon (metagraph and `Axons`);
//! - `set_weights`: refused with `CommitRevealEnabled` while commit-reveal is on; version key,
//!   rate limit (`LastUpdate`, `WeightsSetRateLimit`), equal lengths, known uids;
//! - `commit_timelocked_weights`: refused with `CommitRevealDisabled` when it is off; the
//!   commit-reveal version, rate limit; recorded in `TimelockedWeightCommits` (keyed here by
//!   netuid and reveal round; the chain keys by epoch), read back with [`commits`].
//!
//! A dispatch failure is included with `ExtrinsicFailed` (a module error, resolved by name
//! in the metadata) and still uses the nonce, as on chain. Events are written with the
//! devnet subset's types ([`super::runtime`]); serve that metadata when events matter.

use std::sync::Arc;

use parity_scale_codec::{Decode, Encode};

use super::runtime::{
    AccountId32, DispatchError, DispatchEventInfo, EventRecord, H256, ModuleError, Phase,
    RuntimeEvent, SubtensorEvent, SystemEvent,
};
use super::{ChainState, ExtrinsicHandler, ExtrinsicVerdict};
use crate::chain::calls::{self, SUBTENSOR};
use crate::chain::extrinsic::{self, TxParams};
use crate::chain::value::{self, Value};
use crate::ss58::AccountId;

/// The handler to install with [`super::Standin::set_extrinsic_handler`].
pub fn handler() -> ExtrinsicHandler {
    Arc::new(|st: &mut ChainState, bytes: &[u8]| apply(st, bytes))
}

fn apply(st: &mut ChainState, bytes: &[u8]) -> ExtrinsicVerdict {
    let exts = calls::extensions(&st.metadata);
    let x = match extrinsic::decode_signed(bytes, &exts) {
        Ok(x) => x,
        Err(e) => return ExtrinsicVerdict::Invalid(format!("Could not decode: {e}")),
    };
    // The block the extrinsic will be in is the next one. As in `CheckMortality`, the era's
    // birth is taken relative to it: an expired era names a later birth block, whose hash
    // the signature does not cover, so it is refused as a bad signature, as on chain.
    let block = st.block + 1;
    let birth = x.era.birth(block);
    if birth > block {
        return ExtrinsicVerdict::Invalid("Transaction is outdated (AncientBirthBlock)".into());
    }
    let params = TxParams {
        nonce: x.nonce,
        tip: x.tip,
        era: x.era,
        era_block_hash: st.block_hash(birth),
        genesis_hash: st.genesis_hash,
        spec_version: st.runtime.spec_version,
        transaction_version: st.runtime.transaction_version,
    };
    if let Err(e) = x.verify(&exts, &params) {
        return ExtrinsicVerdict::Invalid(format!("Invalid signature: {e}"));
    }
    let expected = st.nonces.get(&x.signer).copied().unwrap_or(0);
    if x.nonce < expected {
        return ExtrinsicVerdict::Invalid("Transaction is outdated (Stale)".into());
    }
    if x.nonce > expected {
        return ExtrinsicVerdict::Invalid("Transaction is in the future (Future)".into());
    }
    let (name, args) = match decode_call(st, &x.call) {
        Ok(c) => c,
        Err(e) => return ExtrinsicVerdict::Invalid(format!("Could not decode call: {e}")),
    };
    st.nonces.insert(x.signer, expected + 1);
    let outcome = match name.as_str() {
        "serve_axon" => serve_axon(st, &x.signer, &args, block),
        "set_weights" => set_weights(st, &x.signer, &args, block),
        "commit_timelocked_weights" => commit(st, &x.signer, &args, block),
        _ => Err("CallUnavailable"),
    };
    let mut events = Vec::new();
    match outcome {
        Ok(event) => {
            events.push(record(RuntimeEvent::SubtensorModule(event)));
            events.push(record(RuntimeEvent::System(
                SystemEvent::ExtrinsicSuccess {
                    dispatch_info: DispatchEventInfo::default(),
                },
            )));
        }
        Err(error) => {
            tracing::debug!(call = %name, error, "stand-in dispatch failed");
            events.push(record(RuntimeEvent::System(SystemEvent::ExtrinsicFailed {
                dispatch_error: module_error(st, error),
                dispatch_info: DispatchEventInfo::default(),
            })));
        }
    }
    for e in &events {
        st.push_event(&e.encode());
    }
    ExtrinsicVerdict::Include
}

/// Each stand-in block holds one extrinsic: its events are at index 0.
fn record(event: RuntimeEvent) -> EventRecord {
    EventRecord {
        phase: Phase::ApplyExtrinsic(0),
        event,
        topics: vec![],
    }
}

/// `SubtensorModule`'s error `name` as a `DispatchError::Module`, indices from the metadata.
fn module_error(st: &ChainState, name: &str) -> DispatchError {
    let pallet = st.metadata.pallet(SUBTENSOR).ok();
    let index = pallet.map_or(0, |p| p.index);
    let error = pallet
        .and_then(|p| p.error_ty)
        .and_then(|ty| st.metadata.variants(ty).ok())
        .and_then(|vs| vs.iter().find(|v| v.name == name).map(|v| v.index))
        .unwrap_or(u8::MAX);
    DispatchError::Module(ModuleError {
        index,
        error: [error, 0, 0, 0],
    })
}

/// The call's name and its arguments by name, decoded through the metadata.
fn decode_call(st: &ChainState, call: &[u8]) -> Result<(String, Vec<(String, Value)>), String> {
    let (&[pallet_index, call_index], mut input) = call.split_at(2.min(call.len())) else {
        return Err("call too short".into());
    };
    let pallet = st
        .metadata
        .pallet_by_index(pallet_index)
        .ok_or("unknown pallet")?;
    let ty = pallet.calls_ty.ok_or("pallet has no calls")?;
    let variant = st
        .metadata
        .variants(ty)
        .map_err(|e| e.to_string())?
        .iter()
        .find(|v| v.index == call_index)
        .ok_or("unknown call")?;
    let mut args = Vec::new();
    for f in &variant.fields {
        let v =
            value::decode(st.metadata.types(), f.ty.id, &mut input).map_err(|e| e.to_string())?;
        args.push((f.name.clone().unwrap_or_default(), v));
    }
    if !input.is_empty() {
        return Err("trailing bytes after the call".into());
    }
    Ok((variant.name.clone(), args))
}

fn arg<'a>(args: &'a [(String, Value)], name: &str) -> Result<&'a Value, &'static str> {
    args.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
        .ok_or("BadArguments")
}

fn uint(args: &[(String, Value)], name: &str) -> Result<u128, &'static str> {
    arg(args, name)?.as_u128().ok_or("BadArguments")
}

fn u16s(args: &[(String, Value)], name: &str) -> Result<Vec<u16>, &'static str> {
    match arg(args, name)? {
        Value::Sequence(items) => items
            .iter()
            .map(|v| v.as_u128().and_then(|x| u16::try_from(x).ok()))
            .collect::<Option<Vec<u16>>>()
            .ok_or("BadArguments"),
        _ => Err("BadArguments"),
    }
}

fn netuid(args: &[(String, Value)]) -> Result<u16, &'static str> {
    u16::try_from(uint(args, "netuid")?).map_err(|_| "BadArguments")
}

/// A storage value through the metadata (its default when absent), as u64.
fn read_u64(st: &ChainState, entry: &str, keys: &[&[u8]]) -> u64 {
    let Ok(key) = st.metadata.storage_key(SUBTENSOR, entry, keys) else {
        return 0;
    };
    st.metadata
        .decode_storage(SUBTENSOR, entry, st.storage.get(&key).map(Vec::as_slice))
        .ok()
        .flatten()
        .and_then(|v| v.as_u128().or_else(|| v.as_bool().map(u128::from)))
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0)
}

fn uid_of(st: &ChainState, netuid: u16, who: &AccountId) -> Option<u16> {
    st.neurons
        .get(&netuid)?
        .iter()
        .find(|n| n.hotkey == who.0)
        .map(|n| n.uid.0)
}

fn last_update(st: &ChainState, netuid: u16) -> Vec<u64> {
    let Ok(key) = st
        .metadata
        .storage_key(SUBTENSOR, "LastUpdate", &[&netuid.encode()])
    else {
        return vec![];
    };
    st.storage
        .get(&key)
        .and_then(|b| Vec::<u64>::decode(&mut b.as_slice()).ok())
        .unwrap_or_default()
}

/// The chain's weights rate limit: allowed when never set or `block − last ≥ limit`.
fn check_rate_limit(
    st: &ChainState,
    netuid: u16,
    uid: u16,
    block: u64,
) -> Result<(), &'static str> {
    let last = last_update(st, netuid)
        .get(usize::from(uid))
        .copied()
        .unwrap_or(0);
    let limit = read_u64(st, "WeightsSetRateLimit", &[&netuid.encode()]);
    if last == 0 || block.saturating_sub(last) >= limit {
        Ok(())
    } else {
        Err("SettingWeightsTooFast")
    }
}

fn touch_last_update(st: &mut ChainState, netuid: u16, uid: u16, block: u64) {
    let mut lu = last_update(st, netuid);
    let i = usize::from(uid);
    if lu.len() <= i {
        lu.resize(i + 1, 0);
    }
    lu[i] = block;
    st.put(SUBTENSOR, "LastUpdate", &[&netuid.encode()], lu.encode());
}

fn serve_axon(
    st: &mut ChainState,
    who: &AccountId,
    args: &[(String, Value)],
    block: u64,
) -> Result<SubtensorEvent, &'static str> {
    let net = netuid(args)?;
    uid_of(st, net, who).ok_or("HotKeyNotRegisteredInSubNet")?;
    let ip_type = u8::try_from(uint(args, "ip_type")?).map_err(|_| "InvalidIpType")?;
    if ip_type != 4 && ip_type != 6 {
        return Err("InvalidIpType");
    }
    let port = u16::try_from(uint(args, "port")?).map_err(|_| "InvalidPort")?;
    if port == 0 {
        return Err("InvalidPort");
    }
    let limit = read_u64(st, "ServingRateLimit", &[&net.encode()]);
    let neuron = st
        .neurons
        .get_mut(&net)
        .and_then(|l| l.iter_mut().find(|n| n.hotkey == who.0))
        .ok_or("HotKeyNotRegisteredInSubNet")?;
    let last = neuron.axon_info.block;
    if last != 0 && block.saturating_sub(last) < limit {
        return Err("ServingRateLimitExceeded");
    }
    let info = &mut neuron.axon_info;
    info.block = block;
    info.version = u32::try_from(uint(args, "version")?).map_err(|_| "BadArguments")?;
    info.ip = uint(args, "ip")?;
    info.port = port;
    info.ip_type = ip_type;
    info.protocol = u8::try_from(uint(args, "protocol")?).map_err(|_| "BadArguments")?;
    let info = *info;
    st.put(SUBTENSOR, "Axons", &[&net.encode(), &who.0], info.encode());
    Ok(SubtensorEvent::AxonServed(net, AccountId32(who.0)))
}

fn set_weights(
    st: &mut ChainState,
    who: &AccountId,
    args: &[(String, Value)],
    block: u64,
) -> Result<SubtensorEvent, &'static str> {
    let net = netuid(args)?;
    if read_u64(st, "CommitRevealWeightsEnabled", &[&net.encode()]) != 0 {
        return Err("CommitRevealEnabled");
    }
    let uid = uid_of(st, net, who).ok_or("HotKeyNotRegisteredInSubNet")?;
    let key = u64::try_from(uint(args, "version_key")?).map_err(|_| "BadArguments")?;
    let want = read_u64(st, "WeightsVersionKey", &[&net.encode()]);
    if want != 0 && key < want {
        return Err("IncorrectWeightVersionKey");
    }
    check_rate_limit(st, net, uid, block)?;
    let (dests, weights) = (u16s(args, "dests")?, u16s(args, "weights")?);
    if dests.len() != weights.len() {
        return Err("WeightVecNotEqualSize");
    }
    let n = st.neurons.get(&net).map_or(0, Vec::len);
    if dests.iter().any(|d| usize::from(*d) >= n) {
        return Err("UidVecContainInvalidOne");
    }
    let mut seen = std::collections::BTreeSet::new();
    if !dests.iter().all(|d| seen.insert(*d)) {
        return Err("DuplicateUids");
    }
    touch_last_update(st, net, uid, block);
    Ok(SubtensorEvent::WeightsSet(net, uid))
}

fn commit(
    st: &mut ChainState,
    who: &AccountId,
    args: &[(String, Value)],
    block: u64,
) -> Result<SubtensorEvent, &'static str> {
    let net = netuid(args)?;
    if read_u64(st, "CommitRevealWeightsEnabled", &[&net.encode()]) == 0 {
        return Err("CommitRevealDisabled");
    }
    let uid = uid_of(st, net, who).ok_or("HotKeyNotRegisteredInSubNet")?;
    let version = uint(args, "commit_reveal_version")?;
    let want = {
        let key = st
            .metadata
            .storage_key(SUBTENSOR, "CommitRevealWeightsVersion", &[])
            .ok();
        st.metadata
            .decode_storage(
                SUBTENSOR,
                "CommitRevealWeightsVersion",
                key.and_then(|k| st.storage.get(&k)).map(Vec::as_slice),
            )
            .ok()
            .flatten()
            .and_then(|v| v.as_u128())
            .unwrap_or(4)
    };
    if version != want {
        return Err("IncorrectCommitRevealVersion");
    }
    check_rate_limit(st, net, uid, block)?;
    let data = arg(args, "commit")?.as_bytes().ok_or("BadArguments")?;
    let round = u64::try_from(uint(args, "reveal_round")?).map_err(|_| "BadArguments")?;
    let keys: [&[u8]; 2] = [&net.encode(), &round.encode()];
    let mut list: Vec<(AccountId32, u64, Vec<u8>, u64)> = st
        .metadata
        .storage_key(SUBTENSOR, "TimelockedWeightCommits", &keys)
        .ok()
        .and_then(|k| st.storage.get(&k))
        .and_then(|b| Decode::decode(&mut b.as_slice()).ok())
        .unwrap_or_default();
    let hash = H256(extrinsic::blake2_256(&data));
    list.push((AccountId32(who.0), block, data, round));
    st.put(SUBTENSOR, "TimelockedWeightCommits", &keys, list.encode());
    touch_last_update(st, net, uid, block);
    Ok(SubtensorEvent::TimelockedWeightsCommitted(
        AccountId32(who.0),
        net,
        hash,
        round,
    ))
}

/// The commits recorded for `netuid`: (hotkey, block, ciphertext, reveal round), oldest first
/// per round.
pub fn commits(st: &ChainState, netuid: u16) -> Vec<(AccountId, u64, Vec<u8>, u64)> {
    let Ok(prefix) =
        st.metadata
            .storage_key(SUBTENSOR, "TimelockedWeightCommits", &[&netuid.encode()])
    else {
        return vec![];
    };
    st.storage
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter_map(|(_, v)| {
            Vec::<(AccountId32, u64, Vec<u8>, u64)>::decode(&mut v.as_slice()).ok()
        })
        .flatten()
        .map(|(who, block, data, round)| (AccountId(who.0), block, data, round))
        .collect()
}
