//! A JSON-RPC 2.0 client over one WebSocket (`ws://`, or `wss://` through rustls with the
//! webpki roots), as subtensor nodes serve it.
//!
//! One background task owns the socket: it writes queued requests and routes each answer to
//! its caller by id, and each notification to its subscription by subscription id. The
//! subscription's channel is registered by that task *before* the subscribe call returns, so
//! a notification that follows the answer at once is never lost. Every call has a timeout;
//! a message over the size cap closes the connection (the node is untrusted); when the peer
//! closes, every pending call fails with [`ChainError::Closed`]. There is no reconnection
//! here: the caller reconnects (the metagraph does so on its next read).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use super::ChainError;

/// Limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcConfig {
    /// How long one call (or the connection handshake) may take.
    pub request_timeout: Duration,
    /// The largest WebSocket message accepted from the node. Finney's metadata is ~0.6 MiB
    /// as hex and `get_neurons_lite` of a full subnet ~0.4 MiB, so 16 MiB leaves room.
    pub max_message_bytes: usize,
    /// Unread notifications kept per subscription before it is dropped as lagging.
    pub subscription_buffer: usize,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            request_timeout: Duration::from_secs(30),
            max_message_bytes: 16 << 20,
            subscription_buffer: 256,
        }
    }
}

/// The error object of a JSON-RPC answer.
#[derive(Debug, Clone)]
struct RpcErrorObject {
    code: i64,
    message: String,
    data: Option<String>,
}

type CallResult = Result<Value, RpcErrorObject>;

/// A notification or the reason the subscription ended.
type Notification = Result<Value, ChainError>;

enum Pending {
    /// A plain call waiting for its answer.
    Call(oneshot::Sender<CallResult>),
    /// A subscribe call: on success its channel is registered under the returned id.
    Subscribe {
        reply: oneshot::Sender<CallResult>,
        notifications: mpsc::Sender<Notification>,
    },
}

#[derive(Default)]
struct Routes {
    pending: HashMap<u64, Pending>,
    subscriptions: HashMap<String, mpsc::Sender<Notification>>,
}

struct Shared {
    routes: Mutex<Routes>,
    closed: AtomicBool,
    /// Why the connection ended, for calls made after it did.
    close_reason: Mutex<Option<CloseReason>>,
}

#[derive(Debug, Clone, Copy)]
enum CloseReason {
    PeerClosed,
    TooLarge,
}

impl Shared {
    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        // A poisoned lock only means another task panicked mid-update; the maps stay usable.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn closed_error(&self, limit: usize) -> ChainError {
        match *self.close_reason.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(CloseReason::TooLarge) => ChainError::TooLarge { limit },
            _ => ChainError::Closed,
        }
    }
}

/// A JSON-RPC connection. Cheap to clone; the socket closes when the last clone is dropped.
#[derive(Clone)]
pub struct RpcClient {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    config: RpcConfig,
    next_id: AtomicU64,
    outgoing: mpsc::UnboundedSender<Message>,
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the socket task, which closes the socket.
        self.shared.closed.store(true, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("url", &self.inner.url)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// Notifications of one subscription, in order. Dropping it does not unsubscribe; call
/// [`Subscription::unsubscribe`] to tell the node.
pub struct Subscription {
    id: String,
    unsubscribe_method: String,
    rx: mpsc::Receiver<Notification>,
    client: RpcClient,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish()
    }
}

impl Subscription {
    /// The subscription id the node gave.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The next notification's `result`; `None` once the connection closed and every
    /// notification was read; `Some(Err(Lagged))` when the buffer overflowed.
    pub async fn next(&mut self) -> Option<Result<Value, ChainError>> {
        self.rx.recv().await
    }

    /// [`Subscription::next`] with a deadline: `Err(Timeout)` when nothing came in time.
    pub async fn next_within(&mut self, after: Duration) -> Option<Result<Value, ChainError>> {
        match tokio::time::timeout(after, self.rx.recv()).await {
            Ok(v) => v,
            Err(_) => Some(Err(ChainError::Timeout {
                method: format!("subscription {}", self.id),
                after,
            })),
        }
    }

