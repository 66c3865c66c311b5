//! Signed extrinsics, version 4 (what the Python SDK 10.5.0 sends): building, signing with
//! the hotkey (sr25519) and decoding them back (for tests and the chain stand-in).
//!
//! Layout: `Compact<len> ‖ 0x84 ‖ MultiAddress::Id(account) ‖ MultiSignature::Sr25519(sig) ‖
//! explicit extension data ‖ call`. The signature covers `call ‖ explicit ‖ implicit`
//! (BLAKE2b-256 of it when longer than 256 bytes). The transaction extensions are the ones
//! the runtime metadata lists, in its order: the ones known here are encoded from
//! [`TxParams`]; an unknown one whose types encode to nothing is skipped; an unknown one that
//! carries data is an error (a transaction that guessed it would be refused).

use parity_scale_codec::{Compact, Decode, Encode};

use crate::keys::{self, Hotkey, Signature};
use crate::ss58::AccountId;

/// The extrinsic format version this module writes (signed bit set: `0x84`).
pub const EXTRINSIC_VERSION: u8 = 4;
/// The mortal era length used unless told otherwise (the SDK's default period).
pub const DEFAULT_ERA_PERIOD: u64 = 64;
/// The largest extrinsic accepted by [`decode_signed`] (a chain's block length is 5 MiB).
pub const MAX_EXTRINSIC_BYTES: usize = 5 << 20;
/// Payloads longer than this are signed as their BLAKE2b-256 hash.
const MAX_UNHASHED_PAYLOAD: usize = 256;
const SIGNED_BIT: u8 = 0b1000_0000;
/// `MultiAddress::Id`.
const ADDRESS_ID: u8 = 0;
/// `MultiSignature::Sr25519`.
const SIGNATURE_SR25519: u8 = 1;

/// Why an extrinsic could not be built or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtrinsicError {
    /// The metadata lists a transaction extension this module does not know that carries
    /// data: signing without it would make a transaction the chain refuses.
    #[error("transaction extension {name} carries data this client does not know how to fill")]
    UnknownExtension {
        /// The extension's identifier.
        name: String,
    },
    /// A known extension whose metadata shape is not the one expected (data where none is
    /// expected or the reverse).
    #[error("transaction extension {name} has an unexpected shape in the metadata")]
    ExtensionShape {
        /// The extension's identifier.
        name: String,
    },
    /// The runtime does not accept the extrinsic version this module writes.
    #[error("runtime accepts extrinsic versions {supported:?}, not {EXTRINSIC_VERSION}")]
    UnsupportedVersion {
        /// The versions the metadata lists.
        supported: Vec<u8>,
    },
    /// Bytes that are not a signed v4 extrinsic of this shape.
    #[error("not a signed extrinsic: {0}")]
    Malformed(&'static str),
    /// A SCALE value inside the extrinsic did not decode.
    #[error("extrinsic field {what}: {source}")]
    Scale {
        /// Which field.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: parity_scale_codec::Error,
    },
    /// The signature does not verify for the signer and payload.
    #[error("extrinsic signature: {0}")]
    Signature(#[source] keys::KeyError),
}

/// A transaction extension as the runtime metadata lists it: its identifier and whether its
/// explicit part (carried in the extrinsic) and implicit part (only signed) encode to
/// nothing. The metadata reader fills this from the type registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionInfo {
    /// The identifier (`CheckMortality`, `CheckNonce`, ...).
    pub identifier: String,
    /// Whether the explicit part's type encodes to zero bytes.
    pub explicit_empty: bool,
    /// Whether the implicit ("additional signed") part's type encodes to zero bytes.
    pub implicit_empty: bool,
}

impl ExtensionInfo {
    /// An extension entry (tests and stand-ins; real lists come from the metadata).
    pub fn new(identifier: &str, explicit_empty: bool, implicit_empty: bool) -> Self {
        ExtensionInfo {
            identifier: identifier.to_owned(),
            explicit_empty,
            implicit_empty,
        }
    }
}

/// A transaction's mortality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// Valid forever (replayable after the nonce is reused: not used by this client).
    Immortal,
    /// Valid for `period` blocks from its birth block; `phase` = birth mod `period`.
    Mortal {
        /// A power of two in `4..=65536`.
        period: u64,
        /// Position of the birth block in the period.
        phase: u64,
    },
}

