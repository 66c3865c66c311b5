//! The binary framing of sealed bodies (`application/vnd.attesta.sealed`).
//!
//! ```text
//! request:  version(1) ‖ kind=1 ‖ keyset_digest(32) ‖ enc(32) ‖ ciphertext(n+16)
//! response: version(1) ‖ kind=2 ‖ response_nonce(32) ‖ ciphertext(n+16)
//! ```
//! The version byte is 2 (protocol v2); version 1 envelopes are refused with
//! `unsupported_version` (v1 reused a response key and nonce on replays).
//! Parsing checks the framing only; opening is in [`crate::channel`].

/// The media type of both sealed requests and sealed responses.
pub const MEDIA_TYPE: &str = "application/vnd.attesta.sealed";
/// The media type of a `Content-Type` value: parameters dropped, lowercased (RFC 9110
/// compares media types case-insensitively). Every party matching sealed media types on a
/// header uses it.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// The only envelope version this implementation speaks (protocol v2).
pub const VERSION: u8 = 2;
/// Kind byte of a request.
pub const KIND_REQUEST: u8 = 1;
/// Kind byte of a response.
pub const KIND_RESPONSE: u8 = 2;
/// Request header length: version, kind, keyset digest, HPKE `enc`.
pub const REQUEST_HEADER_LEN: usize = 2 + 32 + 32;
/// Length of the node's fresh per-answer randomness in a response header.
pub const RESPONSE_NONCE_LEN: usize = 32;
/// Response header length: version, kind, response nonce.
pub const RESPONSE_HEADER_LEN: usize = 2 + RESPONSE_NONCE_LEN;
/// ChaCha20-Poly1305 tag length; every ciphertext is at least this long.
pub const TAG_LEN: usize = 16;
/// Upper bound on an envelope (64 MiB), checked before any crypto.
pub const MAX_ENVELOPE_LEN: usize = 64 << 20;

/// Why an envelope was refused. Every variant has a stable [`code`](Self::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Fewer bytes than the header and tag need.
    #[error("envelope truncated: {len} bytes, need at least {need}")]
    Truncated {
        /// Observed length.
        len: usize,
        /// Minimum length.
        need: usize,
    },
    /// Longer than [`MAX_ENVELOPE_LEN`].
    #[error("envelope of {len} bytes exceeds the {max} byte limit")]
    TooLarge {
        /// Observed length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A version byte this implementation does not speak.
    #[error(
        "unsupported envelope version {0}: protocol v2 is required (envelope version 2; re-attest and seal the request again with a v2 client)"
    )]
    UnsupportedVersion(u8),
    /// A request where a response was expected, or an unknown kind.
    #[error("unexpected envelope kind {got} (expected {expected})")]
    UnexpectedKind {
        /// Kind wanted here.
        expected: u8,
        /// Kind found.
        got: u8,
    },
    /// The request is sealed to another key set (e.g. before a node restart).
    #[error("request is sealed to key set {got}, not to this node's")]
    UnknownKeySet {
        /// Hex digest found in the header.
        got: String,
    },
    /// The AEAD tag did not verify (tampered, or sealed for someone else).
    #[error("decryption failed (tampered, or sealed for another key or requester)")]
    DecryptionFailed,
    /// Encryption failed (message too long for the AEAD).
    #[error("encryption failed")]
    EncryptionFailed,
    /// The attested HPKE public key is not a valid X25519 key.
    #[error("invalid HPKE public key")]
    InvalidPublicKey,
}

impl EnvelopeError {
    /// Stable wire code (see the error table in `docs/PROTOCOL.md`).
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::Truncated { .. } => "malformed_envelope",
            EnvelopeError::TooLarge { .. } => "envelope_too_large",
            EnvelopeError::UnsupportedVersion(_) => "unsupported_version",
            EnvelopeError::UnexpectedKind { .. } => "unexpected_kind",
            EnvelopeError::UnknownKeySet { .. } => "unknown_key_set",
            EnvelopeError::DecryptionFailed => "decryption_failed",
            EnvelopeError::EncryptionFailed => "encryption_failed",
            EnvelopeError::InvalidPublicKey => "invalid_public_key",
        }
    }

    /// HTTP status a node answers with when it cannot even open the request.
    pub fn http_status(&self) -> u16 {
        match self {
            EnvelopeError::TooLarge { .. } => 413,
            EnvelopeError::UnknownKeySet { .. } => 421,
            EnvelopeError::EncryptionFailed => 500,
            _ => 400,
        }
    }
}

/// A parsed request envelope (borrowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestEnvelope<'a> {
    /// The key set the request is sealed to.
    pub keyset_digest: [u8; 32],
    /// HPKE encapsulated key.
    pub enc: [u8; 32],
    /// The header bytes (AAD of the request ciphertext).
    pub header: &'a [u8],
    /// Ciphertext with tag.
    pub ciphertext: &'a [u8],
}

