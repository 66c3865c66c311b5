//! The sealed relay's HTTP client towards nodes: one POST of ciphertext, the answer read
//! under a cap, the whole exchange under the node deadline (a streamed answer: its head and
//! every silence in it).
//!
//! One home for the relay's client so its deadline, cap and failure kinds are the same
//! for every caller.
//!
//! Sealed `/v1/infer` relays to plain-HTTP nodes go over hyper's bare HTTP/1 connections
//! kept in a small pool of our own ([`H1Pool`]), not through `reqwest`: profiled on the
//! gateway benchmark, `reqwest`'s layers (URL parsing with IDNA per request, redirect and
//! retry policies, the proxy matcher, the legacy pool's checkout) were a quarter of the
//! validator's CPU per relayed request (~12 µs of ~46); the client part is ~3 µs this way
//! (README, "gateway overhead"). TLS nodes, streams and a configured HTTP proxy keep
//! `reqwest`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body::Body as _;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

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

/// Idle connections kept per node: as many as relays may be in flight at once under the
/// default admission limit, so a steady load never reconnects.
const MAX_IDLE_PER_NODE: usize = 64;

/// How long a kept connection may sit idle before it is closed instead of reused: below
/// the node's own idle timeout (60 s by default), so the gateway never sends on a
/// connection the node is closing at that moment, and a node no longer relayed to does
/// not keep sockets open for ever.
const MAX_IDLE_TIME: Duration = Duration::from_secs(30);

