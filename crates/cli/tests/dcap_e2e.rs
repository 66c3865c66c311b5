//! End to end over real processes: a dev-tdx node (TDX quotes and their
//! collateral signed by a local root) goes through the DCAP verification
//! path in `attesta verify evidence`, `attesta infer` and `attesta verify
//! receipt`, with the collateral the node serves beside its quote (no
//! network), and is refused with another binary's measurement, without its
//! root, without collateral, or claimed as hardware.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use support::dev_tee::{DevTee, dev_tee_goes_through_its_path};
use support::run_ok;

#[test]
fn dev_tdx_node_goes_through_the_dcap_path() {
    let entry = run_ok(&["measure", "--tee", "dev-tdx"]);
    assert!(entry.contains("platform = \"dev-tdx\""), "{entry}");
    assert!(
        entry.contains("mrtd = ") && entry.contains("rtmr3 = "),
        "{entry}"
    );
    dev_tee_goes_through_its_path(&DevTee {
        tee: "dev-tdx",
        hardware: "tdx",
        root_file: "dev-dcap-root.pem",
        root_flag: "--dcap-dev-root",
        extra_field: "collateral",
        check_attestation: &|att| {
            assert!(att["collateral"]["tcb_info"].is_string(), "{att}");
            assert!(att["collateral"]["qe_identity"].is_string(), "{att}");
        },
        pass_step: "[PASS] tcb_level",
        bare_code: "bad_collateral",
        refusals: vec![],
    });
}