/// A parsed response envelope (borrowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseEnvelope<'a> {
    /// The node's fresh randomness for this answer's key.
    pub response_nonce: [u8; RESPONSE_NONCE_LEN],
    /// The header bytes (version, kind, response nonce).
    pub header: &'a [u8],
    /// Ciphertext with tag.
    pub ciphertext: &'a [u8],
}

fn check_frame(bytes: &[u8], header_len: usize, kind: u8) -> Result<(), EnvelopeError> {
    if bytes.len() > MAX_ENVELOPE_LEN {
        return Err(EnvelopeError::TooLarge {
            len: bytes.len(),
            max: MAX_ENVELOPE_LEN,
        });
    }
    // Version first: a future version may have a different layout entirely.
    match bytes.first() {
        None => {
            return Err(EnvelopeError::Truncated {
                len: 0,
                need: header_len + TAG_LEN,
            });
        }
        Some(&VERSION) => {}
        Some(&v) => return Err(EnvelopeError::UnsupportedVersion(v)),
    }
    match bytes.get(1) {
        Some(&k) if k == kind => {}
        Some(&k) => {
            return Err(EnvelopeError::UnexpectedKind {
                expected: kind,
                got: k,
            });
        }
        None => {}
    }
    if bytes.len() < header_len + TAG_LEN {
        return Err(EnvelopeError::Truncated {
            len: bytes.len(),
            need: header_len + TAG_LEN,
        });
    }
    Ok(())
}

/// Parses a request envelope's framing.
pub fn parse_request(bytes: &[u8]) -> Result<RequestEnvelope<'_>, EnvelopeError> {
    check_frame(bytes, REQUEST_HEADER_LEN, KIND_REQUEST)?;
    let truncated = EnvelopeError::Truncated {
        len: bytes.len(),
        need: REQUEST_HEADER_LEN + TAG_LEN,
    };
    let (header, ciphertext) = bytes
        .split_at_checked(REQUEST_HEADER_LEN)
        .ok_or(truncated.clone())?;
    let digest = header.get(2..34).and_then(|s| <[u8; 32]>::try_from(s).ok());
    let enc = header
        .get(34..66)
        .and_then(|s| <[u8; 32]>::try_from(s).ok());
    let (Some(keyset_digest), Some(enc)) = (digest, enc) else {
        return Err(truncated);
    };
    Ok(RequestEnvelope {
        keyset_digest,
        enc,
        header,
        ciphertext,
    })
}

/// Parses a response envelope's framing.
pub fn parse_response(bytes: &[u8]) -> Result<ResponseEnvelope<'_>, EnvelopeError> {
    check_frame(bytes, RESPONSE_HEADER_LEN, KIND_RESPONSE)?;
    let truncated = EnvelopeError::Truncated {
        len: bytes.len(),
        need: RESPONSE_HEADER_LEN + TAG_LEN,
    };
    let (header, ciphertext) = bytes
        .split_at_checked(RESPONSE_HEADER_LEN)
        .ok_or(truncated.clone())?;
    let response_nonce = header
        .get(2..RESPONSE_HEADER_LEN)
        .and_then(|s| <[u8; RESPONSE_NONCE_LEN]>::try_from(s).ok())
        .ok_or(truncated)?;
    Ok(ResponseEnvelope {
        response_nonce,
        header,
        ciphertext,
    })
}

/// The request header for `keyset_digest` and `enc`.
pub fn request_header(keyset_digest: &[u8; 32], enc: &[u8; 32]) -> Vec<u8> {
    let mut h = Vec::with_capacity(REQUEST_HEADER_LEN);
    h.extend_from_slice(&[VERSION, KIND_REQUEST]);
    h.extend_from_slice(keyset_digest);
    h.extend_from_slice(enc);
    h
}

/// The response header carrying `response_nonce`.
pub fn response_header(response_nonce: &[u8; RESPONSE_NONCE_LEN]) -> [u8; RESPONSE_HEADER_LEN] {
    let mut h = [0u8; RESPONSE_HEADER_LEN];
    let (fixed, nonce) = h.split_at_mut(2);
    fixed.copy_from_slice(&[VERSION, KIND_RESPONSE]);
    nonce.copy_from_slice(response_nonce);
    h
}

#[cfg(test)]
mod media_type_tests {
    use super::*;

    #[test]
    fn parameters_and_case_do_not_matter() {
        assert_eq!(
            media_type(" Application/VND.attesta.sealed ; charset=binary"),
            MEDIA_TYPE
        );
        assert_eq!(media_type(""), "");
        assert_ne!(media_type("application/json"), MEDIA_TYPE);
    }
}
