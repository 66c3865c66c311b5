//! A tiny trustless gateway on 127.0.0.1 for tests, with switchable misbehaviour.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: failing loudly is the point

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attesta_content::Cid;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::StreamExt;

/// How the gateway behaves.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Serves what it has.
    Honest,
    /// Serves every block with one byte flipped (CAR and raw).
    Lying,
    /// Answers 406 to CAR requests (forces the raw path).
    NoCar,
    /// Answers 503 to the first `n` requests.
    Flaky(usize),
    /// Waits this long before answering.
    Slow(Duration),
    /// Serves these bytes as the CAR for any CID.
    FixedCar(Vec<u8>),
    /// Has nothing.
    Empty,
    /// Sends its answer one byte every `0` (dodging any idle timeout longer than that).
    Drip(Duration),
    /// Redirects every request to the same path and query under this base URL.
    RedirectTo(String),
    /// Redirects every request to `/moved/...` on itself, where it serves honestly.
    RedirectSameOrigin,
}

#[derive(Default)]
pub struct Counters {
    pub car: AtomicUsize,
    pub raw: AtomicUsize,
}

struct Gw {
    mode: Mode,
    blocks: Mutex<HashMap<Cid, Vec<u8>>>,
    roots: Mutex<Vec<Cid>>,
    counters: Arc<Counters>,
    seen: AtomicUsize,
}

pub struct Gateway {
    pub url: String,
    pub counters: Arc<Counters>,
    state: Arc<Gw>,
}

impl Gateway {
    /// Starts a gateway on an ephemeral 127.0.0.1 port.
    pub async fn start(mode: Mode) -> Gateway {
        let counters = Arc::new(Counters::default());
        let state = Arc::new(Gw {
            mode,
            blocks: Mutex::new(HashMap::new()),
            roots: Mutex::new(Vec::new()),
            counters: counters.clone(),
            seen: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/ipfs/{cid}", axum::routing::get(handle))
            .route("/moved/ipfs/{cid}", axum::routing::get(serve))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Gateway {
            url,
            counters,
            state,
        }
    }

    /// Adds a file (imported under `profile`) and returns its root.
    pub fn add(&self, data: &[u8], profile: attesta_content::Profile) -> Cid {
        let (root, blocks) = attesta_content::import_reader(data, profile, Vec::new()).unwrap();
        self.add_blocks(&root, blocks);
        root
    }

    /// Adds raw blocks under a root.
    pub fn add_blocks(&self, root: &Cid, blocks: impl IntoIterator<Item = (Cid, Vec<u8>)>) {
        self.state.blocks.lock().unwrap().extend(blocks);
        self.state.roots.lock().unwrap().push(root.clone());
    }
}

#[derive(serde::Deserialize)]
struct Q {
    format: Option<String>,
}

fn flip(mut b: Vec<u8>) -> Vec<u8> {
    if let Some(last) = b.last_mut() {
        *last ^= 0x55;
    } else {
        b.push(0);
    }
    b
}

fn redirect(location: &str) -> Response {
    let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_str(location).unwrap());
    resp
}

async fn handle(
    State(gw): State<Arc<Gw>>,
    path: Path<String>,
    query: Query<Q>,
    uri: axum::http::Uri,
) -> Response {
    let pq = uri.path_and_query().map_or("", |p| p.as_str());
    match &gw.mode {
        Mode::RedirectTo(base) => redirect(&format!("{base}{pq}")),
        Mode::RedirectSameOrigin => redirect(&format!("/moved{pq}")),
        _ => serve(State(gw), path, query).await,
    }
}

async fn serve(State(gw): State<Arc<Gw>>, Path(cid): Path<String>, Query(q): Query<Q>) -> Response {
    let is_car = q.format.as_deref() == Some("car");
    if is_car {
        gw.counters.car.fetch_add(1, Ordering::SeqCst);
    } else {
        gw.counters.raw.fetch_add(1, Ordering::SeqCst);
    }
    let n = gw.seen.fetch_add(1, Ordering::SeqCst);
    match &gw.mode {
        Mode::Flaky(k) if n < *k => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Mode::Slow(d) => tokio::time::sleep(*d).await,
        Mode::NoCar if is_car => return StatusCode::NOT_ACCEPTABLE.into_response(),
        Mode::Empty => return StatusCode::NOT_FOUND.into_response(),
        _ => {}
    }
    let Ok(cid) = cid.parse::<Cid>() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let lying = matches!(gw.mode, Mode::Lying);
    let body = if is_car {
        let car = if let Mode::FixedCar(car) = &gw.mode {
            car.clone()
        } else {
            let blocks = gw.blocks.lock().unwrap().clone();
            if !blocks.contains_key(&cid) {
                return StatusCode::NOT_FOUND.into_response();
            }
            let blocks = if lying {
                blocks.into_iter().map(|(c, b)| (c, flip(b))).collect()
            } else {
                blocks
            };
            let mut car = Vec::new();
            attesta_content::unixfs::write_car_dfs(&mut car, &cid, &blocks).unwrap();
            car
        };
        (car, "application/vnd.ipld.car; version=1; order=dfs")
    } else {
        let Some(block) = gw.blocks.lock().unwrap().get(&cid).cloned() else {
            return StatusCode::NOT_FOUND.into_response();
        };
        (
            if lying { flip(block) } else { block },
            "application/vnd.ipld.raw",
        )
    };
    if let Mode::Drip(every) = gw.mode {
        let bytes = body.0;
        let stream = futures::stream::iter(bytes.into_iter().map(|b| Bytes::from(vec![b]))).then(
            move |b| async move {
                tokio::time::sleep(every).await;
                Ok::<_, std::convert::Infallible>(b)
            },
        );
        let mut resp = axum::body::Body::from_stream(stream).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(body.1));
        return resp;
    }
    let mut resp = Bytes::from(body.0).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(body.1));
    resp
}
