//! Hardware evidence is served with the endorsements verifiers need: DCAP
//! collateral fetched from a PCCS, SEV-SNP certificates fetched from the KDS,
//! each only when the attester did not supply them, cached, and left out
//! (not faked, not a failed request) when the service is down.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::sync::Arc;

use attesta_attester::{AttestError, AttestRequest, Attester, Evidence, Platform};
use attesta_client::PcsClient;
use attesta_client::kds::KdsClient;
use attesta_evidence::dcap::{Collateral, DcapExpected, DcapVerifier};
use attesta_evidence::{Expected, Policy, SnpVerifier, UnixTime};
use attesta_node::NodeParts;
use attesta_node::endorse::{Endorser, FETCH_TIMEOUT};
use attesta_test_support::read_fixture;
use attesta_test_support::standins::{Kds, KdsContent, Pccs};
use base64::Engine as _;
use serde_json::Value;
use support::{FakeEngine, TestNode, request, start_with, temp_store, test_config};

/// Returns the same hardware evidence every time (the binding is not what is tested here).
struct Recorded(Evidence);

impl Attester for Recorded {
    fn platform(&self) -> Platform {
        self.0.platform
    }
    fn attest(&self, _: &AttestRequest) -> Result<Evidence, AttestError> {
        Ok(self.0.clone())
    }
}

fn tdx_quote() -> Vec<u8> {
    read_fixture("sgx-tdx/phala_tdx_v4_quote.bin")
}

fn tdx_collateral() -> Value {
    serde_json::from_slice(&read_fixture("sgx-tdx/phala_tdx_v4_collateral.json")).unwrap()
}

fn inside_tdx_window() -> UnixTime {
    UnixTime::parse_rfc3339("2025-07-01T00:00:00Z").unwrap()
}

async fn node(
    evidence: Evidence,
    endorser: Endorser,
    now: UnixTime,
) -> (TestNode, tempfile::TempDir) {
    let (dir, store) = temp_store();
    let mut parts = NodeParts::new(Arc::new(FakeEngine::default()), store);
    parts.attester = Some(Arc::new(Recorded(evidence)));
    parts.endorser = Some(endorser);
    parts.clock = Arc::new(move || now);
    (start_with(test_config(), parts).await, dir)
}

async fn attestation(node: &TestNode) -> Value {
    let nonce = "ab".repeat(32);
    let r = request(
        node.addr,
        "GET",
        &format!("/v1/attestation?nonce={nonce}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()
}

async fn metrics(node: &TestNode) -> String {
    let r = request(node.addr, "GET", "/metrics", &[], b"").await;
    String::from_utf8(r.body).unwrap()
}

fn pcs(base: &str) -> Endorser {
    Endorser::new(Some(PcsClient::new(base, FETCH_TIMEOUT).unwrap()), None)
}

#[tokio::test]
async fn a_hardware_quote_is_served_with_collateral_that_verifies_it() {
    let pccs = Pccs::serve(tdx_collateral(), "tdx", "B0C06F000000").await;
    let tdx = Evidence {
        platform: Platform::Tdx,
        bytes: tdx_quote(),
        aux: None,
    };
    let (node, _dir) = node(tdx, pcs(&pccs.base), inside_tdx_window()).await;

    let body = attestation(&node).await;
    assert_eq!(body["platform"], "tdx");
    let col = Collateral::from_parts(serde_json::from_value(body["collateral"].clone()).unwrap())
        .unwrap();
    let quote = base64::engine::general_purpose::STANDARD
        .decode(body["evidence"].as_str().unwrap())
        .unwrap();
    let v = DcapVerifier::new(Policy::aws_nitro().unwrap()).verify(
        &quote,
        &col,
        &DcapExpected::default(),
        inside_tdx_window(),
    );
    assert!(v.outcome.is_ok(), "{}", v.report);
    assert_eq!(
        pccs.hits(),
        4,
        "TCB info, QE identity, PCK CRL, root CA CRL"
    );

    // The next attestation is served from the cache: no request to the PCCS.
    let again = attestation(&node).await;
    assert_eq!(again["collateral"], body["collateral"]);
    assert_eq!(pccs.hits(), 4);
    let m = metrics(&node).await;
    assert!(
        m.contains(r#"attesta_endorsement_fetches_total{source="pcs",result="ok"} 2"#),
        "{m}"
    );
}

#[tokio::test]
async fn an_unreachable_pccs_leaves_the_collateral_out_and_is_counted() {
    let tdx = Evidence {
        platform: Platform::Tdx,
        bytes: tdx_quote(),
        aux: None,
    };
    // Port 9 (discard): nothing listens there.
    let (node, _dir) = node(tdx, pcs("http://127.0.0.1:9"), inside_tdx_window()).await;
    let body = attestation(&node).await;
    assert!(body.get("collateral").is_none(), "{body}");
    assert!(body["evidence"].is_string());
    let m = metrics(&node).await;
    assert!(
        m.contains(r#"attesta_endorsement_fetches_total{source="pcs",result="failed"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn collateral_from_the_attester_is_served_as_is_without_a_fetch() {
    let pccs = Pccs::serve(tdx_collateral(), "tdx", "B0C06F000000").await;
    let own = tdx_collateral();
    let tdx = Evidence {
        platform: Platform::Tdx,
        bytes: tdx_quote(),
        aux: Some(serde_json::to_vec(&own).unwrap()),
    };
    let (node, _dir) = node(tdx, pcs(&pccs.base), inside_tdx_window()).await;
    let body = attestation(&node).await;
    assert_eq!(body["collateral"], own);
    assert_eq!(pccs.hits(), 0);
}

#[tokio::test]
async fn a_bare_snp_report_is_served_with_its_vcek_from_the_kds() {
    let dir = attesta_test_support::fixture("sev-snp");
    let report = std::fs::read(dir.join("trustee_milan_v2_report.bin")).unwrap();
    let kds = Kds::serve(KdsContent::trustee_milan_v2()).await;
    let cache = tempfile::tempdir().unwrap();
    let endorser = Endorser::new(
        None,
        Some(KdsClient::new(&kds.base, Some(cache.path().to_owned()), FETCH_TIMEOUT).unwrap()),
    );
    let at = UnixTime::from_secs(1_717_200_000);
    let snp = Evidence {
        platform: Platform::SevSnp,
        bytes: report.clone(),
        aux: None,
    };
    let (node, _dir) = node(snp, endorser, at).await;
    let body = attestation(&node).await;
    let certs: Vec<Vec<u8>> = body["certs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            base64::engine::general_purpose::STANDARD
                .decode(c.as_str().unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(certs.len(), 3, "VCEK, ASK, ARK");
    let v = SnpVerifier::new(Policy::aws_nitro().unwrap()).verify(
        &report,
        &certs,
        &Expected::default(),
        at,
    );
    assert!(v.report.verified, "{}", v.report);
    // Cached on disk: the second attestation asks nothing.
    let hits = kds.hits();
    attestation(&node).await;
    assert_eq!(kds.hits(), hits);
}
