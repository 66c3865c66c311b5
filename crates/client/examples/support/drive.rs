//! A closed-loop load driver shared by the client's examples: `connections` tasks each
//! send one request after another for `seconds`, latencies recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one drive measured.
pub struct Stats {
    /// Requests completed.
    pub done: usize,
    /// Wall time of the drive.
    pub elapsed: Duration,
    /// Every request's latency.
    pub latencies: Vec<Duration>,
}

impl Stats {
    /// Requests per second.
    pub fn rps(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64()
    }
    /// The `p` quantile of latency, ms.
    pub fn pct(&self, p: f64) -> f64 {
        let mut l = self.latencies.clone();
        l.sort();
        let i = ((l.len() as f64 - 1.0) * p).round() as usize;
        l.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

/// Runs `f` in a closed loop on `connections` tasks for `seconds`.
pub async fn drive<F, Fut>(seconds: u64, connections: usize, f: F) -> Stats
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let f = Arc::clone(&f);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                f().await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    Stats {
        done: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
    }
}
