//! The Nitro attestation document payload: field presence, types and sizes.

use std::collections::BTreeMap;

use crate::cbor::{self, Encoder, Value};
use crate::error::VerifyError;

/// Upper bound of the optional `public_key`, `user_data` and `nonce` fields.
pub const MAX_USER_FIELD: usize = 1024;
/// Nitro has 32 PCRs at most.
pub const MAX_PCRS: usize = 32;
/// Payload key under which the dev TEE declares an active `--insecure-fault`.
/// NSM never writes it; under a production root it is refused.
pub const INSECURE_FAULT_KEY: &str = "attesta_insecure_fault";
/// Longest accepted fault label (e.g. `slow:250`).
pub const MAX_FAULT_LABEL: usize = 64;

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
    /// The insecure fault a dev node declares (`attesta_insecure_fault`,
    /// e.g. `wrong-output`); never present in hardware documents.
    pub insecure_fault: Option<String>,
}

impl AttestationDocument {
    /// Whether PCR0, PCR1 and PCR2 are all zero, which is how NSM marks debug mode.
    pub fn is_debug(&self) -> bool {
        (0u8..3).all(|i| self.pcrs.get(&i).is_some_and(|v| v.iter().all(|b| *b == 0)))
    }

    /// Parses and checks the payload of a COSE_Sign1.
    pub fn parse(payload: &[u8]) -> Result<Self, VerifyError> {
        let value = cbor::decode(payload).map_err(VerifyError::PayloadCbor)?;
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
                INSECURE_FAULT_KEY => &mut f.insecure_fault,
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
            insecure_fault: fault_label(f.insecure_fault)?,
        })
    }

    /// Encodes the payload as NSM does (definite lengths, fields in NSM's order).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(4096);
        e.map(if self.insecure_fault.is_some() { 10 } else { 9 });
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
        // Only when declared, so fault-free documents keep NSM's exact layout.
        if let Some(fault) = &self.insecure_fault {
            e.text(INSECURE_FAULT_KEY).text(fault);
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
    insecure_fault: Option<Value<'a>>,
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

/// Checks a declared fault label: short, non-empty, and only `[A-Za-z0-9:._-]`
/// so a hostile document cannot put control characters on a verifier's terminal.
pub fn check_fault_label(label: &str) -> Result<(), VerifyError> {
    if label.is_empty() || label.len() > MAX_FAULT_LABEL {
        return Err(VerifyError::FieldSize {
            field: INSECURE_FAULT_KEY.to_owned(),
            len: label.len(),
            allowed: "1..=64",
        });
    }
    if !label
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-'))
    {
        return Err(type_err(INSECURE_FAULT_KEY, "a label of [A-Za-z0-9:._-]"));
    }
    Ok(())
}

fn fault_label(v: Option<Value<'_>>) -> Result<Option<String>, VerifyError> {
    match v {
        None => Ok(None),
        Some(Value::Text(s)) => {
            check_fault_label(&s)?;
            Ok(Some(s.into_owned()))
        }
        Some(_) => Err(type_err(INSECURE_FAULT_KEY, "a text string")),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(fault: Option<&str>) -> AttestationDocument {
        AttestationDocument {
            module_id: "dev-0011".into(),
            digest: "SHA384".into(),
            timestamp_ms: 1,
            pcrs: [(0u8, vec![1; 48])].into_iter().collect(),
            certificate: vec![1],
            cabundle: vec![vec![2]],
            public_key: None,
            user_data: None,
            nonce: Some(vec![3]),
            insecure_fault: fault.map(str::to_owned),
        }
    }

    /// One CBOR value, encoded by `f`.
    fn value(f: impl FnOnce(&mut Encoder)) -> Vec<u8> {
        let mut e = Encoder::with_capacity(128);
        f(&mut e);
        e.into_bytes()
    }

    /// The payload of `doc(None)` with one more entry: the fault key and `value`.
    fn with_entry(value_bytes: &[u8]) -> Vec<u8> {
        let plain = doc(None).encode();
        // Same entries, one more: map(10), then the original without its map(9) head.
        let mut bytes = value(|e| {
            e.map(10);
        });
        bytes.extend_from_slice(plain.get(1..).unwrap_or_default());
        bytes.extend_from_slice(&value(|e| {
            e.text(INSECURE_FAULT_KEY);
        }));
        bytes.extend_from_slice(value_bytes);
        bytes
    }

    #[test]
    fn a_declared_fault_round_trips() {
        let d = doc(Some("slow:250"));
        assert_eq!(AttestationDocument::parse(&d.encode()), Ok(d));
        let plain = doc(None);
        assert_eq!(plain.encode().first(), Some(&0xa9), "nine fields, as NSM");
        assert_eq!(AttestationDocument::parse(&plain.encode()), Ok(plain));
    }

    #[test]
    fn malformed_fault_fields_are_refused() {
        let bytes = with_entry(&value(|e| {
            e.text("wrong-output");
        }));
        assert_eq!(
            AttestationDocument::parse(&bytes).map(|d| d.insecure_fault),
            Ok(Some("wrong-output".into()))
        );
        let cases = [
            (
                "bytes",
                value(|e| {
                    e.bytes(b"wrong-output");
                }),
            ),
            (
                "empty",
                value(|e| {
                    e.text("");
                }),
            ),
            (
                "control",
                value(|e| {
                    e.text("a\u{1b}[2Jb");
                }),
            ),
            (
                "long",
                value(|e| {
                    e.text(&"x".repeat(MAX_FAULT_LABEL + 1));
                }),
            ),
        ];
        for (what, v) in cases {
            let r = AttestationDocument::parse(&with_entry(&v));
            assert!(
                matches!(
                    r,
                    Err(VerifyError::FieldType { .. } | VerifyError::FieldSize { .. })
                ),
                "{what}: {r:?}"
            );
        }
    }
}
