//! How a [`Client`](crate::Client) reaches a node: plain HTTP to the node's `/v1` API
//! ([`HttpTransport`]), or any relay that carries the same two exchanges (a Bittensor axon,
//! in `attesta-validator`). A transport moves bytes only: everything it returns is
//! verified by the client (evidence under the policy, sealed answers opened and receipts
//! checked), so a relay is never trusted.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use attesta_seal::MEDIA_TYPE;

use crate::error::ClientError;

/// A boxed future of a transport call.
pub type TransportFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Reply, ClientError>> + Send + 'a>>;

/// What came back: the status, whether the body is a sealed envelope, and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status (or the relay's equivalent).
    pub status: u16,
    /// True when `body` is a sealed response envelope (`application/vnd.attesta.sealed`).
    pub sealed: bool,
    /// The body: attestation JSON, a sealed envelope, or a plaintext `{"error"}` refusal.
    pub body: Vec<u8>,
}

/// The two exchanges of the attested channel.
pub trait Transport: Send + Sync + std::fmt::Debug {
    /// `GET /v1/attestation?nonce=<nonce_hex>` or its equivalent.
    fn attestation<'a>(&'a self, nonce_hex: &'a str) -> TransportFuture<'a>;
    /// `POST /v1/infer` of a sealed request envelope or its equivalent.
    fn infer(&self, envelope: Vec<u8>) -> TransportFuture<'_>;
    /// `POST {path}` (a language-model route) of a sealed request envelope, the answer's
    /// body arriving as it is sent. Transports that cannot stream refuse.
    fn stream<'a>(&'a self, path: &'a str, envelope: Vec<u8>) -> StreamFuture<'a> {
        let _ = (path, envelope);
        Box::pin(async {
            Err(ClientError::InvalidInput(
                "this transport cannot carry streamed answers".into(),
            ))
        })
    }
}

/// The body of a streamed answer, piece by piece.
pub type BodyStream = Pin<Box<dyn futures::Stream<Item = Result<Vec<u8>, ClientError>> + Send>>;

/// A streamed answer: status, media type and the body as it arrives.
pub struct StreamReply {
    /// HTTP status.
    pub status: u16,
    /// The declared media type (without parameters), lowercased.
    pub media_type: String,
    /// The body.
    pub body: BodyStream,
}

impl std::fmt::Debug for StreamReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReply")
            .field("status", &self.status)
            .field("media_type", &self.media_type)
            .finish_non_exhaustive()
    }
}

/// A boxed future of a streamed call.
pub type StreamFuture<'a> =
    Pin<Box<dyn Future<Output = Result<StreamReply, ClientError>> + Send + 'a>>;

/// Direct HTTP to a node's `/v1` API.
#[derive(Debug)]
pub struct HttpTransport {
    base: String,
    http: reqwest::Client,
    timeout: Duration,
}

impl HttpTransport {
    /// A transport to the node at `base_url` (`http(s)://…`), each request bounded by `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::InvalidInput(format!(
                "node URL {base_url:?} is not http(s)"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(ClientError::Http)?;
        Ok(HttpTransport {
            base,
            http,
            timeout,
        })
    }

    async fn reply(
        &self,
        resp: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<Reply, ClientError> {
        let resp = resp.map_err(|e| ClientError::from_reqwest(e, self.timeout))?;
        let status = resp.status().as_u16();
        let sealed = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(MEDIA_TYPE));
        let body = resp
            .bytes()
            .await
            .map_err(|e| ClientError::from_reqwest(e, self.timeout))?;
        Ok(Reply {
            status,
            sealed,
            body: body.to_vec(),
        })
    }
}

impl Transport for HttpTransport {
    fn attestation<'a>(&'a self, nonce_hex: &'a str) -> TransportFuture<'a> {
        Box::pin(async move {
            let url = format!("{}/v1/attestation?nonce={nonce_hex}", self.base);
            self.reply(self.http.get(&url).send().await).await
        })
    }

    fn stream<'a>(&'a self, path: &'a str, envelope: Vec<u8>) -> StreamFuture<'a> {
        Box::pin(self.stream_with(path, envelope, |req| req))
    }

    fn infer(&self, envelope: Vec<u8>) -> TransportFuture<'_> {
        Box::pin(async move {
            let sent = self
                .http
                .post(format!("{}/v1/infer", self.base))
                .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
                .header(reqwest::header::ACCEPT, MEDIA_TYPE)
                .body(envelope)
                .send()
                .await;
            self.reply(sent).await
        })
    }
}

