//! sr25519 hotkeys: signing and verification with the `substrate` context, the way
//! Bittensor's SDK signs dendrite requests, and keys from dev URIs (`//Alice`).

use std::fmt;

use schnorrkel::derive::ChainCode;
use schnorrkel::{ExpansionMode, Keypair, MiniSecretKey, PublicKey, SecretKey, signing_context};

use crate::ss58::AccountId;

/// The signing context Substrate (and so Bittensor) uses for sr25519.
pub const SIGNING_CONTEXT: &[u8] = b"substrate";

/// The mini secret key of Substrate's public development phrase
/// (`bottom drive obey lake curtain smoke basket hold race lonely fit walk`), the
/// root of `//Alice`, `//Bob`, ... These keys are public: never use them on a network.
const DEV_SEED: [u8; 32] = [
    0xfa, 0xc7, 0x95, 0x9d, 0xbf, 0xe7, 0x2f, 0x05, 0x2e, 0x5a, 0x0c, 0x3c, 0x8d, 0x65, 0x30, 0xf2,
    0x02, 0xb0, 0x2f, 0xd8, 0xf9, 0xf5, 0xca, 0x35, 0x80, 0xec, 0x8d, 0xeb, 0x77, 0x97, 0x47, 0x9e,
];

/// A 64-byte sr25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// The header form the SDK uses: `0x` + 128 lowercase hex digits.
    pub fn to_header(&self) -> String {
        format!("0x{}", hex::encode(self.0))
    }

    /// Parses `0x`-prefixed (or bare) hex of exactly 64 bytes.
    pub fn from_header(text: &str) -> Result<Self, KeyError> {
        let t = text.trim();
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        let mut out = [0u8; 64];
        hex::decode_to_slice(t, &mut out).map_err(KeyError::SignatureHex)?;
        Ok(Signature(out))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_header())
    }
}

/// Why a key could not be made or a signature not checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A secret of the wrong shape.
    #[error("invalid sr25519 secret: {0}")]
    Secret(schnorrkel::SignatureError),
    /// A URI this crate does not derive (only `//Name` hard junctions of the dev phrase).
    #[error(
        "unsupported key URI {uri:?}: only dev URIs made of hard junctions (`//Alice`, `//Bob//stash`) are supported"
    )]
    UnsupportedUri {
        /// The URI, which names only public dev keys.
        uri: String,
    },
    /// A signature header that is not 64 bytes of hex.
    #[error("signature is not 64 bytes of hex: {0}")]
    SignatureHex(#[source] hex::FromHexError),
    /// The signature does not verify for this key and message.
    #[error("signature does not verify")]
    BadSignature,
}

/// An sr25519 key pair (a Bittensor hotkey). Its secret never leaves this type.
#[derive(Clone)]
pub struct Hotkey {
    pair: Keypair,
    account: AccountId,
}

impl fmt::Debug for Hotkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hotkey")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl Hotkey {
    fn from_pair(pair: Keypair) -> Self {
        let account = AccountId(pair.public.to_bytes());
        Hotkey { pair, account }
    }

    /// The key of a 32-byte seed (a wallet's `secretSeed`, Substrate's mini secret),
    /// expanded as Substrate does (Ed25519 mode).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        let mini = MiniSecretKey::from_bytes(seed).map_err(KeyError::Secret)?;
        Ok(Self::from_pair(
            mini.expand_to_keypair(ExpansionMode::Ed25519),
        ))
    }

    /// The key of a 64-byte secret (`key ‖ nonce`) in schnorrkel's canonical form, or in
    /// its Ed25519-compatible form when `ed25519_form` is set.
    pub fn from_secret_bytes(bytes: &[u8; 64], ed25519_form: bool) -> Result<Self, KeyError> {
        let secret = if ed25519_form {
            SecretKey::from_ed25519_bytes(bytes)
        } else {
            SecretKey::from_bytes(bytes)
        }
        .map_err(KeyError::Secret)?;
        Ok(Self::from_pair(secret.to_keypair()))
    }

    /// A public development key from a URI such as `//Alice` or `//Bob//stash`: the dev
    /// phrase's key, then one hard derivation per junction, as Substrate derives them.
    /// Numeric junctions (`//0`) are u64 indices, as in Substrate.
    pub fn from_dev_uri(uri: &str) -> Result<Self, KeyError> {
        let unsupported = || KeyError::UnsupportedUri {
            uri: uri.to_owned(),
        };
        let path = uri.strip_prefix("//").ok_or_else(unsupported)?;
        let mut pair = MiniSecretKey::from_bytes(&DEV_SEED)
            .map_err(KeyError::Secret)?
            .expand_to_keypair(ExpansionMode::Ed25519);
        for junction in path.split("//") {
            // An empty junction (`///password`) or a soft one (`/x`) is not a dev key URI.
            if junction.is_empty() || junction.contains('/') {
                return Err(unsupported());
            }
            let code = chain_code(junction).ok_or_else(unsupported)?;
            let (mini, _) = pair
                .secret
                .hard_derive_mini_secret_key(Some(ChainCode(code)), b"");
            pair = mini.expand_to_keypair(ExpansionMode::Ed25519);
        }
        Ok(Self::from_pair(pair))
    }

    /// This key's account (its public key).
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// Signs `message` with the `substrate` context.
    pub fn sign(&self, message: &[u8]) -> Signature {
        let ctx = signing_context(SIGNING_CONTEXT);
        Signature(self.pair.sign(ctx.bytes(message)).to_bytes())
    }
}

