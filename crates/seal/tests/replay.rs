//! The replay memory: window, once-only acceptance, bounded memory, and no
//! state in which flooding it makes genuine requests fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::time::{Duration, Instant};

use attesta_seal::replay::ReplayId;
use attesta_seal::{ReplayConfig, ReplayGuard, RequestError, sha256};
use common::*;

fn id(n: u64, issued_at: u64) -> ReplayId {
    ReplayId::new(&sha256(&n.to_le_bytes()), issued_at)
}

fn code(r: Result<(), RequestError>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(e) => e.code(),
    }
}

#[test]
fn window_is_60_s_back_and_10_s_ahead_by_default() {
    let g = ReplayGuard::default();
    let now = t(T0_SECS);
    assert_eq!(code(g.check_and_insert(&id(1, T0_SECS - 60), now)), "ok");
    assert_eq!(code(g.check_and_insert(&id(2, T0_SECS + 10), now)), "ok");
    assert_eq!(
        code(g.check_and_insert(&id(3, T0_SECS - 61), now)),
        "stale_request"
    );
    assert_eq!(
        code(g.check_and_insert(&id(4, T0_SECS + 11), now)),
        "stale_request"
    );
    // Configurable.
    let wide = ReplayGuard::new(ReplayConfig {
        max_age: Duration::from_secs(300),
        max_skew: Duration::from_secs(30),
        capacity: 10,
    });
    assert_eq!(code(wide.check_and_insert(&id(3, T0_SECS - 61), now)), "ok");
    assert_eq!(code(wide.check_and_insert(&id(4, T0_SECS + 30), now)), "ok");
}

#[test]
fn a_request_is_accepted_once_and_checking_records_nothing() {
    let g = guard();
    let a = id(1, T0_SECS);
    assert_eq!(code(g.check(&a, t(T0_SECS))), "ok");
    assert_eq!(code(g.check(&a, t(T0_SECS))), "ok");
    assert!(g.is_empty());
    assert_eq!(code(g.check_and_insert(&a, t(T0_SECS))), "ok");
    assert_eq!(code(g.check(&a, t(T0_SECS + 1))), "replayed_request");
    assert_eq!(
        code(g.check_and_insert(&a, t(T0_SECS + 59))),
        "replayed_request"
    );
    // Once it can no longer pass the time check it is forgotten, and refused as stale.
    assert_eq!(
        code(g.check_and_insert(&a, t(T0_SECS + 61))),
        "stale_request"
    );
    assert_eq!(
        code(g.check_and_insert(&id(2, T0_SECS + 61), t(T0_SECS + 61))),
        "ok"
    );
    assert_eq!(g.len(), 1, "the expired second was dropped");
}

#[test]
fn a_full_memory_forgets_the_oldest_second_and_refuses_everything_up_to_it() {
    let g = ReplayGuard::new(ReplayConfig {
        capacity: 4,
        ..ReplayConfig::default()
    });
    let now = t(T0_SECS);
    for (n, issued) in [
        (1, T0_SECS - 5),
        (2, T0_SECS - 5),
        (3, T0_SECS - 3),
        (4, T0_SECS),
    ] {
        assert_eq!(code(g.check_and_insert(&id(n, issued), now)), "ok");
    }
    assert_eq!(g.low_water_mark(), None);
    // Full: no `busy`; the oldest second goes and the mark rises to it.
    assert_eq!(code(g.check_and_insert(&id(5, T0_SECS), now)), "ok");
    assert_eq!(g.len(), 3);
    assert_eq!(g.low_water_mark(), Some(T0_SECS - 5));
    // The forgotten requests cannot come back, nor anything older or as old.
    for n in [1, 2, 9] {
        assert_eq!(
            code(g.check_and_insert(&id(n, T0_SECS - 5), now)),
            "stale_request"
        );
    }
    assert_eq!(
        code(g.check_and_insert(&id(10, T0_SECS - 30), now)),
        "stale_request"
    );
    // Remembered ones are still replays; fresh ones still pass.
    assert_eq!(
        code(g.check_and_insert(&id(3, T0_SECS - 3), now)),
        "replayed_request"
    );
    assert_eq!(code(g.check_and_insert(&id(11, T0_SECS - 4), now)), "ok");
}

/// 300k accepted requests (each would have cost an inference) pushed through
/// a 65,536-entry memory by an attacker dating them 10 s in the future, at
/// 5,000 per second: memory stays bounded, the flood's own replays are
/// refused, and the genuine request of every second still passes.
#[test]
fn flooding_beyond_capacity_keeps_memory_bounded_and_genuine_requests_passing() {
    const CAPACITY: usize = 1 << 16;
    let g = ReplayGuard::new(ReplayConfig {
        capacity: CAPACITY,
        ..ReplayConfig::default()
    });
    let started = Instant::now();
    let mut n = 0u64;
    let mut genuine_ok = 0;
    let mut max_len = 0;
    for second in 0..60 {
        let now = T0_SECS + second;
        for _ in 0..5_000 {
            n += 1;
            assert_eq!(code(g.check_and_insert(&id(n, now + 10), t(now))), "ok");
        }
        max_len = max_len.max(g.len());
        let genuine = id(u64::MAX - second, now);
        assert_eq!(
            code(g.check_and_insert(&genuine, t(now))),
            "ok",
            "second {second}"
        );
        genuine_ok += 1;
        // Its replay is refused.
        assert_ne!(code(g.check_and_insert(&genuine, t(now))), "ok");
    }
    assert_eq!(n, 300_000);
    assert_eq!(genuine_ok, 60);
    assert!(max_len <= CAPACITY, "memory grew to {max_len}");
    assert!(
        g.low_water_mark().is_some(),
        "the flood did overflow the memory"
    );
    // Every flooded request, remembered or forgotten, is refused if replayed.
    let end = T0_SECS + 59;
    for k in (1..=n).step_by(997) {
        let issued = T0_SECS + (k - 1) / 5_000 + 10;
        assert_ne!(
            code(g.check_and_insert(&id(k, issued), t(end))),
            "ok",
            "flood #{k}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}
