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
}

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
