//! Minimal PEM reading for certificates (trusted roots, dev root file).

use base64::Engine as _;

/// Why a PEM text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// No `-----BEGIN CERTIFICATE-----` block.
    #[error("no PEM CERTIFICATE block found")]
    NoCertificate,
    /// No block with this label.
    #[error("no PEM {0} block found")]
    NoBlock(&'static str),
    /// A block without its END line.
    #[error("PEM block is not terminated")]
    Unterminated,
    /// The body is not base64.
    #[error("PEM body is not base64: {0}")]
    Base64(#[source] base64::DecodeError),
}

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// Every `CERTIFICATE` block in `text`, as DER, in order.
pub fn certificates(text: &str) -> Result<Vec<Vec<u8>>, PemError> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let body_start = rest
            .get(start + BEGIN.len()..)
            .ok_or(PemError::Unterminated)?;
        let end = body_start.find(END).ok_or(PemError::Unterminated)?;
        let body: String = body_start
            .get(..end)
            .ok_or(PemError::Unterminated)?
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(PemError::Base64)?;
        out.push(der);
        rest = body_start.get(end + END.len()..).unwrap_or("");
    }
    if out.is_empty() {
        return Err(PemError::NoCertificate);
    }
    Ok(out)
}

/// The DER of the first block labelled `label` (e.g. `X509 CRL`).
pub fn block(text: &str, label: &'static str) -> Result<Vec<u8>, PemError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin).ok_or(PemError::NoBlock(label))?;
    let body = text
        .get(start + begin.len()..)
        .ok_or(PemError::Unterminated)?;
    let stop = body.find(&end).ok_or(PemError::Unterminated)?;
    let b64: String = body
        .get(..stop)
        .ok_or(PemError::Unterminated)?
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(PemError::Base64)
}

/// Encodes DER as one PEM `CERTIFICATE` block (64-column lines).
pub fn encode_certificate(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::with_capacity(b64.len() + 80);
    s.push_str(BEGIN);
    s.push('\n');
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        s.push('\n');
    }
    s.push_str(END);
    s.push('\n');
    s
}
