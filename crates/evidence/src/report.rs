//! The per-step verification report: human `Display`, serde JSON.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::Platform;
use crate::error::VerifyError;
use crate::input::Encoding;
use crate::nitro::document::AttestationDocument;
use crate::time::UnixTime;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The check ran and passed.
    Pass,
    /// The check ran and failed.
    Fail,
    /// Not required by the policy/expectations, or not evaluable.
    Skipped,
}

/// The stable name of a verification step: what code branches on and what
/// the JSON and text reports print ([`StepId::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum StepId {
    /// `input`: The input encoding (raw CBOR, base64, hex) decoded.
    Input,
    /// `envelope`: The evidence envelope parsed (input refused before any verifier ran).
    Envelope,
    /// `cose`: The bytes are a COSE_Sign1 with alg ES384.
    Cose,
    /// `payload`: The COSE payload is an attestation document.
    Payload,
    /// `chain`: The certificate chain ends in a trusted root.
    Chain,
    /// `validity`: Every certificate is valid at the verification time.
    Validity,
    /// `signature`: The evidence signature verifies with the leaf key.
    Signature,
    /// `freshness`: The document is recent enough.
    Freshness,
    /// `debug`: The enclave does not run in debug mode (or the policy allows it).
    Debug,
    /// `declared_fault`: No insecure fault is declared (or the policy accepts it).
    DeclaredFault,
    /// `nonce`: The evidence carries the challenge nonce.
    Nonce,
    /// `user_data`: `user_data` equals the expected binding.
    UserData,
    /// `public_key`: `public_key` equals the expected binding.
    PublicKey,
    /// `measurements`: The measurements match a release the policy names.
    Measurements,
    /// `endorsement`: The SEV-SNP VCEK/VLEK endorsement certificate is usable.
    Endorsement,
    /// `product`: The SEV-SNP product is known and consistent.
    Product,
    /// `tcb`: The SEV-SNP reported TCB matches the endorsement certificate.
    Tcb,
    /// `guest_policy`: The SEV-SNP guest policy is accepted.
    GuestPolicy,
    /// `vmpl`: The SEV-SNP VMPL is accepted.
    Vmpl,
    /// `report_data`: `report_data` equals the expected binding.
    ReportData,
    /// `platform`: The verified platform is the claimed one.
    Platform,
    /// `collateral`: The DCAP collateral is present and decodes.
    Collateral,
    /// `quote`: The DCAP quote parses.
    Quote,
    /// `pck_chain`: The DCAP PCK certificate chain ends in the Intel root.
    PckChain,
    /// `tcb_signing_chain`: The DCAP TCB signing chains end in the Intel root.
    TcbSigningChain,
    /// `collateral_validity`: The DCAP collateral is valid at the verification time.
    CollateralValidity,
    /// `crl`: The DCAP CRLs are signed by their issuers.
    Crl,
    /// `revocation`: No DCAP certificate is revoked.
    Revocation,
    /// `fmspc`: The DCAP TCB info is for the PCK's FMSPC.
    Fmspc,
    /// `tcb_info_signature`: The DCAP TCB info signature verifies.
    TcbInfoSignature,
    /// `qe_identity_signature`: The DCAP QE identity signature verifies.
    QeIdentitySignature,
    /// `qe_report_signature`: The DCAP QE report is signed by the PCK key.
    QeReportSignature,
    /// `qe_identity`: The DCAP QE report matches the QE identity.
    QeIdentity,
    /// `attestation_key_binding`: The DCAP QE report binds the attestation key.
    AttestationKeyBinding,
    /// `quote_signature`: The DCAP quote signature verifies with the attestation key.
    QuoteSignature,
    /// `tcb_level`: The DCAP TCB level is accepted.
    TcbLevel,
    /// `tdx_module`: The TDX module is one the TCB info describes.
    TdxModule,
    /// `report`: The SEV-SNP report parses.
    Report,
    /// `bundle`: A proof bundle's version and platform are supported.
    Bundle,
    /// `evidence_encoding`: A proof bundle's evidence is base64.
    EvidenceEncoding,
    /// `evidence`: A proof bundle's evidence verifies under the policy.
    Evidence,
    /// `binding`: The evidence binds a key set and the nonce.
    Binding,
    /// `keyset`: The bundle's key set is the bound one.
    Keyset,
    /// `receipt_signature`: The receipt is signed by the bound signing key.
    ReceiptSignature,
    /// `fault`: The receipt declares no fault (or the policy accepts it).
    Fault,
    /// `request_digest`: The receipt's request digest matches the given bytes.
    RequestDigest,
    /// `output_digest`: The receipt's output digest matches the given bytes.
    OutputDigest,
}

