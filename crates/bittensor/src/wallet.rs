//! Hotkeys from the Bittensor wallet layout on disk: `<path>/<name>/hotkeys/<hotkey>`, a
//! JSON keyfile as the Python wallet writes it (`secretSeed`, `privateKey`, `publicKey`,
//! `ss58Address`, ...). Only unencrypted keyfiles can be opened; an encrypted one is a
//! typed error, never a prompt.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use crate::keys::{Hotkey, KeyError};
use crate::ss58::AccountId;

/// btcli's default wallet directory (`--wallet-path`).
pub const DEFAULT_WALLET_PATH: &str = "~/.bittensor/wallets";

/// Largest keyfile read (real ones are under 1 KiB).
const MAX_KEYFILE_BYTES: u64 = 64 * 1024;

/// Where a hotkey lives: btcli's `--wallet-path`, `--wallet-name`, `--wallet-hotkey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletSpec {
    /// The wallets directory (`~` expands to `$HOME`).
    pub path: PathBuf,
    /// The wallet (coldkey) name.
    pub name: String,
    /// The hotkey name inside the wallet.
    pub hotkey: String,
}

impl WalletSpec {
    /// The hotkey's keyfile: `<path>/<name>/hotkeys/<hotkey>`.
    pub fn hotkey_file(&self) -> Result<PathBuf, WalletError> {
        for part in [&self.name, &self.hotkey] {
            // A name is one path component: no traversal out of the wallets directory.
            if part.is_empty() || part.contains(['/', '\\']) || part == "." || part == ".." {
                return Err(WalletError::BadName(part.clone()));
            }
        }
        Ok(expand_home(&self.path)
            .join(&self.name)
            .join("hotkeys")
            .join(&self.hotkey))
    }

    /// Loads the hotkey.
    pub fn load_hotkey(&self) -> Result<Hotkey, WalletError> {
        load_keyfile(&self.hotkey_file()?)
    }
}

fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// Why a hotkey could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    /// The keyfile could not be read.
    #[error("reading keyfile {path}: {source}")]
    Io {
        /// The keyfile.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A wallet or hotkey name that is not a single path component.
    #[error("wallet or hotkey name {0:?} is not a plain name")]
    BadName(String),
    /// The keyfile is encrypted (NaCl, Ansible vault or legacy Fernet).
    #[error(
        "keyfile {path} is encrypted ({kind}); attesta opens only unencrypted hotkeys (regenerate the hotkey without a password, e.g. `btcli wallet new_hotkey --no-use-password`)"
    )]
    Encrypted {
        /// The keyfile.
        path: PathBuf,
        /// Which encryption its header names.
        kind: &'static str,
    },
    /// Not the JSON keyfile format.
    #[error("keyfile {path} is not a JSON keyfile: {reason}")]
    Malformed {
        /// The keyfile.
        path: PathBuf,
        /// What is wrong (never secret material).
        reason: String,
    },
    /// A key type other than sr25519.
    #[error("keyfile {path} holds a {crypto} key; hotkeys are sr25519")]
    NotSr25519 {
        /// The keyfile.
        path: PathBuf,
        /// The `cryptoType` it declares.
        crypto: String,
    },
    /// The secret's public key differs from the one the file states.
    #[error("keyfile {path}: the secret does not match the stated public key / address")]
    Mismatch {
        /// The keyfile.
        path: PathBuf,
    },
    /// The secret is not a valid sr25519 secret.
    #[error("keyfile {path}: {source}")]
    Key {
        /// The keyfile.
        path: PathBuf,
        /// The cause.
        #[source]
        source: KeyError,
    },
}

/// The fields of a Python keyfile this crate reads (the rest is ignored).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct KeyfileJson {
    crypto_type: Option<serde_json::Value>,
    secret_seed: Option<String>,
    private_key: Option<String>,
    public_key: Option<String>,
    account_id: Option<String>,
    ss58_address: Option<String>,
}

impl Drop for KeyfileJson {
    fn drop(&mut self) {
        self.secret_seed.zeroize();
        self.private_key.zeroize();
    }
}

