//! A miner announcing its axon (`serve_axon`): only when registered on the subnet, only when
//! the chain's record differs from the address to announce, and never inside the subnet's
//! `ServingRateLimit` (the chain would refuse it and keep the fee).

use parity_scale_codec::Encode;

use super::ChainError;
use super::calls::{self, CallError, SUBTENSOR, ServeAxon};
use super::client::ChainClient;
use super::submit::{self, Inclusion, SubmitError, SubmitOptions};
use crate::keys::Hotkey;

/// What the announcement did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnounceOutcome {
    /// `serve_axon` was included.
    Announced(Inclusion),
    /// The chain already has this address for the hotkey: nothing sent.
    Unchanged,
    /// Too soon after the last announcement: nothing sent.
    RateLimited {
        /// Blocks still to wait.
        blocks_left: u64,
    },
}

/// Why the axon could not be announced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnnounceError {
    /// The hotkey is not a neuron of the subnet (register it first, e.g. with btcli).
    #[error("hotkey {hotkey} is not registered on netuid {netuid}")]
    NotRegistered {
        /// SS58.
        hotkey: String,
        /// The subnet.
        netuid: u16,
    },
    /// A chain read failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The call could not be built from the metadata.
    #[error(transparent)]
    Call(#[from] CallError),
    /// Submission failed (refused, dropped, timed out, a dispatch error by name).
    #[error(transparent)]
    Submit(#[from] SubmitError),
}

/// Announces `axon` for `hotkey` (see the module's rules).
pub async fn announce(
    client: &ChainClient,
    hotkey: &Hotkey,
    axon: &ServeAxon,
    options: SubmitOptions,
) -> Result<AnnounceOutcome, AnnounceError> {
    let me = hotkey.account();
    let neurons = client.neurons(axon.netuid).await?;
    let not_registered = || AnnounceError::NotRegistered {
        hotkey: me.to_ss58(),
        netuid: axon.netuid,
    };
    let neuron = neurons
        .iter()
        .find(|n| n.hotkey == me)
        .ok_or_else(not_registered)?;
    let current = &neuron.axon_info;
    if (
        current.ip,
        current.port,
        current.ip_type,
        current.protocol,
        current.version,
    ) == (
        axon.ip,
        axon.port,
        axon.ip_type,
        axon.protocol,
        axon.version,
    ) {
        return Ok(AnnounceOutcome::Unchanged);
    }
    let limit = client
        .storage_u64(SUBTENSOR, "ServingRateLimit", &[&axon.netuid.encode()])
        .await?;
    let head = client.head_block_number().await?;
    // The extrinsic lands in a later block than the head: judging at the head is
    // conservative by a block.
    let since = head.saturating_sub(current.block);
    if current.block != 0 && since < limit {
        return Ok(AnnounceOutcome::RateLimited {
            blocks_left: limit - since,
        });
    }
    let call = calls::serve_axon(client.metadata(), axon)?;
    match submit::sign_and_submit(client, hotkey, &call, options).await {
        Ok(inclusion) => Ok(AnnounceOutcome::Announced(inclusion)),
        // Deregistered between the read and the block.
        Err(SubmitError::Dispatch { error, .. }) if error == "HotKeyNotRegisteredInSubNet" => {
            Err(not_registered())
        }
        Err(e) => Err(e.into()),
    }
}