impl StepId {
    /// Every step, in declaration order.
    pub const ALL: &'static [StepId] = &[
        StepId::Input,
        StepId::Envelope,
        StepId::Cose,
        StepId::Payload,
        StepId::Chain,
        StepId::Validity,
        StepId::Signature,
        StepId::Freshness,
        StepId::Debug,
        StepId::DeclaredFault,
        StepId::Nonce,
        StepId::UserData,
        StepId::PublicKey,
        StepId::Measurements,
        StepId::Endorsement,
        StepId::Product,
        StepId::Tcb,
        StepId::GuestPolicy,
        StepId::Vmpl,
        StepId::ReportData,
        StepId::Platform,
        StepId::Collateral,
        StepId::Quote,
        StepId::PckChain,
        StepId::TcbSigningChain,
        StepId::CollateralValidity,
        StepId::Crl,
        StepId::Revocation,
        StepId::Fmspc,
        StepId::TcbInfoSignature,
        StepId::QeIdentitySignature,
        StepId::QeReportSignature,
        StepId::QeIdentity,
        StepId::AttestationKeyBinding,
        StepId::QuoteSignature,
        StepId::TcbLevel,
        StepId::TdxModule,
        StepId::Report,
        StepId::Bundle,
        StepId::EvidenceEncoding,
        StepId::Evidence,
        StepId::Binding,
        StepId::Keyset,
        StepId::ReceiptSignature,
        StepId::Fault,
        StepId::RequestDigest,
        StepId::OutputDigest,
    ];

    /// The stable name the reports print.
    pub const fn as_str(self) -> &'static str {
        match self {
            StepId::Input => "input",
            StepId::Envelope => "envelope",
            StepId::Cose => "cose",
            StepId::Payload => "payload",
            StepId::Chain => "chain",
            StepId::Validity => "validity",
            StepId::Signature => "signature",
            StepId::Freshness => "freshness",
            StepId::Debug => "debug",
            StepId::DeclaredFault => "declared_fault",
            StepId::Nonce => "nonce",
            StepId::UserData => "user_data",
            StepId::PublicKey => "public_key",
            StepId::Measurements => "measurements",
            StepId::Endorsement => "endorsement",
            StepId::Product => "product",
            StepId::Tcb => "tcb",
            StepId::GuestPolicy => "guest_policy",
            StepId::Vmpl => "vmpl",
            StepId::ReportData => "report_data",
            StepId::Platform => "platform",
            StepId::Collateral => "collateral",
            StepId::Quote => "quote",
            StepId::PckChain => "pck_chain",
            StepId::TcbSigningChain => "tcb_signing_chain",
            StepId::CollateralValidity => "collateral_validity",
            StepId::Crl => "crl",
            StepId::Revocation => "revocation",
            StepId::Fmspc => "fmspc",
            StepId::TcbInfoSignature => "tcb_info_signature",
            StepId::QeIdentitySignature => "qe_identity_signature",
            StepId::QeReportSignature => "qe_report_signature",
            StepId::QeIdentity => "qe_identity",
            StepId::AttestationKeyBinding => "attestation_key_binding",
            StepId::QuoteSignature => "quote_signature",
            StepId::TcbLevel => "tcb_level",
            StepId::TdxModule => "tdx_module",
            StepId::Report => "report",
            StepId::Bundle => "bundle",
            StepId::EvidenceEncoding => "evidence_encoding",
            StepId::Evidence => "evidence",
            StepId::Binding => "binding",
            StepId::Keyset => "keyset",
            StepId::ReceiptSignature => "receipt_signature",
            StepId::Fault => "fault",
            StepId::RequestDigest => "request_digest",
            StepId::OutputDigest => "output_digest",
        }
    }

    /// The step with this stable name.
    pub fn from_name(name: &str) -> Option<StepId> {
        StepId::ALL.iter().copied().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for StepId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One named check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Which check (serialised as its stable name).
    pub name: StepId,
    /// Outcome.
    pub status: Status,
    /// What was compared / why it failed.
    pub detail: String,
}

