//! Collateral: what Intel PCS (or a PCCS) serves for a platform, in the two
//! shapes we read: dcap-qvl's `QuoteCollateralV3` JSON and the raw PCS
//! responses. Parsing checks structure only; signatures, chains and time are
//! checked by the verifier.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::certs::{Crl, CrlError};
use super::tcb::{QeIdentity, TcbInfo, TcbInfoError};
use crate::pem::{self, PemError};

/// Largest collateral document we read (PCS responses are tens of KB).
pub const MAX_COLLATERAL_LEN: usize = 1024 * 1024;

/// Why collateral was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralError {
    /// Larger than [`MAX_COLLATERAL_LEN`].
    #[error("{field} is {len} bytes; at most {MAX_COLLATERAL_LEN} accepted")]
    TooLarge {
        /// Which part.
        field: &'static str,
        /// Its size.
        len: usize,
    },
    /// Not the JSON shape expected.
    #[error("{field} is not valid JSON of the expected shape")]
    Json {
        /// Which document.
        field: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A hex field does not decode or has the wrong size.
    #[error("{field} is not hex of the expected size")]
    Hex {
        /// Field.
        field: &'static str,
    },
    /// A PEM chain does not read.
    #[error("{field}")]
    Pem {
        /// Field.
        field: &'static str,
        /// The PEM error.
        #[source]
        source: PemError,
    },
    /// A CRL does not parse.
    #[error("{field}")]
    Crl {
        /// Field.
        field: &'static str,
        /// The CRL error.
        #[source]
        source: CrlError,
    },
    /// The TCB info or QE identity does not parse.
    #[error(transparent)]
    TcbInfo(#[from] TcbInfoError),
}

/// Collateral for one platform (FMSPC) and PCK CA, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collateral {
    /// Root CA CRL, DER.
    pub root_ca_crl_der: Vec<u8>,
    /// PCK (platform or processor CA) CRL, DER.
    pub pck_crl_der: Vec<u8>,
    /// The root CA CRL, parsed.
    pub root_ca_crl: Crl,
    /// The PCK CRL, parsed.
    pub pck_crl: Crl,
    /// TCB signing chain (leaf first, DER) for the TCB info.
    pub tcb_info_chain: Vec<Vec<u8>>,
    /// TCB signing chain (leaf first, DER) for the QE identity.
    pub qe_identity_chain: Vec<Vec<u8>>,
    /// The TCB info object text, exactly as signed.
    pub tcb_info_text: String,
    /// Signature (r ‖ s) over `tcb_info_text`.
    pub tcb_info_signature: [u8; 64],
    /// The TCB info, parsed.
    pub tcb_info: TcbInfo,
    /// The QE identity object text, exactly as signed.
    pub qe_identity_text: String,
    /// Signature (r ‖ s) over `qe_identity_text`.
    pub qe_identity_signature: [u8; 64],
    /// The QE identity, parsed.
    pub qe_identity: QeIdentity,
}

/// dcap-qvl's `QuoteCollateralV3` JSON shape (CRLs hex DER, chains PEM,
/// TCB info / QE identity as their signed text, signatures hex `r ‖ s`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollateralJson {
    /// PEM chain of the PCK CRL issuer (kept for compatibility; the
    /// verifier uses the PCK chain of the quote).
    #[serde(default)]
    pub pck_crl_issuer_chain: String,
    /// Hex DER.
    pub root_ca_crl: String,
    /// Hex DER.
    pub pck_crl: String,
    /// PEM.
    pub tcb_info_issuer_chain: String,
    /// Signed JSON text.
    pub tcb_info: String,
    /// Hex r ‖ s.
    pub tcb_info_signature: String,
    /// PEM.
    pub qe_identity_issuer_chain: String,
    /// Signed JSON text.
    pub qe_identity: String,
    /// Hex r ‖ s.
    pub qe_identity_signature: String,
}

