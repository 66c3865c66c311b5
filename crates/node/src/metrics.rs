//! Prometheus metrics of the node, rendered in the OpenMetrics text format.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs .. ~26 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

/// All metrics the node exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RouteLabels, Counter>,
    request_seconds: HistogramFamily<ModelLabels>,
    inference_seconds: HistogramFamily<ModelLabels>,
    errors: Family<CodeLabels, Counter>,
    cache_hits: Counter,
    cache_misses: Counter,
    model_loads: Family<ResultLabels, Counter>,
    model_loads_started: Counter,
    model_loads_abandoned: Counter,
    cache_bytes: Gauge,
    models_loaded: Gauge,
    inflight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("attesta");
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let request_seconds = HistogramFamily::<ModelLabels>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "infer_request_duration_seconds",
            "Wall time of /infer requests (decode, queue, run, encode) by model",
            request_seconds.clone(),
        );
        let inference_seconds = HistogramFamily::<ModelLabels>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "inference_duration_seconds",
            "Engine run time by model",
            inference_seconds.clone(),
        );
        let errors = Family::<CodeLabels, Counter>::default();
        registry.register("errors", "Error responses by error code", errors.clone());
        let cache_hits = Counter::default();
        registry.register(
            "model_cache_hits",
            "Requests served by an already loaded model",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "model_cache_misses",
            "Requests that had to load a model",
            cache_misses.clone(),
        );
        let model_loads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "model_loads",
            "Model loads by result (ok, failed)",
            model_loads.clone(),
        );
        let model_loads_started = Counter::default();
        registry.register(
            "model_loads_started",
            "Model loads that got a load slot (at most one per CID at a time)",
            model_loads_started.clone(),
        );
        let model_loads_abandoned = Counter::default();
        registry.register(
            "model_loads_abandoned",
            "Model loads stopped because no request waited for them any more",
            model_loads_abandoned.clone(),
        );
        let cache_bytes = Gauge::default();
        registry.register(
            "model_cache_bytes",
            "Estimated bytes held by loaded models",
            cache_bytes.clone(),
        );
        let models_loaded = Gauge::default();
        registry.register(
            "models_loaded",
            "Models held in the in-memory cache",
            models_loaded.clone(),
        );
        let inflight = Gauge::default();
        registry.register(
            "inferences_in_flight",
            "Inferences queued or running",
            inflight.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            request_seconds,
            inference_seconds,
            errors,
            cache_hits,
            cache_misses,
            model_loads,
            model_loads_started,
            model_loads_abandoned,
            cache_bytes,
            models_loaded,
            inflight,
        }
    }

    /// Counts one finished HTTP request.
    pub fn request(&self, route: &str, status: u16) {
        self.requests
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                status,
            })
            .inc();
    }

    /// Records the wall time of one `/infer` request.
    pub fn infer_request_seconds(&self, model: &str, seconds: f64) {
        self.request_seconds
            .get_or_create(&ModelLabels {
                model: model.to_string(),
            })
            .observe(seconds);
    }

    /// Records one engine run.
    pub fn inference_seconds(&self, model: &str, seconds: f64) {
        self.inference_seconds
            .get_or_create(&ModelLabels {
                model: model.to_string(),
            })
            .observe(seconds);
    }

    /// Counts one error response.
    pub fn error(&self, code: &str) {
        self.errors
            .get_or_create(&CodeLabels {
                code: code.to_string(),
            })
            .inc();
    }

    /// Counts a cache hit or miss.
    pub fn cache_lookup(&self, hit: bool) {
        if hit {
            self.cache_hits.inc()
        } else {
            self.cache_misses.inc()
        };
    }

    /// Counts a model load.
    pub fn model_load(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.model_loads
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    /// Counts a load that got its slot and started.
    pub fn model_load_started(&self) {
        self.model_loads_started.inc();
    }

    /// Counts a load stopped because its last waiter left.
    pub fn model_load_abandoned(&self) {
        self.model_loads_abandoned.inc();
    }

    /// Publishes the cache's current size.
    pub fn cache_state(&self, models: usize, bytes: usize) {
        self.models_loaded
            .set(i64::try_from(models).unwrap_or(i64::MAX));
        self.cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The in-flight gauge (incremented while a request waits or runs).
    pub fn inflight(&self) -> &Gauge {
        &self.inflight
    }

    /// Lets other subsystems (the model fetcher) register their own metrics.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        let mut reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut reg)
    }

    /// Renders the exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &reg);
        out
    }
}
