//! End to end over real processes: a dev-snp node (SEV-SNP format reports
//! signed by a local ARK) goes through the SNP verification path in
//! `attesta verify evidence`, `attesta infer` and `attesta verify receipt`,
//! and is refused with another binary's measurement, without its ARK, with
//! another VMPL required, or claimed as hardware.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use support::dev_tee::{DevTee, dev_tee_goes_through_its_path};

#[test]
fn dev_snp_node_goes_through_the_snp_path() {
    dev_tee_goes_through_its_path(&DevTee {
        tee: "dev-snp",
        hardware: "sev-snp",
        root_file: "dev-snp-ark.pem",
        root_flag: "--snp-dev-root",
        extra_field: "certs",
        check_attestation: &|att| assert_eq!(att["certs"].as_array().map(Vec::len), Some(3)),
        pass_step: "[PASS] tcb",
        bare_code: "snp_missing_endorsement",
        refusals: vec![(vec!["--snp-vmpl", "1"], "snp_vmpl_mismatch")],
    });
}
