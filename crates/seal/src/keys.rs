//! The node's key set: generated in memory at start, never serialised.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hpke::kem::X25519HkdfSha256;
use hpke::rand_core::CryptoRng;
use hpke::{Deserializable, Kem, Serializable};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::hpke_receiver::Receiver;

use crate::{KEYSET_DOMAIN, REPORT_DATA_DOMAIN};

/// Length of [`PublicKeySet::to_bytes`]: version, HPKE key, signing key.
pub const KEYSET_ENCODING_LEN: usize = 65;
/// Version byte of the key-set encoding; it pins the suites (X25519 HPKE, Ed25519).
const KEYSET_VERSION: u8 = 1;

pub(crate) type HpkeKem = X25519HkdfSha256;
pub(crate) type HpkePublicKey = <HpkeKem as Kem>::PublicKey;

/// The public half of a node's key set, as bound into its evidence.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublicKeySet {
    /// X25519 HPKE public key (RFC 9180 `SerializePublicKey`).
    #[serde(with = "hex::serde")]
    pub hpke_pk: [u8; 32],
    /// Ed25519 receipt-signing public key.
    #[serde(with = "hex::serde")]
    pub sign_pk: [u8; 32],
}

impl std::fmt::Debug for PublicKeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKeySet")
            .field("hpke_pk", &hex::encode(self.hpke_pk))
            .field("sign_pk", &hex::encode(self.sign_pk))
            .finish()
    }
}

impl PublicKeySet {
    /// Canonical encoding: `0x01 ‖ hpke_pk ‖ sign_pk` (65 bytes); Nitro `public_key`.
    pub fn to_bytes(&self) -> [u8; KEYSET_ENCODING_LEN] {
        let mut out = [0u8; KEYSET_ENCODING_LEN];
        let (v, rest) = out.split_at_mut(1);
        let (h, s) = rest.split_at_mut(32);
        v.copy_from_slice(&[KEYSET_VERSION]);
        h.copy_from_slice(&self.hpke_pk);
        s.copy_from_slice(&self.sign_pk);
        out
    }

    /// Parses [`PublicKeySet::to_bytes`]; `None` for any other length or version.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&version, rest) = bytes.split_first()?;
        if version != KEYSET_VERSION || rest.len() != 64 {
            return None;
        }
        let (h, s) = rest.split_at(32);
        Some(PublicKeySet {
            hpke_pk: h.try_into().ok()?,
            sign_pk: s.try_into().ok()?,
        })
    }

    /// `SHA-256("attesta/v1/keyset" ‖ hpke_pk ‖ sign_pk)`.
    pub fn digest(&self) -> [u8; 32] {
        keyset_digest(&self.hpke_pk, &self.sign_pk)
    }

    pub(crate) fn hpke_public(&self) -> Option<HpkePublicKey> {
        HpkePublicKey::from_bytes(&self.hpke_pk).ok()
    }

    pub(crate) fn verifying_key(&self) -> Option<VerifyingKey> {
        VerifyingKey::from_bytes(&self.sign_pk).ok()
    }
}

/// `SHA-256("attesta/v1/keyset" ‖ hpke_pk ‖ sign_pk)`: what evidence binds.
pub fn keyset_digest(hpke_pk: &[u8; 32], sign_pk: &[u8; 32]) -> [u8; 32] {
    use sha2_11::Digest;
    let mut h = sha2_11::Sha256::new();
    h.update(KEYSET_DOMAIN);
    h.update(hpke_pk);
    h.update(sign_pk);
    h.finalize().into()
}

/// `SHA-512("attesta/v1/report-data" ‖ keyset_digest ‖ nonce)`: the 64-byte
/// report data of TDX, SEV-SNP and SGX evidence.
pub fn report_data(keyset_digest: &[u8; 32], nonce: &[u8]) -> [u8; 64] {
    use sha2_11::Digest;
    let mut h = sha2_11::Sha512::new();
    h.update(REPORT_DATA_DOMAIN);
    h.update(keyset_digest);
    h.update(nonce);
    h.finalize().into()
}

/// The node's secret key set. Lives in enclave memory only: no `Serialize`,
/// a `Debug` that prints public keys only, secrets zeroized on drop.
pub struct NodeKeys {
    /// Opens requests: the HPKE private key, held by aws-lc (cleared when freed).
    pub(crate) receiver: Receiver,
    pub(crate) sign_sk: SigningKey,
    public: PublicKeySet,
    digest: [u8; 32],
}

impl std::fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKeys")
            .field("public", &self.public)
            .field("keyset_digest", &hex::encode(self.digest))
            .finish_non_exhaustive()
    }
}

impl NodeKeys {
    /// Fresh keys from `rng` (the node passes the OS CSPRNG).
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut hpke_ikm = [0u8; 32];
        let mut sign_seed = [0u8; 32];
        rng.fill_bytes(&mut hpke_ikm);
        rng.fill_bytes(&mut sign_seed);
        let keys = Self::from_secret_bytes(&hpke_ikm, &sign_seed);
        hpke_ikm.zeroize();
        sign_seed.zeroize();
        keys
    }

    /// Deterministic keys: HPKE `DeriveKeyPair(hpke_ikm)` and the Ed25519 key
    /// with seed `sign_seed`. For test vectors; a node uses [`NodeKeys::generate`].
    pub fn from_secret_bytes(hpke_ikm: &[u8; 32], sign_seed: &[u8; 32]) -> Self {
        let (hpke_sk, hpke_pk) = HpkeKem::derive_keypair(hpke_ikm);
        let sign_sk = SigningKey::from_bytes(sign_seed);
        let public = PublicKeySet {
            hpke_pk: hpke_pk.to_bytes().into(),
            sign_pk: sign_sk.verifying_key().to_bytes(),
        };
        let digest = public.digest();
        let sk_bytes = zeroize::Zeroizing::new(<[u8; 32]>::from(hpke_sk.to_bytes()));
        // DeriveKeyPair clamps nothing into an invalid scalar: every 32 bytes are an X25519
        // private key, so aws-lc accepts them.
        #[allow(clippy::expect_used)]
        let receiver = Receiver::new(&sk_bytes, public.hpke_pk, &crate::channel::info(&digest))
            .expect("aws-lc accepts every 32-byte X25519 private key");
        NodeKeys {
            receiver,
            sign_sk,
            digest,
            public,
        }
    }

    /// The public key set.
    pub fn public(&self) -> &PublicKeySet {
        &self.public
    }

    /// [`keyset_digest`] of the public key set.
    pub fn keyset_digest(&self) -> [u8; 32] {
        self.digest
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.sign_sk.sign(message).to_bytes()
    }
}
