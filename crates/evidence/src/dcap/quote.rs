//! Parsing of DCAP quotes: SGX quote v3, TDX quote v4 and v5 (TDX 1.0 and
//! 1.5 bodies), ECDSA-P256 attestation keys, PCK chain certification data.
//! Pure and total: every input gives a [`Quote`] or a [`QuoteError`].

/// Intel's QE vendor id (`939A7233F79C4CA9940A0DB3957F0607`).
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// Attestation key type 2: ECDSA-256 with P-256.
pub(crate) const ATT_KEY_ECDSA_P256: u16 = 2;
/// Certification data type 5: PEM PCK chain (leaf, intermediate, root).
pub(crate) const CERT_DATA_PCK_CHAIN: u16 = 5;
/// Certification data type 6: QE report certification data (v4/v5 quotes).
pub(crate) const CERT_DATA_QE_REPORT: u16 = 6;
/// Size of an SGX enclave report body (also the QE report).
pub(crate) const SGX_REPORT_LEN: usize = 384;
/// Size of a TDX 1.0 TD report body.
pub(crate) const TD10_REPORT_LEN: usize = 584;
/// Size of a TDX 1.5 TD report body.
pub(crate) const TD15_REPORT_LEN: usize = 648;
/// The largest quote we accept (real ones are ~5 KB; bounds the work on hostile input).
pub const MAX_QUOTE_LEN: usize = 64 * 1024;

/// Which TEE produced the quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TeeType {
    /// SGX enclave (tee_type 0x00).
    Sgx,
    /// TDX trust domain (tee_type 0x81).
    Tdx,
}

/// Why quote bytes are not a quote we can verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuoteError {
    /// The bytes end before a field.
    #[error("quote truncated in {field}: need {need} bytes at offset {offset}, have {have}")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// Bytes the field needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// Larger than [`MAX_QUOTE_LEN`].
    #[error("quote is {0} bytes; at most {MAX_QUOTE_LEN} accepted")]
    TooLarge(usize),
    /// Not version 3 (SGX), 4 or 5 (TDX or SGX).
    #[error("unsupported quote version {0} (3, 4 and 5 are supported)")]
    UnsupportedVersion(u16),
    /// Not ECDSA-P256.
    #[error("unsupported attestation key type {0} (only 2 = ECDSA-P256)")]
    UnsupportedKeyType(u16),
    /// Neither SGX nor TDX.
    #[error("unsupported TEE type {0:#x} (0x0 = SGX, 0x81 = TDX)")]
    UnsupportedTeeType(u32),
    /// Version and TEE type do not go together (e.g. a v3 TDX quote).
    #[error("quote version {version} cannot carry a {tee:?} body")]
    VersionTeeMismatch {
        /// Header version.
        version: u16,
        /// Header TEE type.
        tee: TeeType,
    },
    /// v5 body type unknown or inconsistent with the header.
    #[error("quote v5 body type {body_type} with size {size} does not fit TEE type {tee:?}")]
    BadBodyType {
        /// Body type field.
        body_type: u16,
        /// Body size field.
        size: u32,
        /// Header TEE type.
        tee: TeeType,
    },
    /// A certification data type we do not handle where one is required.
    #[error("certification data type {got} where {expected} is required")]
    CertDataType {
        /// Required type.
        expected: u16,
        /// Found type.
        got: u16,
    },
    /// A length field disagrees with the bytes around it.
    #[error("{field} length {len} is inconsistent with the quote")]
    BadLength {
        /// Field.
        field: &'static str,
        /// Declared length.
        len: usize,
    },
    /// Non-zero bytes after the quote.
    #[error("{len} bytes after the quote, not all zero")]
    TrailingData {
        /// How many.
        len: usize,
    },
}

