//! The one envelope for evidence of every platform: what a node serves
//! (inside `/v1/attestation`), what proof bundles carry and what
//! `attesta verify evidence` reads.
//!
//! ```json
//! {"version": 1, "platform": "sev-snp", "evidence": "<base64>",
//!  "certs": ["<base64 DER>", ...], "collateral": {...}}
//! ```
//!
//! `certs` (optional): DER certificates the verifier may need (SEV-SNP: the
//! VCEK or VLEK, optionally ASK/ASVK and ARK); roots are still pinned by the
//! verifier, never taken from here. `collateral` (optional): platform
//! collateral as JSON (DCAP: TCB info, QE identity, CRLs), opaque here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::Platform;

/// The envelope version this crate writes and the only one it reads.
pub const ENVELOPE_VERSION: u32 = 1;
/// Largest envelope accepted (evidence + certificates + collateral).
pub const MAX_ENVELOPE_LEN: usize = 1 << 20;
/// Most certificates an envelope may carry.
pub const MAX_CERTS: usize = 8;

/// Evidence of one platform plus what verifying it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// [`ENVELOPE_VERSION`].
    pub version: u32,
    /// Which verifier reads `evidence`.
    pub platform: Platform,
    /// The document / report / quote bytes.
    #[serde(with = "b64")]
    pub evidence: Vec<u8>,
    /// DER certificates (SEV-SNP: VCEK/VLEK, ASK/ASVK, ARK).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "b64_list")]
    pub certs: Vec<Vec<u8>>,
    /// Platform collateral (DCAP), opaque JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collateral: Option<serde_json::Value>,
}

/// Why bytes are not a usable envelope.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Over [`MAX_ENVELOPE_LEN`].
    #[error("envelope has {0} bytes; at most {MAX_ENVELOPE_LEN} are accepted")]
    TooLarge(usize),
    /// Not the documented JSON.
    #[error("malformed envelope: {0}")]
    Json(#[from] serde_json::Error),
    /// A version this build does not implement.
    #[error("unsupported envelope version {0} (this build reads version {ENVELOPE_VERSION})")]
    UnsupportedVersion(u32),
    /// More certificates than [`MAX_CERTS`].
    #[error("envelope carries {0} certificates; at most {MAX_CERTS}")]
    TooManyCerts(usize),
}

impl EnvelopeError {
    /// Stable machine-readable name.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::TooLarge(_) => "envelope_too_large",
            EnvelopeError::Json(_) => "malformed_envelope",
            EnvelopeError::UnsupportedVersion(_) => "unsupported_version",
            EnvelopeError::TooManyCerts(_) => "malformed_envelope",
        }
    }
}

impl Envelope {
    /// An envelope of `platform` evidence without certificates or collateral.
    pub fn new(platform: Platform, evidence: Vec<u8>) -> Self {
        Envelope {
            version: ENVELOPE_VERSION,
            platform,
            evidence,
            certs: Vec::new(),
            collateral: None,
        }
    }

    /// Adds DER certificates.
    pub fn with_certs(mut self, certs: Vec<Vec<u8>>) -> Self {
        self.certs = certs;
        self
    }

    /// Parses and checks the JSON form (size, version, certificate count).
    pub fn from_json(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(EnvelopeError::TooLarge(bytes.len()));
        }
        // Read the version first so a future layout is named as such
        // rather than as malformed JSON.
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_slice(bytes)?;
        if v.version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(v.version));
        }
        let env: Envelope = serde_json::from_slice(bytes)?;
        env.check()?;
        Ok(env)
    }

    /// The checks [`Envelope::from_json`] makes, for envelopes built from
    /// other JSON (an attestation answer, a proof bundle).
    pub fn check(&self) -> Result<(), EnvelopeError> {
        if self.version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(self.version));
        }
        if self.certs.len() > MAX_CERTS {
            return Err(EnvelopeError::TooManyCerts(self.certs.len()));
        }
        Ok(())
    }

    /// The JSON form.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Base64 (standard, padded) for one byte string.