/// Reads a keyfile from disk (at most 64 KiB).
pub fn load_keyfile(path: &Path) -> Result<Hotkey, WalletError> {
    let io = |source| WalletError::Io {
        path: path.to_path_buf(),
        source,
    };
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEYFILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    parse_keyfile(&bytes, path)
}

/// Parses keyfile bytes (`path` only names the file in errors).
pub fn parse_keyfile(bytes: &[u8], path: &Path) -> Result<Hotkey, WalletError> {
    let malformed = |reason: &str| WalletError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let text = bytes.trim_ascii_start();
    for (magic, kind) in [
        (&b"$NACL"[..], "NaCl secretbox"),
        (b"$ANSIBLE_VAULT", "Ansible vault"),
        (b"gAAAAA", "Fernet"),
    ] {
        if text.starts_with(magic) {
            return Err(WalletError::Encrypted {
                path: path.to_path_buf(),
                kind,
            });
        }
    }
    // serde_json's message can quote input; keep only its position.
    let json: KeyfileJson = serde_json::from_slice(text).map_err(|e| WalletError::Malformed {
        path: path.to_path_buf(),
        reason: format!("invalid JSON at line {} column {}", e.line(), e.column()),
    })?;
    if let Some(t) = &json.crypto_type {
        // 1 = sr25519 in the Python wallet; 0 = ed25519, 2 = ecdsa.
        if t.as_u64() != Some(1) {
            return Err(WalletError::NotSr25519 {
                path: path.to_path_buf(),
                crypto: t.to_string(),
            });
        }
    }
    let key_err = |source| WalletError::Key {
        path: path.to_path_buf(),
        source,
    };
    let stated = stated_account(&json).map_err(&malformed)?;
    let candidates: Vec<Hotkey> = if let Some(seed) = &json.secret_seed {
        let seed =
            decode_hex::<32>(seed).ok_or_else(|| malformed("secretSeed is not 32 bytes of hex"))?;
        vec![Hotkey::from_seed(&seed).map_err(key_err)?]
    } else if let Some(sk) = &json.private_key {
        let sk =
            decode_hex::<64>(sk).ok_or_else(|| malformed("privateKey is not 64 bytes of hex"))?;
        // Writers differ on the 64-byte form; the stated public key decides which it is.
        [false, true]
            .into_iter()
            .filter_map(|ed| Hotkey::from_secret_bytes(&sk, ed).ok())
            .collect()
    } else {
        return Err(malformed("no secretSeed or privateKey"));
    };
    match stated {
        Some(account) => candidates
            .into_iter()
            .find(|k| k.account() == account)
            .ok_or(WalletError::Mismatch {
                path: path.to_path_buf(),
            }),
        // Without a stated key only the seed is unambiguous.
        None if json.secret_seed.is_some() => candidates
            .into_iter()
            .next()
            .ok_or_else(|| malformed("no key")),
        None => Err(malformed(
            "privateKey without publicKey/ss58Address cannot be checked",
        )),
    }
}

/// The account the file states (all stated forms must agree), if any.
fn stated_account(json: &KeyfileJson) -> Result<Option<AccountId>, &'static str> {
    let mut found: Option<AccountId> = None;
    let mut agree = |a: AccountId| -> Result<(), &'static str> {
        match found {
            Some(f) if f != a => Err("publicKey, accountId and ss58Address disagree"),
            _ => {
                found = Some(a);
                Ok(())
            }
        }
    };
    for hexed in [&json.public_key, &json.account_id].into_iter().flatten() {
        agree(AccountId(
            decode_hex::<32>(hexed).ok_or("publicKey/accountId is not 32 bytes of hex")?,
        ))?;
    }
    if let Some(ss58) = &json.ss58_address {
        agree(AccountId::from_ss58(ss58).map_err(|_| "ss58Address is not a prefix-42 address")?)?;
    }
    Ok(found)
}

