//! Trustless-gateway client: fetch a model by CID from untrusted HTTP gateways, verify every
//! byte against the CID, and only then commit it to the [`ModelStore`].
//!
//! Per gateway, in order: a CAR request (`?format=car`, DFS order), falling back to
//! block-by-block `?format=raw` requests when the gateway does not serve CARs. Transient
//! failures (timeouts, connection errors, 5xx, 429) are retried with exponential backoff;
//! verification failures are never retried against the same gateway — they move on to the next.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attesta_cache::SingleFlight;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_TYPE};

use crate::car::CarDecoder;
use crate::cid::Cid;
use crate::store::{ModelStore, PendingBlob, PinGuard, StoreError, StoredModel};
use crate::verify::{DagVerifier, Limits, VerifyError};

/// Environment variable with extra gateway URLs (comma or whitespace separated), tried first.
pub const GATEWAYS_ENV: &str = "ATTESTA_IPFS_GATEWAYS";
/// Default block cap: a 1 MiB chunk plus room for its dag-pb/UnixFS envelope.
pub const DEFAULT_MAX_BLOCK_BYTES: usize = 1024 * 1024 + 16 * 1024;
const CAR_MEDIA_TYPE: &str = "application/vnd.ipld.car";
const RAW_MEDIA_TYPE: &str = "application/vnd.ipld.raw";
/// Block requests kept in flight in raw mode (hides round trips; memory ≤ this × block cap).
const RAW_PREFETCH: usize = 8;

/// Gateway client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Gateway base URLs (e.g. `http://127.0.0.1:8080`), tried in order.
    pub urls: Vec<String>,
    /// Connect timeout, and the longest wait for the next piece of a response body.
    pub timeout: Duration,
    /// Extra attempts per gateway (and per block in raw mode) after a transient failure.
    pub retries: u32,
    /// First backoff delay; doubled after each failed attempt.
    pub backoff: Duration,
    /// Largest model accepted (checked against the root's declared size before downloading).
    pub max_model_bytes: u64,
    /// Largest block accepted.
    pub max_block_bytes: usize,
    /// Deepest DAG accepted.
    pub max_depth: usize,
    /// Ask for a CAR first (`false`: go straight to block-by-block requests).
    pub prefer_car: bool,
    /// Slowest acceptable average rate after the first `timeout`: stops a gateway that drips
    /// bytes just fast enough to dodge the idle timeout.
    pub min_bytes_per_sec: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            urls: Vec::new(),
            timeout: Duration::from_secs(30),
            retries: 2,
            backoff: Duration::from_millis(250),
            max_model_bytes: 8 * 1024 * 1024 * 1024,
            max_block_bytes: DEFAULT_MAX_BLOCK_BYTES,
            max_depth: 32,
            prefer_car: true,
            min_bytes_per_sec: 64 * 1024,
        }
    }
}

impl GatewayConfig {
    /// Puts the gateways named in `value` (the content of [`GATEWAYS_ENV`]) in front of the list.
    pub fn with_env_value(mut self, value: Option<&str>) -> Self {
        let mut urls: Vec<String> = value
            .unwrap_or_default()
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        for u in self.urls.drain(..) {
            if !urls.contains(&u) {
                urls.push(u);
            }
        }
        self.urls = urls;
        self
    }

    /// [`GatewayConfig::with_env_value`] with the process environment.
    pub fn with_env(self) -> Self {
        let value = std::env::var(GATEWAYS_ENV).ok();
        self.with_env_value(value.as_deref())
    }

    fn limits(&self) -> Limits {
        Limits {
            max_block_bytes: self.max_block_bytes,
            max_depth: self.max_depth,
            max_file_bytes: self.max_model_bytes,
            ..Limits::default()
        }
    }
}