/// The raw PCS responses, as files in a directory.
#[derive(Debug, Clone, Copy)]
pub struct PcsFiles<'a> {
    /// `tcb_info.json`: `{"tcbInfo": {...}, "signature": "hex"}`.
    pub tcb_info_json: &'a [u8],
    /// `qe_identity.json`: `{"enclaveIdentity": {...}, "signature": "hex"}`.
    pub qe_identity_json: &'a [u8],
    /// `pck_crl.der` (DER, or PEM `X509 CRL`).
    pub pck_crl: &'a [u8],
    /// `root_ca_crl.der` (DER, or PEM `X509 CRL`).
    pub root_ca_crl: &'a [u8],
    /// `tcb_signing_chain.pem`.
    pub tcb_signing_chain_pem: &'a str,
}

/// File names of a PCS collateral directory.
pub mod files {
    /// TCB info response body.
    pub const TCB_INFO: &str = "tcb_info.json";
    /// QE identity response body.
    pub const QE_IDENTITY: &str = "qe_identity.json";
    /// PCK CRL.
    pub const PCK_CRL: &str = "pck_crl.der";
    /// Root CA CRL.
    pub const ROOT_CA_CRL: &str = "root_ca_crl.der";
    /// TCB signing chain (PEM).
    pub const TCB_SIGNING_CHAIN: &str = "tcb_signing_chain.pem";
}

fn check_len(field: &'static str, len: usize) -> Result<(), CollateralError> {
    if len > MAX_COLLATERAL_LEN {
        return Err(CollateralError::TooLarge { field, len });
    }
    Ok(())
}

fn sig(field: &'static str, s: &str) -> Result<[u8; 64], CollateralError> {
    let mut out = [0u8; 64];
    hex::decode_to_slice(s.trim(), &mut out).map_err(|_| CollateralError::Hex { field })?;
    Ok(out)
}

fn chain(field: &'static str, text: &str) -> Result<Vec<Vec<u8>>, CollateralError> {
    pem::certificates(text).map_err(|source| CollateralError::Pem { field, source })
}

fn crl(field: &'static str, der: &[u8]) -> Result<Crl, CollateralError> {
    Crl::parse(der).map_err(|source| CollateralError::Crl { field, source })
}

/// DER from a CRL file that may be PEM (`-----BEGIN X509 CRL-----`).
fn crl_bytes(field: &'static str, bytes: &[u8]) -> Result<Vec<u8>, CollateralError> {
    let text = std::str::from_utf8(bytes).ok();
    match text.filter(|t| t.trim_start().starts_with("-----BEGIN X509 CRL-----")) {
        Some(t) => {
            pem::block(t, "X509 CRL").map_err(|source| CollateralError::Pem { field, source })
        }
        None => Ok(bytes.to_vec()),
    }
}

