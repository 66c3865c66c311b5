//! Commit-reveal v4: weights timelock-encrypted to a drand quicknet round.
//!
//! The chain (`commit_timelocked_weights`) stores the ciphertext and decrypts it by itself once
//! the drand pulse for the round is on chain. The ciphertext is `tle::<TinyBLS381, AES-GCM>` of
//! the SCALE [`WeightsTlockPayload`], to the identity `sha256(round as u64 big-endian)`, in the
//! ark compressed form of the `tle` version the chain pins. That form differs from the crates
//! registry's `timelock` 0.3.0 (which does the cryptography here) in one way: the IBE header
//! fields `v` and `w` are byte vectors there, so each carries an 8-byte little-endian length
//! (always 32) that 0.3.0's fixed arrays do not. [`encrypt_to_round`] inserts the two prefixes
//! and [`decrypt_with_signature`] checks and removes them.
//!
//! Randomness is injected as a 32-byte seed per commit: whoever knows it can decrypt the
//! commit before its round, so it must be fresh and secret (the OS RNG, or a test's constant).

use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use parity_scale_codec::{Decode, Encode};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use sha2::Digest;
use timelock::block_ciphers::AESGCMBlockCipherProvider;
use timelock::engines::EngineBLS;
use timelock::engines::drand::TinyBLS381;
use timelock::ibe::fullident::{Ciphertext as IbeCiphertext, Identity};
use timelock::tlock::{TLECiphertext, tld, tle};

/// drand quicknet's public key (compressed G2), the key the chain's drand pallet pins.
pub const QUICKNET_PUBLIC_KEY_HEX: &str = "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a";
/// drand quicknet's genesis time (Unix seconds).
pub const QUICKNET_GENESIS_SECS: u64 = 1_692_803_367;
/// drand quicknet's period (seconds per round).
pub const QUICKNET_PERIOD_SECS: u64 = 3;
/// The chain's bound on the `commit` argument (`BoundedVec<u8, 5000>`).
pub const MAX_COMMIT_BYTES: usize = 5000;

/// Compressed sizes of the curve points in the wire form.
const G2_BYTES: usize = 96;
const G1_BYTES: usize = 48;
/// The IBE header's `v` and `w` (each a 32-byte hash).
const HASH_BYTES: usize = 32;
/// The AES-GCM nonce the `tle` cipher suite uses.
const NONCE_BYTES: usize = 12;
/// The cipher suite tag of AES-GCM in `tle`.
const CIPHER_SUITE: &[u8] = b"AES_GCM_";

/// What the chain decrypts a v4 commit to (SCALE): the committing hotkey's 32-byte account,
/// uids and u16 weights (same length), and the version key.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct WeightsTlockPayload {
    /// The hotkey's public key (32 bytes), as the chain checks it against the signer.
    pub hotkey: Vec<u8>,
    /// Destination uids.
    pub uids: Vec<u16>,
    /// Weights, max-upscaled to 65535 (see the validator's `to_u16`).
    pub values: Vec<u16>,
    /// The subnet's weights version key the weights are set with.
    pub version_key: u64,
}

