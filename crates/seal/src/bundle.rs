//! Proof bundles: a signed receipt plus the evidence that binds the key set
//! that signed it. Verifiable offline, years later: by default the evidence
//! is checked at its own timestamp (certificates expire within hours).

use std::fmt;

use attesta_evidence::nitro::cose;
use attesta_evidence::{
    AttestationDocument, ENVELOPE_VERSION, Envelope, EvidenceVerifier, Expected, Platform, Report,
    ReportError, Shared, Status, Step, StepId, UnixTime, VerifiedEvidence, VerifyError,
    decode_input, record_step,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::binding::{self, BindingError};
use crate::keys::PublicKeySet;
use crate::receipt::{ReceiptError, SignedReceipt};

/// Bundle format version.
pub const BUNDLE_VERSION: u8 = 2;

/// Receipt + evidence, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    /// Format version (2: carries a v2 receipt).
    pub version: u8,
    /// Platform the evidence claims.
    pub platform: Platform,
    /// The evidence bytes, base64 (standard alphabet, padded).
    pub evidence: String,
    /// DER certificates verifying the evidence needs (SEV-SNP VCEK/VLEK...), base64.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "attesta_evidence::envelope::b64_list"
    )]
    pub certs: Vec<Vec<u8>>,
    /// Platform collateral (DCAP), as the evidence envelope carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collateral: Option<serde_json::Value>,
    /// The challenge nonce the evidence was produced for (hex).
    #[serde(with = "hex::serde")]
    pub attestation_nonce: Vec<u8>,
    /// The key set the evidence binds.
    pub keyset: PublicKeySet,
    /// The signed receipt.
    pub receipt: SignedReceipt,
}

/// Why a bundle does not verify. One variant per step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Not bundle JSON.
    #[error("malformed bundle: {0}")]
    Malformed(#[source] Shared<serde_json::Error>),
    /// The `evidence` field is not base64.
    #[error("malformed bundle: evidence is not base64: {0}")]
    EvidenceBase64(#[source] base64::DecodeError),
    /// A bundle version this implementation does not speak.
    #[error("unsupported bundle version {0}")]
    UnsupportedVersion(u8),
    /// Evidence of a platform this build cannot verify yet.
    #[error("no verifier for platform {0}")]
    UnsupportedPlatform(Platform),
    /// The evidence failed verification under the policy.
    #[error("evidence: {0}")]
    Evidence(VerifyError),
    /// The evidence verified as another platform than the bundle claims.
    #[error("bundle claims platform {claimed}, evidence verified as {verified}")]
    PlatformMismatch {
        /// From the bundle.
        claimed: Platform,
        /// From the verifier.
        verified: Platform,
    },
    /// The evidence does not bind the key set and nonce.
    #[error(transparent)]
    Binding(#[from] BindingError),
    /// The receipt does not verify or does not match the given bytes.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
}

impl BundleError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::Malformed(_) | BundleError::EvidenceBase64(_) => "malformed_bundle",
            BundleError::UnsupportedVersion(_) => "unsupported_version",
            BundleError::UnsupportedPlatform(_) => "unsupported_platform",
            BundleError::Evidence(e) => e.code(),
            BundleError::PlatformMismatch { .. } => "platform_mismatch",
            BundleError::Binding(e) => e.code(),
            BundleError::Receipt(e) => e.code(),
        }
    }
}

/// A bundle whose every required step passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBundle {
    /// Verified platform (`Dev` for dev-root evidence).
    pub platform: Platform,
    /// The key set the evidence binds.
    pub keyset: PublicKeySet,
    /// Matching release, when the policy requires measurements.
    pub release: Option<String>,
    /// The fault the receipt declares (only ever set when the policy accepts declared faults).
    pub fault: Option<String>,
}

/// Per-step report of a bundle verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleReport {
    /// `true` only when every required step passed.
    pub verified: bool,
    /// When the evidence was checked (RFC 3339).
    pub at: String,
    /// The evidence verifier's own report.
    pub evidence: Option<Report>,
    /// Bundle-level steps in order.
    pub steps: Vec<Step>,
    /// The first failure.
    pub error: Option<ReportError>,
}

impl BundleReport {
    /// The bundle-level step `id`, if it ran or was skipped.
    pub fn step(&self, id: StepId) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == id)
    }

    /// Process exit status for a CLI: 0 only when verified.
    pub fn exit_code(&self) -> i32 {
        if self.verified { 0 } else { 1 }
    }
}