/// The 48-byte quote header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteHeader {
    /// 3, 4 or 5.
    pub version: u16,
    /// Attestation key type (2).
    pub att_key_type: u16,
    /// SGX or TDX.
    pub tee: TeeType,
    /// QE security version (as the quote claims; the QE report is authoritative).
    pub qe_svn: u16,
    /// PCE security version.
    pub pce_svn: u16,
    /// QE vendor id.
    pub qe_vendor_id: [u8; 16],
    /// Custom user data.
    pub user_data: [u8; 20],
}

/// An SGX enclave report body (the application enclave or the QE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveReport {
    /// CPU security version.
    pub cpu_svn: [u8; 16],
    /// MISCSELECT.
    pub misc_select: u32,
    /// Extended product id.
    pub isv_ext_prod_id: [u8; 16],
    /// ATTRIBUTES (flags ‖ xfrm).
    pub attributes: [u8; 16],
    /// MRENCLAVE.
    pub mr_enclave: [u8; 32],
    /// MRSIGNER.
    pub mr_signer: [u8; 32],
    /// CONFIGID.
    pub config_id: [u8; 64],
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// CONFIGSVN.
    pub config_svn: u16,
    /// ISVFAMILYID.
    pub isv_family_id: [u8; 16],
    /// REPORTDATA.
    pub report_data: [u8; 64],
}

impl EnclaveReport {
    /// The 384-byte encoding (what a QE signs; inverse of parsing).
    pub fn to_bytes(&self) -> [u8; SGX_REPORT_LEN] {
        let mut out = Vec::with_capacity(SGX_REPORT_LEN);
        out.extend_from_slice(&self.cpu_svn);
        out.extend_from_slice(&self.misc_select.to_le_bytes());
        out.extend_from_slice(&[0u8; 12]);
        out.extend_from_slice(&self.isv_ext_prod_id);
        out.extend_from_slice(&self.attributes);
        out.extend_from_slice(&self.mr_enclave);
        out.extend_from_slice(&[0u8; 32]);
        out.extend_from_slice(&self.mr_signer);
        out.extend_from_slice(&[0u8; 32]);
        out.extend_from_slice(&self.config_id);
        out.extend_from_slice(&self.isv_prod_id.to_le_bytes());
        out.extend_from_slice(&self.isv_svn.to_le_bytes());
        out.extend_from_slice(&self.config_svn.to_le_bytes());
        out.extend_from_slice(&[0u8; 42]);
        out.extend_from_slice(&self.isv_family_id);
        out.extend_from_slice(&self.report_data);
        let mut fixed = [0u8; SGX_REPORT_LEN];
        for (d, s) in fixed.iter_mut().zip(out) {
            *d = s;
        }
        fixed
    }

    /// Whether ATTRIBUTES.DEBUG (flags bit 1) is set.
    pub fn is_debug(&self) -> bool {
        self.attributes.first().is_some_and(|f| f & 0x02 != 0)
    }
}

/// A TDX TD report body (TDX 1.0, plus the TDX 1.5 fields when present).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    /// TEE TCB SVN: [0] module minor SVN, [1] module major version, ...
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM.
    pub mr_seam: [u8; 48],
    /// MRSIGNERSEAM.
    pub mr_signer_seam: [u8; 48],
    /// SEAMATTRIBUTES.
    pub seam_attributes: [u8; 8],
    /// TDATTRIBUTES.
    pub td_attributes: [u8; 8],
    /// XFAM.
    pub xfam: [u8; 8],
    /// MRTD.
    pub mr_td: [u8; 48],
    /// MRCONFIGID.
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
    /// RTMR0..3.
    pub rtmr: [[u8; 48]; 4],
    /// REPORTDATA.
    pub report_data: [u8; 64],
    /// TDX 1.5: TEE_TCB_SVN2.
    pub tee_tcb_svn2: Option<[u8; 16]>,
    /// TDX 1.5: MRSERVICETD.
    pub mr_service_td: Option<[u8; 48]>,
}

