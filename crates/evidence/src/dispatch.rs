//! One entry point for evidence of every platform, under one [`Policy`]:
//! Nitro and dev documents go to the Nitro verifier, SEV-SNP (and dev-snp)
//! reports to the SNP verifier, Intel SGX/TDX quotes (and their dev
//! variants) with the envelope's collateral to the DCAP verifier.

use crate::Platform;
use crate::dcap::{
    Collateral, CollateralJson, DcapError, DcapExpected, DcapVerifier, VerifiedQuote,
};
use crate::envelope::Envelope;
use crate::error::VerifyError;
use crate::nitro::{Expected, NitroVerifier, VerifiedDocument};
use crate::policy::Policy;
use crate::report::{Report, Status, StepId};
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
    /// An SGX / TDX (or dev-sgx / dev-tdx) quote.
    Dcap(Box<VerifiedQuote>),
}

impl VerifiedEvidence {
    /// The verified platform (`Dev`/`DevSnp` for the dev roots).
    pub fn platform(&self) -> Platform {
        match self {
            VerifiedEvidence::Nitro(d) => d.platform,
            VerifiedEvidence::Snp(r) => r.platform,
            VerifiedEvidence::Dcap(q) => q.platform,
        }
    }

    /// The name of the release that matched, if measurements were required.
    pub fn release(&self) -> Option<&str> {
        match self {
            VerifiedEvidence::Nitro(d) => d.release.as_deref(),
            VerifiedEvidence::Snp(r) => r.release.as_deref(),
            VerifiedEvidence::Dcap(q) => q.release.as_deref(),
        }
    }

    /// The 64-byte report data of report-data evidence (SNP, TDX, SGX).
    pub fn report_data(&self) -> Option<&[u8; 64]> {
        match self {
            VerifiedEvidence::Nitro(_) => None,
            VerifiedEvidence::Snp(r) => Some(&r.report.report_data),
            VerifiedEvidence::Dcap(q) => Some(q.quote.body.report_data()),
        }
    }

    /// The evidence's own timestamp (Nitro documents only; SNP reports have none).
    pub fn timestamp_ms(&self) -> Option<u64> {
        match self {
            VerifiedEvidence::Nitro(d) => Some(d.document.timestamp_ms),
            VerifiedEvidence::Snp(_) | VerifiedEvidence::Dcap(_) => None,
        }
    }

    /// Whether only a dev root backs it (no hardware).
    pub fn insecure(&self) -> bool {
        matches!(
            self.platform(),
            Platform::Dev | Platform::DevSnp | Platform::DevSgx | Platform::DevTdx
        )
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
    dcap: DcapVerifier,
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
            dcap: DcapVerifier::new(policy.clone()),
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

    /// The Intel DCAP verifier.
    pub fn dcap(&self) -> &DcapVerifier {
        &self.dcap
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
            Platform::Tdx | Platform::Sgx | Platform::DevTdx | Platform::DevSgx => {
                verify_dcap(&self.dcap, envelope, expected, now)
            }
        };
        let outcome = outcome.and_then(|ok| {
            let verified = ok.platform();
            if verified == claimed {
                report.push(
                    StepId::Platform,
                    Status::Pass,
                    format!("{verified}, as claimed"),
                );
                Ok(ok)
            } else {
                let e = VerifyError::PlatformMismatch { claimed, verified };
                report.push(StepId::Platform, Status::Fail, e.to_string());
                Err(e)
            }
        });
        report.finish(outcome.as_ref().err());
        EvidenceVerification { report, outcome }
    }
}

/// Verifies a DCAP quote with the envelope's collateral (dcap-qvl's
/// `QuoteCollateralV3` JSON). Missing or malformed collateral is a typed
/// failure; `expected.report_data` must be 64 bytes when given.
pub fn verify_dcap(
    verifier: &DcapVerifier,
    envelope: &Envelope,
    expected: &Expected,
    now: UnixTime,
) -> (Report, Result<VerifiedEvidence, VerifyError>) {
    let refuse = |e: DcapError| {
        let e = VerifyError::from(e);
        let mut report = Report::new(now);
        report.push(StepId::Collateral, Status::Fail, e.to_string());
        report.finish(Some(&e));
        (report, Err(e))
    };
    let collateral = match &envelope.collateral {
        None => {
            return refuse(DcapError::Collateral(
                "none supplied (the envelope's `collateral`, or --collateral)".into(),
            ));
        }
        Some(json) => match serde_json::from_value::<CollateralJson>(json.clone())
            .map_err(|e| DcapError::CollateralJson(e.into()))
            .and_then(|j| {
                Collateral::from_parts(j).map_err(|e| DcapError::CollateralParts(e.into()))
            }) {
            Ok(c) => c,
            Err(e) => return refuse(e),
        },
    };
    let report_data = match expected.report_data.as_deref().map(<[u8; 64]>::try_from) {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(_)) => {
            return refuse(DcapError::Collateral(
                "expected report_data must be 64 bytes".into(),
            ));
        }
    };
    let quote = crate::dcap::decode_quote(&envelope.evidence)
        .unwrap_or(std::borrow::Cow::Borrowed(&envelope.evidence));
    let v = verifier.verify(&quote, &collateral, &DcapExpected { report_data }, now);
    (
        v.report,
        v.outcome.map(|q| VerifiedEvidence::Dcap(Box::new(q))),
    )
}