pub mod b64 {
    use super::*;

    /// Serialises bytes as base64 text.
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    /// Reads base64 text (surrounding whitespace ignored).
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s.trim()).map_err(serde::de::Error::custom)
    }
}

/// Base64 (standard, padded) for a list of byte strings.
pub mod b64_list {
    use super::*;

    /// Serialises a list of byte strings as base64 texts.
    pub fn serialize<S: serde::Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|c| B64.encode(c)))
    }

    /// Reads a list of base64 texts.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| B64.decode(s.trim()).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// What `attesta verify evidence` recognised in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Detected {
    /// A JSON envelope.
    Envelope,
    /// A Nitro (or dev) COSE_Sign1 document, raw, base64 or hex.
    NitroCose,
    /// A 1184-byte SEV-SNP report, raw, base64 or hex.
    SnpReport,
    /// An Intel DCAP quote (SGX v3, TDX v4/v5), raw, base64 or hex.
    DcapQuote,
    /// Nothing we recognise.
    Unknown,
}

/// Guesses the format of evidence bytes. Detection only picks a parser;
/// every parser still checks everything, so a wrong guess fails closed.
pub fn detect(bytes: &[u8]) -> Detected {
    let trimmed = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .and_then(|i| bytes.get(i..))
        .unwrap_or_default();
    if trimmed.first() == Some(&b'{') {
        return Detected::Envelope;
    }
    if crate::dcap::looks_like_quote(bytes) {
        return Detected::DcapQuote;
    }
    if bytes.len() == crate::snp::report::REPORT_LEN {
        return Detected::SnpReport;
    }
    match crate::input::decode_input(bytes) {
        Ok((_, b)) if crate::dcap::looks_like_quote(&b) => Detected::DcapQuote,
        Ok((_, b)) if b.len() == crate::snp::report::REPORT_LEN => Detected::SnpReport,
        Ok((_, b)) if matches!(b.first(), Some(0x84 | 0x9f | 0xd2)) => Detected::NitroCose,
        _ => Detected::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_versions() {
        let env = Envelope::new(Platform::SevSnp, vec![1, 2, 3]).with_certs(vec![vec![4, 5]]);
        let json = env.to_json();
        assert_eq!(
            Envelope::from_json(&json).map_err(|e| e.to_string()),
            Ok(env)
        );
        let text = String::from_utf8(json).unwrap_or_default();
        let v2 = text.replace("\"version\":1", "\"version\":2");
        assert!(matches!(
            Envelope::from_json(v2.as_bytes()),
            Err(EnvelopeError::UnsupportedVersion(2))
        ));
        let extra = text.replace("\"version\":1", "\"version\":1,\"x\":0");
        assert!(matches!(
            Envelope::from_json(extra.as_bytes()),
            Err(EnvelopeError::Json(_))
        ));
        assert!(matches!(
            Envelope::from_json(br#"{"version":1,"platform":"sev-snp","evidence":"!!"}"#),
            Err(EnvelopeError::Json(_))
        ));
        assert!(matches!(
            Envelope::from_json(br#"{"version":1,"platform":"vax","evidence":""}"#),
            Err(EnvelopeError::Json(_))
        ));
        assert!(matches!(
            Envelope::from_json(&vec![b' '; MAX_ENVELOPE_LEN + 1]),
            Err(EnvelopeError::TooLarge(_))
        ));
    }

    #[test]
    fn detects_formats() {
        assert_eq!(detect(b" {\"version\":1}"), Detected::Envelope);
        assert_eq!(detect(&[2u8; 1184]), Detected::SnpReport);
        assert_eq!(
            detect(hex::encode([2u8; 1184]).as_bytes()),
            Detected::SnpReport
        );
        assert_eq!(detect(&[0x84, 0x40, 0xa0, 0xf6, 0x40]), Detected::NitroCose);
        assert_eq!(detect(b"hello"), Detected::Unknown);
        assert_eq!(detect(b""), Detected::Unknown);
    }
}