/// Checks an sr25519 signature by `account` over `message` with the `substrate` context.
pub fn verify(account: &AccountId, message: &[u8], signature: &Signature) -> Result<(), KeyError> {
    let public = PublicKey::from_bytes(&account.0).map_err(|_| KeyError::BadSignature)?;
    let sig =
        schnorrkel::Signature::from_bytes(&signature.0).map_err(|_| KeyError::BadSignature)?;
    public
        .verify_simple(SIGNING_CONTEXT, message, &sig)
        .map_err(|_| KeyError::BadSignature)
}

/// Substrate's chain code of a junction: a u64 index (little-endian) when the text is a
/// number, else the SCALE encoding of the string (compact length ‖ bytes); zero-padded to
/// 32 bytes, or BLAKE2b-256 of the encoding when it is longer.
fn chain_code(junction: &str) -> Option<[u8; 32]> {
    let encoded = match junction.parse::<u64>() {
        Ok(n) => n.to_le_bytes().to_vec(),
        Err(_) => {
            let bytes = junction.as_bytes();
            let len = u16::try_from(bytes.len()).ok()?;
            let mut v = if len < 64 {
                vec![u8::try_from(len << 2).ok()?]
            } else if len < (1 << 14) {
                ((len << 2) | 1).to_le_bytes().to_vec()
            } else {
                return None;
            };
            v.extend_from_slice(bytes);
            v
        }
    };
    let mut cc = [0u8; 32];
    if encoded.len() > 32 {
        use blake2::Digest;
        let h = blake2::Blake2b::<blake2::digest::consts::U32>::digest(&encoded);
        cc.copy_from_slice(&h);
    } else {
        cc.get_mut(..encoded.len())?.copy_from_slice(&encoded);
    }
    Some(cc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_uris_give_the_well_known_keys() {
        let cases = [
            (
                "//Alice",
                "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
            ),
            ("//Bob", "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"),
            ("//Eve", "5HGjWAeFDfFCWPsjFQdVV2Msvz2XtMktvgocEZcCj68kUMaw"),
        ];
        for (uri, ss58) in cases {
            assert_eq!(Hotkey::from_dev_uri(uri).unwrap().account().to_ss58(), ss58);
        }
    }

    #[test]
    fn refuses_uris_it_cannot_derive() {
        for uri in ["Alice", "//", "//Alice/soft", "//Alice///pw", "/Alice", ""] {
            assert!(
                matches!(
                    Hotkey::from_dev_uri(uri),
                    Err(KeyError::UnsupportedUri { .. })
                ),
                "{uri}"
            );
        }
    }

    #[test]
    fn signs_and_verifies_and_refuses_other_messages_and_keys() {
        let alice = Hotkey::from_dev_uri("//Alice").unwrap();
        let bob = Hotkey::from_dev_uri("//Bob").unwrap();
        let sig = alice.sign(b"msg");
        verify(&alice.account(), b"msg", &sig).unwrap();
        assert!(verify(&alice.account(), b"msh", &sig).is_err());
        assert!(verify(&bob.account(), b"msg", &sig).is_err());
        let parsed = Signature::from_header(&sig.to_header()).unwrap();
        assert_eq!(parsed, sig);
        assert!(Signature::from_header("0x1234").is_err());
        // A signature without schnorrkel's marker bit is refused, not a panic.
        let mut raw = sig.0;
        raw[63] &= 0x7f;
        assert!(verify(&alice.account(), b"msg", &Signature(raw)).is_err());
    }
}
