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

/// One named check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Stable step name (`cose`, `payload`, `signature`, `chain`, `validity`,
    /// `freshness`, `debug`, `declared_fault`, `nonce`, `measurements`, `user_data`,
    /// `public_key`).
    pub name: &'static str,
    /// Outcome.
    pub status: Status,
    /// What was compared / why it failed.
    pub detail: String,
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
    pub fn refused(at: UnixTime, step: &'static str, code: &'static str, message: &str) -> Self {
        let mut r = Report::new(at);
        r.push(step, Status::Fail, message);
        r.error = Some(ReportError {
            code,
            message: message.to_owned(),
        });
        r
    }

    pub(crate) fn push(&mut self, name: &'static str, status: Status, detail: impl Into<String>) {
        self.steps.push(Step {
            name,
            status,
            detail: detail.into(),
        });
    }

    /// Records a step from a check result; returns the error for the caller to keep.
    pub(crate) fn record(
        &mut self,
        name: &'static str,
        r: Result<String, VerifyError>,
    ) -> Option<VerifyError> {
        match r {
            Ok(detail) => {
                self.push(name, Status::Pass, detail);
                None
            }
            Err(e) => {
                self.push(name, Status::Fail, e.to_string());
                Some(e)
            }
        }
    }

    pub(crate) fn finish(&mut self, first_error: Option<&VerifyError>) {
        self.verified = first_error.is_none();
        self.error = first_error.map(|e| ReportError {
            code: e.code(),
            message: e.to_string(),
        });
    }

    /// The step with this name.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
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