impl fmt::Display for BundleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ev) = &self.evidence {
            writeln!(f, "evidence:\n{ev}")?;
        }
        writeln!(f, "bundle checked at {}:", self.at)?;
        for s in &self.steps {
            let tag = match s.status {
                Status::Pass => "PASS",
                Status::Fail => "FAIL",
                Status::Skipped => "SKIP",
            };
            writeln!(f, "  [{tag}] {:<18} {}", s.name, s.detail)?;
        }
        match &self.error {
            None => write!(f, "result:     RECEIPT VERIFIED"),
            Some(e) => write!(f, "result:     FAILED ({}): {}", e.code, e.message),
        }
    }
}

/// The report and the outcome of [`ProofBundle::verify`].
#[derive(Debug, Clone)]
pub struct BundleVerification {
    /// Every step.
    pub report: BundleReport,
    /// The verified facts, or the first failure.
    pub outcome: Result<VerifiedBundle, BundleError>,
}

/// The optional expectations of [`ProofBundle::verify`].
#[derive(Debug, Clone, Copy, Default)]
pub struct BundleChecks<'a> {
    /// Check the evidence at this time instead of its own timestamp.
    pub at: Option<UnixTime>,
    /// The request plaintext bytes, to match `request_digest`.
    pub request: Option<&'a [u8]>,
    /// The `output` JSON bytes, to match `output_digest`.
    pub output: Option<&'a [u8]>,
}

impl ProofBundle {
    /// Builds a bundle from raw evidence bytes.
    pub fn new(
        platform: Platform,
        evidence: &[u8],
        attestation_nonce: &[u8],
        keyset: PublicKeySet,
        receipt: SignedReceipt,
    ) -> Self {
        ProofBundle {
            version: BUNDLE_VERSION,
            platform,
            evidence: B64.encode(evidence),
            certs: Vec::new(),
            collateral: None,
            attestation_nonce: attestation_nonce.to_vec(),
            keyset,
            receipt,
        }
    }

    /// Adds the certificates and collateral of the evidence envelope.
    pub fn with_envelope_extras(
        mut self,
        certs: Vec<Vec<u8>>,
        collateral: Option<serde_json::Value>,
    ) -> Self {
        self.certs = certs;
        self.collateral = collateral;
        self
    }

