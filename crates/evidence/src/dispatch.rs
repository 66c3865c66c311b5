//! One entry point for evidence of every platform, under one [`Policy`]:
//! Nitro and dev documents go to the Nitro verifier, SEV-SNP (and dev-snp)
//! reports to the SNP verifier. Intel SGX/TDX go through [`verify_dcap`],
//! the single place the DCAP verifier plugs in; until it does they fail
//! with `unsupported_platform`, never pass.
#![deny(clippy::indexing_slicing)]

use crate::Platform;
use crate::envelope::Envelope;
use crate::error::VerifyError;
use crate::nitro::{Expected, NitroVerifier, VerifiedDocument};
use crate::policy::Policy;
use crate::report::{Report, Status};
use crate::snp::{SnpVerifier, VerifiedReport};
use crate::time::UnixTime;

/// Evidence that passed every check of its platform.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifiedEvidence {
    /// A Nitro or dev document.
    Nitro(Box<VerifiedDocument>),
    /// A SEV-SNP or dev-snp report.
    Snp(Box<VerifiedReport>),
}

impl VerifiedEvidence {
    /// The verified platform (`Dev`/`DevSnp` for the dev roots).
    pub fn platform(&self) -> Platform {
        match self {
            VerifiedEvidence::Nitro(d) => d.platform,
            VerifiedEvidence::Snp(r) => r.platform,
        }
    }

    /// The name of the release that matched, if measurements were required.
    pub fn release(&self) -> Option<&str> {
        match self {
            VerifiedEvidence::Nitro(d) => d.release.as_deref(),
            VerifiedEvidence::Snp(r) => r.release.as_deref(),
        }
    }

    /// The 64-byte report data of report-data evidence (SNP, TDX, SGX).
    pub fn report_data(&self) -> Option<&[u8; 64]> {
        match self {
            VerifiedEvidence::Nitro(_) => None,
            VerifiedEvidence::Snp(r) => Some(&r.report.report_data),
        }
    }

    /// The evidence's own timestamp (Nitro documents only; SNP reports have none).
    pub fn timestamp_ms(&self) -> Option<u64> {
        match self {
            VerifiedEvidence::Nitro(d) => Some(d.document.timestamp_ms),
            VerifiedEvidence::Snp(_) => None,
        }
    }

    /// Whether only a dev root backs it (no hardware).
    pub fn insecure(&self) -> bool {
        matches!(self.platform(), Platform::Dev | Platform::DevSnp)
    }
}

/// The report and outcome of [`EvidenceVerifier::verify`].
#[derive(Debug, Clone)]
pub struct EvidenceVerification {
    /// Every step of the platform's verifier, plus `platform`.
    pub report: Report,
    /// The verified evidence, or the first failure.
    pub outcome: Result<VerifiedEvidence, VerifyError>,
}

/// Verifies envelopes of every platform under one policy. Keep and share it
/// (the Nitro verifier inside caches chains).
pub struct EvidenceVerifier {
    nitro: NitroVerifier,
    snp: SnpVerifier,
}

impl std::fmt::Debug for EvidenceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceVerifier").finish_non_exhaustive()
    }
}

impl EvidenceVerifier {
    /// Verifiers for every supported platform under `policy`.
    pub fn new(policy: Policy) -> Self {
        EvidenceVerifier {
            snp: SnpVerifier::new(policy.clone()),
            nitro: NitroVerifier::new(policy),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        self.nitro.policy()
    }

    /// The Nitro/dev verifier.
    pub fn nitro(&self) -> &NitroVerifier {
        &self.nitro
    }

    /// The SEV-SNP verifier.
    pub fn snp(&self) -> &SnpVerifier {
        &self.snp
    }

    /// Verifies `envelope` at `now`: the platform's verifier, then a
    /// `platform` step checking the verified platform is the claimed one
    /// (a dev root never passes as hardware, nor the reverse).
    pub fn verify(
        &self,
        envelope: &Envelope,
        expected: &Expected,
        now: UnixTime,
    ) -> EvidenceVerification {
        let claimed = envelope.platform;
        let (mut report, outcome) = match claimed {
            Platform::Nitro | Platform::Dev => {
                let v = self.nitro.verify(&envelope.evidence, expected, now);
                (
                    v.report,
                    v.outcome.map(|d| VerifiedEvidence::Nitro(Box::new(d))),
                )
            }
            Platform::SevSnp | Platform::DevSnp => {
                let v = self
                    .snp
                    .verify(&envelope.evidence, &envelope.certs, expected, now);
                (
                    v.report,
                    v.outcome.map(|r| VerifiedEvidence::Snp(Box::new(r))),
                )
            }
            Platform::Tdx | Platform::Sgx => verify_dcap(envelope, expected, now),
        };
        let outcome = outcome.and_then(|ok| {
            let verified = ok.platform();
            if verified == claimed {
                report.push("platform", Status::Pass, format!("{verified}, as claimed"));
                Ok(ok)
            } else {
                let e = VerifyError::PlatformMismatch { claimed, verified };
                report.push("platform", Status::Fail, e.to_string());
                Err(e)
            }
        });
        report.finish(outcome.as_ref().err());
        EvidenceVerification { report, outcome }
    }
}

/// THE plug-in point for Intel DCAP (SGX quote v3, TDX quote v4/v5): call
/// the DCAP verifier here with `envelope.evidence`, `envelope.collateral`
/// and the policy, and map its verified quote into a new
/// [`VerifiedEvidence`] variant. Until then: a typed failure, never a pass.
pub fn verify_dcap(
    envelope: &Envelope,
    _expected: &Expected,
    now: UnixTime,
) -> (Report, Result<VerifiedEvidence, VerifyError>) {
    let mut report = Report::new(now);
    let e = VerifyError::UnsupportedPlatform(envelope.platform);
    report.push("platform", Status::Fail, e.to_string());
    report.finish(Some(&e));
    (report, Err(e))
}
