//! A validator's weights on chain: read the subnet's rules (commit-reveal on or off and its
//! version, the weights version key, the rate limit and our last update, the epoch schedule),
//! then either `commit_timelocked_weights` (a v4 commit to the drand round the chain reveals
//! at) or `set_weights`, or skip with a stated reason (never an extrinsic the chain would
//! refuse for a rule we can check first). Every attempt yields a [`WeightsRecord`].

use std::time::Duration;

use parity_scale_codec::Encode;

use super::calls::{self, SUBTENSOR};
use super::client::ChainClient;
use super::reveal::{self, EpochSchedule, RevealError};
use super::submit::{self, Inclusion, SubmitError, SubmitOptions};
use super::tlock::{self, DrandKey, TlockError, WeightsTlockPayload};
use super::{ChainError, metadata::Metadata};
use crate::keys::Hotkey;

/// `commit_reveal` of `[validator.bittensor]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitReveal {
    /// Follow the subnet's `CommitRevealWeightsEnabled`.
    #[default]
    Auto,
    /// Always commit; refuse (no extrinsic) when the subnet has commit-reveal off.
    On,
    /// Always set in the clear; refuse (no extrinsic) when the subnet has it on.
    Off,
}

/// How weights are emitted.
#[derive(Debug, Clone)]
pub struct WeightsConfig {
    /// The subnet.
    pub netuid: u16,
    /// Commit-reveal mode.
    pub commit_reveal: CommitReveal,
    /// The version key to send; `None` sends the subnet's `WeightsVersionKey`.
    pub version_key: Option<u64>,
    /// Expected block time (reveal rounds are wall-clock rounds).
    pub block_time: Duration,
    /// The drand beacon the chain decrypts with (quicknet on real chains).
    pub drand: DrandKey,
    /// Submission settings.
    pub submit: SubmitOptions,
}

impl WeightsConfig {
    /// Defaults for `netuid`: auto, the chain's version key, 12 s blocks, quicknet.
    pub fn new(netuid: u16) -> Self {
        WeightsConfig {
            netuid,
            commit_reveal: CommitReveal::Auto,
            version_key: None,
            block_time: Duration::from_secs(12),
            drand: DrandKey::quicknet(),
            submit: SubmitOptions::default(),
        }
    }
}

/// Why weights could not be emitted (skips are not errors: see [`WeightsAction::Skipped`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// A chain read failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Submission failed (refused, dropped, timed out, or a dispatch error by name).
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The commit could not be encrypted.
    #[error(transparent)]
    Tlock(#[from] TlockError),
    /// No reveal round (tempo 0, an absurd reveal period).
    #[error(transparent)]
    Reveal(#[from] RevealError),
    /// `commit_reveal = on/off` disagrees with the subnet.
    #[error("commit_reveal = {configured:?} but the subnet has commit-reveal {}", if *subnet { "on" } else { "off" })]
    ModeMismatch {
        /// Configured.
        configured: CommitReveal,
        /// The subnet's `CommitRevealWeightsEnabled`.
        subnet: bool,
    },
    /// uids and values differ in length.
    #[error("{uids} uids but {values} values")]
    Lengths {
        /// uids.
        uids: usize,
        /// values.
        values: usize,
    },
}

/// The subnet's weight rules at the head block.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubnetWeightRules {
    /// The head block number.
    pub block: u64,
    /// `CommitRevealWeightsEnabled[netuid]`.
    pub commit_reveal_enabled: bool,
    /// `CommitRevealWeightsVersion` (4 when the runtime has no such item).
    pub commit_reveal_version: u16,
    /// `WeightsVersionKey[netuid]`.
    pub version_key: u64,
    /// `WeightsSetRateLimit[netuid]`.
    pub rate_limit: u64,
    /// `LastUpdate[netuid][uid]` (0: never).
    pub last_update: u64,
    /// `Tempo[netuid]`.
    pub tempo: u16,
    /// `RevealPeriodEpochs[netuid]`.
    pub reveal_period_epochs: u64,
    /// The stateful epoch schedule (spec ≥ 407), when the runtime has its items.
    pub schedule: Option<EpochSchedule>,
}