/// Why a commit could not be made or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlockError {
    /// A drand public key that is not a compressed G2 point of the right subgroup.
    #[error("drand public key is not a valid compressed G2 point: {0}")]
    PublicKey(#[source] ark_serialize::SerializationError),
    /// A round signature that is not a compressed G1 point of the right subgroup.
    #[error("drand round signature is not a valid compressed G1 point: {0}")]
    Signature(#[source] ark_serialize::SerializationError),
    /// The ciphertext does not have the wire form's shape.
    #[error("timelock ciphertext is malformed: {0}")]
    Malformed(&'static str),
    /// Encryption failed inside `timelock`.
    #[error("timelock encryption failed: {0}")]
    Encrypt(String),
    /// The signature does not open the ciphertext (wrong round or tampered bytes).
    #[error("timelock decryption failed: {0}")]
    Decrypt(String),
    /// The ciphertext would exceed the chain's commit bound.
    #[error("commit is {len} bytes; the chain accepts at most {MAX_COMMIT_BYTES}")]
    TooLarge {
        /// The ciphertext's length.
        len: usize,
    },
    /// The decrypted bytes are not a SCALE [`WeightsTlockPayload`].
    #[error("decrypted commit is not a weights payload: {0}")]
    Payload(#[source] parity_scale_codec::Error),
}

/// A drand beacon's public key (quicknet, or a test's own key).
#[derive(Clone, Debug)]
pub struct DrandKey(<TinyBLS381 as EngineBLS>::PublicKeyGroup);

impl DrandKey {
    /// drand quicknet's key.
    pub fn quicknet() -> Self {
        let mut bytes = [0u8; G2_BYTES];
        // A constant of the right length: decoding cannot fail.
        if hex::decode_to_slice(QUICKNET_PUBLIC_KEY_HEX, &mut bytes).is_err() {
            unreachable!("the quicknet key constant is 96 bytes of hex");
        }
        match Self::from_compressed(&bytes) {
            Ok(k) => k,
            Err(_) => unreachable!("the quicknet key constant is a valid G2 point"),
        }
    }

    /// A key from its 96-byte compressed form (checked to be on the curve and in G2).
    pub fn from_compressed(bytes: &[u8; G2_BYTES]) -> Result<Self, TlockError> {
        <TinyBLS381 as EngineBLS>::PublicKeyGroup::deserialize_compressed(&bytes[..])
            .map(DrandKey)
            .map_err(TlockError::PublicKey)
    }

    /// The key's 96-byte compressed form.
    pub fn to_compressed(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(G2_BYTES);
        // Writing a point to a Vec cannot fail.
        let _ = self.0.serialize_compressed(&mut out);
        out
    }
}

/// The message a round's signature signs (and the IBE identity): `sha256(round as u64 BE)`.
pub fn round_message(round: u64) -> [u8; 32] {
    sha2::Sha256::digest(round.to_be_bytes()).into()
}

fn identity(round: u64) -> Identity {
    Identity::new(b"", &round_message(round))
}

/// Encrypts `plaintext` so that it opens with the signature of `round` by `key`, in the
/// chain's wire form. `seed` supplies all the randomness (AES key, IBE sigma, AES nonce).
pub fn encrypt_to_round(
    key: &DrandKey,
    round: u64,
    plaintext: &[u8],
    seed: [u8; 32],
) -> Result<Vec<u8>, TlockError> {
    let mut rng = ChaCha20Rng::from_seed(seed);
    let mut aes_key = [0u8; 32];
    rng.fill_bytes(&mut aes_key);
    let ct = tle::<TinyBLS381, AESGCMBlockCipherProvider, _>(
        key.0,
        aes_key,
        plaintext,
        identity(round),
        &mut rng,
    )
    .map_err(|e| TlockError::Encrypt(format!("{e:?}")))?;
    let mut out = Vec::with_capacity(plaintext.len() + 300);
    ct.header
        .u
        .serialize_compressed(&mut out)
        .map_err(|e| TlockError::Encrypt(e.to_string()))?;
    for field in [&ct.header.v, &ct.header.w] {
        out.extend_from_slice(&(HASH_BYTES as u64).to_le_bytes());
        out.extend_from_slice(field);
    }
    for vec in [&ct.body, &ct.cipher_suite] {
        out.extend_from_slice(&(vec.len() as u64).to_le_bytes());
        out.extend_from_slice(vec);
    }
    if out.len() > MAX_COMMIT_BYTES {
        return Err(TlockError::TooLarge { len: out.len() });
    }
    Ok(out)
}

/// Encrypts a weights payload to `round` of `key` (the `commit` argument of
/// `commit_timelocked_weights`).
pub fn encrypt_weights(
    key: &DrandKey,
    round: u64,
    payload: &WeightsTlockPayload,
    seed: [u8; 32],
) -> Result<Vec<u8>, TlockError> {
    encrypt_to_round(key, round, &payload.encode(), seed)
}

/// A bounds-checked reader over untrusted ciphertext bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TlockError> {
        if self.0.len() < n {
            return Err(TlockError::Malformed(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// An ark `Vec<u8>`: u64 little-endian length, then the bytes (the length is checked
    /// against what is left before anything is allocated).
    fn vec(&mut self, what: &'static str) -> Result<&'a [u8], TlockError> {
        let len = self.take(8, what)?;
        let mut le = [0u8; 8];
        le.copy_from_slice(len);
        let n = usize::try_from(u64::from_le_bytes(le)).map_err(|_| TlockError::Malformed(what))?;
        self.take(n, what)
    }
}

/// Opens a commit in the chain's wire form with the BLS signature of its round (48 bytes,
/// compressed G1). Every length is checked before use; the bytes may come from anyone.
pub fn decrypt_with_signature(commit: &[u8], signature: &[u8]) -> Result<Vec<u8>, TlockError> {
    if commit.len() > MAX_COMMIT_BYTES {
        return Err(TlockError::TooLarge { len: commit.len() });
    }
    if signature.len() != G1_BYTES {
        return Err(TlockError::Malformed("signature is not 48 bytes"));
    }
    let sig = <TinyBLS381 as EngineBLS>::SignatureGroup::deserialize_compressed(signature)
        .map_err(TlockError::Signature)?;
    let mut r = Reader(commit);
    let u_bytes = r.take(G2_BYTES, "header u")?;
    let u = <TinyBLS381 as EngineBLS>::PublicKeyGroup::deserialize_compressed(u_bytes)
        .map_err(|_| TlockError::Malformed("header u is not a G2 point"))?;
    let mut hashes = [[0u8; HASH_BYTES]; 2];
    for h in &mut hashes {
        let field = r.vec("header v/w")?;
        if field.len() != HASH_BYTES {
            return Err(TlockError::Malformed("header v/w is not 32 bytes"));
        }
        h.copy_from_slice(field);
    }
    let body = r.vec("body")?;
    let suite = r.vec("cipher suite")?;
    if !r.0.is_empty() {
        return Err(TlockError::Malformed("trailing bytes"));
    }
    if suite != CIPHER_SUITE {
        return Err(TlockError::Malformed("cipher suite is not AES_GCM_"));
    }
    // The body is itself two ark vectors (AES ciphertext, nonce); `tld` decodes it with
    // ark, which allocates the length it reads, so the lengths are checked here first.
    let mut b = Reader(body);
    b.vec("aes ciphertext")?;
    if b.vec("aes nonce")?.len() != NONCE_BYTES || !b.0.is_empty() {
        return Err(TlockError::Malformed("aes nonce"));
    }
    let [v, w] = hashes;
    let ct = TLECiphertext::<TinyBLS381> {
        header: IbeCiphertext { u, v, w },
        body: body.to_vec(),
        cipher_suite: suite.to_vec(),
    };
    tld::<TinyBLS381, AESGCMBlockCipherProvider>(ct, sig)
        .map_err(|e| TlockError::Decrypt(format!("{e:?}")))
}

/// Opens a weights commit and decodes its payload (all input consumed).
pub fn decrypt_weights(commit: &[u8], signature: &[u8]) -> Result<WeightsTlockPayload, TlockError> {
    let plain = decrypt_with_signature(commit, signature)?;
    WeightsTlockPayload::decode(&mut &plain[..])
        .and_then(|p| {
            if plain.len() == p.encoded_size() {
                Ok(p)
            } else {
                Err("trailing bytes after the payload".into())
            }
        })
        .map_err(TlockError::Payload)
}

/// A drand beacon with a known secret, for tests and stand-ins: it signs rounds, so commits
/// to its key can be opened at once. Never a substitute for quicknet on a network.
#[derive(Clone)]
pub struct TestBeacon {
    secret: <TinyBLS381 as EngineBLS>::Scalar,
}

impl std::fmt::Debug for TestBeacon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestBeacon").finish_non_exhaustive()
    }
}

impl TestBeacon {
    /// A beacon whose secret is derived from `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        use ark_ff::PrimeField as _;
        TestBeacon {
            secret: <TinyBLS381 as EngineBLS>::Scalar::from_le_bytes_mod_order(&seed),
        }
    }

    /// Its public key.
    pub fn key(&self) -> DrandKey {
        let g = <<TinyBLS381 as EngineBLS>::PublicKeyGroup as ark_ec::PrimeGroup>::generator();
        DrandKey(g * self.secret)
    }

    /// The signature of `round` (compressed G1, 48 bytes).
    pub fn sign_round(&self, round: u64) -> Vec<u8> {
        let sig = identity(round).extract::<TinyBLS381>(self.secret).0;
        let mut out = Vec::with_capacity(G1_BYTES);
        let _ = sig.serialize_compressed(&mut out);
        out
    }
}
