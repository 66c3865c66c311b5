//! The sealed relay's HTTP client towards nodes: one POST of ciphertext, the answer read
//! under a cap, the whole exchange under the node deadline (a streamed answer: its head and
//! every silence in it).
//!
//! One home for the relay's client so its deadline, cap and failure kinds are the same
//! for every caller. A relay through hyper's pooled client directly (URIs parsed once)
//! was measured against this one on the gateway benchmark and made no difference above
//! the noise (README), so the relay stays on `reqwest`, which also carries TLS.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};

/// A node's answer to a relayed request.
pub(crate) struct Relayed {
    /// The node's status.
    pub status: StatusCode,
    /// The node's `Content-Type`, when it sent one.
    pub content_type: Option<HeaderValue>,
    /// The body, at most the cap.
    pub body: Bytes,
}

/// Why a relay produced no answer (the node is blamed either way).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RelayFailure {
    /// No answer within the deadline.
    Timeout,
    /// Could not connect, or the exchange broke off.
    Unreachable,
    /// The answer was larger than the cap.
    TooLarge,
}

/// Posts sealed envelopes to nodes.
pub(crate) struct NodeRelay {
    http: reqwest::Client,
    /// For streamed answers: a generation may outlast the node deadline as a whole, so
    /// the deadline bounds the wait for the answer's head and each silence within it.
    streaming: reqwest::Client,
    deadline: Duration,
}

/// A node's streamed answer: its head now, its body as the node sends it.
pub(crate) struct Streaming {
    /// The node's status.
    pub status: StatusCode,
    /// The node's `Content-Type`, when it sent one.
    pub content_type: Option<HeaderValue>,
    /// The node's response, body unread.
    pub response: reqwest::Response,
}

impl NodeRelay {
    /// A relay over `http` (the gateway's client: its timeout is the node deadline, which
    /// is `deadline`).
    pub(crate) fn new(http: reqwest::Client, deadline: Duration) -> Result<Self, reqwest::Error> {
        let streaming = reqwest::Client::builder()
            .connect_timeout(deadline)
            .read_timeout(deadline)
            .build()?;
        Ok(NodeRelay {
            http,
            streaming,
            deadline,
        })
    }

    /// POSTs `body` (a sealed envelope) to the node's language-model route `path` and
    /// returns once the answer's head arrived (within the deadline).
    pub(crate) async fn open_stream(
        &self,
        base: &str,
        path: &str,
        body: Bytes,
    ) -> Result<Streaming, RelayFailure> {
        let sent = self
            .streaming
            .post(format!("{}{path}", base.trim_end_matches('/')))
            .header(header::CONTENT_TYPE, attesta_seal::MEDIA_TYPE)
            .header(header::ACCEPT, attesta_seal::STREAM_MEDIA_TYPE)
            .body(body)
            .send();
        let resp = match tokio::time::timeout(self.deadline, sent).await {
            Err(_) => return Err(RelayFailure::Timeout),
            Ok(r) => r.map_err(|e| {
                if e.is_timeout() {
                    RelayFailure::Timeout
                } else {
                    RelayFailure::Unreachable
                }
            })?,
        };
        Ok(Streaming {
            status: resp.status(),
            content_type: resp.headers().get(header::CONTENT_TYPE).cloned(),
            response: resp,
        })
    }

    /// POSTs `body` as a sealed envelope to the node at `base` and reads its answer
    /// (at most `cap` bytes).
    pub(crate) async fn post_sealed(
        &self,
        base: &str,
        media_type: &'static str,
        body: Bytes,
        cap: usize,
    ) -> Result<Relayed, RelayFailure> {
        let sent = self
            .http
            .post(format!("{}/v1/infer", base.trim_end_matches('/')))
            .header(header::CONTENT_TYPE, media_type)
            .header(header::ACCEPT, media_type)
            .body(body)
            .send()
            .await;
        let resp = sent.map_err(|e| {
            if e.is_timeout() {
                RelayFailure::Timeout
            } else {
                RelayFailure::Unreachable
            }
        })?;
        let status = resp.status();
        let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
        let out = read_capped(resp, cap).await?;
        Ok(Relayed {
            status,
            content_type,
            body: out.into(),
        })
    }
}