impl TdReport {
    /// The encoding: 584 bytes (TDX 1.0), 648 with the TDX 1.5 fields.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TD15_REPORT_LEN);
        for part in [
            &self.tee_tcb_svn[..],
            &self.mr_seam,
            &self.mr_signer_seam,
            &self.seam_attributes,
            &self.td_attributes,
            &self.xfam,
            &self.mr_td,
            &self.mr_config_id,
            &self.mr_owner,
            &self.mr_owner_config,
        ] {
            out.extend_from_slice(part);
        }
        for r in &self.rtmr {
            out.extend_from_slice(r);
        }
        out.extend_from_slice(&self.report_data);
        if let (Some(svn2), Some(service)) = (&self.tee_tcb_svn2, &self.mr_service_td) {
            out.extend_from_slice(svn2);
            out.extend_from_slice(service);
        }
        out
    }

    /// Whether TDATTRIBUTES.DEBUG (bit 0) is set.
    pub fn is_debug(&self) -> bool {
        self.td_attributes.first().is_some_and(|f| f & 0x01 != 0)
    }
}

/// The attested body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// SGX enclave report (boxed, as the TD report: both are hundreds of bytes).
    Sgx(Box<EnclaveReport>),
    /// TDX TD report.
    Td(Box<TdReport>),
}

impl Body {
    /// The 64 report-data bytes.
    pub fn report_data(&self) -> &[u8; 64] {
        match self {
            Body::Sgx(r) => &r.report_data,
            Body::Td(r) => &r.report_data,
        }
    }
}

/// A parsed quote. `signed` holds the exact bytes the attestation key signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// Header fields.
    pub header: QuoteHeader,
    /// The attested report.
    pub body: Body,
    /// Header and body exactly as signed by the attestation key.
    pub signed: Vec<u8>,
    /// ECDSA signature (r ‖ s) over `signed`.
    pub signature: [u8; 64],
    /// Attestation public key (x ‖ y).
    pub attestation_key: [u8; 64],
    /// The QE report, parsed.
    pub qe_report: EnclaveReport,
    /// The QE report bytes as signed by the PCK key.
    pub qe_report_raw: [u8; SGX_REPORT_LEN],
    /// ECDSA signature (r ‖ s) of the QE report by the PCK key.
    pub qe_report_signature: [u8; 64],
    /// QE authentication data (hashed into the QE report's report data).
    pub qe_auth_data: Vec<u8>,
    /// The PEM PCK chain from certification data type 5.
    pub pck_chain_pem: Vec<u8>,
    /// Length of the quote proper.
    pub len: usize,
    /// Zero bytes after the quote (tolerated, reported).
    pub trailing_zeros: usize,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], QuoteError> {
        let have = self.bytes.len().saturating_sub(self.pos);
        let out = self
            .pos
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or(QuoteError::Truncated {
                field,
                offset: self.pos,
                need: n,
                have,
            })?;
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], QuoteError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, QuoteError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, QuoteError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
}

fn usize_of(v: u32) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Parses an enclave report body (384 bytes).
pub(crate) fn parse_enclave_report(b: &[u8]) -> Result<EnclaveReport, QuoteError> {
    let mut c = Cursor { bytes: b, pos: 0 };
    let cpu_svn = c.array("report.cpu_svn")?;
    let misc_select = c.u32("report.misc_select")?;
    c.take(12, "report.reserved1")?;
    let isv_ext_prod_id = c.array("report.isv_ext_prod_id")?;
    let attributes = c.array("report.attributes")?;
    let mr_enclave = c.array("report.mr_enclave")?;
    c.take(32, "report.reserved2")?;
    let mr_signer = c.array("report.mr_signer")?;
    c.take(32, "report.reserved3")?;
    let config_id = c.array("report.config_id")?;
    let isv_prod_id = c.u16("report.isv_prod_id")?;
    let isv_svn = c.u16("report.isv_svn")?;
    let config_svn = c.u16("report.config_svn")?;
    c.take(42, "report.reserved4")?;
    let isv_family_id = c.array("report.isv_family_id")?;
    let report_data = c.array("report.report_data")?;
    Ok(EnclaveReport {
        cpu_svn,
        misc_select,
        isv_ext_prod_id,
        attributes,
        mr_enclave,
        mr_signer,
        config_id,
        isv_prod_id,
        isv_svn,
        config_svn,
        isv_family_id,
        report_data,
    })
}

