//! Detects how a document was handed to us: raw CBOR, base64 or hex.

use std::borrow::Cow;

use base64::Engine as _;

use crate::error::InputError;

/// How the input was encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Encoding {
    /// Raw CBOR bytes.
    Cbor,
    /// Standard base64 (whitespace ignored).
    Base64,
    /// Hex (whitespace ignored).
    Hex,
    /// Raw binary of a fixed-size structure (an SNP report).
    Binary,
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoding::Cbor => "raw CBOR",
            Encoding::Base64 => "base64",
            Encoding::Hex => "hex",
            Encoding::Binary => "raw binary",
        })
    }
}

/// Returns the CBOR bytes of a document given raw, as base64 or as hex.
///
/// Raw CBOR is recognised by its first byte: an array of four (0x84), an
/// indefinite array (0x9f) or the COSE_Sign1 tag 18 (0xd2). Text that is all
/// hex digits is hex (a base64 document always contains non-hex letters).
pub fn decode_input(input: &[u8]) -> Result<(Encoding, Cow<'_, [u8]>), InputError> {
    match input.first() {
        None => return Err(InputError::Empty),
        Some(0x84 | 0x9f | 0xd2) => return Ok((Encoding::Cbor, Cow::Borrowed(input))),
        Some(_) => {}
    }
    let compact: Vec<u8> = input
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err(InputError::Empty);
    }
    if compact.iter().all(u8::is_ascii_hexdigit) {
        return hex::decode(&compact)
            .map(|b| (Encoding::Hex, Cow::Owned(b)))
            .map_err(|e| InputError::Hex(e.into()));
    }
    let is_b64 = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    if compact.iter().all(is_b64) {
        return base64::engine::general_purpose::STANDARD
            .decode(&compact)
            .map(|b| (Encoding::Base64, Cow::Owned(b)))
            .map_err(InputError::Base64);
    }
    Err(InputError::UnknownEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_encoding() {
        let raw = [0x84u8, 0x40, 0xa0, 0xf6, 0x40];
        assert_eq!(decode_input(&raw).map(|(e, _)| e), Ok(Encoding::Cbor));
        assert_eq!(
            decode_input(b"hECg9kA=\n").map(|(e, b)| (e, b.into_owned())),
            Ok((Encoding::Base64, raw.to_vec()))
        );
        assert_eq!(
            decode_input(b"84 40 a0 f6 40").map(|(e, b)| (e, b.into_owned())),
            Ok((Encoding::Hex, raw.to_vec()))
        );
        assert_eq!(decode_input(b""), Err(InputError::Empty));
        assert_eq!(decode_input(b" \n"), Err(InputError::Empty));
        assert_eq!(
            decode_input(b"hello, world"),
            Err(InputError::UnknownEncoding)
        );
        assert!(matches!(decode_input(b"abc"), Err(InputError::Hex(_))));
        assert!(matches!(
            decode_input(b"hECg9kA"),
            Err(InputError::Base64(_))
        ));
    }
}
