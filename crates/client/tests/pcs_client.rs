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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_requests_for_one_platform_share_one_fetch() {
    let col = serde_json::from_slice(&fixture("phala_tdx_v4_collateral.json")).unwrap();
    // Each answer takes 100 ms, so all callers arrive while the first fetch runs.
    let pccs = Pccs::serve_slowly(col, "tdx", "B0C06F000000", Duration::from_millis(100)).await;
    let client = Arc::new(PcsClient::new(&pccs.base, Duration::from_secs(10)).unwrap());
    let quote = Arc::new(fixture("phala_tdx_v4_quote.bin"));
    let now = UnixTime::parse_rfc3339("2025-07-01T00:00:00Z").unwrap();
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (client, quote) = (client.clone(), quote.clone());
            tokio::spawn(async move { client.for_quote(&quote, now).await })
        })
        .collect();
    let mut got = Vec::new();
    for c in callers {
        got.push(c.await.unwrap().unwrap());
    }
    // One fetch: four requests (TCB info, QE identity, two CRLs), one collateral for all.
    assert_eq!(pccs.hits(), 4);
    assert!(got.iter().all(|c| Arc::ptr_eq(c, &got[0])));
    assert_eq!(client.cached(), 1);

    // A failure is shared by the callers of its flight but not kept: the next call asks
    // again. (This PCCS knows another FMSPC: the TCB request is answered 404.)
    let col = serde_json::from_slice(&fixture("phala_tdx_v4_collateral.json")).unwrap();
    let other = Pccs::serve_slowly(col, "tdx", "000000000000", Duration::from_millis(100)).await;
    let client = Arc::new(PcsClient::new(&other.base, Duration::from_secs(10)).unwrap());
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (client, quote) = (client.clone(), quote.clone());
            tokio::spawn(async move { client.for_quote(&quote, now).await })
        })
        .collect();
    for c in callers {
        let err = c.await.unwrap().unwrap_err();
        assert!(
            matches!(err, PcsError::Status { status: 404, .. }),
            "{err:?}"
        );
    }
    assert_eq!(other.hits(), 1, "one TCB request for all four");
    client.for_quote(&quote, now).await.unwrap_err();
    assert_eq!(other.hits(), 2);
    assert_eq!(client.cached(), 0);
}
