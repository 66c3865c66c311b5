//! The DCAP collateral client against a local PCCS stand-in: fetches what
//! the verifier needs, caches it until nextUpdate, and names failures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use attesta_client::{PcsClient, PcsError};
use attesta_evidence::dcap::{DcapExpected, DcapVerifier};
use attesta_evidence::{Policy, UnixTime};
use attesta_test_support::standins::Pccs;

fn fixture(name: &str) -> Vec<u8> {
    attesta_test_support::read_fixture(&format!("sgx-tdx/{name}"))
}

async fn serve() -> (String, Pccs) {
    let col = serde_json::from_slice(&fixture("phala_tdx_v4_collateral.json")).unwrap();
    let pccs = Pccs::serve(col, "tdx", "B0C06F000000").await;
    (pccs.base.clone(), pccs)
}

#[tokio::test]
async fn fetches_verifies_and_caches_until_next_update() {
    let (base, pccs) = serve().await;
    let client = PcsClient::new(&base, Duration::from_secs(10)).unwrap();
    let quote = fixture("phala_tdx_v4_quote.bin");
    let now = UnixTime::parse_rfc3339("2025-07-01T00:00:00Z").unwrap();
    let col = client.for_quote(&quote, now).await.unwrap();
    assert_eq!(pccs.hits(), 4);
    let v = DcapVerifier::new(Policy::aws_nitro().unwrap()).verify(
        &quote,
        &col,
        &DcapExpected::default(),
        now,
    );
    assert!(v.outcome.is_ok(), "{}", v.report);

    // Cached while current.
    let again = client
        .for_quote(&quote, now.saturating_add(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&col, &again));
    assert_eq!(pccs.hits(), 4);
    assert_eq!(client.cached(), 1);

    // After the earliest nextUpdate: fetched again.
    let later = col.next_update().saturating_add(Duration::from_secs(1));
    let fresh = client.for_quote(&quote, later).await.unwrap();
    assert!(!Arc::ptr_eq(&col, &fresh));
    assert_eq!(pccs.hits(), 8);
}

#[tokio::test]
async fn failures_are_named() {
    let (base, _pccs) = serve().await;
    let client = PcsClient::new(&base, Duration::from_secs(10)).unwrap();
    let now = UnixTime::parse_rfc3339("2025-07-01T00:00:00Z").unwrap();
    // An SGX quote: the stand-in has no SGX TCB info.
    let err = client
        .for_quote(&fixture("phala_sgx_v3_quote.bin"), now)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PcsError::Status { status: 404, .. }),
        "{err:?}"
    );
    let err = client.for_quote(b"not a quote", now).await.unwrap_err();
    assert!(matches!(err, PcsError::Quote(_)), "{err:?}");
    assert!(matches!(
        PcsClient::new("ftp://x", Duration::from_secs(1)),
        Err(PcsError::Url(_))
    ));
    // Nothing listening.
    let dead = PcsClient::new("http://127.0.0.1:9", Duration::from_secs(2)).unwrap();
    let err = dead
        .for_quote(&fixture("phala_tdx_v4_quote.bin"), now)
        .await
        .unwrap_err();
    assert!(matches!(err, PcsError::Transport { .. }), "{err:?}");
}