/// Reads the rules for `uid` on `netuid`.
pub async fn read_rules(
    client: &ChainClient,
    netuid: u16,
    uid: u16,
) -> Result<SubnetWeightRules, ChainError> {
    let md = client.metadata();
    let net = netuid.encode();
    let key: [&[u8]; 1] = [&net];
    let u64_of = |entry: &'static str| client.storage_u64(SUBTENSOR, entry, &key);
    let block = client.head_block_number().await?;
    let commit_reveal_enabled = client
        .storage_bool(SUBTENSOR, "CommitRevealWeightsEnabled", &key)
        .await?;
    let commit_reveal_version = if has_storage(md, "CommitRevealWeightsVersion") {
        u16::try_from(
            client
                .storage_u64(SUBTENSOR, "CommitRevealWeightsVersion", &[])
                .await?,
        )
        .unwrap_or(u16::MAX)
    } else {
        4
    };
    let last_update = match client
        .storage_value(SUBTENSOR, "LastUpdate", &key, None)
        .await?
    {
        Some(super::value::Value::Sequence(items)) => items
            .get(usize::from(uid))
            .and_then(super::value::Value::as_u128)
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0),
        _ => 0,
    };
    let tempo = u16::try_from(u64_of("Tempo").await?).unwrap_or(u16::MAX);
    let reveal_period_epochs = if has_storage(md, "RevealPeriodEpochs") {
        u64_of("RevealPeriodEpochs").await?
    } else {
        1
    };
    let schedule_items = [
        "LastEpochBlock",
        "PendingEpochAt",
        "SubnetEpochIndex",
        "BlocksSinceLastStep",
    ];
    let schedule = if schedule_items.iter().all(|e| has_storage(md, e)) {
        Some(EpochSchedule {
            last_epoch_block: u64_of("LastEpochBlock").await?,
            pending_epoch_at: u64_of("PendingEpochAt").await?,
            subnet_epoch_index: u64_of("SubnetEpochIndex").await?,
            tempo,
            blocks_since_last_step: u64_of("BlocksSinceLastStep").await?,
            current_block: block,
        })
    } else {
        None
    };
    Ok(SubnetWeightRules {
        block,
        commit_reveal_enabled,
        commit_reveal_version,
        version_key: u64_of("WeightsVersionKey").await?,
        rate_limit: u64_of("WeightsSetRateLimit").await?,
        last_update,
        tempo,
        reveal_period_epochs,
        schedule,
    })
}

fn has_storage(md: &Metadata, entry: &str) -> bool {
    md.storage_entry(SUBTENSOR, entry).is_ok()
}

/// What was done with one epoch's weights.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum WeightsAction {
    /// `commit_timelocked_weights`.
    Committed {
        /// The drand round it reveals at.
        reveal_round: u64,
        /// The commit-reveal version sent.
        commit_reveal_version: u16,
        /// Where it was included.
        inclusion: Inclusion,
    },
    /// `set_weights`.
    Set {
        /// Where it was included.
        inclusion: Inclusion,
    },
    /// Nothing sent.
    Skipped {
        /// Why.
        reason: SkipReason,
    },
}

/// Why no extrinsic was sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum SkipReason {
    /// Too soon after our last update.
    RateLimited {
        /// Blocks still to wait.
        blocks_left: u64,
    },
    /// The configured version key is below the subnet's.
    VersionKeyTooLow {
        /// Ours.
        ours: u64,
        /// The subnet's.
        subnet: u64,
    },
    /// No weight to set (all zero, or no node is a registered neuron).
    NothingToSet,
}

impl SkipReason {
    /// A short name for logs and metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            SkipReason::RateLimited { .. } => "rate_limited",
            SkipReason::VersionKeyTooLow { .. } => "version_key",
            SkipReason::NothingToSet => "nothing_to_set",
        }
    }
}

/// One attempt, as persisted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WeightsRecord {
    /// The subnet.
    pub netuid: u16,
    /// Our uid.
    pub uid: u16,
    /// Destination uids.
    pub uids: Vec<u16>,
    /// u16 weights.
    pub values: Vec<u16>,
    /// Version key sent (or that would have been).
    pub version_key: u64,
    /// The head block the decision was made at.
    pub block: u64,
    /// What was done.
    #[serde(flatten)]
    pub action: WeightsAction,
}