impl Era {
    /// A mortal era of (about) `period` blocks starting at block `current`: the period is
    /// rounded up to a power of two and clamped to `4..=65536`, as Substrate does.
    pub fn mortal(period: u64, current: u64) -> Era {
        let period = period
            .checked_next_power_of_two()
            .unwrap_or(1 << 16)
            .clamp(4, 1 << 16);
        let phase = current % period;
        let quantize = (period >> 12).max(1);
        Era::Mortal {
            period,
            phase: phase / quantize * quantize,
        }
    }

    /// The first block at which a transaction with this era is valid, `current` being a
    /// block in its lifetime (the era's birth block when built with [`Era::mortal`]).
    pub fn birth(&self, current: u64) -> u64 {
        match *self {
            Era::Immortal => 0,
            Era::Mortal { period, phase } => (current.max(phase) - phase) / period * period + phase,
        }
    }

    /// The first block at which it is no longer valid.
    pub fn death(&self, current: u64) -> u64 {
        match *self {
            Era::Immortal => u64::MAX,
            Era::Mortal { period, .. } => self.birth(current).saturating_add(period),
        }
    }

    /// SCALE form: `0x00` for immortal, else two bytes (log2 period − 1, quantized phase).
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Era::Immortal => vec![0],
            Era::Mortal { period, phase } => {
                let quantize = (period >> 12).max(1);
                let low = u64::from(period.trailing_zeros().saturating_sub(1).clamp(1, 15));
                let encoded = low | ((phase / quantize) << 4);
                // Both parts fit: period ≤ 2^16 so phase / quantize < 2^12.
                u16::try_from(encoded).unwrap_or(0).to_le_bytes().to_vec()
            }
        }
    }

    /// Reads an era from the front of `input`.
    pub fn decode(input: &mut &[u8]) -> Result<Era, ExtrinsicError> {
        let first = take(input, 1, "era")?[0];
        if first == 0 {
            return Ok(Era::Immortal);
        }
        let second = take(input, 1, "era")?[0];
        let encoded = u64::from(u16::from_le_bytes([first, second]));
        let period = 2u64 << (encoded % 16);
        let quantize = (period >> 12).max(1);
        let phase = (encoded >> 4) * quantize;
        if period >= 4 && phase < period {
            Ok(Era::Mortal { period, phase })
        } else {
            Err(ExtrinsicError::Malformed("era phase out of its period"))
        }
    }
}

/// Everything a transaction's extensions need besides the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxParams {
    /// The signer's next account index (`system_accountNextIndex`).
    pub nonce: u64,
    /// Tip to the block author, in the chain's smallest unit.
    pub tip: u64,
    /// Mortality.
    pub era: Era,
    /// The hash of the block the era starts at (the genesis hash when immortal).
    pub era_block_hash: [u8; 32],
    /// The chain's genesis hash.
    pub genesis_hash: [u8; 32],
    /// `Core_version`'s `spec_version`.
    pub spec_version: u32,
    /// `Core_version`'s `transaction_version`.
    pub transaction_version: u32,
}

/// The explicit and implicit data of one extension, or `None` when it is unknown and
/// empty. Known extensions are checked against the metadata's shape.
fn extension_parts(
    ext: &ExtensionInfo,
    p: &TxParams,
) -> Result<(Vec<u8>, Vec<u8>), ExtrinsicError> {
    let (explicit, implicit): (Vec<u8>, Vec<u8>) = match ext.identifier.as_str() {
        "CheckNonZeroSender" | "CheckWeight" => (vec![], vec![]),
        "CheckSpecVersion" => (vec![], p.spec_version.encode()),
        "CheckTxVersion" => (vec![], p.transaction_version.encode()),
        "CheckGenesis" => (vec![], p.genesis_hash.to_vec()),
        "CheckMortality" | "CheckEra" => (p.era.encode(), p.era_block_hash.to_vec()),
        "CheckNonce" => (Compact(p.nonce).encode(), vec![]),
        "ChargeTransactionPayment" => (Compact(p.tip).encode(), vec![]),
        // Mode::Disabled, and so no metadata hash (`None`) in the signed data.
        "CheckMetadataHash" => (vec![0], vec![0]),
        _ => {
            if ext.explicit_empty && ext.implicit_empty {
                return Ok((vec![], vec![]));
            }
            return Err(ExtrinsicError::UnknownExtension {
                name: ext.identifier.clone(),
            });
        }
    };
    if explicit.is_empty() != ext.explicit_empty || implicit.is_empty() != ext.implicit_empty {
        return Err(ExtrinsicError::ExtensionShape {
            name: ext.identifier.clone(),
        });
    }
    Ok((explicit, implicit))
}