/// Why one attempt against one gateway failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AttemptError {
    /// No response, or the body stalled, within the timeout.
    #[error("timed out")]
    Timeout,
    /// Connection or protocol error. The message shows the whole chain (reqwest's own
    /// message hides the useful part, e.g. "connection refused", in its sources).
    #[error("transport error: {}", Chain(.0.as_ref()))]
    Transport(Arc<reqwest::Error>),
    /// The response arrives slower than `min_bytes_per_sec` on average.
    #[error("too slow: {bytes} bytes in {millis} ms")]
    TooSlow {
        /// Bytes received in this attempt.
        bytes: u64,
        /// Milliseconds spent.
        millis: u64,
    },
    /// The gateway does not have the content.
    #[error("not found (HTTP 404)")]
    NotFound,
    /// Another HTTP status.
    #[error("HTTP {0}")]
    Status(u16),
    /// The response is not the requested format.
    #[error("unexpected content type {0:?}")]
    ContentType(String),
    /// The gateway sent data that failed verification.
    #[error("verification failed: {0}")]
    Verify(VerifyError),
    /// The gateway redirected to another origin (scheme, host or port), which is refused:
    /// otherwise any gateway could point the node at an arbitrary host.
    #[error("refused a redirect from {from} to another origin {to}")]
    CrossOriginRedirect {
        /// Origin of the gateway.
        from: String,
        /// Origin redirected to.
        to: String,
    },
}

impl AttemptError {
    /// Transient failures worth retrying against the same gateway. Verification failures never are.
    pub fn is_retryable(&self) -> bool {
        match self {
            AttemptError::Timeout | AttemptError::TooSlow { .. } | AttemptError::Transport(_) => {
                true
            }
            AttemptError::Status(s) => *s == 429 || *s >= 500,
            AttemptError::NotFound
            | AttemptError::ContentType(_)
            | AttemptError::CrossOriginRedirect { .. } => false,
            AttemptError::Verify(v) => v.is_retryable(),
        }
    }

    /// A short stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            AttemptError::Timeout => "timeout",
            AttemptError::TooSlow { .. } => "too_slow",
            AttemptError::Transport(_) => "transport",
            AttemptError::NotFound => "not_found",
            AttemptError::Status(_) => "http_status",
            AttemptError::ContentType(_) => "content_type",
            AttemptError::Verify(v) => v.kind(),
            AttemptError::CrossOriginRedirect { .. } => "cross_origin_redirect",
        }
    }
}

impl From<VerifyError> for AttemptError {
    fn from(e: VerifyError) -> Self {
        AttemptError::Verify(e)
    }
}

/// The failure of one gateway, after its retries.
#[derive(Debug, Clone)]
pub struct GatewayFailure {
    /// Gateway base URL.
    pub gateway: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: AttemptError,
}

impl fmt::Display for GatewayFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (after {} attempt(s))",
            self.gateway, self.error, self.attempts
        )
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// No gateway is configured.
    #[error("no IPFS gateways configured (set {GATEWAYS_ENV} or pass --gateway)")]
    NoGateways,
    /// Every gateway failed; one entry per gateway, in order.
    #[error("all {} gateway(s) failed: {}", .0.len(), join(.0))]
    AllGatewaysFailed(Vec<GatewayFailure>),
    /// The local store failed (disk full, budget, permissions): not a gateway's fault.
    #[error("model store: {0}")]
    Store(Arc<StoreError>),
    /// Writing the verified bytes locally failed.
    #[error("writing the download: {0}")]
    Local(Arc<std::io::Error>),
    /// A block download task ended without an answer (cancelled or panicked): a node fault.
    #[error("block download task failed: {0}")]
    Task(Arc<tokio::task::JoinError>),
}

/// Displays an error followed by each of its sources, `outer: inner: ...`
/// (log lines and messages that must keep the cause).
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut src = self.0.source();
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}

fn join(failures: &[GatewayFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl FetchError {
    /// True if a later retry of the whole fetch may succeed (every gateway failed transiently).
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::AllGatewaysFailed(f) => f.iter().all(|g| g.error.is_retryable()),
            _ => false,
        }
    }
}

impl From<StoreError> for FetchError {
    fn from(e: StoreError) -> Self {
        FetchError::Store(Arc::new(e))
    }
}

/// Progress of one download.
pub trait FetchProgress: Send + Sync {
    /// `verified` bytes of the file are verified and written; `total` once the root is known.
    fn update(&self, verified: u64, total: Option<u64>);
    /// A new attempt starts against `gateway` (`mode` is `car` or `raw`); counters restart.
    fn attempt(&self, _gateway: &str, _mode: &str) {}
}

/// Progress sink that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl FetchProgress for NoProgress {
    fn update(&self, _: u64, _: Option<u64>) {}
}