impl Collateral {
    /// Parses dcap-qvl's `QuoteCollateralV3` JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Collateral, CollateralError> {
        check_len("collateral", bytes.len())?;
        let j: CollateralJson =
            serde_json::from_slice(bytes).map_err(|source| CollateralError::Json {
                field: "collateral",
                source,
            })?;
        Self::from_parts(j)
    }

    /// Parses the parts of the JSON shape.
    pub fn from_parts(j: CollateralJson) -> Result<Collateral, CollateralError> {
        let hexed =
            |field, s: &str| hex::decode(s.trim()).map_err(|_| CollateralError::Hex { field });
        let root_ca_crl_der = hexed("root_ca_crl", &j.root_ca_crl)?;
        let pck_crl_der = hexed("pck_crl", &j.pck_crl)?;
        Ok(Collateral {
            root_ca_crl: crl("root_ca_crl", &root_ca_crl_der)?,
            pck_crl: crl("pck_crl", &pck_crl_der)?,
            root_ca_crl_der,
            pck_crl_der,
            tcb_info_chain: chain("tcb_info_issuer_chain", &j.tcb_info_issuer_chain)?,
            qe_identity_chain: chain("qe_identity_issuer_chain", &j.qe_identity_issuer_chain)?,
            tcb_info: TcbInfo::parse(&j.tcb_info)?,
            tcb_info_signature: sig("tcb_info_signature", &j.tcb_info_signature)?,
            tcb_info_text: j.tcb_info,
            qe_identity: QeIdentity::parse(&j.qe_identity)?,
            qe_identity_signature: sig("qe_identity_signature", &j.qe_identity_signature)?,
            qe_identity_text: j.qe_identity,
        })
    }

    /// Parses the raw PCS responses. The signed text of `tcbInfo` /
    /// `enclaveIdentity` is taken byte for byte from the response body.
    pub fn from_pcs(f: PcsFiles<'_>) -> Result<Collateral, CollateralError> {
        for (field, len) in [
            (files::TCB_INFO, f.tcb_info_json.len()),
            (files::QE_IDENTITY, f.qe_identity_json.len()),
            (files::PCK_CRL, f.pck_crl.len()),
            (files::ROOT_CA_CRL, f.root_ca_crl.len()),
            (files::TCB_SIGNING_CHAIN, f.tcb_signing_chain_pem.len()),
        ] {
            check_len(field, len)?;
        }
        #[derive(Deserialize)]
        struct Signed<'a> {
            #[serde(
                borrow,
                rename = "tcbInfo",
                alias = "enclaveIdentity",
                alias = "qeIdentity"
            )]
            body: &'a RawValue,
            signature: String,
        }
        let tcb: Signed<'_> =
            serde_json::from_slice(f.tcb_info_json).map_err(|source| CollateralError::Json {
                field: files::TCB_INFO,
                source,
            })?;
        let qe: Signed<'_> =
            serde_json::from_slice(f.qe_identity_json).map_err(|source| CollateralError::Json {
                field: files::QE_IDENTITY,
                source,
            })?;
        let pck_crl_der = crl_bytes(files::PCK_CRL, f.pck_crl)?;
        let root_ca_crl_der = crl_bytes(files::ROOT_CA_CRL, f.root_ca_crl)?;
        let signing = chain(files::TCB_SIGNING_CHAIN, f.tcb_signing_chain_pem)?;
        Ok(Collateral {
            root_ca_crl: crl(files::ROOT_CA_CRL, &root_ca_crl_der)?,
            pck_crl: crl(files::PCK_CRL, &pck_crl_der)?,
            root_ca_crl_der,
            pck_crl_der,
            tcb_info_chain: signing.clone(),
            qe_identity_chain: signing,
            tcb_info: TcbInfo::parse(tcb.body.get())?,
            tcb_info_signature: sig("tcb_info signature", &tcb.signature)?,
            tcb_info_text: tcb.body.get().to_owned(),
            qe_identity: QeIdentity::parse(qe.body.get())?,
            qe_identity_signature: sig("qe_identity signature", &qe.signature)?,
            qe_identity_text: qe.body.get().to_owned(),
        })
    }

    /// The `QuoteCollateralV3` JSON of this collateral (what a node serves
    /// beside its quote and what the collateral cache stores).
    pub fn to_json(&self) -> CollateralJson {
        let pem_chain = |c: &[Vec<u8>]| c.iter().map(|d| pem::encode_certificate(d)).collect();
        CollateralJson {
            pck_crl_issuer_chain: String::new(),
            root_ca_crl: hex::encode(&self.root_ca_crl_der),
            pck_crl: hex::encode(&self.pck_crl_der),
            tcb_info_issuer_chain: pem_chain(&self.tcb_info_chain),
            tcb_info: self.tcb_info_text.clone(),
            tcb_info_signature: hex::encode(self.tcb_info_signature),
            qe_identity_issuer_chain: pem_chain(&self.qe_identity_chain),
            qe_identity: self.qe_identity_text.clone(),
            qe_identity_signature: hex::encode(self.qe_identity_signature),
        }
    }
}
