//! Which drand round a commit-reveal v4 commit must be encrypted to: the round whose pulse
//! the chain will have ingested when it reveals the commit.
//!
//! Two rules, by runtime:
//! - [`legacy_reveal_round`]: the modulo rule of runtimes before spec 407 (epochs at fixed
//!   offsets of `tempo + 1` blocks, shifted by the netuid);
//! - [`reveal_round`] on an [`EpochSchedule`]: the stateful schedule of spec ≥ 407, where an
//!   epoch runs when `tempo` blocks passed since the last one, when an owner-triggered epoch
//!   is pending, or when too many blocks passed since the last step. The first reveal block is
//!   found by stepping the chain's per-block schedule forward from the head, as the SDK's
//!   `bittensor-drand` does.
//!
//! Both then aim at `SECURITY_BLOCK_OFFSET` blocks after the reveal block and turn that
//! block's expected wall time into a quicknet round. Time is injected (`now`, `block_time`).

use std::time::Duration;

use crate::chain::tlock::{QUICKNET_GENESIS_SECS, QUICKNET_PERIOD_SECS};

/// Blocks between the head the commit is computed at and the block that includes it.
pub const COMMIT_INCLUSION_BLOCK_OFFSET: u64 = 1;
/// Blocks after the reveal block the round aims at, so the pulse is on chain by then.
pub const SECURITY_BLOCK_OFFSET: u64 = 3;
/// The chain's largest tempo: an epoch runs when more blocks than this passed since the
/// last step, whatever the tempo.
pub const MAX_TEMPO: u64 = 50_400;
/// The largest reveal period accepted (chain values are small; this bounds the simulation).
pub const MAX_REVEAL_PERIOD_EPOCHS: u64 = 100;

/// Why no reveal round could be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevealError {
    /// The subnet's tempo is 0: it runs no epochs, so a commit is never revealed.
    #[error("tempo is zero; the subnet does not run epochs")]
    TempoIsZero,
    /// The reveal period read from the chain is beyond what this client simulates.
    #[error("reveal period of {0} epochs exceeds {MAX_REVEAL_PERIOD_EPOCHS}")]
    RevealPeriodTooLarge(u64),
    /// The schedule never reached the target epoch within its simulation budget.
    #[error("reveal block simulation exceeded its budget")]
    BoundExceeded,
}

/// The subnet's epoch schedule at the head block (spec ≥ 407 storage, read per netuid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EpochSchedule {
    /// `LastEpochBlock`: the block the last epoch ran at.
    pub last_epoch_block: u64,
    /// `PendingEpochAt`: an owner-triggered epoch's block (0: none).
    pub pending_epoch_at: u64,
    /// `SubnetEpochIndex`: epochs run so far.
    pub subnet_epoch_index: u64,
    /// `Tempo`: blocks per epoch.
    pub tempo: u16,
    /// `BlocksSinceLastStep`.
    pub blocks_since_last_step: u64,
    /// The head block number the other fields were read at.
    pub current_block: u64,
}

impl EpochSchedule {
    /// Whether the chain runs the subnet's epoch at `block` (given the state before it).
    fn epoch_runs_at(&self, block: u64) -> bool {
        if self.tempo == 0 {
            return false;
        }
        (self.pending_epoch_at > 0 && block >= self.pending_epoch_at)
            || self.blocks_since_last_step > MAX_TEMPO
            || block.saturating_sub(self.last_epoch_block) >= u64::from(self.tempo)
    }

    /// The epoch index the chain's reveal step sees at `block`: reveals run before the
    /// block's epoch step, but already count the epoch that step is about to run.
    fn epoch_seen_by_reveal(&self, block: u64) -> u64 {
        if self.epoch_runs_at(block) {
            self.subnet_epoch_index.saturating_add(1)
        } else {
            self.subnet_epoch_index
        }
    }

    /// The state after the chain's per-block step at `block`.
    fn step(&self, block: u64) -> EpochSchedule {
        let mut next = *self;
        next.blocks_since_last_step = next.blocks_since_last_step.saturating_add(1);
        next.current_block = block;
        if next.epoch_runs_at(block) {
            next.last_epoch_block = block;
            next.pending_epoch_at = 0;
            next.subnet_epoch_index = next.subnet_epoch_index.saturating_add(1);
            next.blocks_since_last_step = 0;
        }
        next
    }

    /// The state just before the block that includes a commit made at the head.
    fn before_inclusion(&self) -> (EpochSchedule, u64) {
        let inclusion = self
            .current_block
            .saturating_add(COMMIT_INCLUSION_BLOCK_OFFSET);
        let mut state = *self;
        for b in self.current_block.saturating_add(1)..inclusion {
            state = state.step(b);
        }
        (state, inclusion)
    }

    /// The epoch a commit made at the head is recorded in (the epoch index the chain sees
    /// at the inclusion block, where the extrinsic runs after the block's epoch step).
    pub fn commit_epoch(&self) -> u64 {
        let (state, inclusion) = self.before_inclusion();
        state.epoch_seen_by_reveal(inclusion)
    }

    /// The first block at which the chain reveals a commit made at the head, with the
    /// subnet's reveal period (`RevealPeriodEpochs`).
    pub fn first_reveal_block(&self, reveal_period_epochs: u64) -> Result<u64, RevealError> {
        if self.tempo == 0 {
            return Err(RevealError::TempoIsZero);
        }
        if reveal_period_epochs > MAX_REVEAL_PERIOD_EPOCHS {
            return Err(RevealError::RevealPeriodTooLarge(reveal_period_epochs));
        }
        let (mut state, inclusion) = self.before_inclusion();
        let target = state
            .epoch_seen_by_reveal(inclusion)
            .saturating_add(reveal_period_epochs);
        // An epoch runs at least every MAX_TEMPO + 1 blocks, so the target is reached
        // within (period + 1) such spans.
        let budget = reveal_period_epochs
            .saturating_add(1)
            .saturating_mul(MAX_TEMPO);
        let last = inclusion.saturating_add(budget);
        let mut block = inclusion;
        loop {
            // Exact equality, as the chain's reveal step compares epochs.
            if state.epoch_seen_by_reveal(block) == target {
                return Ok(block);
            }
            if block >= last {
                return Err(RevealError::BoundExceeded);
            }
            state = state.step(block);
            block += 1;
        }
    }
}