impl HttpTransport {
    /// POSTs a sealed request envelope to `path` and hands back the answer as it arrives;
    /// `decorate` adds headers (a gateway's API key).
    async fn stream_with(
        &self,
        path: &str,
        envelope: Vec<u8>,
        decorate: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<StreamReply, ClientError> {
        let timeout = self.timeout;
        let resp = decorate(self.http.post(format!("{}{path}", self.base)))
            .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
            .header(reqwest::header::ACCEPT, attesta_seal::STREAM_MEDIA_TYPE)
            .body(envelope)
            .send()
            .await
            .map_err(|e| ClientError::from_reqwest(e, timeout))?;
        let status = resp.status().as_u16();
        let media_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(attesta_seal::media_type)
            .unwrap_or_default();
        use futures::StreamExt;
        let body = resp.bytes_stream().map(move |r| {
            r.map(|b| b.to_vec())
                .map_err(|e| ClientError::from_reqwest(e, timeout))
        });
        Ok(StreamReply {
            status,
            media_type,
            body: Box::pin(body),
        })
    }
}

/// A validator's gateway in sealed mode (`docs/PROTOCOL.md`, "Gateway"): the attestation
/// exchange asks `GET /v1/route?nonce=…` which node to use and returns that node's own
/// attestation answer; the sealed request then goes to `POST /v1/nodes/{id}/infer` (a
/// language-model request to `POST /v1/nodes/{id}/v1/chat/completions` or `…/v1/completions`,
/// its sealed stream relayed as it arrives), which
/// the gateway relays to that node as ciphertext. The client verifies the node's evidence
/// itself, so the gateway is trusted with nothing but availability.
#[derive(Debug)]
pub struct GatewayTransport {
    http: HttpTransport,
    model: Option<String>,
    api_key: Option<String>,
    node: std::sync::Mutex<Option<String>>,
}

/// The gateway's route answer: which node, and its attestation answer verbatim.
#[derive(Debug, serde::Deserialize)]
struct Route {
    node: RouteNode,
    attestation: serde_json::Value,
}

#[derive(Debug, serde::Deserialize)]
struct RouteNode {
    id: String,
}

impl GatewayTransport {
    /// A transport through the gateway at `base_url`, each request bounded by `timeout`.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, ClientError> {
        Ok(GatewayTransport {
            http: HttpTransport::new(base_url, timeout)?,
            model: None,
            api_key: None,
            node: std::sync::Mutex::new(None),
        })
    }

    /// Names the model in route requests (so a gateway may prefer nodes that hold it).
    pub fn with_model(mut self, cid: &str) -> Self {
        self.model = Some(cid.to_owned());
        self
    }

    /// Sends `Authorization: Bearer <key>` (gateways configured with API keys).
    pub fn with_api_key(mut self, key: &str) -> Self {
        self.api_key = Some(key.to_owned());
        self
    }

    /// The node the last route chose.
    pub fn node(&self) -> Option<String> {
        self.node.lock().ok().and_then(|n| n.clone())
    }

    /// The node of the last route, checked to be one plain path segment.
    fn routed_node(&self) -> Result<String, ClientError> {
        let node = self.node().ok_or_else(|| {
            ClientError::Protocol("no node routed yet (attest through the gateway first)".into())
        })?;
        // Node ids come from the gateway; keep them to one path segment.
        if node.is_empty() || node.contains(['/', '?', '#', '%']) {
            return Err(ClientError::Protocol(format!(
                "the gateway routed to an odd node id {node:?}"
            )));
        }
        Ok(node)
    }

    fn authorised(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(k) => req.bearer_auth(k),
            None => req,
        }
    }
}

impl Transport for GatewayTransport {
    fn attestation<'a>(&'a self, nonce_hex: &'a str) -> TransportFuture<'a> {
        Box::pin(async move {
            let mut url = format!("{}/v1/route?nonce={nonce_hex}", self.http.base);
            if let Some(m) = &self.model {
                url.push_str("&model=");
                url.push_str(m);
            }
            let reply = self
                .http
                .reply(self.authorised(self.http.http.get(&url)).send().await)
                .await?;
            if reply.status != 200 {
                return Ok(reply);
            }
            let route: Route = serde_json::from_slice(&reply.body)
                .map_err(|e| ClientError::Protocol(format!("the gateway's route answer: {e}")))?;
            let body = serde_json::to_vec(&route.attestation)
                .map_err(|e| ClientError::Protocol(format!("the routed attestation: {e}")))?;
            if let Ok(mut n) = self.node.lock() {
                *n = Some(route.node.id);
            }
            Ok(Reply {
                status: 200,
                sealed: false,
                body,
            })
        })
    }

    fn stream<'a>(&'a self, path: &'a str, envelope: Vec<u8>) -> StreamFuture<'a> {
        Box::pin(async move {
            let node = self.routed_node()?;
            // The node's own route under the gateway's relay prefix for that node.
            let via = format!("/v1/nodes/{node}{path}");
            self.http
                .stream_with(&via, envelope, |req| self.authorised(req))
                .await
        })
    }

    fn infer(&self, envelope: Vec<u8>) -> TransportFuture<'_> {
        Box::pin(async move {
            let node = self.routed_node()?;
            let sent = self
                .authorised(
                    self.http
                        .http
                        .post(format!("{}/v1/nodes/{node}/infer", self.http.base)),
                )
                .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
                .header(reqwest::header::ACCEPT, MEDIA_TYPE)
                .body(envelope)
                .send()
                .await;
            self.http.reply(sent).await
        })
    }
}
