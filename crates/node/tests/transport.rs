//! The node's listener on non-TCP transports and the Nitro host proxy's relay: the same
//! accept loop and limits over a Unix socket (the stand-in for vsock here), a bind-only smoke
//! test on real vsock, and the proxy's bounds (connection cap as back-pressure, idle timeout,
//! unreachable targets, stale sockets).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use attesta_node::proxy::{ProxyLimits, Route, run_route};
use attesta_node::transport::{Addr, Listener, Stream, vsock_available};
use attesta_node::{Node, NodeParts};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves a store-only node on `listener`; the returned sender stops it.
fn serve(
    listener: Listener,
    config: attesta_node::NodeConfig,
) -> (tokio::sync::oneshot::Sender<()>, tempfile::TempDir) {
    let (dir, store) = temp_store();
    let node = Node::build(
        config,
        NodeParts::new(Arc::new(FakeEngine::default()), store),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(node.serve(listener, async {
        let _ = rx.await;
    }));
    (tx, dir)
}

async fn get(addr: &Addr, path: &str) -> Response {
    let mut s = Stream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    parse_response(&raw)
}

/// Reads until EOF (true) or gives up after `within` (false).
async fn closed_within(s: &mut Stream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn the_node_serves_on_a_unix_socket_with_the_same_limits() {
    let dir = tempfile::tempdir().unwrap();
    let addr = Addr::Unix(dir.path().join("node.sock"));
    let mut config = test_config();
    config.http.header_timeout = Duration::from_millis(500);
    let listener = Listener::bind(&addr).await.unwrap();
    assert_eq!(listener.local_addr().unwrap(), addr);
    let (_stop, _store) = serve(listener, config);

    let r = get(&addr, "/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    get(&addr, "/nope").await.assert_error(404, "not_found");

    // A connection that never sends its head is closed by the header timeout, as on TCP.
    let mut silent = Stream::connect(&addr).await.unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(10)).await);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_stale_unix_socket_is_replaced_but_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let addr = Addr::Unix(dir.path().join("s.sock"));
    let first = Listener::bind(&addr).await.unwrap();
    // Someone is listening: a second bind must fail instead of stealing the path.
    assert!(Listener::bind(&addr).await.is_err());
    drop(first);
    // The listener is gone but its socket file is left: a restart binds again.
    assert!(dir.path().join("s.sock").exists());
    Listener::bind(&addr).await.unwrap();
    // A regular file at the path is never removed.
    let file = dir.path().join("file");
    std::fs::write(&file, b"keep").unwrap();
    assert!(Listener::bind(&Addr::Unix(file.clone())).await.is_err());
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
}

#[tokio::test]
async fn vsock_listener_binds_and_serves_where_the_kernel_has_vsock() {
    if !vsock_available().await {
        eprintln!("SKIPPED: this kernel offers no AF_VSOCK sockets (no /dev/vsock or module)");
        return;
    }
    // Only binding is checked: a local vsock connection needs the vsock loopback transport,
    // which most hosts lack.
    let port = 40_000 + std::process::id() % 20_000;
    let listener = Listener::bind(&format!("vsock:{port}").parse().unwrap())
        .await
        .unwrap();
    let bound = listener.local_addr().unwrap();
    assert!(
        matches!(bound, Addr::Vsock { port: p, .. } if p == port),
        "{bound:?}"
    );
    let (stop, _store) = serve(listener, test_config());
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
}

#[test]
fn addresses_and_routes_parse_and_print() {
    for (text, addr) in [
        ("vsock:8000", "vsock:8000"),
        ("vsock:16:8000", "vsock:16:8000"),
        ("127.0.0.1:80", "127.0.0.1:80"),
        ("tcp:localhost:80", "localhost:80"),
        ("unix:/run/a.sock", "unix:/run/a.sock"),
    ] {
        assert_eq!(text.parse::<Addr>().unwrap().to_string(), addr);
    }
    for bad in [
        "vsock:",
        "vsock:x",
        "vsock:1:2:3",
        "vsock:99999999999",
        "unix:",
        "nohost",
        ":80",
        "h:99999",
    ] {
        assert!(bad.parse::<Addr>().is_err(), "{bad}");
    }
    let r: Route = "0.0.0.0:8443=vsock:16:8000".parse().unwrap();
    assert_eq!(
        r.connect,
        Addr::Vsock {
            cid: 16,
            port: 8000
        }
    );
    assert!("0.0.0.0:8443".parse::<Route>().is_err());
}

/// An echo server on a Unix socket.
async fn echo(dir: &std::path::Path) -> Addr {
    let addr = Addr::Unix(dir.join("echo.sock"));
    let l = Listener::bind(&addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok(mut s) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// Starts a proxy route from an ephemeral TCP port to `target`.
async fn proxy(target: Addr, limits: ProxyLimits) -> Addr {
    let l = Listener::bind(&"127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(run_route(l, target, limits, std::future::pending()));
    addr
}

async fn roundtrip(s: &mut Stream, msg: &[u8]) -> bool {
    if s.write_all(msg).await.is_err() {
        return false;
    }
    let mut buf = vec![0u8; msg.len()];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf)).await,
        Ok(Ok(_))
    ) && buf == msg
}

#[tokio::test]
async fn the_proxy_caps_connections_by_not_accepting_and_resumes_when_one_ends() {
    let dir = tempfile::tempdir().unwrap();
    let target = echo(dir.path()).await;
    let limits = ProxyLimits {
        max_connections: 1,
        ..ProxyLimits::default()
    };
    let front = proxy(target, limits).await;
    let mut first = Stream::connect(&front).await.unwrap();
    assert!(roundtrip(&mut first, b"one").await);
    // The second client waits in the backlog: connected, but nothing is relayed yet.
    let mut second = Stream::connect(&front).await.unwrap();
    assert!(!roundtrip(&mut second, b"two").await);
    drop(first);
    // Its bytes were queued, not lost: once the slot frees they flow.
    let mut buf = [0u8; 3];
    tokio::time::timeout(Duration::from_secs(10), second.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"two");
}

#[tokio::test]
async fn the_proxy_closes_idle_relays_and_unreachable_targets() {
    let dir = tempfile::tempdir().unwrap();
    let target = echo(dir.path()).await;
    let limits = ProxyLimits {
        idle_timeout: Duration::from_millis(300),
        ..ProxyLimits::default()
    };
    let front = proxy(target, limits.clone()).await;
    let mut s = Stream::connect(&front).await.unwrap();
    // Traffic keeps it open past the idle timeout...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(roundtrip(&mut s, b"ping").await);
    }
    // ...silence closes it.
    let t = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );

    // Nobody listens at the target: the client is closed, not left hanging.
    let nowhere = Addr::Unix(dir.path().join("nobody.sock"));
    let front = proxy(nowhere, limits).await;
    let mut s = Stream::connect(&front).await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
}