/// Records one step from a check result (pass with its detail, or fail with
/// the error's message) and hands the error back for the caller to keep.
/// The one recorder of evidence reports and proof-bundle reports.
pub fn record_step<E: fmt::Display>(
    steps: &mut Vec<Step>,
    name: StepId,
    r: Result<String, E>,
) -> Result<(), E> {
    let (status, detail, out) = match r {
        Ok(detail) => (Status::Pass, detail, Ok(())),
        Err(e) => (Status::Fail, e.to_string(), Err(e)),
    };
    steps.push(Step {
        name,
        status,
        detail,
    });
    out
}

/// The decoded document fields, printable without trusting them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentSummary {
    /// NSM module id.
    pub module_id: String,
    /// PCR digest algorithm.
    pub digest: String,
    /// Document creation time (ms since epoch).
    pub timestamp_ms: u64,
    /// Document creation time, RFC 3339.
    pub timestamp: String,
    /// PCR index → hex value.
    pub pcrs: BTreeMap<u8, String>,
    /// Number of certificates in `cabundle`.
    pub cabundle_len: usize,
    /// Size of `public_key` in bytes, if present.
    pub public_key_len: Option<usize>,
    /// Size of `user_data` in bytes, if present.
    pub user_data_len: Option<usize>,
    /// Size of `nonce` in bytes, if present.
    pub nonce_len: Option<usize>,
    /// `nonce` in hex, if present.
    pub nonce: Option<String>,
    /// Whether PCR0–2 are zero.
    pub debug: bool,
    /// The insecure fault the (dev) document declares, if any.
    pub insecure_fault: Option<String>,
}

impl DocumentSummary {
    /// Summarises a decoded document.
    pub fn of(doc: &AttestationDocument) -> Self {
        DocumentSummary {
            module_id: doc.module_id.clone(),
            digest: doc.digest.clone(),
            timestamp_ms: doc.timestamp_ms,
            timestamp: UnixTime::from_millis(doc.timestamp_ms).to_string(),
            pcrs: doc.pcrs.iter().map(|(i, v)| (*i, hex::encode(v))).collect(),
            cabundle_len: doc.cabundle.len(),
            public_key_len: doc.public_key.as_ref().map(Vec::len),
            user_data_len: doc.user_data.as_ref().map(Vec::len),
            nonce_len: doc.nonce.as_ref().map(Vec::len),
            nonce: doc.nonce.as_ref().map(hex::encode),
            debug: doc.is_debug(),
            insecure_fault: doc.insecure_fault.clone(),
        }
    }
}

/// The decoded fields of a SEV-SNP report, printable without trusting them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnpSummary {
    /// Report format version.
    pub version: u32,
    /// VCEK or VLEK.
    pub signing_key: Option<crate::snp::SigningKey>,
    /// CPUID family, model, stepping (v3+).
    pub cpuid: Option<(u8, u8, u8)>,
    /// The product the CPUID names, if known.
    pub cpuid_product: Option<crate::snp::Product>,
    /// Guest policy, hex.
    pub policy: String,
    /// Debug allowed by the guest policy.
    pub debug: bool,
    /// Migration agent allowed by the guest policy.
    pub migration_agent: bool,
    /// VMPL the report was requested from.
    pub vmpl: u32,
    /// Launch measurement, hex.
    pub measurement: String,
    /// Host data, hex.
    pub host_data: String,
    /// Report data, hex.
    pub report_data: String,
    /// Chip id, hex (zero when masked or VLEK-signed).
    pub chip_id: String,
    /// Reported TCB (raw u64, hex).
    pub reported_tcb: String,
    /// Current TCB (raw u64, hex).
    pub current_tcb: String,
}

impl SnpSummary {
    /// Summarises a parsed report.
    pub fn of(r: &crate::snp::AttestationReport) -> Self {
        SnpSummary {
            version: r.version,
            signing_key: r.signing_key().ok(),
            cpuid: r.cpuid,
            cpuid_product: r.cpuid_product().and_then(Result::ok),
            policy: format!("{:#x}", r.policy.0),
            debug: r.policy.debug(),
            migration_agent: r.policy.migration_agent(),
            vmpl: r.vmpl,
            measurement: hex::encode(r.measurement),
            host_data: hex::encode(r.host_data),
            report_data: hex::encode(r.report_data),
            chip_id: hex::encode(r.chip_id),
            reported_tcb: format!("{:#018x}", r.reported_tcb.0),
            current_tcb: format!("{:#018x}", r.current_tcb.0),
        }
    }
}

