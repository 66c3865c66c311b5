//! nitriding compatibility: the `/enclave/attestation` nonce and the
//! 68-byte `user_data` layout (two multihash-prefixed SHA-256 digests).
#![deny(clippy::indexing_slicing)]

/// Multihash prefix of a 32-byte SHA-256 digest (code 0x12, length 0x20).
const SHA256_MULTIHASH: [u8; 2] = [0x12, 0x20];
/// nitriding nonces are 20 bytes, sent as 40 hex characters.
pub const NITRIDING_NONCE_LEN: usize = 20;
/// Our `/v1/attestation` accepts nonces of 16..=64 bytes.
pub const V1_NONCE_LEN: std::ops::RangeInclusive<usize> = 16..=64;

/// Why a nonce query parameter was refused (an HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonceError {
    /// Not hex.
    #[error("nonce is not hex")]
    NotHex,
    /// Wrong length.
    #[error("nonce has {got} bytes; expected {expected}")]
    Length {
        /// Bytes given.
        got: usize,
        /// What is accepted.
        expected: &'static str,
    },
}

fn hex_bytes(s: &str) -> Result<Vec<u8>, NonceError> {
    hex::decode(s).map_err(|_| NonceError::NotHex)
}

/// Parses nitriding's `?nonce=` (exactly 40 hex characters).
pub fn parse_nitriding_nonce(s: &str) -> Result<[u8; NITRIDING_NONCE_LEN], NonceError> {
    let b = hex_bytes(s)?;
    b.as_slice().try_into().map_err(|_| NonceError::Length {
        got: b.len(),
        expected: "20",
    })
}

/// Parses our `/v1/attestation?nonce=` (hex, 16..=64 bytes).
pub fn parse_v1_nonce(s: &str) -> Result<Vec<u8>, NonceError> {
    let b = hex_bytes(s)?;
    if !V1_NONCE_LEN.contains(&b.len()) {
        return Err(NonceError::Length {
            got: b.len(),
            expected: "16..=64",
        });
    }
    Ok(b)
}

/// nitriding's `user_data`: `0x12 0x20 ‖ SHA-256(TLS leaf DER) ‖ 0x12 0x20 ‖ app key hash`.
pub fn user_data(tls_cert_sha256: &[u8; 32], app_key_hash: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(68);
    out.extend_from_slice(&SHA256_MULTIHASH);
    out.extend_from_slice(tls_cert_sha256);
    out.extend_from_slice(&SHA256_MULTIHASH);
    out.extend_from_slice(app_key_hash);
    out
}

/// Splits nitriding `user_data` into (TLS certificate hash, app key hash).
pub fn parse_user_data(b: &[u8]) -> Option<([u8; 32], [u8; 32])> {
    if b.len() != 68 || b.get(..2)? != SHA256_MULTIHASH || b.get(34..36)? != SHA256_MULTIHASH {
        return None;
    }
    Some((
        b.get(2..34)?.try_into().ok()?,
        b.get(36..68)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_and_user_data() {
        assert_eq!(parse_nitriding_nonce(&"ab".repeat(20)), Ok([0xab; 20]));
        assert_eq!(
            parse_nitriding_nonce(&"ab".repeat(19)),
            Err(NonceError::Length {
                got: 19,
                expected: "20"
            })
        );
        assert_eq!(
            parse_nitriding_nonce(&"zz".repeat(20)),
            Err(NonceError::NotHex)
        );
        assert!(parse_v1_nonce(&"00".repeat(15)).is_err());
        assert_eq!(parse_v1_nonce(&"01".repeat(64)).map(|v| v.len()), Ok(64));
        assert!(parse_v1_nonce(&"01".repeat(65)).is_err());
        let ud = user_data(&[1; 32], &[2; 32]);
        assert_eq!(ud.len(), 68);
        assert_eq!(parse_user_data(&ud), Some(([1; 32], [2; 32])));
        assert_eq!(parse_user_data(&ud[..67]), None);
    }
}