/// The decision for `rules`: the version key to send, or why nothing is sent.
pub fn decide(
    config: &WeightsConfig,
    rules: &SubnetWeightRules,
    uids: &[u16],
) -> Result<Result<(bool, u64), SkipReason>, WeightsError> {
    let commit = match config.commit_reveal {
        CommitReveal::Auto => rules.commit_reveal_enabled,
        CommitReveal::On | CommitReveal::Off => {
            let on = config.commit_reveal == CommitReveal::On;
            if on != rules.commit_reveal_enabled {
                return Err(WeightsError::ModeMismatch {
                    configured: config.commit_reveal,
                    subnet: rules.commit_reveal_enabled,
                });
            }
            on
        }
    };
    if uids.is_empty() {
        return Ok(Err(SkipReason::NothingToSet));
    }
    let version_key = config.version_key.unwrap_or(rules.version_key);
    if rules.version_key != 0 && version_key < rules.version_key {
        return Ok(Err(SkipReason::VersionKeyTooLow {
            ours: version_key,
            subnet: rules.version_key,
        }));
    }
    // The chain's rule: allowed when never updated or `block − last ≥ limit`. The extrinsic
    // lands at least one block later, so judging at the head is conservative by a block.
    let since = rules.block.saturating_sub(rules.last_update);
    if rules.last_update != 0 && since < rules.rate_limit {
        return Ok(Err(SkipReason::RateLimited {
            blocks_left: rules.rate_limit - since,
        }));
    }
    Ok(Ok((commit, version_key)))
}

/// The drand round a commit made now must be encrypted to.
pub fn reveal_round_for(
    rules: &SubnetWeightRules,
    netuid: u16,
    now: Duration,
    block_time: Duration,
) -> Result<u64, RevealError> {
    match &rules.schedule {
        Some(s) => reveal::reveal_round(s, rules.reveal_period_epochs, now, block_time),
        None => {
            if rules.tempo == 0 {
                return Err(RevealError::TempoIsZero);
            }
            Ok(reveal::legacy_reveal_round(
                rules.block,
                netuid,
                rules.tempo,
                rules.reveal_period_epochs,
                now,
                block_time,
            ))
        }
    }
}

/// Emits `values` for `uids` as `signer` (whose uid is `uid`), following the subnet's rules.
/// `now` is the wall time (for the reveal round); `seed` the commit's fresh secret
/// randomness. A skip is `Ok` with [`WeightsAction::Skipped`].
#[allow(clippy::too_many_arguments)] // each is a distinct input; a struct would only rename them
pub async fn emit(
    client: &ChainClient,
    signer: &Hotkey,
    uid: u16,
    config: &WeightsConfig,
    uids: &[u16],
    values: &[u16],
    now: Duration,
    seed: [u8; 32],
) -> Result<WeightsRecord, WeightsError> {
    if uids.len() != values.len() {
        return Err(WeightsError::Lengths {
            uids: uids.len(),
            values: values.len(),
        });
    }
    let rules = read_rules(client, config.netuid, uid).await?;
    let record = |version_key, action| WeightsRecord {
        netuid: config.netuid,
        uid,
        uids: uids.to_vec(),
        values: values.to_vec(),
        version_key,
        block: rules.block,
        action,
    };
    let (commit, version_key) = match decide(config, &rules, uids)? {
        Ok(d) => d,
        Err(reason) => {
            let key = config.version_key.unwrap_or(rules.version_key);
            return Ok(record(key, WeightsAction::Skipped { reason }));
        }
    };
    let md = client.metadata();
    if commit {
        let reveal_round = reveal_round_for(&rules, config.netuid, now, config.block_time)?;
        let payload = WeightsTlockPayload {
            hotkey: signer.account().0.to_vec(),
            uids: uids.to_vec(),
            values: values.to_vec(),
            version_key,
        };
        let ciphertext = tlock::encrypt_weights(&config.drand, reveal_round, &payload, seed)?;
        let call = calls::commit_timelocked_weights(
            md,
            config.netuid,
            &ciphertext,
            reveal_round,
            rules.commit_reveal_version,
        )
        .map_err(SubmitError::from)?;
        let inclusion = submit::sign_and_submit(client, signer, &call, config.submit).await?;
        Ok(record(
            version_key,
            WeightsAction::Committed {
                reveal_round,
                commit_reveal_version: rules.commit_reveal_version,
                inclusion,
            },
        ))
    } else {
        let call = calls::set_weights(md, config.netuid, uids, values, version_key)
            .map_err(SubmitError::from)?;
        let inclusion = submit::sign_and_submit(client, signer, &call, config.submit).await?;
        Ok(record(version_key, WeightsAction::Set { inclusion }))
    }
}
