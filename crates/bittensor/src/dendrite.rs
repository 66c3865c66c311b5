//! The dendrite: calls an axon as the SDK's dendrite does (same headers and body), signed
//! by the validator's hotkey, with a new uuid for every request.

use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

use crate::axon::{NanoClock, system_nanos};
use crate::keys::Hotkey;
use crate::pyrepr::float_repr;
use crate::ss58::AccountId;
use crate::synapse::{INPUT_OBJ_STR, SDK_VERSION, Synapse, header as h, signed_message};

/// An axon to call: its base URL (`http://ip:port`) and its hotkey (the signature binds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AxonTarget {
    /// `http://ip:port`.
    pub url: String,
    /// The axon's hotkey.
    pub hotkey: AccountId,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DendriteError {
    /// The axon URL is not `http(s)://host:port`.
    #[error("axon URL {0:?} is not http(s)://host[:port]")]
    Url(String),
    /// Connecting, sending or reading failed.
    #[error("transport: {0}")]
    Transport(#[source] reqwest::Error),
    /// No answer within the timeout.
    #[error("the axon did not answer within {0:?}")]
    Timeout(Duration),
    /// The axon refused the call (or relayed the node's refusal).
    #[error("axon refused ({status} {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The error code (`http_error` when the body had none).
        code: String,
        /// The message.
        message: String,
    },
    /// A 200 answer that is not the synapse.
    #[error("malformed axon answer: {0}")]
    Malformed(String),
}

/// The fields of a `TeeAttestation` answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AttestationReply {
    /// The platform the node names.
    pub platform: Option<String>,
    /// Base64 of the evidence.
    pub evidence: Option<String>,
    /// The announced key set.
    pub keyset: Option<Value>,
}

/// What a `TeeCompletion` / `TeeChatCompletion` answer carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionReply {
    /// The node's whole sealed stream (`sealed_stream`).
    Stream(Vec<u8>),
    /// The single sealed envelope of the node's verdict (`sealed_response`).
    Envelope(Vec<u8>),
}

/// Largest axon answer a dendrite reads (bytes): the base64 of a sealed stream as large as
/// an axon relays by default (16 MiB) plus the synapse around it.
pub const MAX_ANSWER_BYTES: usize = 24 << 20;

/// A uuid source (injected for tests); the default draws random version-4 uuids.
pub type UuidSource = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// Random version-4 uuids from the OS.
pub fn random_uuids() -> UuidSource {
    std::sync::Arc::new(|| {
        let mut b = [0u8; 16];
        // Without OS randomness a uuid cannot be unique; an all-zero one still works
        // for the nonce sequence (nonces keep increasing), so do not fail the call.
        let _ = getrandom::fill(&mut b);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let x = hex::encode(b);
        format!(
            "{}-{}-{}-{}-{}",
            &x[..8],
            &x[8..12],
            &x[12..16],
            &x[16..20],
            &x[20..]
        )
    })
}

/// A validator's dendrite.
pub struct Dendrite {
    hotkey: Hotkey,
    http: reqwest::Client,
    timeout: Duration,
    clock: NanoClock,
    uuids: UuidSource,
    last_nonce: Mutex<u64>,
}

