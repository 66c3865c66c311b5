//! `attesta node` endorsement options: where a hardware node fetches the DCAP
//! collateral and SEV-SNP certificates its TEE does not return, so that
//! validators can verify its evidence without network access of their own.

use std::path::Path;

use anyhow::Context;
use attesta_client::PcsClient;
use attesta_client::kds::{AMD_KDS_URL, KdsClient};
use attesta_client::pcs::INTEL_PCS_URL;
use attesta_node::endorse::{Endorser, FETCH_TIMEOUT};
use clap::Args;

use crate::config::NodeSection;

/// Endorsement options of `attesta node`.
#[derive(Args)]
pub struct EndorseArgs {
    /// Intel PCS or PCCS base URL for the collateral of this node's TDX/SGX quotes, served
    /// beside each quote and cached until its nextUpdate [default: Intel PCS].
    #[arg(long, env = "ATTESTA_PCCS_URL", value_name = "URL")]
    pccs_url: Option<String>,
    /// AMD KDS base URL for the VCEK of this node's SEV-SNP reports when the host installed
    /// no certificates, cached under <data-dir>/kds [default: AMD KDS].
    #[arg(long, env = "ATTESTA_KDS_URL", value_name = "URL")]
    kds_url: Option<String>,
    /// Serve hardware evidence with only what the TEE returned (offline hosts): validators
    /// then need the collateral / VCEK themselves.
    #[arg(long, env = "ATTESTA_NO_ENDORSEMENT_FETCH")]
    no_endorsement_fetch: bool,
}

impl EndorseArgs {
    /// The endorser for a node whose data lives in `data_dir`; `None` when fetching is off.
    pub fn endorser(
        &self,
        file: &NodeSection,
        data_dir: &Path,
    ) -> anyhow::Result<Option<Endorser>> {
        if self.no_endorsement_fetch || file.endorsement_fetch == Some(false) {
            return Ok(None);
        }
        let pccs = self
            .pccs_url
            .as_deref()
            .or(file.pccs_url.as_deref())
            .unwrap_or(INTEL_PCS_URL);
        let kds = self
            .kds_url
            .as_deref()
            .or(file.kds_url.as_deref())
            .unwrap_or(AMD_KDS_URL);
        let pcs = PcsClient::new(pccs, FETCH_TIMEOUT).context("--pccs-url")?;
        let kds =
            KdsClient::new(kds, Some(data_dir.join("kds")), FETCH_TIMEOUT).context("--kds-url")?;
        Ok(Some(Endorser::new(Some(pcs), Some(kds))))
    }
}
