//! The Nitro attestation document payload: field presence, types and sizes.
#![deny(clippy::indexing_slicing)]

use std::collections::BTreeMap;

use crate::cbor::{self, Encoder, Value};
use crate::error::VerifyError;

/// Upper bound of the optional `public_key`, `user_data` and `nonce` fields.
pub const MAX_USER_FIELD: usize = 1024;
/// Nitro has 32 PCRs at most.
pub const MAX_PCRS: usize = 32;

/// A decoded attestation document (payload of the COSE_Sign1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationDocument {
    /// Issuing NSM module id (`i-…-enc…`, or `dev-…` for the dev TEE).
    pub module_id: String,
    /// PCR digest algorithm; always `SHA384` for documents we accept.
    pub digest: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// PCR index → value.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
    /// DER of the leaf certificate that signed the document.
    pub certificate: Vec<u8>,
    /// DER certificates from the root (index 0) down to the leaf's issuer.
    pub cabundle: Vec<Vec<u8>>,
    /// Optional key material bound by the enclave.
    pub public_key: Option<Vec<u8>>,
    /// Optional application data bound by the enclave.
    pub user_data: Option<Vec<u8>>,
    /// Optional challenge nonce.
    pub nonce: Option<Vec<u8>>,
}

impl AttestationDocument {
    /// Whether PCR0, PCR1 and PCR2 are all zero, which is how NSM marks debug mode.
    pub fn is_debug(&self) -> bool {
        (0u8..3).all(|i| self.pcrs.get(&i).is_some_and(|v| v.iter().all(|b| *b == 0)))
    }

    /// Parses and checks the payload of a COSE_Sign1.
    pub fn parse(payload: &[u8]) -> Result<Self, VerifyError> {
        let value =
            cbor::decode(payload).map_err(|e| VerifyError::MalformedPayload(e.to_string()))?;
        let Value::Map(entries) = value else {
            return Err(VerifyError::MalformedPayload(format!(
                "payload is a {}, not a map",
                value.kind()
            )));
        };
        let mut f = Fields::default();
        for (k, v) in entries {
            let Value::Text(key) = k else {
                return Err(VerifyError::MalformedPayload(format!(
                    "map key is a {}",
                    k.kind()
                )));
            };
            let slot = match key.as_ref() {
                "module_id" => &mut f.module_id,
                "digest" => &mut f.digest,
                "timestamp" => &mut f.timestamp,
                "pcrs" => &mut f.pcrs,
                "certificate" => &mut f.certificate,
                "cabundle" => &mut f.cabundle,
                "public_key" => &mut f.public_key,
                "user_data" => &mut f.user_data,
                "nonce" => &mut f.nonce,
                // Unknown fields are not covered by any check; refuse them
                // rather than guess what a future NSM means by them.
                other => {
                    return Err(VerifyError::MalformedPayload(format!(
                        "unknown field `{other}`"
                    )));
                }
            };
            if slot.is_some() {
                return Err(VerifyError::MalformedPayload(format!(
                    "duplicate field `{key}`"
                )));
            }
            *slot = Some(v);
        }
        let module_id = match f.module_id.ok_or(VerifyError::MissingField("module_id"))? {
            Value::Text(s) if !s.is_empty() => s.into_owned(),
            _ => return Err(type_err("module_id", "a non-empty text string")),
        };
        let digest = match f.digest.ok_or(VerifyError::MissingField("digest"))? {
            Value::Text(s) if s == "SHA384" => s.into_owned(),
            _ => return Err(type_err("digest", "the text \"SHA384\"")),
        };
        let timestamp_ms = match f.timestamp.ok_or(VerifyError::MissingField("timestamp"))? {
            Value::Uint(t) if t > 0 => t,
            _ => return Err(type_err("timestamp", "a positive integer (ms)")),
        };
        let pcrs = parse_pcrs(f.pcrs.ok_or(VerifyError::MissingField("pcrs"))?)?;
        let certificate = match f
            .certificate
            .ok_or(VerifyError::MissingField("certificate"))?
        {
            Value::Bytes(b) => nonempty("certificate", b.into_owned())?,
            _ => return Err(type_err("certificate", "a byte string")),
        };
        let cabundle = match f.cabundle.ok_or(VerifyError::MissingField("cabundle"))? {
            Value::Array(items) if !items.is_empty() => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Bytes(b) => nonempty("cabundle[]", b.into_owned()),
                    _ => Err(type_err(&format!("cabundle[{i}]"), "a byte string")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => return Err(type_err("cabundle", "a non-empty array of byte strings")),
        };
        Ok(AttestationDocument {
            module_id,
            digest,
            timestamp_ms,
            pcrs,
            certificate,
            cabundle,
            public_key: optional("public_key", f.public_key)?,
            user_data: optional("user_data", f.user_data)?,
            nonce: optional("nonce", f.nonce)?,
        })
    }

    /// Encodes the payload as NSM does (definite lengths, fields in NSM's order).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(4096);
        e.map(9);
        e.text("module_id").text(&self.module_id);
        e.text("digest").text(&self.digest);
        e.text("timestamp").uint(self.timestamp_ms);
        e.text("pcrs").map(self.pcrs.len());
        for (i, v) in &self.pcrs {
            e.uint(u64::from(*i)).bytes(v);
        }
        e.text("certificate").bytes(&self.certificate);
        e.text("cabundle").array(self.cabundle.len());
        for c in &self.cabundle {
            e.bytes(c);
        }
        for (name, field) in [
            ("public_key", &self.public_key),
            ("user_data", &self.user_data),
            ("nonce", &self.nonce),
        ] {
            e.text(name);
            match field {
                Some(b) => e.bytes(b),
                None => e.null(),
            };
        }
        e.into_bytes()
    }
}