/// The failure that decided the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportError {
    /// [`VerifyError::code`].
    pub code: &'static str,
    /// Human message.
    pub message: String,
}

/// Everything a verification found out, passed or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `true` only when every required step passed.
    pub verified: bool,
    /// Platform of the trusted root the chain ended in (if it got that far).
    pub platform: Option<Platform>,
    /// Name of that root.
    pub root: Option<String>,
    /// How the input was encoded.
    pub encoding: Option<Encoding>,
    /// The injected verification time.
    pub at: String,
    /// Decoded fields, when the payload parsed.
    pub document: Option<DocumentSummary>,
    /// Decoded DCAP quote fields (SGX/TDX), when the quote parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote: Option<crate::dcap::QuoteSummary>,
    /// Decoded SEV-SNP report fields, when the input was an SNP report that parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snp: Option<SnpSummary>,
    /// Every check in order.
    pub steps: Vec<Step>,
    /// The first failure, when not verified.
    pub error: Option<ReportError>,
}

impl Report {
    pub(crate) fn new(at: UnixTime) -> Self {
        Report {
            verified: false,
            platform: None,
            root: None,
            encoding: None,
            at: at.to_string(),
            document: None,
            quote: None,
            snp: None,
            steps: Vec::with_capacity(12),
            error: None,
        }
    }

    /// A failed report for input that never reached a verifier (e.g. a
    /// malformed envelope): one failing step named `step`.
    pub fn refused(at: UnixTime, step: StepId, code: &'static str, message: &str) -> Self {
        let mut r = Report::new(at);
        r.push(step, Status::Fail, message);
        r.error = Some(ReportError {
            code,
            message: message.to_owned(),
        });
        r
    }

    pub(crate) fn push(&mut self, name: StepId, status: Status, detail: impl Into<String>) {
        self.steps.push(Step {
            name,
            status,
            detail: detail.into(),
        });
    }

    /// Records a step from a check result; returns the error for the caller to keep.
    pub(crate) fn record(
        &mut self,
        name: StepId,
        r: Result<String, VerifyError>,
    ) -> Option<VerifyError> {
        record_step(&mut self.steps, name, r).err()
    }

    pub(crate) fn finish(&mut self, first_error: Option<&VerifyError>) {
        self.verified = first_error.is_none();
        self.error = first_error.map(|e| ReportError {
            code: e.code(),
            message: e.to_string(),
        });
    }

