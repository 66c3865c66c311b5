//! The HTTP surface under connection abuse: header, idle and body timeouts and the
//! connection cap, each attacked over real sockets on 127.0.0.1 (bounded in count and time).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes (`Ok(0)` or a reset) or `within` passes; true if it closed.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_client_sending_its_headers_byte_by_byte_is_cut_off() {
    let mut config = test_config();
    config.http.header_timeout = Duration::from_millis(800);
    let node = start(config, Arc::new(FakeEngine::default())).await;
    let mut s = TcpStream::connect(node.addr).await.unwrap();
    let head =
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let t0 = Instant::now();
    let mut sent = 0;
    for b in head {
        // One byte every 100 ms: the whole head would take about 7 s.
        if s.write_all(&[*b]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if t0.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    assert!(
        sent < head.len(),
        "the server accepted the whole trickled head ({sent} bytes over {:?})",
        t0.elapsed()
    );
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "cut off only after {:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_header_timeout() {
    let mut config = test_config();
    config.http.header_timeout = Duration::from_millis(500);
    let node = start(config, Arc::new(FakeEngine::default())).await;
    let mut s = TcpStream::connect(node.addr).await.unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let mut config = test_config();
    config.http.idle_timeout = Duration::from_millis(500);
    let node = start(config, Arc::new(FakeEngine::default())).await;
    let mut s = TcpStream::connect(node.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Keep-alive: the connection stays usable within the idle timeout...
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // ...and is closed once it has been silent longer.
    let t0 = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(10)).await);
    assert!(t0.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn thousands_of_idle_connections_cannot_lock_out_healthz() {
    const CAP: usize = 200;
    const IDLE: usize = 2_000;
    let mut config = test_config();
    config.http.max_connections = CAP;
    // Long timeouts: only the cap may close the idle sockets in this test.
    config.http.header_timeout = Duration::from_secs(60);
    config.http.idle_timeout = Duration::from_secs(60);
    let node = start(config, Arc::new(FakeEngine::default())).await;

    let t0 = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let s = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(node.addr))
            .await
            .expect("connect stalled")
            .unwrap();
        idle.push(s);
    }
    let opened = t0.elapsed();

    let t1 = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        request(node.addr, "GET", "/healthz", &[], b""),
    )
    .await
    .expect("/healthz did not answer within 10 s");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    let answered = t1.elapsed();

    // The server holds at most CAP of them: the rest were closed to make room.
    let mut closed = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    for s in &mut idle {
        let left = deadline.saturating_duration_since(Instant::now());
        if closed_within(s, left.min(Duration::from_millis(1))).await {
            closed += 1;
        }
    }
    if closed < IDLE - CAP {
        // FINs may still be in flight: look again, bounded.
        closed = 0;
        for s in &mut idle {
            let left = deadline.saturating_duration_since(Instant::now());
            if closed_within(s, left.min(Duration::from_millis(20))).await {
                closed += 1;
            }
        }
    }
    assert!(
        closed >= IDLE - CAP,
        "only {closed} of {IDLE} idle connections were closed with a cap of {CAP}"
    );
    // Operators see it in /metrics.
    let metrics = request(node.addr, "GET", "/metrics", &[], b"").await;
    let text = String::from_utf8(metrics.body).unwrap();
    let evicted: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("attesta_http_connections_closed_total{reason=\"evicted\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no eviction count in {text}"));
    assert!(evicted >= IDLE - CAP, "{evicted} evictions counted");
    assert!(text.contains("attesta_http_connections_open "), "{text}");
    eprintln!(
        "opened {IDLE} idle connections in {opened:?}; /healthz answered in {answered:?}; {closed} closed by the cap"
    );
}

#[tokio::test]
async fn when_every_connection_is_busy_a_newcomer_waits_for_a_slot() {
    let engine = Arc::new(FakeEngine::default());
    let mut config = test_config();
    config.http.max_connections = 2;
    config.workers = 4;
    let node = start(config, engine).await;
    let mut slow = FakeSpec::sized(10, 1);
    slow.run_ms = 800;
    let cid = add_model(&node.store, &slow.file());
    // Two busy connections fill the cap.
    let mut busy = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let (addr, body) = (node.addr, x2(&cid));
        busy.spawn(async move { infer(addr, &body).await.status });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third is not refused and not allowed to evict a busy one: it is served after them.
    let r = request(node.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(r.status, 200);
    while let Some(s) = busy.join_next().await {
        assert_eq!(s.unwrap(), 200, "a busy connection was cut");
    }
}