fn parse_td_report(b: &[u8], v15: bool) -> Result<TdReport, QuoteError> {
    let mut c = Cursor { bytes: b, pos: 0 };
    let tee_tcb_svn = c.array("td.tee_tcb_svn")?;
    let mr_seam = c.array("td.mr_seam")?;
    let mr_signer_seam = c.array("td.mr_signer_seam")?;
    let seam_attributes = c.array("td.seam_attributes")?;
    let td_attributes = c.array("td.td_attributes")?;
    let xfam = c.array("td.xfam")?;
    let mr_td = c.array("td.mr_td")?;
    let mr_config_id = c.array("td.mr_config_id")?;
    let mr_owner = c.array("td.mr_owner")?;
    let mr_owner_config = c.array("td.mr_owner_config")?;
    let rtmr = [
        c.array("td.rtmr0")?,
        c.array("td.rtmr1")?,
        c.array("td.rtmr2")?,
        c.array("td.rtmr3")?,
    ];
    let report_data = c.array("td.report_data")?;
    let (tee_tcb_svn2, mr_service_td) = if v15 {
        (
            Some(c.array("td.tee_tcb_svn2")?),
            Some(c.array("td.mr_service_td")?),
        )
    } else {
        (None, None)
    };
    Ok(TdReport {
        tee_tcb_svn,
        mr_seam,
        mr_signer_seam,
        seam_attributes,
        td_attributes,
        xfam,
        mr_td,
        mr_config_id,
        mr_owner,
        mr_owner_config,
        rtmr,
        report_data,
        tee_tcb_svn2,
        mr_service_td,
    })
}

