//! The node's HTTP/1.1 accept loop, with the limits `axum::serve` lacks: a header read
//! timeout, a body read timeout, an idle keep-alive timeout and a connection cap.
//!
//! Every connection is in one of three phases, tracked from its socket reads and its
//! requests:
//!
//! - **head**: a new connection, or bytes of a request head arriving; closed when the head
//!   is not complete within [`HttpLimits::header_timeout`] of the connection's start or the
//!   head's first byte (slow-loris headers, sockets opened and left silent);
//! - **idle**: a keep-alive connection between requests; closed after
//!   [`HttpLimits::idle_timeout`] without traffic;
//! - **busy**: a request is being served; its body must arrive within
//!   [`HttpLimits::body_timeout`] of the head (else 408 `body_timeout`), and the handlers
//!   bound their own work (`--request-timeout`).
//!
//! At most [`HttpLimits::max_connections`] connections are open at once. A connection over
//! the cap first closes the connection that has been idle (or stuck in its head) the longest,
//! so idle sockets cannot lock out new clients; when every connection is busy, accepting waits
//! for one to finish, and a newcomer that waits longer than the header timeout is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower_service::Service as _;

use crate::transport::{Listener, Stream};

/// Limits of the HTTP surface. Every request-caused wait is bounded by one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest time from the first byte of a request head to its last.
    pub header_timeout: Duration,
    /// Longest time from a complete request head to the end of its body.
    pub body_timeout: Duration,
    /// Longest silence on a keep-alive connection between requests.
    pub idle_timeout: Duration,
    /// Connections open at once; beyond it the longest-idle connection is closed first.
    pub max_connections: usize,
    /// After shutdown is requested, how long in-flight requests may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Connection counts for `/metrics`: open connections, and closes by reason
/// (`ended`, `header_timeout`, `idle_timeout`, `evicted`, `refused`).
#[derive(Clone, Default)]
pub struct ConnectionMetrics {
    open: Gauge,
    closed: Family<ReasonLabels, Counter>,
}

impl ConnectionMetrics {
    /// Creates the metrics and registers them with the node's registry.
    pub fn register(metrics: &crate::metrics::Metrics) -> Self {
        let m = ConnectionMetrics::default();
        metrics.with_registry(|r| {
            r.register(
                "http_connections_open",
                "HTTP connections open now",
                m.open.clone(),
            );
            r.register(
                "http_connections_closed",
                "HTTP connections closed, by reason",
                m.closed.clone(),
            );
        });
        m
    }

    fn closed(&self, reason: &'static str) {
        self.closed.get_or_create(&ReasonLabels { reason }).inc();
    }
}

/// A request body that did not arrive within [`HttpLimits::body_timeout`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .0.as_millis())]
pub struct BodyTimeout(pub Duration);

/// Where a connection is in its life (see the module doc).
#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle { since: Instant },
    Head { since: Instant },
    Busy { requests: usize },
}

/// One open connection, shared by its task, its socket wrapper, its requests and the registry.
struct Conn {
    phase: Mutex<Phase>,
    /// Wakes the connection's watchdog when its phase changes.
    changed: Notify,
    /// Asks the connection to close now (the cap needs its slot).
    evict: Notify,
    evicted: std::sync::atomic::AtomicBool,
}

