//! The KDS client against a 127.0.0.1 stand-in: fetches the VCEK by chip id
//! and reported TCB (the query must name the report's TCB, not the current
//! one), caches it on disk, and the fetched certificates verify the report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attesta_client::kds::{KdsClient, KdsError};
use attesta_evidence::snp::AttestationReport;
use attesta_evidence::{Expected, Policy, SnpVerifier, UnixTime};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

fn fixtures() -> PathBuf {
    std::env::var_os("ATTESTA_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/fixtures"
            ))
        })
        .join("sev-snp")
}

#[derive(Clone)]
struct Kds {
    vcek: Vec<u8>,
    chip: String,
    chain: String,
    hits: Arc<AtomicUsize>,
    queries: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

async fn vcek(
    State(k): State<Kds>,
    Path((product, hwid)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, Vec<u8>) {
    k.hits.fetch_add(1, Ordering::SeqCst);
    if hwid == "cert_chain" {
        return (StatusCode::OK, k.chain.clone().into_bytes());
    }
    k.queries.lock().unwrap().push(q.clone());
    let tcb_ok = q.get("ucodeSPL").map(String::as_str) == Some("115")
        && q.get("blSPL").map(String::as_str) == Some("3")
        && q.get("snpSPL").map(String::as_str) == Some("8");
    if product == "Milan" && hwid == k.chip && tcb_ok {
        (StatusCode::OK, k.vcek.clone())
    } else {
        (StatusCode::NOT_FOUND, Vec::new())
    }
}

#[tokio::test]
async fn fetches_caches_and_verifies() {
    let dir = fixtures();
    let report_bytes = std::fs::read(dir.join("trustee_milan_v2_report.bin")).unwrap();
    let report = AttestationReport::parse(&report_bytes).unwrap();
    let chain = std::fs::read_to_string(dir.join("roots/milan_ask.pem")).unwrap()
        + &std::fs::read_to_string(dir.join("roots/milan_ark.pem")).unwrap();
    let kds = Kds {
        vcek: std::fs::read(dir.join("trustee_milan_v2_vcek.der")).unwrap(),
        chip: hex::encode(report.chip_id),
        chain,
        hits: Arc::new(AtomicUsize::new(0)),
        queries: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/vcek/v1/{product}/{hwid}", axum::routing::get(vcek))
        .with_state(kds.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

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
    let hits = kds.hits.load(Ordering::SeqCst);
    let again = KdsClient::new(
        &base,
        Some(cache.path().to_owned()),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(again.certs_for(&report).await.unwrap(), certs);
    assert_eq!(kds.hits.load(Ordering::SeqCst), hits);

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
