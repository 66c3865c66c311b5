//! The verification policy options shared by every command that verifies
//! evidence (`verify evidence`, `verify receipt`, `infer`).

use std::path::PathBuf;

use anyhow::Context;
use attesta_evidence::dcap::{DcapRoot, TcbStatus};
use attesta_evidence::snp::SnpDevRoot;
use attesta_evidence::{Policy, PolicyFile, TrustedRoot, danger};
use clap::Args;

use crate::units::parse_duration;

/// How strictly to verify.
#[derive(Args, Clone, Debug, Default)]
pub struct PolicyArgs {
    /// Allowed measurements: `nitro-cli describe-enclaves` JSON, `{"Measurements": {...}}`,
    /// or attesta's TOML/JSON releases (as printed by `attesta measure`).
    #[arg(long, value_name = "FILE")]
    pub measurements: Option<PathBuf>,
    /// Accept documents of the INSECURE dev TEE signed by this root (`<data-dir>/dev-root.pem` of the node).
    #[arg(long, value_name = "FILE")]
    pub dev_root: Option<PathBuf>,
    /// Accept debug-mode enclaves (PCRs all zero). INSECURE.
    #[arg(long)]
    pub allow_debug: bool,
    /// Accept dev documents and receipts that declare an `--insecure-fault` (still printed).
    /// INSECURE: such a node may answer wrongly on purpose. Without it they fail with
    /// `fault_declared`.
    #[arg(long)]
    pub accept_declared_faults: bool,
    /// Accept SEV-SNP reports of the INSECURE dev-snp TEE whose chain ends in this dev ARK
    /// (`<data-dir>/dev-snp-ark.pem` of the node). Reported as `dev-snp (insecure)`.
    #[arg(long, value_name = "FILE")]
    pub snp_dev_root: Option<PathBuf>,
    /// Require SEV-SNP reports to come from this VMPL (0-3) [default: any, reported].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=3))]
    pub snp_vmpl: Option<u32>,
    /// Accept SEV-SNP guests whose policy allows a migration agent (it can export guest
    /// memory). Refused by default.
    #[arg(long)]
    pub accept_snp_migration_agent: bool,
    /// Accept Intel SGX/TDX quotes whose platform, QE or TDX module TCB status is STATUS
    /// (repeatable; SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded,
    /// OutOfDate, OutOfDateConfigurationNeeded). The report lists the level's advisory IDs.
    /// INSECURE to a degree those advisories say; only UpToDate passes by default, Revoked never.
    #[arg(long = "accept-tcb", value_name = "STATUS")]
    pub accept_tcb: Vec<String>,
    /// Accept Intel SGX/TDX quotes of the INSECURE dev DCAP signer whose chains end in this
    /// dev root (PEM). Reported as `dev-sgx (insecure)` / `dev-tdx (insecure)`.
    #[arg(long, value_name = "FILE")]
    pub dcap_dev_root: Option<PathBuf>,
    /// Oldest acceptable document age, e.g. 5m [default: 300s].
    #[arg(long, value_name = "DURATION")]
    pub max_age: Option<String>,
}

impl PolicyArgs {
    /// Builds the policy: the pinned AWS Nitro root plus whatever the flags relax or add.
    pub fn policy(&self) -> anyhow::Result<Policy> {
        let mut policy = Policy::aws_nitro().context("loading the pinned roots")?;
        if let Some(path) = &self.measurements {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let file = PolicyFile::parse(&text)
                .with_context(|| format!("parsing measurements {}", path.display()))?;
            policy = file.apply(policy);
            if let Some(rel) = &file.dev_root {
                let root_path = path
                    .parent()
                    .map_or_else(|| PathBuf::from(rel), |dir| dir.join(rel));
                policy = danger::accept_dev_root(policy, read_root(&root_path)?);
            }
            if let Some(rel) = &file.snp_dev_root {
                let root_path = path
                    .parent()
                    .map_or_else(|| PathBuf::from(rel), |dir| dir.join(rel));
                policy = danger::accept_snp_dev_root(policy, read_snp_root(&root_path)?);
            }
        }
        if let Some(path) = &self.snp_dev_root {
            policy = danger::accept_snp_dev_root(policy, read_snp_root(path)?);
        }
        if let Some(vmpl) = self.snp_vmpl {
            policy = policy.with_snp_vmpl(vmpl);
        }
        if self.accept_snp_migration_agent {
            policy = danger::accept_snp_migration_agent(policy);
        }
        for status in &self.accept_tcb {
            let status: TcbStatus = status.parse().context("--accept-tcb")?;
            if status == TcbStatus::Revoked {
                anyhow::bail!("--accept-tcb Revoked: a revoked TCB is never accepted");
            }
            policy = danger::accept_tcb_status(policy, status);
        }
        if let Some(path) = &self.dcap_dev_root {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading dev DCAP root {}", path.display()))?;
            let root = DcapRoot::from_pem("dev (insecure)", &text)
                .with_context(|| format!("parsing dev DCAP root {}", path.display()))?;
            policy = danger::accept_dcap_dev_root(policy, root);
        }
        if let Some(path) = &self.dev_root {
            policy = danger::accept_dev_root(policy, read_root(path)?);
        }
        if self.allow_debug {
            policy = danger::allow_debug(policy);
        }
        if self.accept_declared_faults {
            policy = danger::accept_declared_faults(policy);
        }
        if let Some(age) = &self.max_age {
            policy = policy
                .with_max_age(parse_duration(age).map_err(|e| anyhow::anyhow!("--max-age: {e}"))?);
        }
        Ok(policy)
    }
}

fn read_root(path: &std::path::Path) -> anyhow::Result<TrustedRoot> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading dev root {}", path.display()))?;
    TrustedRoot::from_pem("dev (insecure)", &text)
        .with_context(|| format!("parsing dev root {}", path.display()))
}

fn read_snp_root(path: &std::path::Path) -> anyhow::Result<SnpDevRoot> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading dev SEV-SNP ARK {}", path.display()))?;
    SnpDevRoot::from_pem("dev-snp ARK (insecure)", &text)
        .with_context(|| format!("parsing dev SEV-SNP ARK {}", path.display()))
}