    /// Tells the node to stop sending (its boolean answer is ignored) and forgets the route.
    pub async fn unsubscribe(self) -> Result<(), ChainError> {
        self.client
            .inner
            .shared
            .routes()
            .subscriptions
            .remove(&self.id);
        let _: Value = self
            .client
            .request(&self.unsubscribe_method, json!([self.id]))
            .await?;
        Ok(())
    }
}

impl RpcClient {
    /// Opens the WebSocket at `url` (`ws://` or `wss://`) within the call timeout.
    pub async fn connect(url: &str, config: RpcConfig) -> Result<Self, ChainError> {
        let endpoint_err = |reason: &str| ChainError::Endpoint {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let tls = if url.starts_with("wss://") {
            true
        } else if url.starts_with("ws://") {
            false
        } else {
            return Err(endpoint_err("want a ws:// or wss:// URL"));
        };
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(config.max_message_bytes))
            .max_frame_size(Some(config.max_message_bytes));
        let connector = if tls {
            Some(tokio_tungstenite::Connector::Rustls(Arc::new(
                tls_config().map_err(|e| endpoint_err(&format!("TLS setup: {e}")))?,
            )))
        } else {
            None
        };
        let connecting =
            tokio_tungstenite::connect_async_tls_with_config(url, Some(ws_config), true, connector);
        let (stream, _response) = tokio::time::timeout(config.request_timeout, connecting)
            .await
            .map_err(|_| ChainError::Timeout {
                method: "connect".into(),
                after: config.request_timeout,
            })?
            .map_err(|e| ChainError::Connect {
                url: url.to_owned(),
                source: Box::new(e),
            })?;
        Ok(Self::from_stream(url, config, stream))
    }

    /// Runs the client over an already open WebSocket (tests, the stand-in).
    pub fn from_stream<S>(
        url: &str,
        config: RpcConfig,
        stream: tokio_tungstenite::WebSocketStream<S>,
    ) -> Self
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared {
            routes: Mutex::new(Routes::default()),
            closed: AtomicBool::new(false),
            close_reason: Mutex::new(None),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run_socket(stream, rx, shared.clone(), config));
        RpcClient {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                config,
                next_id: AtomicU64::new(1),
                outgoing: tx,
                shared,
            }),
        }
    }

    /// The endpoint this client talks to.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The limits in force.
    pub fn config(&self) -> RpcConfig {
        self.inner.config
    }

    /// True once the connection ended; every later call fails at once.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.closed.load(Ordering::SeqCst)
    }

    /// Calls `method` with `params` (a JSON array) and deserializes its `result`.
    pub async fn request<R: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<R, ChainError> {
        let value = self.request_value(method, params).await?;
        serde_json::from_value(value).map_err(|source| ChainError::Json {
            method: method.to_owned(),
            source,
        })
    }

    /// Calls `method` and returns its `result` as JSON.
    pub async fn request_value(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        let (reply, rx) = oneshot::channel();
        self.call(method, params, Pending::Call(reply), rx).await
    }

    /// Subscribes with `method` (e.g. `author_submitAndWatchExtrinsic`); notifications come
    /// through the returned [`Subscription`], which unsubscribes with `unsubscribe_method`.
    pub async fn subscribe(
        &self,
        method: &str,
        params: Value,
        unsubscribe_method: &str,
    ) -> Result<Subscription, ChainError> {
        let (reply, rx) = oneshot::channel();
        let (ntx, nrx) = mpsc::channel(self.inner.config.subscription_buffer.max(1));
        let pending = Pending::Subscribe {
            reply,
            notifications: ntx,
        };
        let id = self.call(method, params, pending, rx).await?;
        let id = subscription_key(&id).ok_or_else(|| ChainError::BadResponse {
            method: method.to_owned(),
            reason: format!("subscription id {id}"),
        })?;
        Ok(Subscription {
            id,
            unsubscribe_method: unsubscribe_method.to_owned(),
            rx: nrx,
            client: self.clone(),
        })
    }

    async fn call(
        &self,
        method: &str,
        params: Value,
        pending: Pending,
        rx: oneshot::Receiver<CallResult>,
    ) -> Result<Value, ChainError> {
        let inner = &self.inner;
        if self.is_closed() {
            return Err(inner.shared.closed_error(inner.config.max_message_bytes));
        }
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let text = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        inner.shared.routes().pending.insert(id, pending);
        if inner
            .outgoing
            .send(Message::text(text.to_string()))
            .is_err()
        {
            inner.shared.routes().pending.remove(&id);
            return Err(inner.shared.closed_error(inner.config.max_message_bytes));
        }
        let after = inner.config.request_timeout;
        match tokio::time::timeout(after, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(ChainError::Rpc {
                method: method.to_owned(),
                code: e.code,
                message: e.message,
                data: e.data,
            }),
            Ok(Err(_)) => Err(inner.shared.closed_error(inner.config.max_message_bytes)),
            Err(_) => {
                inner.shared.routes().pending.remove(&id);
                Err(ChainError::Timeout {
                    method: method.to_owned(),
                    after,
                })
            }
        }
    }
}