impl Quote {
    /// Parses a quote; zero bytes after it are tolerated and counted.
    pub fn parse(bytes: &[u8]) -> Result<Quote, QuoteError> {
        if bytes.len() > MAX_QUOTE_LEN {
            return Err(QuoteError::TooLarge(bytes.len()));
        }
        let mut c = Cursor { bytes, pos: 0 };
        let version = c.u16("header.version")?;
        let att_key_type = c.u16("header.att_key_type")?;
        let tee_raw = c.u32("header.tee_type")?;
        let qe_svn = c.u16("header.qe_svn")?;
        let pce_svn = c.u16("header.pce_svn")?;
        let qe_vendor_id = c.array("header.qe_vendor_id")?;
        let user_data = c.array("header.user_data")?;
        if !matches!(version, 3..=5) {
            return Err(QuoteError::UnsupportedVersion(version));
        }
        if att_key_type != ATT_KEY_ECDSA_P256 {
            return Err(QuoteError::UnsupportedKeyType(att_key_type));
        }
        let tee = match tee_raw {
            0 => TeeType::Sgx,
            0x81 => TeeType::Tdx,
            t => return Err(QuoteError::UnsupportedTeeType(t)),
        };
        if version == 3 && tee == TeeType::Tdx {
            return Err(QuoteError::VersionTeeMismatch { version, tee });
        }
        let body = match (version, tee) {
            (5, _) => {
                let body_type = c.u16("body.type")?;
                let size = c.u32("body.size")?;
                let (want_tee, want_size, v15) = match body_type {
                    1 => (TeeType::Sgx, SGX_REPORT_LEN, false),
                    2 => (TeeType::Tdx, TD10_REPORT_LEN, false),
                    3 => (TeeType::Tdx, TD15_REPORT_LEN, true),
                    _ => (tee, usize::MAX, false),
                };
                if want_tee != tee || usize_of(size) != want_size {
                    return Err(QuoteError::BadBodyType {
                        body_type,
                        size,
                        tee,
                    });
                }
                let raw = c.take(want_size, "body")?;
                match tee {
                    TeeType::Sgx => Body::Sgx(Box::new(parse_enclave_report(raw)?)),
                    TeeType::Tdx => Body::Td(Box::new(parse_td_report(raw, v15)?)),
                }
            }
            (_, TeeType::Sgx) => Body::Sgx(Box::new(parse_enclave_report(
                c.take(SGX_REPORT_LEN, "body")?,
            )?)),
            (_, TeeType::Tdx) => Body::Td(Box::new(parse_td_report(
                c.take(TD10_REPORT_LEN, "body")?,
                false,
            )?)),
        };
        let signed = bytes.get(..c.pos).unwrap_or_default().to_vec();
        let sig_len = usize_of(c.u32("signature_data_len")?);
        let sig_start = c.pos;
        let signature = c.array("signature")?;
        let attestation_key = c.array("attestation_key")?;
        let (qe_report_raw, qe_report_signature, qe_auth_data, pck_chain_pem);
        if version == 3 {
            qe_report_raw = c.array("qe_report")?;
            qe_report_signature = c.array("qe_report_signature")?;
            let auth_len = usize::from(c.u16("qe_auth_data_len")?);
            qe_auth_data = c.take(auth_len, "qe_auth_data")?.to_vec();
            pck_chain_pem = pck_chain(&mut c)?;
        } else {
            let outer_type = c.u16("cert_data.type")?;
            if outer_type != CERT_DATA_QE_REPORT {
                return Err(QuoteError::CertDataType {
                    expected: CERT_DATA_QE_REPORT,
                    got: outer_type,
                });
            }
            let outer_len = usize_of(c.u32("cert_data.size")?);
            let outer = c.take(outer_len, "cert_data")?;
            let mut inner = Cursor {
                bytes: outer,
                pos: 0,
            };
            qe_report_raw = inner.array("qe_report")?;
            qe_report_signature = inner.array("qe_report_signature")?;
            let auth_len = usize::from(inner.u16("qe_auth_data_len")?);
            qe_auth_data = inner.take(auth_len, "qe_auth_data")?.to_vec();
            pck_chain_pem = pck_chain(&mut inner)?;
            if inner.pos != outer.len() {
                return Err(QuoteError::BadLength {
                    field: "cert_data",
                    len: outer_len,
                });
            }
        }
        if c.pos - sig_start != sig_len {
            return Err(QuoteError::BadLength {
                field: "signature_data",
                len: sig_len,
            });
        }
        let rest = bytes.get(c.pos..).unwrap_or_default();
        if rest.iter().any(|b| *b != 0) {
            return Err(QuoteError::TrailingData { len: rest.len() });
        }
        Ok(Quote {
            header: QuoteHeader {
                version,
                att_key_type,
                tee,
                qe_svn,
                pce_svn,
                qe_vendor_id,
                user_data,
            },
            body,
            signed,
            signature,
            attestation_key,
            qe_report: parse_enclave_report(&qe_report_raw)?,
            qe_report_raw,
            qe_report_signature,
            qe_auth_data,
            pck_chain_pem,
            len: c.pos,
            trailing_zeros: rest.len(),
        })
    }

    /// SGX or TDX.
    pub fn tee(&self) -> TeeType {
        self.header.tee
    }
}

fn pck_chain(c: &mut Cursor<'_>) -> Result<Vec<u8>, QuoteError> {
    let t = c.u16("cert_data.type")?;
    if t != CERT_DATA_PCK_CHAIN {
        return Err(QuoteError::CertDataType {
            expected: CERT_DATA_PCK_CHAIN,
            got: t,
        });
    }
    let len = usize_of(c.u32("cert_data.size")?);
    Ok(c.take(len, "cert_data.pck_chain")?.to_vec())
}