    /// Parses bundle JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        let b: ProofBundle =
            serde_json::from_slice(bytes).map_err(|e| BundleError::Malformed(e.into()))?;
        if b.version != BUNDLE_VERSION {
            return Err(BundleError::UnsupportedVersion(b.version));
        }
        Ok(b)
    }

    /// Pretty JSON. Fails only if a field's serialiser does (none of the
    /// bundle's does today); the error is returned rather than an empty body.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec_pretty(self)
    }

    /// The document timestamp of Nitro-format evidence, if it decodes.
    pub fn evidence_time(&self) -> Option<UnixTime> {
        let raw = B64.decode(&self.evidence).ok()?;
        let (_, cbor) = decode_input(&raw).ok()?;
        let c = cose::parse(&cbor).ok()?;
        let doc = AttestationDocument::parse(&c.payload).ok()?;
        Some(UnixTime::from_millis(doc.timestamp_ms))
    }

    /// Verifies the evidence under `verifier`'s policy, the key binding, the
    /// receipt signature and, when given, the request and output digests.
    pub fn verify(
        &self,
        verifier: &EvidenceVerifier,
        checks: BundleChecks<'_>,
    ) -> BundleVerification {
        let at = checks
            .at
            .or_else(|| self.evidence_time())
            .unwrap_or(UnixTime::from_secs(self.receipt.receipt.issued_at));
        let mut report = BundleReport {
            verified: false,
            at: at.to_string(),
            evidence: None,
            steps: Vec::with_capacity(8),
            error: None,
        };
        let outcome = self.run(verifier, checks, at, &mut report);
        report.verified = outcome.is_ok();
        report.error = outcome.as_ref().err().map(|e| ReportError {
            code: e.code(),
            message: e.to_string(),
        });
        BundleVerification { report, outcome }
    }

    fn run(
        &self,
        verifier: &EvidenceVerifier,
        checks: BundleChecks<'_>,
        at: UnixTime,
        report: &mut BundleReport,
    ) -> Result<VerifiedBundle, BundleError> {
        let mut step =
            |name: StepId, r: Result<String, BundleError>| record_step(&mut report.steps, name, r);
        step(
            StepId::Bundle,
            match self.platform {
                Platform::Nitro
                | Platform::Dev
                | Platform::SevSnp
                | Platform::DevSnp
                | Platform::Tdx
                | Platform::DevTdx
                | Platform::Sgx
                | Platform::DevSgx => Ok(format!(
                    "version {}, platform {}",
                    self.version, self.platform
                )),
                p => Err(BundleError::UnsupportedPlatform(p)),
            },
        )?;
        let raw = B64
            .decode(&self.evidence)
            .map_err(BundleError::EvidenceBase64);
        step(
            StepId::EvidenceEncoding,
            raw.as_ref()
                .map(|r| format!("{} bytes", r.len()))
                .map_err(Clone::clone),
        )?;
        let raw = raw?;
        let expected = Expected {
            nonce: Some(self.attestation_nonce.clone()),
            ..Default::default()
        };
        let envelope = Envelope {
            version: ENVELOPE_VERSION,
            platform: self.platform,
            evidence: raw,
            certs: self.certs.clone(),
            collateral: self.collateral.clone(),
        };
        let v = verifier.verify(&envelope, &expected, at);
        let ev_report = v.report.clone();
        let verified = v.outcome.map_err(BundleError::Evidence);
        let summary = verified
            .as_ref()
            .map(|d| {
                format!(
                    "{} evidence verified under the policy (root: {})",
                    d.platform(),
                    v.report.root.as_deref().unwrap_or("?")
                )
            })
            .map_err(Clone::clone);
        // The evidence report is kept whatever the outcome.
        let r1 = step(StepId::Evidence, summary);
        report.evidence = Some(ev_report);
        r1?;
        let doc = verified?;
        let claimed_ok = match (self.platform, doc.platform()) {
            (a, b) if a == b => Ok(format!("{}", b)),
            (claimed, verified) => Err(BundleError::PlatformMismatch { claimed, verified }),
        };
        step(StepId::Platform, claimed_ok)?;
        let bound = match &doc {
            VerifiedEvidence::Nitro(d) => binding::check_nitro(
                d.document.public_key.as_deref(),
                d.document.user_data.as_deref(),
                d.document.nonce.as_deref(),
                &self.attestation_nonce,
            )
            .map_err(BundleError::from),
            VerifiedEvidence::Snp(r) => binding::check_report_data(
                &r.report.report_data,
                &self.keyset,
                &self.attestation_nonce,
            )
            .map_err(BundleError::from),
            VerifiedEvidence::Dcap(q) => binding::check_report_data(
                q.quote.body.report_data(),
                &self.keyset,
                &self.attestation_nonce,
            )
            .map_err(BundleError::from),
            other => Err(BundleError::UnsupportedPlatform(other.platform())),
        };
        step(
            StepId::Binding,
            bound
                .as_ref()
                .map(|k| {
                    format!(
                        "evidence binds key set {} and the nonce",
                        hex::encode(k.digest())
                    )
                })
                .map_err(Clone::clone),
        )?;
        let keyset = bound?;
        step(
            StepId::Keyset,
            if keyset == self.keyset {
                Ok("bundle key set equals the bound key set".into())
            } else {
                Err(BindingError::KeySetMismatch.into())
            },
        )?;
        step(
            StepId::ReceiptSignature,
            self.receipt
                .verify(&keyset)
                .map(|()| "Ed25519 signature by the bound signing key".to_owned())
                .map_err(BundleError::from),
        )?;
        let fault = self.receipt.declared_fault().map(str::to_owned);
        step(
            StepId::Fault,
            match &fault {
                None => Ok("the receipt declares no fault".to_owned()),
                Some(f) => self
                    .receipt
                    .check_fault(verifier.policy())
                    .map(|()| {
                        format!("the node declares the fault `{f}`, accepted by the policy: answers may be wrong on purpose")
                    })
                    .map_err(BundleError::from),
            },
        )?;
        for (name, bytes, is_request) in [
            (StepId::RequestDigest, checks.request, true),
            (StepId::OutputDigest, checks.output, false),
        ] {
            match bytes {
                None => report.steps.push(Step {
                    name,
                    status: Status::Skipped,
                    detail: "no bytes given".into(),
                }),
                Some(b) => {
                    let r = if is_request {
                        self.receipt.check_digests(Some(b), None)
                    } else {
                        self.receipt.check_digests(None, Some(b))
                    };
                    record_step(
                        &mut report.steps,
                        name,
                        r.map(|()| format!("SHA-256 of the {} given bytes matches", b.len()))
                            .map_err(BundleError::from),
                    )?;
                }
            }
        }
        Ok(VerifiedBundle {
            fault,
            platform: doc.platform(),
            keyset,
            release: doc.release().map(str::to_owned),
        })
    }
}