impl std::fmt::Debug for Dendrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dendrite")
            .field("hotkey", &self.hotkey)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Dendrite {
    /// A dendrite signing as `hotkey`, each call bounded by `timeout`.
    pub fn new(hotkey: Hotkey, timeout: Duration) -> Result<Self, DendriteError> {
        Self::with_sources(hotkey, timeout, system_nanos(), random_uuids())
    }

    /// As [`Dendrite::new`] with an injected clock and uuid source.
    pub fn with_sources(
        hotkey: Hotkey,
        timeout: Duration,
        clock: NanoClock,
        uuids: UuidSource,
    ) -> Result<Self, DendriteError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(DendriteError::Transport)?;
        Ok(Dendrite {
            hotkey,
            http,
            timeout,
            clock,
            uuids,
            last_nonce: Mutex::new(0),
        })
    }

    /// This dendrite's hotkey.
    pub fn account(&self) -> AccountId {
        self.hotkey.account()
    }

    /// Wall-clock nanoseconds, strictly increasing across this dendrite's calls.
    fn next_nonce(&self) -> u64 {
        let mut last = self.last_nonce.lock().unwrap_or_else(|p| p.into_inner());
        let n = (self.clock)().max(last.saturating_add(1));
        *last = n;
        n
    }

    /// Calls `synapse` with its request field set to `value`; returns the answer's JSON
    /// object on a 200 that carries the axon's success status.
    pub async fn call(
        &self,
        axon: &AxonTarget,
        synapse: Synapse,
        value: &str,
    ) -> Result<Map<String, Value>, DendriteError> {
        let base = axon.url.trim_end_matches('/');
        let url = reqwest::Url::parse(base).map_err(|_| DendriteError::Url(axon.url.clone()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(DendriteError::Url(axon.url.clone()));
        }
        let ip = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(0);
        let me = self.hotkey.account();
        let nonce = self.next_nonce();
        let uuid = (self.uuids)();
        let body_hash = synapse.body_hash(value);
        let message = signed_message(nonce, &me, &axon.hotkey, &uuid, &body_hash);
        let signature = self.hotkey.sign(message.as_bytes()).to_header();
        let timeout = float_repr(self.timeout.as_secs_f64());
        let body = json!({
            "name": synapse.name(),
            "timeout": self.timeout.as_secs_f64(),
            "total_size": 0,
            "header_size": 0,
            "dendrite": {
                "status_code": null, "status_message": null, "process_time": null,
                "ip": null, "port": null, "version": SDK_VERSION, "nonce": nonce,
                "uuid": uuid, "hotkey": me.to_ss58(), "signature": signature,
            },
            "axon": {
                "status_code": null, "status_message": null, "process_time": null,
                "ip": ip, "port": port, "version": null, "nonce": null, "uuid": null,
                "hotkey": axon.hotkey.to_ss58(), "signature": null,
            },
            "computed_body_hash": "",
            synapse.hashed_field(): value,
        });
        let resp = self
            .http
            .post(format!("{base}/{}", synapse.name()))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(h::NAME, synapse.name())
            .header(h::TIMEOUT, timeout)
            .header(h::AXON_IP, &ip)
            .header(h::AXON_PORT, port.to_string())
            .header(h::AXON_HOTKEY, axon.hotkey.to_ss58())
            .header(h::DENDRITE_VERSION, SDK_VERSION.to_string())
            .header(h::DENDRITE_NONCE, nonce.to_string())
            .header(h::DENDRITE_UUID, &uuid)
            .header(h::DENDRITE_HOTKEY, me.to_ss58())
            .header(h::DENDRITE_SIGNATURE, signature)
            .header(
                format!("{}{}", h::INPUT_OBJ_PREFIX, synapse.hashed_field()),
                INPUT_OBJ_STR,
            )
            .header(h::HEADER_SIZE, "0")
            .header(h::TOTAL_SIZE, "0")
            .header(h::COMPUTED_BODY_HASH, &body_hash)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let axon_status = resp
            .headers()
            .get(h::AXON_STATUS_CODE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Bounded: an axon is not trusted with the validator's memory either.
        let mut bytes = Vec::new();
        let mut pieces = resp.bytes_stream();
        while let Some(piece) = futures::StreamExt::next(&mut pieces).await {
            let piece = piece.map_err(|e| self.transport(e))?;
            if bytes.len().saturating_add(piece.len()) > MAX_ANSWER_BYTES {
                return Err(DendriteError::Malformed(format!(
                    "the answer exceeds {MAX_ANSWER_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&piece);
        }
        let parsed = serde_json::from_slice::<Value>(&bytes).ok();
        if status != 200 {
            return Err(refusal(status, parsed.as_ref(), &bytes));
        }
        if axon_status.as_deref() != Some("200") {
            return Err(DendriteError::Malformed(format!(
                "status 200 without {}: 200",
                h::AXON_STATUS_CODE
            )));
        }
        match parsed {
            Some(Value::Object(m)) => Ok(m),
            _ => Err(DendriteError::Malformed(
                "the body is not a JSON object".into(),
            )),
        }
    }

    fn transport(&self, e: reqwest::Error) -> DendriteError {
        if e.is_timeout() {
            DendriteError::Timeout(self.timeout)
        } else {
            DendriteError::Transport(e)
        }
    }

    /// `TeeAttestation` for `nonce` (hex).
    pub async fn attestation(
        &self,
        axon: &AxonTarget,
        nonce_hex: &str,
    ) -> Result<AttestationReply, DendriteError> {
        let m = self.call(axon, Synapse::TeeAttestation, nonce_hex).await?;
        let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(AttestationReply {
            platform: s("platform"),
            evidence: s("evidence"),
            keyset: m.get("keyset").filter(|v| !v.is_null()).cloned(),
        })
    }

    /// `TeeInference` of a sealed request envelope; returns the sealed response envelope.
    pub async fn inference(
        &self,
        axon: &AxonTarget,
        envelope: &[u8],
    ) -> Result<Vec<u8>, DendriteError> {
        let m = self
            .call(axon, Synapse::TeeInference, &B64.encode(envelope))
            .await?;
        let sealed = m
            .get("sealed_response")
            .and_then(Value::as_str)
            .ok_or_else(|| DendriteError::Malformed("no sealed_response".into()))?;
        B64.decode(sealed)
            .map_err(|_| DendriteError::Malformed("sealed_response is not base64".into()))
    }
}

impl Dendrite {
    /// `TeeCompletion` (`route` `/v1/completions`) or `TeeChatCompletion`
    /// (`/v1/chat/completions`) of a sealed request envelope; returns the node's sealed
    /// stream, or its single sealed envelope, as the axon relayed it (unverified: the
    /// caller opens and checks it).
    pub async fn completion(
        &self,
        axon: &AxonTarget,
        route: &str,
        envelope: &[u8],
    ) -> Result<CompletionReply, DendriteError> {
        let synapse = Synapse::for_completion_route(route).ok_or_else(|| {
            DendriteError::Malformed(format!("no synapse relays the route {route:?}"))
        })?;
        let m = self.call(axon, synapse, &B64.encode(envelope)).await?;
        let field = |k: &str| m.get(k).and_then(Value::as_str);
        let decode = |b64: &str| {
            B64.decode(b64)
                .map_err(|_| DendriteError::Malformed("the sealed answer is not base64".into()))
        };
        match (field("sealed_stream"), field("sealed_response")) {
            (Some(s), None) => Ok(CompletionReply::Stream(decode(s)?)),
            (None, Some(e)) => Ok(CompletionReply::Envelope(decode(e)?)),
            _ => Err(DendriteError::Malformed(
                "want exactly one of sealed_stream and sealed_response".into(),
            )),
        }
    }
}

/// The refusal in an error answer: `{"error": {"code","message"}}` (ours) or
/// `{"message"}` (the SDK's).
fn refusal(status: u16, parsed: Option<&Value>, raw: &[u8]) -> DendriteError {
    let err = parsed.and_then(|v| v.get("error"));
    let code = err
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .unwrap_or("http_error")
        .to_owned();
    let message = err
        .and_then(|e| e.get("message"))
        .or_else(|| parsed.and_then(|v| v.get("message")))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(raw.get(..200).unwrap_or(raw)).into_owned());
    DendriteError::Refused {
        status,
        code,
        message,
    }
}