/// rustls with the ring provider (the one the workspace builds) and the webpki roots.
fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Subscription ids are strings on substrate nodes, numbers on some servers: one key form.
fn subscription_key(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn run_socket<S>(
    stream: tokio_tungstenite::WebSocketStream<S>,
    mut outgoing: mpsc::UnboundedReceiver<Message>,
    shared: Arc<Shared>,
    config: RpcConfig,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = stream.split();
    let reason = loop {
        tokio::select! {
            out = outgoing.recv() => match out {
                Some(m) => {
                    if sink.send(m).await.is_err() {
                        break CloseReason::PeerClosed;
                    }
                }
                // Every client handle is gone.
                None => {
                    let _ = sink.close().await;
                    break CloseReason::PeerClosed;
                }
            },
            msg = source.next() => match msg {
                Some(Ok(Message::Text(t))) => dispatch(t.as_str(), &shared, config),
                Some(Ok(Message::Binary(b))) => {
                    if let Ok(t) = std::str::from_utf8(&b) {
                        dispatch(t, &shared, config);
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => break CloseReason::PeerClosed,
                Some(Err(tungstenite::Error::Capacity(e))) => {
                    tracing::warn!(error = %e, "chain node sent an oversized message; closing");
                    break CloseReason::TooLarge;
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "chain connection failed");
                    break CloseReason::PeerClosed;
                }
            },
        }
    };
    *shared
        .close_reason
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(reason);
    shared.closed.store(true, Ordering::SeqCst);
    // Dropping the senders wakes every waiting call (Closed) and ends every subscription.
    let routes = std::mem::take(&mut *shared.routes());
    for (_, sub) in routes.subscriptions {
        if let CloseReason::TooLarge = reason {
            let _ = sub.try_send(Err(ChainError::TooLarge {
                limit: config.max_message_bytes,
            }));
        }
    }
    drop(routes.pending);
}

/// Routes one message from the node. Malformed messages are logged and dropped: a node that
/// sends garbage only loses its own answers (they time out).
fn dispatch(text: &str, shared: &Shared, config: RpcConfig) {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(error = %e, "chain node sent a message that is not JSON");
            return;
        }
    };
    if let Some(id) = v.get("id").and_then(Value::as_u64) {
        let result = match (v.get("result"), v.get("error")) {
            (_, Some(err)) => Err(RpcErrorObject {
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                data: err.get("data").map(|d| d.to_string()),
            }),
            (Some(r), None) => Ok(r.clone()),
            (None, None) => Ok(Value::Null),
        };
        let mut routes = shared.routes();
        match routes.pending.remove(&id) {
            Some(Pending::Call(reply)) => {
                let _ = reply.send(result);
            }
            Some(Pending::Subscribe {
                reply,
                notifications,
            }) => {
                if let Some(key) = result.as_ref().ok().and_then(subscription_key) {
                    routes.subscriptions.insert(key, notifications);
                }
                let _ = reply.send(result);
            }
            None => tracing::debug!(id, "answer to no pending call (timed out?)"),
        }
        return;
    }
    let Some(params) = v.get("params") else {
        return;
    };
    let Some(key) = params.get("subscription").and_then(subscription_key) else {
        return;
    };
    let result = params.get("result").cloned().unwrap_or(Value::Null);
    let mut routes = shared.routes();
    let Some(sub) = routes.subscriptions.get(&key) else {
        return;
    };
    match sub.try_send(Ok(result)) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            // The reader fell behind: drop the route so memory stays bounded; the reader
            // sees the buffered notifications, then the end of the stream.
            tracing::warn!(subscription = %key, "subscription lagging; dropped");
            let capacity = config.subscription_buffer;
            if let Some(sub) = routes.subscriptions.remove(&key) {
                // The buffer is full, so the error is delivered once the reader drains one.
                tokio::spawn(async move {
                    let _ = sub
                        .send(Err(ChainError::Lagged { id: key, capacity }))
                        .await;
                });
            }
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            routes.subscriptions.remove(&key);
        }
    }
}
