//! The chain flags shared by `attesta axon` and `attesta validator` (btcli names the
//! endpoint `--subtensor.chain_endpoint`; ours is `--chain-endpoint`, with `--netuid`).

use clap::Args;

/// Where the chain is and which subnet.
#[derive(Args, Debug, Clone, Default)]
pub struct ChainArgs {
    /// The chain's JSON-RPC WebSocket, ws:// or wss:// (a subtensor node). `axon`: admit the
    /// subnet's validator-permit holders; `validator`: validate the subnet's neurons that
    /// serve an axon instead of the node file.
    #[arg(
        long,
        env = "ATTESTA_CHAIN_ENDPOINT",
        value_name = "URL",
        requires = "netuid"
    )]
    pub chain_endpoint: Option<String>,
    /// The subnet (with --chain-endpoint).
    #[arg(
        long,
        env = "ATTESTA_NETUID",
        value_name = "N",
        requires = "chain_endpoint"
    )]
    pub netuid: Option<u16>,
}

impl ChainArgs {
    /// Both flags, when given.
    pub fn chain(&self) -> Option<(String, u16)> {
        Some((self.chain_endpoint.clone()?, self.netuid?))
    }
}