/// A node's answer body through `reqwest`, read chunk by chunk and refused past `cap`:
/// registered nodes are still untrusted peers, and one must not make the gateway buffer
/// without bound.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, RelayFailure> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(RelayFailure::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| {
        if e.is_timeout() {
            RelayFailure::Timeout
        } else {
            RelayFailure::Unreachable
        }
    })? {
        if body.len() + chunk.len() > cap {
            return Err(RelayFailure::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::response::IntoResponse;
    use axum::routing::{get, post};
    use std::time::Duration;

    /// A node answering `body` (chunked: without a length) on every path, and hanging on
    /// `/slow/v1/infer`.
    async fn serve(body: Vec<u8>, chunked: bool) -> String {
        let answer = move || {
            let body = body.clone();
            async move {
                if chunked {
                    // No Content-Length: only the running count can stop it.
                    let stream = futures::stream::iter(
                        body.chunks(64 << 10)
                            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
                            .collect::<Vec<_>>(),
                    );
                    axum::body::Body::from_stream(stream).into_response()
                } else {
                    body.into_response()
                }
            }
        };
        let app = Router::new()
            .route("/", get(answer.clone()))
            .route("/v1/infer", post(answer))
            .route(
                "/slow/v1/infer",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn a_node_answer_over_the_cap_is_refused_with_or_without_a_length() {
        let http = reqwest::Client::new();
        let relay = NodeRelay::new(http.clone(), Duration::from_secs(30)).unwrap();
        for chunked in [false, true] {
            let big = serve(vec![7u8; 3 << 20], chunked).await;
            let resp = http.get(&big).send().await.unwrap();
            assert_eq!(
                read_capped(resp, 1 << 20).await.err(),
                Some(RelayFailure::TooLarge),
                "chunked={chunked}"
            );
            let relayed = relay.post_sealed(&big, "x/y", Bytes::new(), 1 << 20).await;
            assert_eq!(
                relayed.err(),
                Some(RelayFailure::TooLarge),
                "chunked={chunked}"
            );

            let small = serve(vec![7u8; 1000], chunked).await;
            let resp = http.get(&small).send().await.unwrap();
            assert_eq!(read_capped(resp, 1 << 20).await.unwrap().len(), 1000);
            let relayed = relay
                .post_sealed(&small, "x/y", Bytes::from_static(b"sealed"), 1 << 20)
                .await
                .unwrap();
            assert_eq!((relayed.status, relayed.body.len()), (StatusCode::OK, 1000));
        }
    }

    #[tokio::test]
    async fn a_hanging_node_ends_at_the_deadline_and_a_closed_port_is_unreachable() {
        let relay = NodeRelay::new(
            reqwest::Client::builder()
                .timeout(Duration::from_millis(300))
                .build()
                .unwrap(),
            Duration::from_millis(300),
        )
        .unwrap();
        let base = serve(vec![1], false).await;
        let started = std::time::Instant::now();
        let slow = relay
            .post_sealed(&format!("{base}slow"), "x/y", Bytes::new(), 1 << 20)
            .await;
        assert_eq!(slow.err(), Some(RelayFailure::Timeout));
        assert!(started.elapsed() < Duration::from_secs(5));
        // A port nothing listens on (bound, then dropped).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let closed = relay
            .post_sealed(
                &format!("http://127.0.0.1:{port}"),
                "x/y",
                Bytes::new(),
                1 << 20,
            )
            .await;
        assert_eq!(closed.err(), Some(RelayFailure::Unreachable));
    }

    /// A streamed answer reaches the gateway head first, its chunks as the node sends
    /// them (the second one a while after the first), while a generation longer than the
    /// deadline as a whole is not cut: the deadline bounds the head and each silence.
    #[tokio::test]
    async fn streams_pass_chunk_by_chunk_and_a_silent_node_times_out() {
        let app = Router::new()
            .route(
                "/v1/completions",
                post(|| async {
                    let chunks = futures::stream::unfold(0u8, |i| async move {
                        if i == 3 {
                            return None;
                        }
                        if i > 0 {
                            tokio::time::sleep(Duration::from_millis(1000)).await;
                        }
                        Some((Ok::<_, std::io::Error>(Bytes::from(vec![i; 10])), i + 1))
                    });
                    axum::body::Body::from_stream(chunks).into_response()
                }),
            )
            .route(
                "/v1/chat/completions",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let base = format!("http://{addr}");
        // Deadline 1.5 s: each gap (1 s) fits, the whole answer (2 s) would not.
        let relay = NodeRelay::new(reqwest::Client::new(), Duration::from_millis(1500)).unwrap();
        let started = std::time::Instant::now();
        let s = relay
            .open_stream(&base, "/v1/completions", Bytes::from_static(b"sealed"))
            .await
            .unwrap();
        assert_eq!(s.status, StatusCode::OK);
        let mut body = Box::pin(s.response.bytes_stream());
        use futures::StreamExt;
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(&first[..], &[0u8; 10]);
        assert!(
            started.elapsed() < Duration::from_millis(700),
            "the first chunk waited for the rest: {:?}",
            started.elapsed()
        );
        let mut rest = Vec::new();
        while let Some(c) = body.next().await {
            rest.extend_from_slice(&c.unwrap());
        }
        assert_eq!(rest.len(), 20);
        assert!(started.elapsed() >= Duration::from_millis(1900));

        let started = std::time::Instant::now();
        let silent = relay
            .open_stream(&base, "/v1/chat/completions", Bytes::new())
            .await;
        assert_eq!(silent.err(), Some(RelayFailure::Timeout));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