/// Posts sealed envelopes to nodes.
pub(crate) struct NodeRelay {
    /// Plain-HTTP connections for `/v1/infer`; `None` when an HTTP proxy is configured in
    /// the environment (`reqwest` honours it, so every relay goes through `reqwest` then).
    direct: Option<H1Pool>,
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
        let proxied = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
        Ok(NodeRelay {
            direct: (!proxied).then(H1Pool::default),
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
    /// (at most `cap` bytes), the whole exchange within the deadline.
    pub(crate) async fn post_sealed(
        &self,
        base: &str,
        media_type: &'static str,
        body: Bytes,
        cap: usize,
    ) -> Result<Relayed, RelayFailure> {
        if let Some((pool, target)) = self.direct.as_ref().zip(PlainTarget::parse(base)) {
            let exchange = pool.post(&target, media_type, body, cap);
            return tokio::time::timeout(self.deadline, exchange)
                .await
                .unwrap_or(Err(RelayFailure::Timeout));
        }
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

/// A plain-HTTP node address split once per relay: where to connect, what to name in
/// `Host`, and the path of its `/v1/infer` (under any path prefix of its registered URL).
struct PlainTarget {
    /// `host:port` as registered (the `Host` header and the pool's key).
    authority: String,
    /// The host without IPv6 brackets, for connecting.
    host: String,
    port: u16,
    path: String,
}

impl PlainTarget {
    /// `None` for anything but a plain `http://` URL with a host and no query (TLS and odd
    /// URLs go through `reqwest`, which handles them as before).
    fn parse(base: &str) -> Option<Self> {
        let uri: Uri = base.parse().ok()?;
        if uri.scheme_str() != Some("http") || uri.query().is_some() {
            return None;
        }
        let authority = uri.authority()?;
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || authority.as_str().contains('@') {
            return None;
        }
        Some(PlainTarget {
            authority: authority.as_str().to_owned(),
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
            path: format!("{}/v1/infer", uri.path().trim_end_matches('/')),
        })
    }
}

/// A kept connection and when it was put back.
type Kept = (Instant, SendRequest<Body>);

/// HTTP/1 connections to plain-HTTP nodes, idle ones kept per node for the next relay.
///
/// Each connection is driven by a task on the runtime that opened it (the gateway's
/// listener runtime), so a relay never leaves that thread. A connection that the node
/// closed is noticed when taken and dropped; redirects are passed on, never followed (the
/// gateway only posts to registered addresses).
struct H1Pool {
    /// Kept connections per node (newest last).
    idle: Mutex<HashMap<String, Vec<Kept>>>,
    /// [`MAX_IDLE_TIME`] outside the tests.
    max_idle: Duration,
}

impl Default for H1Pool {
    fn default() -> Self {
        H1Pool {
            idle: Mutex::default(),
            max_idle: MAX_IDLE_TIME,
        }
    }
}

impl H1Pool {
    /// An idle connection to `authority` the node has not closed, if any (its driver may
    /// not have seen the end of the last answer yet: wait for `ready` before sending).
    /// Connections idle for longer than `max_idle` are dropped, which closes them.
    fn take(&self, authority: &str) -> Option<SendRequest<Body>> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let list = idle.get_mut(authority)?;
        let now = Instant::now();
        list.retain(|(since, s)| now.duration_since(*since) <= self.max_idle && !s.is_closed());
        let found = list.pop().map(|(_, s)| s);
        if list.is_empty() {
            idle.remove(authority);
        }
        found
    }

    /// Keeps `sender` for the next relay to `authority` (dropped, which closes it, when
    /// enough are kept already).
    fn put(&self, authority: &str, sender: SendRequest<Body>) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let kept = (Instant::now(), sender);
        match idle.get_mut(authority) {
            Some(list) if list.len() < MAX_IDLE_PER_NODE => list.push(kept),
            Some(_) => {}
            None => {
                idle.insert(authority.to_owned(), vec![kept]);
            }
        }
    }

    /// A new connection to `target`, its driver spawned on the current runtime.
    async fn connect(target: &PlainTarget) -> Result<SendRequest<Body>, RelayFailure> {
        let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|_| RelayFailure::Unreachable)?;
        // One write per message already; without Nagle a request never waits for an ACK.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| RelayFailure::Unreachable)?;
        tokio::spawn(async move {
            // Ends when the node closes, the exchange breaks, or the sender is dropped.
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// One POST of `body` to `target` and its answer under `cap`, on a kept connection
    /// when there is one. A kept connection that the node closed before taking the request
    /// is retried once on a new one (the request was not sent, so nothing is posted twice).
    async fn post(
        &self,
        target: &PlainTarget,
        media_type: &'static str,
        body: Bytes,
        cap: usize,
    ) -> Result<Relayed, RelayFailure> {
        let request = |body: Bytes| {
            Request::post(target.path.as_str())
                .header(header::HOST, target.authority.as_str())
                .header(header::CONTENT_TYPE, media_type)
                .header(header::ACCEPT, media_type)
                .body(Body::from(body))
                .map_err(|_| RelayFailure::Unreachable)
        };
        let mut kept = None;
        while let Some(mut s) = self.take(&target.authority) {
            if s.ready().await.is_ok() {
                kept = Some(s);
                break;
            }
        }
        let (sender, answer) = match kept {
            Some(mut kept) => match kept.send_request(request(body.clone())?).await {
                Ok(answer) => (kept, answer),
                Err(e) if e.is_canceled() => {
                    let mut fresh = Self::connect(target).await?;
                    let answer = fresh.send_request(request(body)?).await;
                    (fresh, answer.map_err(|_| RelayFailure::Unreachable)?)
                }
                Err(_) => return Err(RelayFailure::Unreachable),
            },
            None => {
                let mut fresh = Self::connect(target).await?;
                let answer = fresh.send_request(request(body)?).await;
                (fresh, answer.map_err(|_| RelayFailure::Unreachable)?)
            }
        };
        let (head, mut incoming) = answer.into_parts();
        let length = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if length.is_some_and(|n| n > cap as u64) {
            return Err(RelayFailure::TooLarge);
        }
        // Most answers come in one frame: that one is passed on as is, without a copy.
        let mut first: Option<Bytes> = None;
        let mut joined: Vec<u8> = Vec::new();
        let mut total = 0usize;
        while let Some(frame) =
            std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_frame(cx)).await
        {
            let Ok(data) = frame.map_err(|_| RelayFailure::Unreachable)?.into_data() else {
                continue; // trailers carry nothing the user needs
            };
            total = total.saturating_add(data.len());
            if total > cap {
                return Err(RelayFailure::TooLarge);
            }
            match first.take() {
                None if joined.is_empty() => first = Some(data),
                Some(head) => {
                    joined.reserve(total);
                    joined.extend_from_slice(&head);
                    joined.extend_from_slice(&data);
                }
                None => joined.extend_from_slice(&data),
            }
        }
        // The answer was read to its end: the connection can carry the next relay.
        if !sender.is_closed() {
            self.put(&target.authority, sender);
        }
        Ok(Relayed {
            status: head.status,
            content_type: head.headers.get(header::CONTENT_TYPE).cloned(),
            body: first.unwrap_or_else(|| joined.into()),
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

    /// A node answering one request per connection and closing it: the kept connection is
    /// dropped and the next relay opens a new one instead of failing.
    #[tokio::test]
    async fn a_connection_the_node_closed_is_not_reused() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // Head and the 6-byte body.
                while !seen.ends_with(b"\r\n\r\nsealed") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-type: x/y\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            }
        });
        let relay = NodeRelay::new(reqwest::Client::new(), Duration::from_secs(5)).unwrap();
        for _ in 0..3 {
            let a = relay
                .post_sealed(
                    &format!("http://{addr}/"),
                    "x/y",
                    Bytes::from_static(b"sealed"),
                    1 << 20,
                )
                .await
                .unwrap();
            assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"ok"[..]));
            assert_eq!(a.content_type.unwrap(), "x/y");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    /// A keep-alive node (axum) behind a counting listener: back-to-back relays share one
    /// connection, and one kept past the pool's idle limit is closed, not reused.
    #[tokio::test]
    async fn kept_connections_are_reused_until_idle_too_long() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let app = Router::new().route("/v1/infer", post(|| async { "ok" }));
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(conn), service),
                );
            }
        });
        let mut relay = NodeRelay::new(reqwest::Client::new(), Duration::from_secs(5)).unwrap();
        let pool = relay
            .direct
            .as_mut()
            .expect("no proxy in the test environment");
        pool.max_idle = Duration::from_millis(200);
        let url = format!("http://{addr}/");
        let post = || relay.post_sealed(&url, "x/y", Bytes::from_static(b"sealed"), 1 << 10);
        for _ in 0..3 {
            assert_eq!(post().await.unwrap().body.as_ref(), b"ok");
        }
        let connections = || accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(connections(), 1, "back-to-back relays reuse the connection");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(post().await.unwrap().body.as_ref(), b"ok");
        assert_eq!(
            connections(),
            2,
            "an idle-too-long connection is not reused"
        );
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