/// The explicit and implicit data of all extensions, in the metadata's order.
fn extensions_data(
    extensions: &[ExtensionInfo],
    p: &TxParams,
) -> Result<(Vec<u8>, Vec<u8>), ExtrinsicError> {
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for ext in extensions {
        let (e, i) = extension_parts(ext, p)?;
        explicit.extend_from_slice(&e);
        implicit.extend_from_slice(&i);
    }
    Ok((explicit, implicit))
}

/// The bytes the signer signs: `call ‖ explicit ‖ implicit`, hashed with BLAKE2b-256 when
/// longer than 256 bytes.
pub fn signing_payload(
    call: &[u8],
    extensions: &[ExtensionInfo],
    params: &TxParams,
) -> Result<Vec<u8>, ExtrinsicError> {
    let (explicit, implicit) = extensions_data(extensions, params)?;
    Ok(payload_of(call, &explicit, &implicit))
}

fn payload_of(call: &[u8], explicit: &[u8], implicit: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(call.len() + explicit.len() + implicit.len());
    payload.extend_from_slice(call);
    payload.extend_from_slice(explicit);
    payload.extend_from_slice(implicit);
    if payload.len() > MAX_UNHASHED_PAYLOAD {
        blake2_256(&payload).to_vec()
    } else {
        payload
    }
}

/// BLAKE2b with a 32-byte output (Substrate's `blake2_256`).
pub fn blake2_256(data: &[u8]) -> [u8; 32] {
    use blake2::Digest;
    blake2::Blake2b::<blake2::digest::consts::U32>::digest(data).into()
}

/// A signed extrinsic ready for `author_submitExtrinsic`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedExtrinsic {
    /// The SCALE bytes, length prefix included.
    pub bytes: Vec<u8>,
    /// BLAKE2b-256 of `bytes`: the hash the node reports for it.
    pub hash: [u8; 32],
}

impl SignedExtrinsic {
    /// `0x`-prefixed hex, as JSON-RPC takes it.
    pub fn to_hex(&self) -> String {
        format!("0x{}", hex::encode(&self.bytes))
    }
}

/// Checks that the runtime accepts v4 extrinsics (the metadata's list of versions).
pub fn check_version(supported: &[u8]) -> Result<(), ExtrinsicError> {
    if supported.contains(&EXTRINSIC_VERSION) {
        Ok(())
    } else {
        Err(ExtrinsicError::UnsupportedVersion {
            supported: supported.to_vec(),
        })
    }
}

/// Builds and signs a v4 extrinsic carrying the encoded `call` (pallet index, call index,
/// arguments), signed by `signer` with the runtime's `extensions`.
pub fn build_signed(
    call: &[u8],
    extensions: &[ExtensionInfo],
    params: &TxParams,
    signer: &Hotkey,
) -> Result<SignedExtrinsic, ExtrinsicError> {
    let (explicit, implicit) = extensions_data(extensions, params)?;
    let signature = signer.sign(&payload_of(call, &explicit, &implicit));
    let mut body = Vec::with_capacity(1 + 33 + 65 + explicit.len() + call.len());
    body.push(SIGNED_BIT | EXTRINSIC_VERSION);
    body.push(ADDRESS_ID);
    body.extend_from_slice(&signer.account().0);
    body.push(SIGNATURE_SR25519);
    body.extend_from_slice(&signature.0);
    body.extend_from_slice(&explicit);
    body.extend_from_slice(call);
    let mut bytes = Compact(u32::try_from(body.len()).unwrap_or(u32::MAX)).encode();
    bytes.extend_from_slice(&body);
    let hash = blake2_256(&bytes);
    Ok(SignedExtrinsic { bytes, hash })
}

/// A decoded signed extrinsic (signature not yet checked: see [`DecodedExtrinsic::verify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedExtrinsic {
    /// The signer's account.
    pub signer: AccountId,
    /// The sr25519 signature.
    pub signature: Signature,
    /// The era.
    pub era: Era,
    /// The account index.
    pub nonce: u64,
    /// The tip.
    pub tip: u64,
    /// `CheckMetadataHash`'s mode byte (0 = disabled), when the runtime has it.
    pub metadata_hash_mode: Option<u8>,
    /// The explicit extension bytes as carried.
    pub explicit: Vec<u8>,
    /// The call: pallet index, call index, arguments.
    pub call: Vec<u8>,
    /// BLAKE2b-256 of the whole extrinsic.
    pub hash: [u8; 32],
}

