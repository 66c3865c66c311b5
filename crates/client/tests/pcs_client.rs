//! The DCAP collateral client against a local PCCS stand-in: fetches what
//! the verifier needs, caches it until nextUpdate, and names failures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use attesta_client::{PcsClient, PcsError};
use attesta_evidence::dcap::{DcapExpected, DcapVerifier};
use attesta_evidence::{Policy, UnixTime};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("ATTESTA_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/fixtures"
            ))
        });
    let p = dir.join("sgx-tdx").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (set ATTESTA_FIXTURES)", p.display()))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

struct Pccs {
    col: Value,
    hits: AtomicUsize,
}

async fn tcb(
    State(p): State<Arc<Pccs>>,
    Query(q): Query<Vec<(String, String)>>,
) -> impl IntoResponse {
    p.hits.fetch_add(1, Ordering::SeqCst);
    let s = |k: &str| p.col[k].as_str().unwrap().to_owned();
    if !q.iter().any(|(k, v)| k == "fmspc" && v == "B0C06F000000") {
        return (StatusCode::NOT_FOUND, HeaderMap::new(), String::new());
    }
    let mut h = HeaderMap::new();
    h.insert(
        "TCB-Info-Issuer-Chain",
        HeaderValue::from_str(&percent_encode(&s("tcb_info_issuer_chain"))).unwrap(),
    );
    let body = format!(
        "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
        s("tcb_info"),
        s("tcb_info_signature")
    );
    (StatusCode::OK, h, body)
}

async fn qe(State(p): State<Arc<Pccs>>) -> String {
    p.hits.fetch_add(1, Ordering::SeqCst);
    let s = |k: &str| p.col[k].as_str().unwrap().to_owned();
    format!(
        "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
        s("qe_identity"),
        s("qe_identity_signature")
    )
}

async fn pck_crl(State(p): State<Arc<Pccs>>) -> Vec<u8> {
    p.hits.fetch_add(1, Ordering::SeqCst);
    hex::decode(p.col["pck_crl"].as_str().unwrap()).unwrap()
}

async fn root_crl(State(p): State<Arc<Pccs>>) -> String {
    p.hits.fetch_add(1, Ordering::SeqCst);
    // PCCS serves this one as hex text.
    p.col["root_ca_crl"].as_str().unwrap().to_owned()
}

async fn serve() -> (String, Arc<Pccs>) {
    let pccs = Arc::new(Pccs {
        col: serde_json::from_slice(&fixture("phala_tdx_v4_collateral.json")).unwrap(),
        hits: AtomicUsize::new(0),
    });
    let app = axum::Router::new()
        .route("/tdx/certification/v4/tcb", get(tcb))
        .route("/tdx/certification/v4/qe/identity", get(qe))
        .route("/sgx/certification/v4/pckcrl", get(pck_crl))
        .route("/sgx/certification/v4/rootcacrl", get(root_crl))
        .with_state(Arc::clone(&pccs));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), pccs)
}

#[tokio::test]
async fn fetches_verifies_and_caches_until_next_update() {
    let (base, pccs) = serve().await;
    let client = PcsClient::new(&base, Duration::from_secs(10)).unwrap();
    let quote = fixture("phala_tdx_v4_quote.bin");
    let now = UnixTime::parse_rfc3339("2025-07-01T00:00:00Z").unwrap();
    let col = client.for_quote(&quote, now).await.unwrap();
    assert_eq!(pccs.hits.load(Ordering::SeqCst), 4);
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
    assert_eq!(pccs.hits.load(Ordering::SeqCst), 4);
    assert_eq!(client.cached(), 1);

    // After the earliest nextUpdate: fetched again.
    let later = col.next_update().saturating_add(Duration::from_secs(1));
    let fresh = client.for_quote(&quote, later).await.unwrap();
    assert!(!Arc::ptr_eq(&col, &fresh));
    assert_eq!(pccs.hits.load(Ordering::SeqCst), 8);
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