#[derive(Default)]
struct Fields<'a> {
    module_id: Option<Value<'a>>,
    digest: Option<Value<'a>>,
    timestamp: Option<Value<'a>>,
    pcrs: Option<Value<'a>>,
    certificate: Option<Value<'a>>,
    cabundle: Option<Value<'a>>,
    public_key: Option<Value<'a>>,
    user_data: Option<Value<'a>>,
    nonce: Option<Value<'a>>,
}

fn type_err(field: &str, expected: &'static str) -> VerifyError {
    VerifyError::FieldType {
        field: field.to_owned(),
        expected,
    }
}

fn nonempty(field: &str, b: Vec<u8>) -> Result<Vec<u8>, VerifyError> {
    if b.is_empty() {
        return Err(VerifyError::FieldSize {
            field: field.to_owned(),
            len: 0,
            allowed: "1 or more",
        });
    }
    Ok(b)
}

fn optional(field: &'static str, v: Option<Value<'_>>) -> Result<Option<Vec<u8>>, VerifyError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bytes(b)) if b.len() <= MAX_USER_FIELD => Ok(Some(b.into_owned())),
        Some(Value::Bytes(b)) => Err(VerifyError::FieldSize {
            field: field.to_owned(),
            len: b.len(),
            allowed: "0..=1024",
        }),
        Some(_) => Err(type_err(field, "a byte string or null")),
    }
}

fn parse_pcrs(v: Value<'_>) -> Result<BTreeMap<u8, Vec<u8>>, VerifyError> {
    let Value::Map(entries) = v else {
        return Err(type_err("pcrs", "a map of index to byte string"));
    };
    if entries.is_empty() || entries.len() > MAX_PCRS {
        return Err(VerifyError::FieldSize {
            field: "pcrs".into(),
            len: entries.len(),
            allowed: "1..=32 entries",
        });
    }
    let mut pcrs = BTreeMap::new();
    for (k, v) in entries {
        let idx = match k {
            Value::Uint(i) if (i as usize) < MAX_PCRS => i as u8,
            _ => return Err(type_err("pcrs key", "an integer index 0..=31")),
        };
        let Value::Bytes(b) = v else {
            return Err(type_err(&format!("pcrs[{idx}]"), "a byte string"));
        };
        if !matches!(b.len(), 32 | 48 | 64) {
            return Err(VerifyError::FieldSize {
                field: format!("pcrs[{idx}]"),
                len: b.len(),
                allowed: "32, 48 or 64",
            });
        }
        if pcrs.insert(idx, b.into_owned()).is_some() {
            return Err(VerifyError::MalformedPayload(format!(
                "duplicate PCR index {idx}"
            )));
        }
    }
    Ok(pcrs)
}