fn take<'a>(
    input: &mut &'a [u8],
    n: usize,
    what: &'static str,
) -> Result<&'a [u8], ExtrinsicError> {
    if input.len() < n {
        return Err(ExtrinsicError::Malformed(what));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn compact(input: &mut &[u8], what: &'static str) -> Result<u64, ExtrinsicError> {
    Compact::<u64>::decode(input)
        .map(|c| c.0)
        .map_err(|source| ExtrinsicError::Scale { what, source })
}

/// Decodes a signed v4 extrinsic (length prefix included) whose explicit extension data
/// follows `extensions`. Lengths are checked against the input before anything is read.
pub fn decode_signed(
    bytes: &[u8],
    extensions: &[ExtensionInfo],
) -> Result<DecodedExtrinsic, ExtrinsicError> {
    if bytes.len() > MAX_EXTRINSIC_BYTES {
        return Err(ExtrinsicError::Malformed("larger than a block"));
    }
    let hash = blake2_256(bytes);
    let mut input = bytes;
    let len = compact(&mut input, "length")?;
    if usize::try_from(len).ok() != Some(input.len()) {
        return Err(ExtrinsicError::Malformed("length prefix does not match"));
    }
    if take(&mut input, 1, "version")?[0] != SIGNED_BIT | EXTRINSIC_VERSION {
        return Err(ExtrinsicError::Malformed("not a signed v4 extrinsic"));
    }
    if take(&mut input, 1, "address")?[0] != ADDRESS_ID {
        return Err(ExtrinsicError::Malformed("address is not MultiAddress::Id"));
    }
    let mut account = [0u8; 32];
    account.copy_from_slice(take(&mut input, 32, "account")?);
    if take(&mut input, 1, "signature")?[0] != SIGNATURE_SR25519 {
        return Err(ExtrinsicError::Malformed("signature is not sr25519"));
    }
    let mut sig = [0u8; 64];
    sig.copy_from_slice(take(&mut input, 64, "signature")?);
    let explicit_start = input;
    let (mut era, mut nonce, mut tip, mut mode) = (Era::Immortal, 0, 0, None);
    for ext in extensions {
        match ext.identifier.as_str() {
            "CheckMortality" | "CheckEra" => era = Era::decode(&mut input)?,
            "CheckNonce" => nonce = compact(&mut input, "nonce")?,
            "ChargeTransactionPayment" => tip = compact(&mut input, "tip")?,
            "CheckMetadataHash" => mode = Some(take(&mut input, 1, "metadata hash mode")?[0]),
            _ if ext.explicit_empty => {}
            _ => {
                return Err(ExtrinsicError::UnknownExtension {
                    name: ext.identifier.clone(),
                });
            }
        }
    }
    let explicit = explicit_start[..explicit_start.len() - input.len()].to_vec();
    if input.len() < 2 {
        return Err(ExtrinsicError::Malformed("no call"));
    }
    Ok(DecodedExtrinsic {
        signer: AccountId(account),
        signature: Signature(sig),
        era,
        nonce,
        tip,
        metadata_hash_mode: mode,
        explicit,
        call: input.to_vec(),
        hash,
    })
}

impl DecodedExtrinsic {
    /// Checks the signature over the payload rebuilt from the carried explicit data and the
    /// verifier's own implicit data (genesis, versions, the era's block hash): a signature
    /// made for another chain, runtime or era does not verify.
    pub fn verify(
        &self,
        extensions: &[ExtensionInfo],
        params: &TxParams,
    ) -> Result<(), ExtrinsicError> {
        let (_, implicit) = extensions_data(extensions, params)?;
        let payload = payload_of(&self.call, &self.explicit, &implicit);
        keys::verify(&self.signer, &payload, &self.signature).map_err(ExtrinsicError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eras_encode_as_substrate() {
        // Period 64 at block 42: low 4 bits log2(64) − 1 = 5, phase 42 << 4 = 672: 0x02a5.
        let e = Era::mortal(64, 42);
        assert_eq!(
            e,
            Era::Mortal {
                period: 64,
                phase: 42
            }
        );
        assert_eq!(e.encode(), vec![0xa5, 0x02]);
        assert_eq!(Era::decode(&mut &e.encode()[..]).unwrap(), e);
        assert_eq!(e.birth(42), 42);
        assert_eq!(e.death(42), 106);
        // Rounded up to a power of two and clamped.
        assert_eq!(
            Era::mortal(10, 5),
            Era::Mortal {
                period: 16,
                phase: 5
            }
        );
        assert_eq!(
            Era::mortal(1, 5),
            Era::Mortal {
                period: 4,
                phase: 1
            }
        );
        assert!(matches!(
            Era::mortal(u64::MAX, 5),
            Era::Mortal { period: 65536, .. }
        ));
        // Large periods quantize the phase.
        let big = Era::mortal(1 << 16, 100_000);
        assert_eq!(
            big,
            Era::Mortal {
                period: 65536,
                phase: 34464 / 16 * 16
            }
        );
        assert_eq!(Era::decode(&mut &big.encode()[..]).unwrap(), big);
        assert_eq!(Era::Immortal.encode(), vec![0]);
        assert!(Era::decode(&mut &[0x01][..]).is_err());
    }

    fn exts() -> Vec<ExtensionInfo> {
        vec![
            ExtensionInfo::new("CheckNonZeroSender", true, true),
            ExtensionInfo::new("CheckSpecVersion", true, false),
            ExtensionInfo::new("CheckTxVersion", true, false),
            ExtensionInfo::new("CheckGenesis", true, false),
            ExtensionInfo::new("CheckMortality", false, false),
            ExtensionInfo::new("CheckNonce", false, true),
            ExtensionInfo::new("CheckWeight", true, true),
            ExtensionInfo::new("ChargeTransactionPayment", false, true),
            ExtensionInfo::new("SubtensorTransactionExtension", true, true),
            ExtensionInfo::new("CheckMetadataHash", false, false),
        ]
    }

    fn params() -> TxParams {
        TxParams {
            nonce: 5,
            tip: 0,
            era: Era::mortal(64, 1000),
            era_block_hash: [2; 32],
            genesis_hash: [1; 32],
            spec_version: 393,
            transaction_version: 1,
        }
    }

    #[test]
    fn builds_decodes_and_verifies() {
        let key = Hotkey::from_dev_uri("//Alice").unwrap();
        let call = [7u8, 0, 1, 2, 3];
        let x = build_signed(&call, &exts(), &params(), &key).unwrap();
        let d = decode_signed(&x.bytes, &exts()).unwrap();
        assert_eq!(d.signer, key.account());
        assert_eq!(d.call, call);
        assert_eq!(d.nonce, 5);
        assert_eq!(d.era, params().era);
        assert_eq!(d.metadata_hash_mode, Some(0));
        assert_eq!(d.hash, x.hash);
        d.verify(&exts(), &params()).unwrap();
        // Another genesis, runtime or era block: the signature does not verify.
        for change in [
            |p: &mut TxParams| p.genesis_hash = [9; 32],
            |p: &mut TxParams| p.spec_version += 1,
            |p: &mut TxParams| p.era_block_hash = [9; 32],
        ] {
            let mut p = params();
            change(&mut p);
            assert!(d.verify(&exts(), &p).is_err());
        }
        // A long call is signed as its hash.
        let long = vec![7u8; 400];
        let x = build_signed(&long, &exts(), &params(), &key).unwrap();
        decode_signed(&x.bytes, &exts())
            .unwrap()
            .verify(&exts(), &params())
            .unwrap();
        assert_eq!(
            signing_payload(&long, &exts(), &params()).unwrap().len(),
            32
        );
    }

    #[test]
    fn unknown_extensions_with_data_are_refused() {
        let key = Hotkey::from_dev_uri("//Alice").unwrap();
        let mut e = exts();
        e.push(ExtensionInfo::new("SomethingNew", false, true));
        assert!(matches!(
            build_signed(&[7, 0], &e, &params(), &key),
            Err(ExtrinsicError::UnknownExtension { name }) if name == "SomethingNew"
        ));
        let mut e = exts();
        e[0].explicit_empty = false;
        assert!(matches!(
            build_signed(&[7, 0], &e, &params(), &key),
            Err(ExtrinsicError::ExtensionShape { .. })
        ));
        assert!(check_version(&[4, 5]).is_ok());
        assert!(check_version(&[5]).is_err());
    }

    #[test]
    fn truncated_or_garbled_bytes_are_errors() {
        let key = Hotkey::from_dev_uri("//Alice").unwrap();
        let x = build_signed(&[7, 0, 9], &exts(), &params(), &key).unwrap();
        for n in 0..x.bytes.len() {
            assert!(decode_signed(&x.bytes[..n], &exts()).is_err(), "{n}");
        }
        let mut bad = x.bytes.clone();
        bad[1] = 0x04; // unsigned
        assert!(decode_signed(&bad, &exts()).is_err());
        assert!(decode_signed(&[0xff; 8], &exts()).is_err());
    }
}