fn decode_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let t = text.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    let mut out = [0u8; N];
    hex::decode_to_slice(t, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A keyfile the Python wallet (bittensor-wallet 4.1.1) wrote for a throwaway hotkey.
    const PY_KEYFILE: &str = r#"{"cryptoType":1,"privateKey":"0xb024a0705336d6494e8fc47da75436c230d2b293a037a1b812590556a116e308bd66cb299f01aeb019cdd3d24ec53c129ca026dfe1398b8e067ad50949f35c29","accountId":"0xb451816b41cf6a03dd8c79d487d94e4b7080498cff19729e9a4beda3fa9cf131","secretPhrase":"collect trouble vocal episode depth slot dilemma insect world brain market need","secretSeed":"0x35781ac389a56979c5b4a68b9fc4146f8fa09ffdaf471bab7f0b66ed127e7ba9","ss58Address":"5G98gtjtmcmLJcW6J7jBsgDxYyBtnytjyprAajzNpzdsK1fH","publicKey":"0xb451816b41cf6a03dd8c79d487d94e4b7080498cff19729e9a4beda3fa9cf131"}"#;
    const PY_ADDRESS: &str = "5G98gtjtmcmLJcW6J7jBsgDxYyBtnytjyprAajzNpzdsK1fH";

    fn p() -> &'static Path {
        Path::new("hotkeys/h")
    }

    #[test]
    fn opens_the_python_keyfile_from_seed_and_from_private_key_alone() {
        let k = parse_keyfile(PY_KEYFILE.as_bytes(), p()).unwrap();
        assert_eq!(k.account().to_ss58(), PY_ADDRESS);
        let mut v: serde_json::Value = serde_json::from_str(PY_KEYFILE).unwrap();
        v.as_object_mut().unwrap().remove("secretSeed");
        let k = parse_keyfile(v.to_string().as_bytes(), p()).unwrap();
        assert_eq!(k.account().to_ss58(), PY_ADDRESS);
    }

    #[test]
    fn refuses_encrypted_mismatched_and_foreign_keyfiles() {
        for enc in ["$NACL\x00abc", "$ANSIBLE_VAULT;1.1;AES256\n", "gAAAAABk"] {
            assert!(matches!(
                parse_keyfile(enc.as_bytes(), p()),
                Err(WalletError::Encrypted { .. })
            ));
        }
        let other = PY_KEYFILE.replace(
            PY_ADDRESS,
            "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
        );
        assert!(matches!(
            parse_keyfile(other.as_bytes(), p()),
            Err(WalletError::Malformed { .. })
        ));
        let mut v: serde_json::Value = serde_json::from_str(PY_KEYFILE).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("ss58Address");
        o.insert(
            "publicKey".into(),
            "0xd43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d".into(),
        );
        o.insert(
            "accountId".into(),
            "0xd43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d".into(),
        );
        assert!(matches!(
            parse_keyfile(v.to_string().as_bytes(), p()),
            Err(WalletError::Mismatch { .. })
        ));
        let ed = PY_KEYFILE.replace("\"cryptoType\":1", "\"cryptoType\":0");
        assert!(matches!(
            parse_keyfile(ed.as_bytes(), p()),
            Err(WalletError::NotSr25519 { .. })
        ));
        let err = parse_keyfile(b"{\"secretSeed\": \"0xzz\"}", p()).unwrap_err();
        assert!(matches!(err, WalletError::Malformed { .. }));
        assert!(
            !err.to_string().contains("zz"),
            "errors never quote secrets"
        );
    }

    #[test]
    fn names_are_single_components() {
        let spec = |name: &str| WalletSpec {
            path: PathBuf::from("/w"),
            name: name.into(),
            hotkey: "default".into(),
        };
        assert_eq!(
            spec("miner").hotkey_file().unwrap(),
            Path::new("/w/miner/hotkeys/default")
        );
        for bad in ["..", "a/b", ""] {
            assert!(matches!(
                spec(bad).hotkey_file(),
                Err(WalletError::BadName(_))
            ));
        }
    }
}
