//! The KDS client against a 127.0.0.1 stand-in: fetches the VCEK by chip id
//! and reported TCB (the query must name the report's TCB, not the current
//! one), caches it on disk, and the fetched certificates verify the report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use attesta_client::kds::{KdsClient, KdsError};
use attesta_evidence::snp::AttestationReport;
use attesta_evidence::{Expected, Policy, SnpVerifier, UnixTime};
use attesta_test_support::standins::{Kds, KdsContent};

#[tokio::test]
async fn fetches_caches_and_verifies() {
    let dir = attesta_test_support::fixture("sev-snp");
    let report_bytes = std::fs::read(dir.join("trustee_milan_v2_report.bin")).unwrap();
    let report = AttestationReport::parse(&report_bytes).unwrap();
    let kds = Kds::serve(KdsContent::trustee_milan_v2()).await;
    let base = kds.base.clone();

    let cache = tempfile::tempdir().unwrap();
    let client = KdsClient::new(
        &base,
        Some(cache.path().to_owned()),
        Duration::from_secs(10),
    )
    .unwrap();
    let certs = client.certs_for(&report).await.unwrap();
    assert_eq!(certs.len(), 3, "VCEK + ASK + ARK");
    // v2 report: no CPUID, so Milan is tried first and found; the query is the reported TCB.
    let q = kds.queries.lock().unwrap()[0].clone();
    assert_eq!(
        q.get("ucodeSPL").map(String::as_str),
        Some("115"),
        "reported, not current (206), TCB"
    );
    let v = SnpVerifier::new(Policy::aws_nitro().unwrap()).verify(
        &report_bytes,
        &certs,
        &Expected::default(),
        UnixTime::from_secs(1_717_200_000),
    );
    assert!(v.report.verified, "{}", v.report);

    // Second time: from the cache, no request.
    let hits = kds.hits();
    let again = KdsClient::new(
        &base,
        Some(cache.path().to_owned()),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(again.certs_for(&report).await.unwrap(), certs);
    assert_eq!(kds.hits(), hits);

    // An unknown chip: every product tried, 404 named.
    let mut other = report.clone();
    other.chip_id[0] ^= 1;
    let err = client.certs_for(&other).await.unwrap_err();
    assert!(matches!(err, KdsError::Status { status: 404, .. }), "{err}");
    // VLEK-signed reports are not served by the KDS.
    let vlek = AttestationReport::parse(
        &std::fs::read(dir.join("trustee_milan_v3_vlek_report.bin")).unwrap(),
    )
    .unwrap();
    assert!(matches!(client.certs_for(&vlek).await, Err(KdsError::Vlek)));
    assert!(matches!(
        KdsClient::new("ftp://x", None, Duration::from_secs(1)),
        Err(KdsError::BadUrl(_))
    ));
}