    /// The step `id`, if it ran or was skipped.
    pub fn step(&self, id: StepId) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == id)
    }

    /// Process exit status for a CLI: 0 only when verified.
    pub fn exit_code(&self) -> i32 {
        if self.verified { 0 } else { 1 }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.platform, &self.root) {
            (Some(p), Some(r)) => writeln!(f, "platform:   {p} (root: {r})")?,
            (Some(p), None) => writeln!(f, "platform:   {p}")?,
            _ => writeln!(f, "platform:   unknown")?,
        }
        if let Some(e) = self.encoding {
            writeln!(f, "input:      {e}")?;
        }
        writeln!(f, "checked at: {}", self.at)?;
        if let Some(d) = &self.document {
            writeln!(f, "module_id:  {}", d.module_id)?;
            writeln!(f, "timestamp:  {} ({} ms)", d.timestamp, d.timestamp_ms)?;
            writeln!(
                f,
                "digest:     {}{}",
                d.digest,
                if d.debug { "  [debug mode]" } else { "" }
            )?;
            for (i, v) in &d.pcrs {
                writeln!(f, "  PCR{i:<2} {v}")?;
            }
            let size =
                |n: Option<usize>| n.map_or_else(|| "absent".to_owned(), |n| format!("{n} bytes"));
            writeln!(
                f,
                "public_key: {}, user_data: {}, nonce: {}",
                size(d.public_key_len),
                size(d.user_data_len),
                size(d.nonce_len)
            )?;
            if let Some(fault) = &d.insecure_fault {
                writeln!(f, "fault:      {fault} (declared; INSECURE)")?;
            }
        }
        if let Some(q) = &self.quote {
            writeln!(
                f,
                "quote:      {:?} v{}, {} bytes{}{}",
                q.tee,
                q.version,
                q.len,
                if q.trailing_zeros > 0 {
                    format!(" + {} zero padding", q.trailing_zeros)
                } else {
                    String::new()
                },
                if q.debug { "  [debug]" } else { "" }
            )?;
            if let Some(fmspc) = &q.fmspc {
                writeln!(f, "fmspc:      {fmspc}")?;
            }
            let st = |s: Option<crate::dcap::TcbStatus>| {
                s.map_or_else(|| "unknown".to_owned(), |s| s.to_string())
            };
            writeln!(
                f,
                "tcb:        platform {}, QE {}{}",
                st(q.tcb_status),
                st(q.qe_tcb_status),
                if q.advisory_ids.is_empty() {
                    String::new()
                } else {
                    format!(", advisories {}", q.advisory_ids.join(", "))
                }
            )?;
            for (k, v) in &q.measurements {
                writeln!(f, "  {k:<13} {v}")?;
            }
            writeln!(f, "  report_data   {}", q.report_data)?;
        }
        if let Some(r) = &self.snp {
            writeln!(
                f,
                "report:     SEV-SNP v{}, signed by {}, VMPL {}",
                r.version,
                r.signing_key
                    .map_or_else(|| "?".to_owned(), |k| k.to_string()),
                r.vmpl
            )?;
            if let Some((fam, model, step)) = r.cpuid {
                writeln!(
                    f,
                    "cpuid:      family {fam:#04x} model {model:#04x} stepping {step}"
                )?;
            }
            writeln!(
                f,
                "policy:     {}{}{}",
                r.policy,
                if r.debug { "  [debug]" } else { "" },
                if r.migration_agent {
                    "  [migration agent]"
                } else {
                    ""
                }
            )?;
            writeln!(
                f,
                "tcb:        reported {}, current {}",
                r.reported_tcb, r.current_tcb
            )?;
            writeln!(f, "measurement {}", r.measurement)?;
            writeln!(f, "host_data   {}", r.host_data)?;
            writeln!(f, "report_data {}", r.report_data)?;
        }
        writeln!(f, "steps:")?;
        for s in &self.steps {
            let tag = match s.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skipped => "SKIP",
            };
            writeln!(f, "  [{tag}] {:<12} {}", s.name, s.detail)?;
        }
        match &self.error {
            None => write!(f, "result:     VERIFIED"),
            Some(e) => write!(f, "result:     FAILED ({}): {}", e.code, e.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_ids_keep_their_report_names() {
        let mut seen = std::collections::BTreeSet::new();
        for id in StepId::ALL {
            assert!(seen.insert(id.as_str()), "duplicate name {id}");
            assert_eq!(StepId::from_name(id.as_str()), Some(*id));
        }
        assert_eq!(StepId::from_name("no_such_step"), None);
        let step = Step {
            name: StepId::DeclaredFault,
            status: Status::Fail,
            detail: "x".into(),
        };
        assert_eq!(
            serde_json::to_value(&step).ok(),
            Some(serde_json::json!({"name": "declared_fault", "status": "fail", "detail": "x"}))
        );
        assert_eq!(format!("[{:<8}]", StepId::Tcb), "[tcb     ]");
    }

    #[test]
    fn record_step_keeps_the_error_and_its_message() {
        let mut steps = Vec::new();
        assert_eq!(
            record_step::<VerifyError>(&mut steps, StepId::Debug, Ok("fine".into())),
            Ok(())
        );
        let r = record_step(&mut steps, StepId::Nonce, Err(VerifyError::NonceMissing));
        assert_eq!(r, Err(VerifyError::NonceMissing));
        let got: Vec<_> = steps.iter().map(|s| (s.name, s.status)).collect();
        assert_eq!(
            got,
            [(StepId::Debug, Status::Pass), (StepId::Nonce, Status::Fail)]
        );
        assert_eq!(
            steps.last().map(|s| s.detail.as_str()),
            Some("document carries no nonce")
        );
    }
}