/// Per-gateway events, for metrics. Every method has a no-op default.
pub trait FetchObserver: Send + Sync {
    /// A fetch from `gateway` completed and was stored.
    fn fetch_succeeded(&self, _gateway: &str, _bytes: u64) {}
    /// A gateway failed (after its retries).
    fn fetch_failed(&self, _gateway: &str, _error: &AttemptError) {}
    /// A gateway sent data that failed a check; `kind` is [`VerifyError::kind`].
    fn verification_failed(&self, _gateway: &str, _kind: &'static str) {}
    /// Response body bytes received from `gateway`.
    fn bytes_received(&self, _gateway: &str, _bytes: u64) {}
}

/// Observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl FetchObserver for NoObserver {}

/// Counters for one gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayStats {
    /// Successful fetches.
    pub ok: u64,
    /// Failed fetches (after retries).
    pub failed: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// Verification failures by kind.
    pub verification_failures: BTreeMap<&'static str, u64>,
}

/// A ready-made observer keeping [`GatewayStats`] per gateway (cheap to clone, shared).
#[derive(Debug, Clone, Default)]
pub struct FetchStats {
    inner: Arc<Mutex<BTreeMap<String, GatewayStats>>>,
}

impl FetchStats {
    /// A copy of the counters.
    pub fn snapshot(&self) -> BTreeMap<String, GatewayStats> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn with(&self, gateway: &str, f: impl FnOnce(&mut GatewayStats)) {
        let mut map = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(map.entry(gateway.to_owned()).or_default());
    }
}

impl FetchObserver for FetchStats {
    fn fetch_succeeded(&self, gateway: &str, _bytes: u64) {
        self.with(gateway, |s| s.ok += 1);
    }
    fn fetch_failed(&self, gateway: &str, _error: &AttemptError) {
        self.with(gateway, |s| s.failed += 1);
    }
    fn verification_failed(&self, gateway: &str, kind: &'static str) {
        self.with(gateway, |s| {
            *s.verification_failures.entry(kind).or_default() += 1
        });
    }
    fn bytes_received(&self, gateway: &str, bytes: u64) {
        self.with(gateway, |s| s.bytes += bytes);
    }
}

struct Inner {
    config: GatewayConfig,
    store: ModelStore,
    client: reqwest::Client,
    observer: Arc<dyn FetchObserver>,
    /// Concurrent fetches of one CID share one download.
    inflight: SingleFlight<Cid, Result<StoredModel, FetchError>>,
}

/// Fetches models by CID through trustless gateways into a [`ModelStore`]. Cheap to clone.
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

impl fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetcher")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// What a stream or block loop ends with when it fails.
enum Failure {
    Attempt(AttemptError),
    /// The CAR endpoint is not supported here: try block by block.
    CarUnsupported(AttemptError),
    Local(FetchError),
}

impl From<AttemptError> for Failure {
    fn from(e: AttemptError) -> Self {
        Failure::Attempt(e)
    }
}

impl From<VerifyError> for Failure {
    fn from(e: VerifyError) -> Self {
        if let VerifyError::Output(io) = e {
            Failure::Local(FetchError::Local(io))
        } else {
            Failure::Attempt(AttemptError::Verify(e))
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Local(e.into())
    }
}

/// Redirects followed within one gateway's origin before giving up.
const MAX_REDIRECTS: usize = 10;

/// Why the redirect policy stopped a redirect to another origin (found again in
/// [`transport`] to build [`AttemptError::CrossOriginRedirect`]).
#[derive(Debug, thiserror::Error)]
#[error("redirect from {from} to {to}")]
struct CrossOrigin {
    from: String,
    to: String,
}

/// Follows redirects only within the origin of the first request.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let from = attempt
            .previous()
            .first()
            .map(|u| u.origin())
            .unwrap_or_else(|| attempt.url().origin());
        let to = attempt.url().origin();
        if to != from {
            let err = CrossOrigin {
                from: from.ascii_serialization(),
                to: to.ascii_serialization(),
            };
            attempt.error(err)
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else {
            attempt.follow()
        }
    })
}

fn transport(e: reqwest::Error) -> AttemptError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if let Some(x) = c.downcast_ref::<CrossOrigin>() {
            return AttemptError::CrossOriginRedirect {
                from: x.from.clone(),
                to: x.to.clone(),
            };
        }
        cause = c.source();
    }
    if e.is_timeout() {
        AttemptError::Timeout
    } else {
        AttemptError::Transport(Arc::new(e))
    }
}

