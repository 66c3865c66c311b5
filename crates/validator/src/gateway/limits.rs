//! Admission control of the gateway: a token bucket per client (its API key,
//! else its address) and a bound on requests in flight plus those waiting,
//! so a flood from one client or from all of them is refused early with a
//! `Retry-After` instead of queueing without end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits of the gateway.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitConfig {
    /// Sustained requests per second per client.
    pub rate_per_client: f64,
    /// Burst a client may send at once.
    pub burst_per_client: u32,
    /// Requests relayed at once (all clients).
    pub max_inflight: usize,
    /// Requests allowed to wait for a slot; beyond this the gateway answers 503.
    pub max_queue: usize,
    /// Longest wait for a slot before 503.
    pub queue_timeout: Duration,
    /// Clients remembered (least recently seen forgotten first).
    pub max_clients: usize,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            rate_per_client: 50.0,
            burst_per_client: 100,
            max_inflight: 64,
            max_queue: 256,
            queue_timeout: Duration::from_secs(10),
            max_clients: 100_000,
        }
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// The client is over its rate: retry after this long (HTTP 429).
    RateLimited(Duration),
    /// The gateway is saturated: retry after this long (HTTP 503).
    Overloaded(Duration),
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-client buckets and the global gate.
pub struct Limiter {
    cfg: LimitConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
    slots: Arc<Semaphore>,
    waiting: Mutex<usize>,
}

/// A request's slot; released when dropped.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
}

impl Limiter {
    /// A limiter with `cfg`.
    pub fn new(cfg: LimitConfig) -> Self {
        Limiter {
            cfg,
            buckets: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(cfg.max_inflight.max(1))),
            waiting: Mutex::new(0),
        }
    }

    /// Takes one token from `client`'s bucket at `now`.
    pub fn check_rate(&self, client: &str, now: Instant) -> Result<(), Refusal> {
        let rate = self.cfg.rate_per_client.max(f64::MIN_POSITIVE);
        let burst = f64::from(self.cfg.burst_per_client.max(1));
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= self.cfg.max_clients && !buckets.contains_key(client) {
            // Full buckets carry no information: forget those first.
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
            if buckets.len() >= self.cfg.max_clients {
                buckets.clear();
            }
        }
        let b = buckets.entry(client.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / rate;
            Err(Refusal::RateLimited(Duration::from_secs_f64(
                wait.min(3600.0),
            )))
        }
    }

    /// Waits for a relay slot, or refuses at once when too many already wait.
    pub async fn admit(&self) -> Result<Admitted, Refusal> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(Admitted { _permit: permit });
        }
        let retry = self.cfg.queue_timeout.max(Duration::from_secs(1));
        {
            let mut w = self
                .waiting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *w >= self.cfg.max_queue {
                return Err(Refusal::Overloaded(retry));
            }
            *w += 1;
        }
        let got = tokio::time::timeout(
            self.cfg.queue_timeout,
            Arc::clone(&self.slots).acquire_owned(),
        )
        .await;
        if let Ok(mut w) = self.waiting.lock() {
            *w = w.saturating_sub(1);
        }
        match got {
            Ok(Ok(permit)) => Ok(Admitted { _permit: permit }),
            _ => Err(Refusal::Overloaded(retry)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_its_rate_and_others_are_unaffected() {
        let l = Limiter::new(LimitConfig {
            rate_per_client: 2.0,
            burst_per_client: 3,
            ..LimitConfig::default()
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            l.check_rate("a", t0).unwrap();
        }
        let Err(Refusal::RateLimited(wait)) = l.check_rate("a", t0) else {
            panic!("4th request in the same instant must be refused");
        };
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(500),
            "{wait:?}"
        );
        l.check_rate("b", t0).unwrap();
        l.check_rate("a", t0 + Duration::from_millis(500)).unwrap();
        assert!(l.check_rate("a", t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn the_client_table_stays_bounded() {
        let l = Limiter::new(LimitConfig {
            max_clients: 10,
            ..LimitConfig::default()
        });
        let t0 = Instant::now();
        for i in 0..1000 {
            l.check_rate(&format!("c{i}"), t0).unwrap();
        }
        assert!(l.buckets.lock().unwrap().len() <= 10);
    }

    #[tokio::test]
    async fn a_full_gate_refuses_beyond_the_queue_and_frees_slots_on_drop() {
        let l = Arc::new(Limiter::new(LimitConfig {
            max_inflight: 1,
            max_queue: 1,
            queue_timeout: Duration::from_millis(200),
            ..LimitConfig::default()
        }));
        let first = l.admit().await.unwrap();
        let waiter = {
            let l = Arc::clone(&l);
            tokio::spawn(async move { l.admit().await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            matches!(l.admit().await, Err(Refusal::Overloaded(_))),
            "queue full"
        );
        drop(first);
        assert!(waiter.await.unwrap(), "the waiter gets the freed slot");
        let held = l.admit().await.unwrap();
        // A lone waiter that never gets a slot gives up after the queue timeout.
        assert!(matches!(l.admit().await, Err(Refusal::Overloaded(_))));
        drop(held);
    }
}
