//! The HTTP floor of `/infer` on this machine: the node's own accept loop and limits
//! (`attesta_node::server::serve`, hyper's HTTP/1, the same multi-threaded runtime) serving
//! one `POST /infer` route that reads the whole body and answers a fixed JSON body of the
//! size of a small model's answer, without decoding anything or running a model.
//!
//! `bench/run.sh` loads it with the same requests as the node (server `http-floor`), so the
//! node's latency splits into this exchange, which any server on loopback pays, and the
//! node's own work (decoding, the engine, encoding). Not a test.
//!
//!   cargo run --release -p attesta-node --example http_floor -- 127.0.0.1:PORT

use attesta_node::metrics::Metrics;
use attesta_node::server::{ConnectionMetrics, HttpLimits, serve};
use attesta_node::transport::{Addr, Listener};
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;

/// An answer shaped like the MLP's: ten fixed-point numbers, a model hash.
fn answer() -> &'static str {
    concat!(
        r#"{"output":{"numbers":[{"name":"y","values":["#,
        r#"{"value":-12345678,"decimals":8},{"value":23456789,"decimals":8},"#,
        r#"{"value":-34567891,"decimals":8},{"value":45678912,"decimals":8},"#,
        r#"{"value":-56789123,"decimals":8},{"value":67891234,"decimals":8},"#,
        r#"{"value":-78912345,"decimals":8},{"value":89123456,"decimals":8},"#,
        r#"{"value":-91234567,"decimals":8},{"value":12345678,"decimals":8}],"#,
        r#""shape":[1,10]}],"strings":[],"jsons":[]},"#,
        r#""model_hash":"0000000000000000000000000000000000000000000000000000000000000000"}"#
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .ok_or("usage: http_floor HOST:PORT")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = Listener::bind(&Addr::Tcp(addr)).await?;
        // The body is read whole, as the node's extractor does, then dropped.
        let app = Router::new()
            .route(
                "/infer",
                post(|body: Bytes| async move {
                    drop(body);
                    ([(header::CONTENT_TYPE, "application/json")], answer()).into_response()
                }),
            )
            .layer(DefaultBodyLimit::max(64 << 20));
        let metrics = ConnectionMetrics::register(&Metrics::new());
        // Runs until killed, as the benchmark does.
        serve(
            listener,
            app,
            HttpLimits::default(),
            metrics,
            std::future::pending(),
        )
        .await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
