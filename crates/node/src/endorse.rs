//! Endorsements served beside hardware evidence, so validators need no network.
//!
//! A TDX or SGX quote verifies only with its DCAP collateral (TCB info, QE
//! identity, CRLs) and an SEV-SNP report only with its VCEK. The dev TEEs
//! supply theirs; on hardware, configfs-tsm returns SNP certificates only when
//! the host installed them and never DCAP collateral. For what the attester did
//! not supply, the node asks Intel PCS or a PCCS (collateral, cached per
//! platform until its `nextUpdate`) and AMD's KDS (VCEK and chain, cached on
//! disk). Nothing fetched here is trusted by the node: verifiers check every
//! signature against their pinned roots. A failed fetch is logged and counted
//! and the evidence is served without it, so a verifier with its own
//! collateral still succeeds and one without fails closed.

use std::time::Duration;

use attesta_attester::Platform;
use attesta_client::PcsClient;
use attesta_client::kds::KdsClient;
use attesta_evidence::UnixTime;
use attesta_evidence::snp::AttestationReport;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::Metrics;

/// Per-request timeout of the collateral and certificate services.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// What a verifier needs besides the evidence itself.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Endorsements {
    /// DCAP collateral as dcap-qvl's `QuoteCollateralV3` JSON.
    pub collateral: Option<serde_json::Value>,
    /// SEV-SNP certificates (VCEK, ASK, ARK; DER).
    pub certs: Vec<Vec<u8>>,
}

/// Why an endorsement could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EndorseError {
    /// The collateral service failed.
    #[error("DCAP collateral")]
    Pcs(#[source] attesta_client::PcsError),
    /// The key distribution service failed.
    #[error("SEV-SNP VCEK")]
    Kds(#[source] attesta_client::kds::KdsError),
    /// The evidence the attester produced does not parse as its platform's format.
    #[error("SEV-SNP report")]
    Report(#[source] attesta_evidence::snp::SnpError),
}

impl EndorseError {
    /// A short label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            EndorseError::Pcs(_) => "pcs",
            EndorseError::Kds(_) => "kds",
            EndorseError::Report(_) => "report",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceResultLabels {
    source: String,
    result: String,
}

/// Fetches the endorsements hardware attesters do not supply.
pub struct Endorser {
    pcs: Option<PcsClient>,
    kds: Option<KdsClient>,
    fetches: Family<SourceResultLabels, Counter>,
}

impl Endorser {
    /// An endorser asking `pcs` for DCAP collateral and `kds` for SNP
    /// certificates (either may be absent: that platform is then served bare).
    pub fn new(pcs: Option<PcsClient>, kds: Option<KdsClient>) -> Self {
        Endorser {
            pcs,
            kds,
            fetches: Family::default(),
        }
    }

    /// Registers `endorsement_fetches{source, result}` with the node's metrics.
    pub fn register(self, metrics: &Metrics) -> Self {
        metrics.with_registry(|r| {
            r.register(
                "endorsement_fetches",
                "Collateral and certificate lookups for served evidence, by source (pcs, kds) and result",
                self.fetches.clone(),
            );
        });
        self
    }

    fn count(&self, source: &str, result: &str) {
        self.fetches
            .get_or_create(&SourceResultLabels {
                source: source.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Completes `have` for `evidence` from `platform`: collateral for a
    /// hardware DCAP quote that came without, certificates for a hardware SNP
    /// report that came without. Dev platforms supply their own and are left alone.
    pub async fn complete(
        &self,
        platform: Platform,
        evidence: &[u8],
        mut have: Endorsements,
        now: UnixTime,
    ) -> Endorsements {
        match platform {
            Platform::Tdx | Platform::Sgx if have.collateral.is_none() => {
                if let Some(pcs) = &self.pcs {
                    match pcs.for_quote(evidence, now).await {
                        Ok(c) => {
                            self.count("pcs", "ok");
                            have.collateral = serde_json::to_value(c.to_json()).ok();
                        }
                        Err(e) => self.failed(&EndorseError::Pcs(e)),
                    }
                }
            }
            Platform::SevSnp if have.certs.is_empty() => {
                if let Some(kds) = &self.kds {
                    match AttestationReport::parse(evidence) {
                        Ok(report) => match kds.certs_for(&report).await {
                            Ok(certs) => {
                                self.count("kds", "ok");
                                have.certs = certs;
                            }
                            Err(e) => self.failed(&EndorseError::Kds(e)),
                        },
                        Err(e) => self.failed(&EndorseError::Report(e)),
                    }
                }
            }
            _ => {}
        }
        have
    }

    fn failed(&self, e: &EndorseError) {
        self.count(
            match e {
                EndorseError::Pcs(_) => "pcs",
                _ => "kds",
            },
            "failed",
        );
        tracing::warn!(
            kind = e.kind(),
            error = %attesta_content::ErrorChain(e),
            "serving evidence without its endorsement; verifiers need their own"
        );
    }
}