impl Fetcher {
    /// A fetcher over `store` with the given gateways.
    pub fn new(config: GatewayConfig, store: ModelStore) -> Fetcher {
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .redirect(redirect_policy())
            .no_proxy()
            .build()
            .unwrap_or_default();
        Fetcher {
            inner: Arc::new(Inner {
                config,
                store,
                client,
                observer: Arc::new(NoObserver),
                inflight: SingleFlight::new(),
            }),
        }
    }

    /// The same fetcher reporting to `observer` (call before cloning it around).
    pub fn with_observer(self, observer: Arc<dyn FetchObserver>) -> Fetcher {
        let inner = Inner {
            config: self.inner.config.clone(),
            store: self.inner.store.clone(),
            client: self.inner.client.clone(),
            observer,
            inflight: SingleFlight::new(),
        };
        Fetcher {
            inner: Arc::new(inner),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GatewayConfig {
        &self.inner.config
    }

    /// The store models are committed to.
    pub fn store(&self) -> &ModelStore {
        &self.inner.store
    }

    /// Returns the stored model, downloading and verifying it first if needed. Concurrent calls
    /// for the same CID share one download (progress is reported to the caller that runs it).
    pub async fn fetch(
        &self,
        cid: &Cid,
        progress: &dyn FetchProgress,
    ) -> Result<StoredModel, FetchError> {
        if let Some(m) = self.inner.store.get(cid)? {
            return Ok(m);
        }
        // If the caller running the download is cancelled, the next waiter takes it over.
        self.inner
            .inflight
            .run(cid.clone(), || self.fetch_uncached(cid, progress))
            .await
    }

    /// Like [`Fetcher::fetch`], but pins the model first so no eviction can race its use.
    pub async fn fetch_pinned(
        &self,
        cid: &Cid,
        progress: &dyn FetchProgress,
    ) -> Result<(StoredModel, PinGuard), FetchError> {
        let pin = self.inner.store.pin(cid);
        let model = self.fetch(cid, progress).await?;
        Ok((model, pin))
    }

    async fn fetch_uncached(
        &self,
        cid: &Cid,
        progress: &dyn FetchProgress,
    ) -> Result<StoredModel, FetchError> {
        // Again: a flight that ended between the caller's look and this one stored it.
        if let Some(m) = self.inner.store.get(cid)? {
            return Ok(m);
        }
        if self.inner.config.urls.is_empty() {
            return Err(FetchError::NoGateways);
        }
        let mut failures = Vec::new();
        for url in &self.inner.config.urls {
            let base = url.trim_end_matches('/');
            match self.try_gateway(base, cid, progress).await {
                Ok(m) => {
                    self.inner.observer.fetch_succeeded(url, m.size);
                    return Ok(m);
                }
                Err((Failure::Local(e), _)) => return Err(e),
                Err((Failure::Attempt(error) | Failure::CarUnsupported(error), attempts)) => {
                    if let AttemptError::Verify(v) = &error {
                        self.inner.observer.verification_failed(url, v.kind());
                    }
                    self.inner.observer.fetch_failed(url, &error);
                    tracing::warn!(gateway = %url, %cid, %error, "gateway failed");
                    failures.push(GatewayFailure {
                        gateway: url.clone(),
                        attempts,
                        error,
                    });
                }
            }
        }
        Err(FetchError::AllGatewaysFailed(failures))
    }

    async fn backoff(&self, attempt: u32) {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        tokio::time::sleep(self.inner.config.backoff.saturating_mul(factor)).await;
    }

    /// One gateway: CAR with retries, then raw blocks if CARs are not served.
    async fn try_gateway(
        &self,
        base: &str,
        cid: &Cid,
        progress: &dyn FetchProgress,
    ) -> Result<StoredModel, (Failure, u32)> {
        let retries = self.inner.config.retries;
        let mut attempts = 0;
        if self.inner.config.prefer_car {
            loop {
                attempts += 1;
                progress.attempt(base, "car");
                match self.car_attempt(base, cid, progress).await {
                    Ok(m) => return Ok(m),
                    Err(Failure::CarUnsupported(_)) => break,
                    Err(Failure::Attempt(e)) if e.is_retryable() && attempts <= retries => {
                        tracing::debug!(gateway = base, error = %e, "retrying CAR");
                        self.backoff(attempts - 1).await;
                    }
                    Err(f) => return Err((f, attempts)),
                }
            }
        }
        progress.attempt(base, "raw");
        attempts += 1;
        self.raw_attempt(base, cid, progress)
            .await
            .map_err(|f| (f, attempts))
    }

    async fn get(&self, url: &str, accept: &str) -> Result<reqwest::Response, AttemptError> {
        let req = self.inner.client.get(url).header(ACCEPT, accept).send();
        match tokio::time::timeout(self.inner.config.timeout, req).await {
            Err(_) => Err(AttemptError::Timeout),
            Ok(Err(e)) => Err(transport(e)),
            Ok(Ok(r)) => Ok(r),
        }
    }

    async fn car_attempt(
        &self,
        base: &str,
        cid: &Cid,
        progress: &dyn FetchProgress,
    ) -> Result<StoredModel, Failure> {
        let url = format!("{base}/ipfs/{cid}?format=car&dag-scope=all");
        let resp = self
            .get(&url, &format!("{CAR_MEDIA_TYPE}; version=1; order=dfs"))
            .await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(AttemptError::NotFound.into()),
            s @ (StatusCode::BAD_REQUEST
            | StatusCode::NOT_ACCEPTABLE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::NOT_IMPLEMENTED) => {
                return Err(Failure::CarUnsupported(AttemptError::Status(s.as_u16())));
            }
            s => return Err(AttemptError::Status(s.as_u16()).into()),
        }
        let ctype = content_type(&resp);
        if !ctype.starts_with(CAR_MEDIA_TYPE) {
            // A gateway that ignores the format (e.g. a plain file server) may still serve blocks.
            return Err(Failure::CarUnsupported(AttemptError::ContentType(ctype)));
        }
        let limits = self.inner.config.limits();
        let mut pending = self.inner.store.begin()?;
        let mut verifier = DagVerifier::new(cid.clone(), limits);
        let mut decoder = CarDecoder::new(limits.max_block_bytes + 128);
        let mut stream = resp.bytes_stream();
        let mut received: u64 = 0;
        let pace = Pace::start(&self.inner.config);
        while !verifier.is_done() {
            let chunk = match tokio::time::timeout(self.inner.config.timeout, stream.next()).await {
                Err(_) => return Err(AttemptError::Timeout.into()),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(transport(e).into()),
                Ok(Some(Ok(c))) => c,
            };
            received += chunk.len() as u64;
            self.inner.observer.bytes_received(base, chunk.len() as u64);
            check_excess(received, &verifier, limits)?;
            pace.check(received)?;
            decoder.push(&chunk);
            while let Some(block) = decoder.next_block().map_err(VerifyError::from)? {
                if let Some(c) = block.cid {
                    verifier.push(&c, block.data, &mut pending)?;
                }
            }
            progress.update(verifier.bytes_verified(), verifier.declared_size());
        }
        if !verifier.is_done() {
            decoder.finish().map_err(VerifyError::from)?;
        }
        verifier.finish()?;
        drop(stream);
        Ok(pending.commit(cid)?)
    }

    async fn raw_attempt(
        &self,
        base: &str,
        cid: &Cid,
        progress: &dyn FetchProgress,
    ) -> Result<StoredModel, Failure> {
        let limits = self.inner.config.limits();
        let mut pending: PendingBlob = self.inner.store.begin()?;
        let mut verifier = DagVerifier::new(cid.clone(), limits);
        // Blocks are requested ahead of the walk, a few at a time; dropping the set cancels them.
        let mut tasks: tokio::task::JoinSet<(Cid, Result<Bytes, AttemptError>)> =
            tokio::task::JoinSet::new();
        let mut in_flight: HashSet<Cid> = HashSet::new();
        let mut ready: HashMap<Cid, Bytes> = HashMap::new();
        let pace = Pace::start(&self.inner.config);
        let mut received: u64 = 0;
        while let Some(next) = verifier.next_needed().cloned() {
            for c in verifier.upcoming(RAW_PREFETCH) {
                if in_flight.len() >= RAW_PREFETCH {
                    break;
                }
                if in_flight.contains(&c) || ready.contains_key(&c) {
                    continue;
                }
                in_flight.insert(c.clone());
                let this = self.clone();
                let base = base.to_owned();
                tasks.spawn(async move {
                    let r = this
                        .raw_block_with_retries(&base, &c, limits.max_block_bytes)
                        .await;
                    (c, r)
                });
            }
            while !ready.contains_key(&next) {
                match tasks.join_next().await {
                    Some(Ok((c, Ok(b)))) => {
                        in_flight.remove(&c);
                        received += b.len() as u64;
                        pace.check(received)?;
                        ready.insert(c, b);
                    }
                    Some(Ok((c, Err(AttemptError::NotFound)))) => {
                        return Err(VerifyError::MissingBlock { cid: c }.into());
                    }
                    Some(Ok((_, Err(e)))) => return Err(e.into()),
                    Some(Err(e)) => return Err(Failure::Local(FetchError::Task(Arc::new(e)))),
                    None => return Err(VerifyError::MissingBlock { cid: next }.into()),
                }
            }
            let block = ready.remove(&next).unwrap_or_default();
            verifier.push(&next, block, &mut pending)?;
            progress.update(verifier.bytes_verified(), verifier.declared_size());
        }
        verifier.finish()?;
        Ok(pending.commit(cid)?)
    }

    async fn raw_block_with_retries(
        &self,
        base: &str,
        cid: &Cid,
        max: usize,
    ) -> Result<Bytes, AttemptError> {
        let mut attempt = 0;
        loop {
            match self.raw_block(base, cid, max).await {
                Err(e) if e.is_retryable() && attempt < self.inner.config.retries => {
                    self.backoff(attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn raw_block(&self, base: &str, cid: &Cid, max: usize) -> Result<Bytes, AttemptError> {
        let url = format!("{base}/ipfs/{cid}?format=raw");
        let resp = self.get(&url, RAW_MEDIA_TYPE).await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(AttemptError::NotFound),
            s => return Err(AttemptError::Status(s.as_u16())),
        }
        let ctype = content_type(&resp);
        if !ctype.starts_with(RAW_MEDIA_TYPE) {
            return Err(AttemptError::ContentType(ctype));
        }
        let mut stream = resp.bytes_stream();
        let mut buf = BytesMut::new();
        let pace = Pace::start(&self.inner.config);
        loop {
            match tokio::time::timeout(self.inner.config.timeout, stream.next()).await {
                Err(_) => return Err(AttemptError::Timeout),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(transport(e)),
                Ok(Some(Ok(c))) => {
                    self.inner.observer.bytes_received(base, c.len() as u64);
                    if buf.len() + c.len() > max {
                        return Err(VerifyError::BlockTooLarge {
                            size: (buf.len() + c.len()) as u64,
                            max,
                        }
                        .into());
                    }
                    buf.extend_from_slice(&c);
                    pace.check(buf.len() as u64)?;
                }
            }
        }
        Ok(buf.freeze())
    }
}

/// Average-rate floor for one attempt, enforced after a grace period of one `timeout`.
struct Pace {
    start: std::time::Instant,
    grace: Duration,
    min_rate: u64,
}

impl Pace {
    fn start(config: &GatewayConfig) -> Pace {
        Pace {
            start: std::time::Instant::now(),
            grace: config.timeout,
            min_rate: config.min_bytes_per_sec,
        }
    }

    fn check(&self, received: u64) -> Result<(), AttemptError> {
        let elapsed = self.start.elapsed();
        if self.min_rate == 0 || elapsed <= self.grace {
            return Ok(());
        }
        // Bytes owed at the minimum rate for the time past the grace period.
        let owed = (elapsed - self.grace).as_secs_f64() * self.min_rate as f64;
        if (received as f64) < owed {
            let millis = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            return Err(AttemptError::TooSlow {
                bytes: received,
                millis,
            });
        }
        Ok(())
    }
}

fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Stops a gateway that streams far more than the file needs (endless unrelated blocks).
fn check_excess(received: u64, verifier: &DagVerifier, limits: Limits) -> Result<(), VerifyError> {
    let slack = 16 * 1024 * 1024 + 2 * limits.max_block_bytes as u64;
    let limit = verifier
        .declared_size()
        .map_or(slack, |d| d.saturating_add(d / 8).saturating_add(slack));
    if received > limit {
        Err(VerifyError::ExcessData { limit })
    } else {
        Ok(())
    }
}
