//! btcli-named wallet flags: `--wallet-path`, `--wallet-name`, `--wallet-hotkey`, and
//! `--hotkey-uri` for public dev keys (`//Alice`) only.

use std::path::PathBuf;

use anyhow::Context as _;
use attesta_bittensor::wallet::{DEFAULT_WALLET_PATH, WalletSpec};
use attesta_bittensor::{Hotkey, keys::KeyError};
use clap::Args;

/// Where the hotkey comes from.
#[derive(Args, Debug, Clone)]
pub struct WalletArgs {
    /// Wallets directory (btcli's layout: <path>/<name>/hotkeys/<hotkey>).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_WALLET_PATH)]
    pub wallet_path: PathBuf,
    /// Wallet (coldkey) name.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub wallet_name: String,
    /// Hotkey name inside the wallet. The keyfile must be unencrypted.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub wallet_hotkey: String,
    /// A PUBLIC development key instead of a wallet, e.g. `//Alice` (tests and devnets only).
    #[arg(long, value_name = "URI", conflicts_with_all = ["wallet_name", "wallet_hotkey"])]
    pub hotkey_uri: Option<String>,
}

impl WalletArgs {
    /// Loads the hotkey the flags name.
    pub fn load(&self) -> anyhow::Result<Hotkey> {
        if let Some(uri) = &self.hotkey_uri {
            let key = Hotkey::from_dev_uri(uri).map_err(|e: KeyError| anyhow::anyhow!(e))?;
            tracing::warn!(hotkey = %key.account(), "using a PUBLIC dev key: never use it on a real network");
            return Ok(key);
        }
        let spec = WalletSpec {
            path: self.wallet_path.clone(),
            name: self.wallet_name.clone(),
            hotkey: self.wallet_hotkey.clone(),
        };
        spec.load_hotkey()
            .with_context(|| format!("loading hotkey `{}` of wallet `{}`", spec.hotkey, spec.name))
    }
}
