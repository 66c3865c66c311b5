//! Intel SGX / TDX DCAP quotes: parsing, collateral and strict verification.
//!
//! ```no_run
//! # use attesta_evidence::dcap::*;
//! # use attesta_evidence::UnixTime;
//! # fn f(quote: &[u8], collateral_json: &[u8], binding: [u8; 64]) -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = DcapVerifier::new(attesta_evidence::Policy::aws_nitro()?);
//! let collateral = Collateral::from_json(collateral_json)?;
//! let v = verifier.verify(quote, &collateral, &DcapExpected { report_data: Some(binding) },
//!                         UnixTime::from_system(std::time::SystemTime::now()));
//! println!("{}", v.report);
//! let verified = v.outcome?;
//! # Ok(()) }
//! ```

mod certs;
mod collateral;
mod der;
mod error;
mod quote;
mod registry;
mod sigcache;
mod tcb;
mod verifier;

pub use certs::{Crl, CrlError, PckExtension};
pub use collateral::{
    Collateral, CollateralError, CollateralJson, MAX_COLLATERAL_LEN, PcsFiles, files,
};
pub use error::DcapError;
pub use quote::{
    Body, EnclaveReport, INTEL_QE_VENDOR_ID, MAX_QUOTE_LEN, Quote, QuoteError, QuoteHeader,
    TdReport, TeeType,
};
pub use registry::{DcapRelease, measurements_of};
pub use tcb::{
    QeIdentity, SvnLevel, TcbInfo, TcbInfoError, TcbLevel, TcbStatus, TdxModule, UnknownTcbStatus,
};
pub use verifier::{
    DcapExpected, DcapRoot, DcapVerification, DcapVerifier, INTEL_SGX_ROOT_CA_SHA256, VerifiedQuote,
};

use std::collections::BTreeMap;

/// The decoded quote fields, printable without trusting them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuoteSummary {
    /// SGX or TDX.
    pub tee: TeeType,
    /// Quote version.
    pub version: u16,
    /// Length of the quote proper.
    pub len: usize,
    /// Zero bytes after it.
    pub trailing_zeros: usize,
    /// PCK FMSPC (hex), when the PCK parsed.
    pub fmspc: Option<String>,
    /// Matched platform TCB status.
    pub tcb_status: Option<TcbStatus>,
    /// Matched QE TCB status.
    pub qe_tcb_status: Option<TcbStatus>,
    /// Advisory ids of the matched levels.
    pub advisory_ids: Vec<String>,
    /// Measurements by name (hex).
    pub measurements: BTreeMap<&'static str, String>,
    /// Report data (hex).
    pub report_data: String,
    /// Whether the debug attribute is set.
    pub debug: bool,
}

impl QuoteSummary {
    pub(crate) fn of(
        q: &Quote,
        ext: Option<&PckExtension>,
        tcb_status: Option<TcbStatus>,
        qe_tcb_status: Option<TcbStatus>,
        advisory_ids: Vec<String>,
    ) -> Self {
        let mut measurements: BTreeMap<&'static str, String> = measurements_of(&q.body)
            .into_iter()
            .map(|(k, v)| (k, hex::encode(v)))
            .collect();
        if let Body::Sgx(r) = &q.body {
            measurements.insert("isvprodid", r.isv_prod_id.to_string());
            measurements.insert("isvsvn", r.isv_svn.to_string());
        }
        QuoteSummary {
            tee: q.tee(),
            version: q.header.version,
            len: q.len,
            trailing_zeros: q.trailing_zeros,
            fmspc: ext.map(|e| hex::encode_upper(e.fmspc)),
            tcb_status,
            qe_tcb_status,
            advisory_ids,
            measurements,
            report_data: hex::encode(q.body.report_data()),
            debug: match &q.body {
                Body::Sgx(r) => r.is_debug(),
                Body::Td(r) => r.is_debug(),
            },
        }
    }
}

/// Whether bytes look like a DCAP quote (version 3–5, ECDSA-P256, SGX or TDX header).
pub fn looks_like_quote(bytes: &[u8]) -> bool {
    matches!(bytes.get(..8), Some([3..=5, 0, 2, 0, 0 | 0x81, 0, 0, 0]))
}

/// The quote bytes of input given raw, as hex or as base64 (`None`: not a quote).
pub fn decode_quote(input: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    if looks_like_quote(input) {
        return Some(std::borrow::Cow::Borrowed(input));
    }
    crate::input::decode_input(input)
        .ok()
        .map(|(_, b)| b)
        .filter(|b| looks_like_quote(b))
}

/// Which Intel CA issued a PCK certificate (selects the PCK CRL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PckCa {
    /// Intel SGX PCK Platform CA (multi-package platforms, TDX).
    Platform,
    /// Intel SGX PCK Processor CA.
    Processor,
}

impl PckCa {
    /// The PCS `ca` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            PckCa::Platform => "platform",
            PckCa::Processor => "processor",
        }
    }
}

/// What a collateral fetch needs from a quote: its TEE, the PCK's FMSPC and
/// issuing CA. Read without verifying anything (the verifier does that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PckIdentity {
    /// SGX or TDX (TCB info and QE identity differ).
    pub tee: TeeType,
    /// FMSPC from the PCK's SGX extension.
    pub fmspc: [u8; 6],
    /// Issuer of the PCK.
    pub ca: PckCa,
}

impl PckIdentity {
    /// Reads the PCK leaf of a parsed quote.
    pub fn of(quote: &Quote) -> Result<Self, DcapError> {
        let text = String::from_utf8_lossy(&quote.pck_chain_pem);
        let ders = crate::pem::certificates(&text).map_err(|e| DcapError::Certificate {
            which: "PCK chain".into(),
            source: Box::new(crate::x509::X509Error::Pem(e)),
        })?;
        let leaf_der = ders.first().ok_or_else(|| DcapError::BadCertificate {
            which: "PCK chain".into(),
            reason: "empty".into(),
        })?;
        let leaf = certs::parse("PCK chain leaf", leaf_der)?;
        let ext = leaf.sgx.ok_or(DcapError::NotPck)?;
        let ca = match ders
            .get(1)
            .map(|d| certs::parse("PCK chain[1]", d))
            .transpose()?
        {
            Some(c) if c.subject.contains("Processor") => PckCa::Processor,
            _ => PckCa::Platform,
        };
        Ok(PckIdentity {
            tee: quote.tee(),
            fmspc: ext.fmspc,
            ca,
        })
    }
}

impl Collateral {
    /// When the first part of this collateral (CRL, TCB info, QE identity) expires.
    pub fn next_update(&self) -> crate::UnixTime {
        [
            self.root_ca_crl.next_update,
            self.pck_crl.next_update,
            self.tcb_info.next_update,
            self.qe_identity.next_update,
        ]
        .into_iter()
        .min()
        .unwrap_or(crate::UnixTime::from_millis(0))
    }
}
