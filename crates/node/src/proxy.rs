//! The host-side byte relay for a node in a Nitro enclave (`attesta proxy`), also used inside
//! the enclave to reach the parent's gateway route over vsock.
//!
//! A Nitro enclave has no network, only vsock to its parent. The parent runs routes:
//! - **inbound**: clients' TCP → the enclave's vsock listener (the node's API);
//! - **outbound**: the enclave's vsock connections → a TCP IPFS gateway.
//!
//! Forwarding bytes unchanged is safe by construction: the sealed API is end-to-end encrypted
//! to a key that exists only inside the enclave, attestation documents are signed by the
//! hardware, and every block fetched from a gateway is hashed and verified against its CID
//! inside the enclave. So the relay is an L4 byte pump: it never parses, buffers beyond one
//! read, or retains what passes through, and it keeps no state a restart could lose (the key
//! set and the replay memory live in the enclave).
//!
//! Bounds: at most [`ProxyLimits::max_connections`] relayed connections per route (beyond it
//! the route stops accepting, so clients queue in the kernel backlog instead of in our
//! memory), a connect timeout, and an idle timeout over both directions together (a peer that
//! stops reading stalls its sender, and the stall ends at the idle timeout).

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::transport::{Addr, AddrError, Listener, Stream};

/// One forwarding rule: connections accepted on `listen` are relayed to `connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Where to accept.
    pub listen: Addr,
    /// Where each accepted connection is relayed to.
    pub connect: Addr,
}

/// A route string that is not `LISTEN=CONNECT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// No `=` between the two addresses.
    #[error("bad route {0:?}: expected LISTEN=CONNECT, e.g. 0.0.0.0:8443=vsock:16:8000")]
    Shape(String),
    /// One of the two addresses is malformed.
    #[error(transparent)]
    Addr(#[from] AddrError),
}

impl FromStr for Route {
    type Err = RouteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (listen, connect) = s
            .split_once('=')
            .ok_or_else(|| RouteError::Shape(s.to_owned()))?;
        Ok(Route {
            listen: listen.parse()?,
            connect: connect.parse()?,
        })
    }
}

/// Bounds of every relayed connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyLimits {
    /// Connections relayed at once per route; further clients wait in the accept backlog.
    pub max_connections: usize,
    /// Longest wait to connect to the route's target.
    pub connect_timeout: Duration,
    /// Longest time without a byte moving in either direction.
    pub idle_timeout: Duration,
    /// Bytes read per step in each direction (the most a connection holds in flight).
    pub buffer_bytes: usize,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            max_connections: 1024,
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(120),
            buffer_bytes: 16 * 1024,
        }
    }
}

/// How one relayed connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed.
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// A socket error on either side.
    Error,
}

/// Relays connections accepted on `listener` to `connect` until `shutdown` resolves; relays
/// in progress are left to finish on their own (bounded by the idle timeout).
pub async fn run_route(
    listener: Listener,
    connect: Addr,
    limits: ProxyLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits = Arc::new(limits);
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let connect = Arc::new(connect);
    tokio::pin!(shutdown);
    loop {
        // Back-pressure: take a slot before accepting, so a full route stops accepting.
        let permit = tokio::select! {
            () = &mut shutdown => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let client = tokio::select! {
            () = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let connect = connect.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let target =
                match tokio::time::timeout(limits.connect_timeout, Stream::connect(&connect)).await
                {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::warn!(target = %connect, error = %e, "proxy could not connect");
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(target = %connect, "proxy connect timed out");
                        return;
                    }
                };
            let ended = relay(client, target, &limits).await;
            tracing::debug!(target = %connect, ?ended, "relayed connection ended");
            drop(permit);
        });
    }
}

/// Milliseconds since `base` of the last byte moved.
struct Activity {
    base: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn deadline(&self, idle: Duration) -> Instant {
        self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)) + idle
    }
}

/// Pumps bytes both ways between `a` and `b` until both directions end, an error, or the
/// idle timeout. Each direction holds at most one buffer; a slow reader slows its writer.
pub async fn relay(a: Stream, b: Stream, limits: &ProxyLimits) -> Ended {
    let activity = Activity {
        base: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let (ar, aw) = tokio::io::split(a);
    let (br, bw) = tokio::io::split(b);
    let size = limits.buffer_bytes.max(1);
    let both =
        async { tokio::try_join!(pump(ar, bw, size, &activity), pump(br, aw, size, &activity)) };
    tokio::pin!(both);
    loop {
        let deadline = activity.deadline(limits.idle_timeout);
        tokio::select! {
            r = &mut both => return if r.is_ok() { Ended::Closed } else { Ended::Error },
            () = tokio::time::sleep_until(deadline) => {
                if activity.deadline(limits.idle_timeout) <= Instant::now() {
                    return Ended::Idle;
                }
            }
        }
    }
}

async fn pump(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    size: usize,
    activity: &Activity,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; size];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            // Half-close: the other direction may still carry an answer.
            return to.shutdown().await;
        }
        activity.touch();
        to.write_all(buf.get(..n).unwrap_or_default()).await?;
        activity.touch();
    }
}

/// Starts a loopback TCP listener inside the enclave whose connections are relayed to
/// `target` (the parent's outbound gateway route, e.g. `vsock:3:8081`), and returns the
/// `http://127.0.0.1:PORT` URL to give the gateway client. The relay runs until the runtime
/// stops.
pub async fn gateway_tunnel(target: Addr, limits: ProxyLimits) -> std::io::Result<String> {
    let listener = Listener::bind(&Addr::Tcp("127.0.0.1:0".to_owned())).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tracing::info!(%target, %url, "gateway traffic goes through a tunnel");
    tokio::spawn(run_route(
        listener,
        target,
        limits,
        std::future::pending::<()>(),
    ));
    Ok(url)
}

/// If `gateway` names a socket instead of a URL (`vsock:CID:PORT` or `unix:PATH`), the
/// address to tunnel to; `None` for an ordinary `http(s)://` URL.
pub fn tunnel_target(gateway: &str) -> Option<Result<Addr, AddrError>> {
    if gateway.starts_with("vsock:") || gateway.starts_with("unix:") {
        Some(gateway.parse())
    } else {
        None
    }
}
