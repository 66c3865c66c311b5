//! 127.0.0.1 stand-ins for the services endorsements come from: an Intel
//! PCS/PCCS (DCAP collateral) and AMD's KDS (SEV-SNP VCEKs). They serve real
//! fixtures in the services' wire shapes and count what they were asked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::Value;

async fn listen(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A PCCS serving one platform's collateral (v4 API paths).
pub struct Pccs {
    /// Base URL (`http://127.0.0.1:PORT`).
    pub base: String,
    /// Requests answered so far.
    pub hits: Arc<AtomicUsize>,
}

struct PccsState {
    col: Value,
    fmspc: String,
    hits: Arc<AtomicUsize>,
    /// How long every answer takes (to make concurrent requests overlap).
    delay: Duration,
}

impl PccsState {
    fn s(&self, k: &str) -> String {
        self.col[k].as_str().unwrap().to_owned()
    }

    /// Counts a request, then takes the configured time to answer.
    async fn hit(&self) {
        self.hits.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
    }
}

impl Pccs {
    /// Serves `collateral` (dcap-qvl's `QuoteCollateralV3` JSON) for TEE `tee`
    /// (`tdx` or `sgx`) and FMSPC `fmspc` (upper-case hex); other FMSPCs get 404.
    pub async fn serve(collateral: Value, tee: &str, fmspc: &str) -> Pccs {
        Self::serve_slowly(collateral, tee, fmspc, Duration::ZERO).await
    }

    /// The same, taking `delay` to answer each request.
    pub async fn serve_slowly(collateral: Value, tee: &str, fmspc: &str, delay: Duration) -> Pccs {
        let hits = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(PccsState {
            col: collateral,
            fmspc: fmspc.to_owned(),
            hits: Arc::clone(&hits),
            delay,
        });
        let app = axum::Router::new()
            .route(&format!("/{tee}/certification/v4/tcb"), get(tcb))
            .route(&format!("/{tee}/certification/v4/qe/identity"), get(qe))
            .route("/sgx/certification/v4/pckcrl", get(pck_crl))
            .route("/sgx/certification/v4/rootcacrl", get(root_crl))
            .with_state(state);
        Pccs {
            base: listen(app).await,
            hits,
        }
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn tcb(
    State(p): State<Arc<PccsState>>,
    Query(q): Query<Vec<(String, String)>>,
) -> impl IntoResponse {
    p.hit().await;
    if !q.iter().any(|(k, v)| k == "fmspc" && *v == p.fmspc) {
        return (StatusCode::NOT_FOUND, HeaderMap::new(), String::new());
    }
    let mut h = HeaderMap::new();
    h.insert(
        "TCB-Info-Issuer-Chain",
        HeaderValue::from_str(&percent_encode(&p.s("tcb_info_issuer_chain"))).unwrap(),
    );
    let body = format!(
        "{{\"tcbInfo\":{},\"signature\":\"{}\"}}",
        p.s("tcb_info"),
        p.s("tcb_info_signature")
    );
    (StatusCode::OK, h, body)
}

async fn qe(State(p): State<Arc<PccsState>>) -> String {
    p.hit().await;
    format!(
        "{{\"enclaveIdentity\":{},\"signature\":\"{}\"}}",
        p.s("qe_identity"),
        p.s("qe_identity_signature")
    )
}

async fn pck_crl(State(p): State<Arc<PccsState>>) -> Vec<u8> {
    p.hit().await;
    hex::decode(p.s("pck_crl")).unwrap()
}

async fn root_crl(State(p): State<Arc<PccsState>>) -> String {
    p.hit().await;
    // PCCS serves this one as hex text.
    p.s("root_ca_crl")
}

/// A KDS serving one chip's VCEK and one product's chain.
pub struct Kds {
    /// Base URL (`http://127.0.0.1:PORT`).
    pub base: String,
    /// Requests answered so far.
    pub hits: Arc<AtomicUsize>,
    /// The query strings of the VCEK requests, in order.
    pub queries: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

/// What a [`Kds`] serves.
#[derive(Clone)]
pub struct KdsContent {
    /// Product name as in the URL (`Milan`, `Genoa`, `Turin`).
    pub product: String,
    /// The hardware id as in the URL (hex).
    pub hwid: String,
    /// The TCB query parameters that must all match (`ucodeSPL` → `115`, ...).
    pub tcb: Vec<(String, String)>,
    /// The VCEK (DER).
    pub vcek: Vec<u8>,
    /// ASK then ARK, PEM (the `cert_chain` answer).
    pub chain: String,
}

impl KdsContent {
    /// What the KDS serves for the `sev-snp/trustee_milan_v2_report.bin` fixture: its VCEK
    /// (issued for the report's TCB: microcode 115, bootloader 3, SNP 8) and the Milan chain.
    pub fn trustee_milan_v2() -> KdsContent {
        let dir = crate::fixture("sev-snp");
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        let report = read("trustee_milan_v2_report.bin");
        // The chip id sits at 0x1A0..0x1E0 of every SNP report.
        let chip = report.get(0x1A0..0x1E0).unwrap();
        KdsContent {
            product: "Milan".into(),
            hwid: hex::encode(chip),
            tcb: [("ucodeSPL", "115"), ("blSPL", "3"), ("snpSPL", "8")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .to_vec(),
            vcek: read("trustee_milan_v2_vcek.der"),
            chain: String::from_utf8(read("roots/milan_ask.pem")).unwrap()
                + &String::from_utf8(read("roots/milan_ark.pem")).unwrap(),
        }
    }
}

#[derive(Clone)]
struct KdsState {
    content: KdsContent,
    hits: Arc<AtomicUsize>,
    queries: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

impl Kds {
    /// Serves `content` under `/vcek/v1/{product}/{hwid}` and `/vcek/v1/{product}/cert_chain`.
    pub async fn serve(content: KdsContent) -> Kds {
        let state = KdsState {
            content,
            hits: Arc::default(),
            queries: Arc::default(),
        };
        let (hits, queries) = (Arc::clone(&state.hits), Arc::clone(&state.queries));
        let app = axum::Router::new()
            .route("/vcek/v1/{product}/{hwid}", get(vcek))
            .with_state(state);
        Kds {
            base: listen(app).await,
            hits,
            queries,
        }
    }

    /// Requests answered so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn vcek(
    State(k): State<KdsState>,
    Path((product, hwid)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, Vec<u8>) {
    k.hits.fetch_add(1, Ordering::SeqCst);
    let c = &k.content;
    if product != c.product {
        return (StatusCode::NOT_FOUND, Vec::new());
    }
    if hwid == "cert_chain" {
        return (StatusCode::OK, c.chain.clone().into_bytes());
    }
    k.queries.lock().unwrap().push(q.clone());
    let tcb_ok = c.tcb.iter().all(|(key, v)| q.get(key) == Some(v));
    if hwid == c.hwid && tcb_ok {
        (StatusCode::OK, c.vcek.clone())
    } else {
        (StatusCode::NOT_FOUND, Vec::new())
    }
}