impl Conn {
    fn new(now: Instant) -> Self {
        Conn {
            // A new connection owes its first head at once.
            phase: Mutex::new(Phase::Head { since: now }),
            changed: Notify::new(),
            evict: Notify::new(),
            evicted: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_read(&self) {
        let mut p = self.phase();
        if let Phase::Idle { .. } = *p {
            *p = Phase::Head {
                since: Instant::now(),
            };
            drop(p);
            self.changed.notify_one();
        }
    }

    fn on_write(&self) {
        // An answer still being written counts as traffic: the idle clock restarts.
        if let Phase::Idle { since } = &mut *self.phase() {
            *since = Instant::now();
        }
    }

    fn request_started(&self) {
        let mut p = self.phase();
        *p = match *p {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            _ => Phase::Busy { requests: 1 },
        };
    }

    fn request_finished(&self) {
        let mut p = self.phase();
        if let Phase::Busy { requests } = *p {
            *p = if requests > 1 {
                Phase::Busy {
                    requests: requests - 1,
                }
            } else {
                Phase::Idle {
                    since: Instant::now(),
                }
            };
        }
        drop(p);
        self.changed.notify_one();
    }

    /// When this connection must be closed if nothing changes, `None` while it is busy.
    fn deadline(&self, limits: &HttpLimits) -> Option<Instant> {
        match *self.phase() {
            Phase::Idle { since } => Some(since + limits.idle_timeout),
            Phase::Head { since } => Some(since + limits.header_timeout),
            Phase::Busy { .. } => None,
        }
    }

    /// For eviction: how long this connection has done nothing useful, `None` if busy.
    fn unused_since(&self) -> Option<Instant> {
        match *self.phase() {
            Phase::Idle { since } | Phase::Head { since } => Some(since),
            Phase::Busy { .. } => None,
        }
    }
}

/// All open connections, for eviction at the cap.
#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next: AtomicU64,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, conn: Arc<Conn>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, conn);
        id
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Closes the connection unused the longest; false when every connection is busy.
    /// A scan of at most `max_connections` entries, done only when the cap is reached.
    fn evict_one(&self) -> bool {
        let conns = self.lock();
        let victim = conns
            .values()
            .filter(|c| !c.evicted.load(Ordering::Relaxed))
            .filter_map(|c| c.unused_since().map(|t| (t, c)))
            .min_by_key(|(t, _)| *t)
            .map(|(_, c)| c.clone());
        drop(conns);
        match victim {
            Some(c) => {
                c.evicted.store(true, Ordering::Relaxed);
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A socket that reports its traffic to its [`Conn`].
struct TrackedIo {
    inner: Stream,
    conn: Arc<Conn>,
}

impl AsyncRead for TrackedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.on_read();
        }
        r
    }
}

impl AsyncWrite for TrackedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.on_write();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.conn.on_write();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body with a deadline: past it, reading fails with [`BodyTimeout`].
struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(r) => Poll::Ready(r.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = self.deadline;
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(self.limit))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Marks its connection busy until the request's answer is ready (or the request dropped).
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// Serves `app` on `listener` (TCP, vsock or a Unix socket: the same loop and limits) under
/// `limits` until `shutdown` resolves, then lets in-flight requests finish for at most
/// [`HttpLimits::shutdown_grace`].
pub async fn serve(
    listener: Listener,
    app: Router,
    limits: HttpLimits,
    metrics: ConnectionMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = Arc::new(limits);
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    // Our watchdog enforces the header timeout (hyper's would also cut idle keep-alives).
    http.header_read_timeout(None);
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: pause briefly
                    // instead of spinning, then carry on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let evicted = registry.evict_one();
                let wait =
                    tokio::time::timeout(limits.header_timeout, slots.clone().acquire_owned());
                match tokio::select! {
                    () = &mut shutdown => break,
                    r = wait => r,
                } {
                    Ok(Ok(p)) => p,
                    _ => {
                        tracing::warn!(
                            evicted,
                            "connection cap reached and no slot freed: dropping a new connection"
                        );
                        continue;
                    }
                }
            }
        };
        let conn = Arc::new(Conn::new(Instant::now()));
        let id = registry.add(conn.clone());
        let task = Connection {
            app: app.clone(),
            conn,
            limits: limits.clone(),
            http: http.clone(),
            stop: stop_rx.clone(),
        };
        let registry = registry.clone();
        let metrics = metrics.clone();
        metrics.open.inc();
        tokio::spawn(async move {
            let reason = task.run(stream).await;
            registry.remove(id);
            metrics.open.dec();
            metrics.closed(reason);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every slot back means every connection has ended.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.shutdown_grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the shutdown grace period");
    }
    Ok(())
}

/// One connection's task.
struct Connection {
    app: Router,
    conn: Arc<Conn>,
    limits: Arc<HttpLimits>,
    http: Arc<hyper::server::conn::http1::Builder>,
    stop: watch::Receiver<bool>,
}

impl Connection {
    /// Serves the connection until it ends; returns why it was closed.
    async fn run(mut self, stream: Stream) -> &'static str {
        let io = TokioIo::new(TrackedIo {
            inner: stream,
            conn: self.conn.clone(),
        });
        let conn = self.conn.clone();
        let limits = self.limits.clone();
        let app = self.app.clone();
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            conn.request_started();
            let guard = InFlight(conn.clone());
            let deadline = Instant::now() + limits.body_timeout;
            let limit = limits.body_timeout;
            let req = req.map(|inner| {
                Body::new(TimedBody {
                    inner,
                    deadline,
                    limit,
                    sleep: None,
                })
            });
            let mut app = app.clone();
            async move {
                let resp = app.call(req).await;
                drop(guard);
                resp
            }
        });
        let served = self.http.serve_connection(io, service);
        tokio::pin!(served);
        let mut draining = *self.stop.borrow();
        if draining {
            served.as_mut().graceful_shutdown();
        }
        loop {
            let deadline = self.conn.deadline(&self.limits);
            tokio::select! {
                r = served.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return "ended";
                }
                () = sleep_until(deadline) => {
                    let now = Instant::now();
                    let phase = *self.conn.phase();
                    match phase {
                        Phase::Head { since } if since + self.limits.header_timeout <= now => {
                            tracing::debug!("closing a connection past its header timeout");
                            return "header_timeout";
                        }
                        Phase::Idle { since } if since + self.limits.idle_timeout <= now => {
                            tracing::debug!("closing a connection past its idle timeout");
                            return "idle_timeout";
                        }
                        _ => {}
                    }
                }
                () = self.conn.changed.notified() => {}
                () = self.conn.evict.notified() => {
                    tracing::debug!("closing an unused connection to make room under the cap");
                    return "evicted";
                }
                r = self.stop.changed(), if !draining => {
                    draining = true;
                    if r.is_ok() {
                        served.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
