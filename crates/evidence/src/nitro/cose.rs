//! COSE_Sign1 (RFC 9052) as AWS Nitro uses it: ES384, payload attached.

use std::borrow::Cow;

use crate::cbor::{self, Encoder, Value};
use crate::error::VerifyError;

/// COSE algorithm identifier of ECDSA P-384 with SHA-384.
pub const ES384: i64 = -35;
/// The CBOR tag that may wrap a COSE_Sign1.
const TAG_COSE_SIGN1: u64 = 18;
/// Raw `r || s` length of a P-384 signature.
pub const SIGNATURE_LEN: usize = 96;

/// The parts of a COSE_Sign1 that the signature covers.
#[derive(Debug, Clone, PartialEq)]
pub struct CoseSign1<'a> {
    /// Serialized protected header (a bstr-wrapped map).
    pub protected: Cow<'a, [u8]>,
    /// The attestation document payload.
    pub payload: Cow<'a, [u8]>,
    /// Raw `r || s` signature.
    pub signature: Cow<'a, [u8]>,
}

/// Parses a COSE_Sign1 and checks that the protected header says ES384.
pub fn parse(bytes: &[u8]) -> Result<CoseSign1<'_>, VerifyError> {
    let value = cbor::decode(bytes).map_err(VerifyError::Cbor)?;
    let value = match value {
        Value::Tag(TAG_COSE_SIGN1, inner) => *inner,
        Value::Tag(t, _) => {
            return Err(VerifyError::NotCoseSign1(format!(
                "unexpected CBOR tag {t}"
            )));
        }
        v => v,
    };
    let Value::Array(items) = value else {
        return Err(VerifyError::NotCoseSign1(format!(
            "top level is a {}, not an array",
            value.kind()
        )));
    };
    let [protected, unprotected, payload, signature]: [Value<'_>; 4] =
        items.try_into().map_err(|v: Vec<_>| {
            VerifyError::NotCoseSign1(format!("array has {} items, not 4", v.len()))
        })?;
    let Value::Bytes(protected) = protected else {
        return Err(VerifyError::NotCoseSign1(
            "protected header is not a byte string".into(),
        ));
    };
    if !matches!(unprotected, Value::Map(_)) {
        return Err(VerifyError::NotCoseSign1(format!(
            "unprotected header is a {}, not a map",
            unprotected.kind()
        )));
    }
    let Value::Bytes(payload) = payload else {
        return Err(VerifyError::NotCoseSign1(format!(
            "payload is a {}, not an attached byte string",
            payload.kind()
        )));
    };
    let Value::Bytes(signature) = signature else {
        return Err(VerifyError::NotCoseSign1(
            "signature is not a byte string".into(),
        ));
    };
    if signature.len() != SIGNATURE_LEN {
        return Err(VerifyError::NotCoseSign1(format!(
            "signature has {} bytes, ES384 needs {SIGNATURE_LEN}",
            signature.len()
        )));
    }
    check_protected(&protected)?;
    Ok(CoseSign1 {
        protected,
        payload,
        signature,
    })
}

/// The protected header must be exactly `{1: -35}`: anything else (another
/// algorithm, `crit`, extra parameters) is something we would silently ignore.
fn check_protected(protected: &[u8]) -> Result<(), VerifyError> {
    let header = cbor::decode(protected).map_err(VerifyError::ProtectedHeader)?;
    let Value::Map(entries) = header else {
        return Err(VerifyError::NotCoseSign1(
            "protected header is not a map".into(),
        ));
    };
    let mut alg = None;
    for (k, v) in &entries {
        match k {
            Value::Uint(1) if alg.is_none() => alg = Some(v),
            Value::Uint(1) => return Err(VerifyError::NotCoseSign1("duplicate alg".into())),
            other => {
                return Err(VerifyError::NotCoseSign1(format!(
                    "unexpected protected header parameter {other:?}"
                )));
            }
        }
    }
    match alg {
        Some(Value::Nint(34)) => Ok(()),
        Some(Value::Nint(n)) => Err(VerifyError::UnsupportedAlgorithm(format!(
            "-{}",
            n.saturating_add(1)
        ))),
        Some(Value::Uint(n)) => Err(VerifyError::UnsupportedAlgorithm(n.to_string())),
        Some(other) => Err(VerifyError::UnsupportedAlgorithm(format!("{other:?}"))),
        None => Err(VerifyError::UnsupportedAlgorithm("none".into())),
    }
}

/// The `Sig_structure` for COSE_Sign1 with empty external AAD: the bytes the
/// signature is computed over.
pub fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut e = Encoder::with_capacity(payload.len() + protected.len() + 32);
    e.array(4)
        .text("Signature1")
        .bytes(protected)
        .bytes(&[])
        .bytes(payload);
    e.into_bytes()
}

/// The protected header `{1: -35}` (alg ES384), as Nitro encodes it.
pub fn es384_protected_header() -> Vec<u8> {
    let mut e = Encoder::default();
    e.map(1).uint(1).int(ES384);
    e.into_bytes()
}

/// Encodes an untagged COSE_Sign1 with an empty unprotected map.
pub fn encode_sign1(protected: &[u8], payload: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut e = Encoder::with_capacity(payload.len() + signature.len() + 32);
    e.array(4)
        .bytes(protected)
        .map(0)
        .bytes(payload)
        .bytes(signature);
    e.into_bytes()
}
