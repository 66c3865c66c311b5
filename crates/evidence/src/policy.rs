//! What a verifier accepts. Secure by default; every relaxation goes
//! through [`danger`].

use std::time::Duration;

use crate::registry::Registry;
use crate::roots::{RootError, TrustedRoot};

/// Default freshness bound: documents are fetched per challenge, so minutes suffice.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Tolerated clock difference for timestamps in the future.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(60);

/// Verification policy: trusted roots, freshness, measurements, debug/dev opt-ins.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) roots: Vec<TrustedRoot>,
    pub(crate) dev_root: Option<TrustedRoot>,
    pub(crate) max_age: Duration,
    pub(crate) max_skew: Duration,
    pub(crate) measurements: Registry,
    pub(crate) allow_debug: bool,
    pub(crate) accept_declared_faults: bool,
    pub(crate) snp_dev_root: Option<crate::snp::SnpDevRoot>,
    pub(crate) snp_accept_migration_agent: bool,
    pub(crate) snp_vmpl: Option<u32>,
    pub(crate) dcap_root: crate::dcap::DcapRoot,
    pub(crate) dcap_dev_root: Option<crate::dcap::DcapRoot>,
    pub(crate) accepted_tcb: std::collections::BTreeSet<crate::dcap::TcbStatus>,
}

impl Policy {
    /// Trusts only the pinned roots (AWS Nitro Enclaves Root G1 for Nitro,
    /// the Intel SGX Root CA for DCAP, the AMD ARKs for SEV-SNP); no
    /// measurements required (add them with [`Policy::with_measurements`]),
    /// 5 min max age, only `UpToDate` Intel TCBs, debug and dev evidence rejected.
    pub fn aws_nitro() -> Result<Self, RootError> {
        Ok(Policy {
            roots: vec![TrustedRoot::aws_nitro_root_g1()?],
            dev_root: None,
            max_age: DEFAULT_MAX_AGE,
            max_skew: DEFAULT_MAX_SKEW,
            measurements: Registry::default(),
            allow_debug: false,
            accept_declared_faults: false,
            snp_dev_root: None,
            snp_accept_migration_agent: false,
            snp_vmpl: None,
            dcap_root: crate::dcap::DcapRoot::intel_sgx_root_ca()?,
            dcap_dev_root: None,
            accepted_tcb: [crate::dcap::TcbStatus::UpToDate].into(),
        })
    }

    /// Requires the document's PCRs to match a release of `registry`.
    pub fn with_measurements(mut self, registry: Registry) -> Self {
        self.measurements = registry;
        self
    }

    /// Sets how old (by its own timestamp) a document may be at verification time.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Sets how far in the future a timestamp may be (clock skew).
    pub fn with_max_skew(mut self, skew: Duration) -> Self {
        self.max_skew = skew;
        self
    }

    /// Requires SEV-SNP reports to come from this VMPL (0 = most privileged).
    pub fn with_snp_vmpl(mut self, vmpl: u32) -> Self {
        self.snp_vmpl = Some(vmpl);
        self
    }

    /// The VMPL SEV-SNP reports must come from, if any.
    pub fn snp_vmpl(&self) -> Option<u32> {
        self.snp_vmpl
    }

    /// The dev ARK, if the policy opted into dev SEV-SNP reports.
    pub fn snp_dev_root(&self) -> Option<&crate::snp::SnpDevRoot> {
        self.snp_dev_root.as_ref()
    }

    /// Whether SEV-SNP guests whose policy allows a migration agent pass.
    pub fn accepts_snp_migration_agent(&self) -> bool {
        self.snp_accept_migration_agent
    }

    /// The DCAP TCB statuses that pass (always `UpToDate`, plus `--accept-tcb`).
    pub fn accepted_tcb(&self) -> &std::collections::BTreeSet<crate::dcap::TcbStatus> {
        &self.accepted_tcb
    }

    /// The dev DCAP root, if the policy opted into dev quotes.
    pub fn dcap_dev_root(&self) -> Option<&crate::dcap::DcapRoot> {
        self.dcap_dev_root.as_ref()
    }

    /// Production roots.
    pub fn roots(&self) -> &[TrustedRoot] {
        &self.roots
    }

    /// The dev root, if the policy opted into dev documents.
    pub fn dev_root(&self) -> Option<&TrustedRoot> {
        self.dev_root.as_ref()
    }

    /// Max document age.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Required measurements.
    pub fn measurements(&self) -> &Registry {
        &self.measurements
    }

    /// Whether debug-mode documents pass.
    pub fn allows_debug(&self) -> bool {
        self.allow_debug
    }

    /// Whether dev documents declaring an insecure fault pass (they are still reported).
    pub fn accepts_declared_faults(&self) -> bool {
        self.accept_declared_faults
    }
}

/// Relaxations of [`Policy`]. Each one weakens what "verified" means; use
/// only when you can say why.
pub mod danger {
    use super::Policy;
    use crate::roots::TrustedRoot;

    /// Accepts debug-mode documents (PCR0–2 zero): any code could have produced them.
    pub fn allow_debug(mut policy: Policy) -> Policy {
        policy.allow_debug = true;
        policy
    }

    /// Accepts documents chaining to this dev root. Their platform is
    /// reported as `dev (insecure)`: no hardware backs them.
    pub fn accept_dev_root(mut policy: Policy, root: TrustedRoot) -> Policy {
        policy.dev_root = Some(root);
        policy
    }

    /// Accepts dev documents that declare an insecure fault (`--insecure-fault`):
    /// their answers may be wrong on purpose. For devnets and validator tests.
    pub fn accept_declared_faults(mut policy: Policy) -> Policy {
        policy.accept_declared_faults = true;
        policy
    }

    /// Trusts an additional production root (e.g. a private test PKI).
    pub fn trust_root(mut policy: Policy, root: TrustedRoot) -> Policy {
        policy.roots.push(root);
        policy
    }

    /// Accepts SEV-SNP reports whose chain ends in this dev ARK, for any
    /// product. Their platform is reported as `dev-snp (insecure)`.
    pub fn accept_snp_dev_root(mut policy: Policy, root: crate::snp::SnpDevRoot) -> Policy {
        policy.snp_dev_root = Some(root);
        policy
    }

    /// Accepts SEV-SNP guests whose policy allows a migration agent (which
    /// can export the guest's memory to another machine).
    pub fn accept_snp_migration_agent(mut policy: Policy) -> Policy {
        policy.snp_accept_migration_agent = true;
        policy
    }

    /// Trusts nothing but the given roots (drops the pinned AWS root).
    pub fn replace_roots(mut policy: Policy, roots: Vec<TrustedRoot>) -> Policy {
        policy.roots = roots;
        policy
    }

    /// Accepts DCAP quotes whose platform, QE or TDX module TCB status is
    /// `status` (`--accept-tcb`), with whatever advisories that level
    /// carries (the report lists them). `Revoked` is never accepted.
    pub fn accept_tcb_status(mut policy: Policy, status: crate::dcap::TcbStatus) -> Policy {
        policy.accepted_tcb.insert(status);
        policy
    }

    /// Accepts DCAP quotes and collateral chaining to this dev root (the dev
    /// quote signer's). Reported as `dev-sgx (insecure)` / `dev-tdx
    /// (insecure)`: no Intel hardware backs them.
    pub fn accept_dcap_dev_root(mut policy: Policy, root: crate::dcap::DcapRoot) -> Policy {
        policy.dcap_dev_root = Some(root.renamed("dev (insecure)"));
        policy
    }
}