/// The quicknet round expected to be out when block `target` is produced, `target` being
/// `blocks_ahead` blocks after the head (at `now`), at least round 1.
fn round_at(blocks_ahead: f64, now: Duration, block_time: Duration) -> u64 {
    let secs = now.as_secs_f64() + blocks_ahead * block_time.as_secs_f64();
    let round = ((secs - QUICKNET_GENESIS_SECS as f64) / QUICKNET_PERIOD_SECS as f64).floor();
    // Saturating float-to-int: NaN and negatives become 0, then the floor of 1 applies.
    (round as u64).max(1)
}

/// The round to encrypt a commit to under the stateful schedule (spec ≥ 407): the round out
/// `SECURITY_BLOCK_OFFSET` blocks after the first reveal block, `now` being the head's time.
pub fn reveal_round(
    schedule: &EpochSchedule,
    reveal_period_epochs: u64,
    now: Duration,
    block_time: Duration,
) -> Result<u64, RevealError> {
    let reveal_block = schedule.first_reveal_block(reveal_period_epochs)?;
    let target = reveal_block.saturating_add(SECURITY_BLOCK_OFFSET);
    let ahead = target.saturating_sub(schedule.current_block);
    Ok(round_at(ahead as f64, now, block_time))
}

/// The round to encrypt a commit to under the modulo rule of runtimes before spec 407:
/// `epoch = (block + netuid + 1) / (tempo + 1)`, first reveal block
/// `(epoch + period) * (tempo + 1) − (netuid + 1)`, aiming `SECURITY_BLOCK_OFFSET` past it.
pub fn legacy_reveal_round(
    block: u64,
    netuid: u16,
    tempo: u16,
    reveal_period_epochs: u64,
    now: Duration,
    block_time: Duration,
) -> u64 {
    let span = u64::from(tempo) + 1;
    let shift = u64::from(netuid) + 1;
    let epoch = block.saturating_add(shift) / span;
    let first = epoch
        .saturating_add(reveal_period_epochs)
        .saturating_mul(span)
        .saturating_sub(shift);
    let target = first.saturating_add(SECURITY_BLOCK_OFFSET);
    // Signed: with a zero period the target can be behind the head.
    let ahead = target as f64 - block as f64;
    round_at(ahead, now, block_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(last: u64, pending: u64, tempo: u16, current: u64) -> EpochSchedule {
        EpochSchedule {
            last_epoch_block: last,
            pending_epoch_at: pending,
            subnet_epoch_index: 0,
            tempo,
            blocks_since_last_step: 0,
            current_block: current,
        }
    }

    #[test]
    fn epochs_fire_on_tempo_pending_and_overdue_steps() {
        let s = state(100, 0, 50, 120);
        assert!(!s.epoch_runs_at(149));
        assert!(s.epoch_runs_at(150));
        assert!(!state(100, 0, 0, 120).epoch_runs_at(10_000));
        assert!(state(100, 130, 50, 120).epoch_runs_at(130));
        let mut overdue = s;
        overdue.blocks_since_last_step = MAX_TEMPO + 1;
        assert!(overdue.epoch_runs_at(121));
    }

    #[test]
    fn reveal_block_counts_periods() {
        let s = state(10, 0, 50, 10);
        assert_eq!(s.first_reveal_block(1), Ok(60));
        assert_eq!(s.first_reveal_block(2), Ok(110));
        assert_eq!(s.first_reveal_block(0), Ok(11));
        assert_eq!(
            s.first_reveal_block(MAX_REVEAL_PERIOD_EPOCHS + 1),
            Err(RevealError::RevealPeriodTooLarge(
                MAX_REVEAL_PERIOD_EPOCHS + 1
            ))
        );
        // Extreme inputs saturate instead of overflowing.
        let far = state(u64::MAX - 5, 0, 50, u64::MAX - 2);
        assert_eq!(far.first_reveal_block(1), Err(RevealError::BoundExceeded));
    }

    #[test]
    fn rounds_follow_wall_time() {
        let genesis = Duration::from_secs(QUICKNET_GENESIS_SECS);
        let bt = Duration::from_secs(12);
        // Head 59: the commit lands at 60, where an epoch runs (epoch 1), so it is revealed
        // at the next epoch (110); the round aims at 113, 54 blocks of 12 s ahead.
        let s = state(10, 0, 50, 59);
        assert_eq!(s.first_reveal_block(1), Ok(110));
        assert_eq!(
            reveal_round(&s, 1, genesis + Duration::from_secs(30), bt),
            Ok((30 + 54 * 12) / 3)
        );
        // Before genesis: round 1.
        assert_eq!(reveal_round(&s, 1, Duration::ZERO, bt), Ok(1));
        // Legacy: netuid 1, tempo 10, block 20: epoch (20 + 2) / 11 = 2, first reveal
        // (2 + 1) · 11 − 2 = 31, target 34, 14 blocks ahead.
        assert_eq!(
            legacy_reveal_round(20, 1, 10, 1, genesis + Duration::from_secs(300), bt),
            (300 + 14 * 12) / 3
        );
    }
}
