//! The client: attest, cache, seal, open, verify.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use attesta_evidence::{
    ENVELOPE_VERSION, Envelope, EvidenceVerifier, Expected, Platform, Report, UnixTime,
    VerifiedEvidence,
};
use attesta_seal::channel::AnswerError;
use attesta_seal::{
    ProofBundle, PublicKeySet, RequestPlaintext, SignedReceipt, binding, seal_request,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::value::RawValue;

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::transport::{HttpTransport, Transport};
use crate::wire::{AttestationResponse, PlainError};

/// A node whose evidence verified and binds its key set.
#[derive(Debug, Clone)]
pub struct VerifiedNode {
    /// The bound key set.
    pub keyset: PublicKeySet,
    /// Verified platform (`Dev` for the dev TEE).
    pub platform: Platform,
    /// The raw evidence (for proof bundles).
    pub evidence: Vec<u8>,
    /// The certificates sent with the evidence (for proof bundles).
    pub certs: Vec<Vec<u8>>,
    /// The collateral sent with the evidence (for proof bundles).
    pub collateral: Option<serde_json::Value>,
    /// The nonce the evidence answers.
    pub nonce: Vec<u8>,
    /// The evidence verification report.
    pub report: Report,
    /// When it was verified (client clock).
    pub verified_at: UnixTime,
    /// The node's clock minus the client's, in milliseconds, as the verified
    /// evidence timestamp showed it (bounded by the policy's max age and
    /// skew). Requests carry `issued_at` on the node's clock, so a client
    /// whose clock is off still lands inside the node's replay window.
    pub clock_offset_ms: i64,
}

impl VerifiedNode {
    /// `now` (client clock) moved onto the node's clock.
    pub fn node_time(&self, now: UnixTime) -> UnixTime {
        let ms = i128::from(now.as_millis()) + i128::from(self.clock_offset_ms);
        UnixTime::from_millis(u64::try_from(ms.max(0)).unwrap_or(u64::MAX))
    }
}

/// The result of one sealed inference.
#[derive(Debug, Clone)]
pub struct InferOutcome {
    /// The OpenGradient `output` list, exactly as the receipt digests it.
    pub output: Box<RawValue>,
    /// SHA-256 hex of the model file.
    pub model_hash: String,
    /// The verified receipt.
    pub receipt: SignedReceipt,
    /// Receipt + evidence, verifiable offline.
    pub bundle: ProofBundle,
    /// The request plaintext that was sealed (its digest is in the receipt).
    pub request: Vec<u8>,
    /// Time from sealing to the verified answer (excludes attestation).
    pub latency: Duration,
    /// Whether this call fetched fresh evidence.
    pub attested: bool,
}

struct Cached {
    node: Arc<VerifiedNode>,
    expires: UnixTime,
}

/// A client of one node. Cheap to share (`&self` methods).
pub struct Client {
    transport: Arc<dyn Transport>,
    verifier: EvidenceVerifier,
    config: ClientConfig,
    cache: Mutex<Option<Cached>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the node at `base_url` (e.g. `http://127.0.0.1:8080`), over HTTP.
    pub fn new(base_url: &str, config: ClientConfig) -> Result<Self, ClientError> {
        let transport = HttpTransport::new(base_url, config.timeout)?;
        Self::with_transport(Arc::new(transport), config)
    }

    /// A client that reaches its node through `transport` (e.g. a Bittensor axon).
    pub fn with_transport(
        transport: Arc<dyn Transport>,
        config: ClientConfig,
    ) -> Result<Self, ClientError> {
        if !(16..=64).contains(&config.nonce_len) {
            return Err(ClientError::InvalidInput(format!(
                "nonce_len {} outside 16..=64 bytes",
                config.nonce_len
            )));
        }
        Ok(Client {
            transport,
            verifier: EvidenceVerifier::new(config.policy.clone()),
            config,
            cache: Mutex::new(None),
        })
    }

    /// The evidence verifier (shares its chain cache with bundle checks).
    pub fn verifier(&self) -> &EvidenceVerifier {
        &self.verifier
    }

    fn now(&self) -> UnixTime {
        (self.config.clock)()
    }

    fn fresh_nonce(&self) -> Vec<u8> {
        let mut nonce = vec![0u8; self.config.nonce_len];
        let mut rng = self.config.rng.lock().unwrap_or_else(|p| p.into_inner());
        rng.fill_bytes(&mut nonce);
        nonce
    }

    /// Drops the cached key set: the next call re-attests.
    pub fn forget_node(&self) {
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The cached verified node, if any and not expired.
    pub fn cached_node(&self) -> Option<Arc<VerifiedNode>> {
        let now = self.now();
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .as_ref()
            .filter(|c| now < c.expires)
            .map(|c| Arc::clone(&c.node))
    }

    /// Fetches and verifies evidence for a fresh nonce and caches the result.
    pub async fn attest(&self) -> Result<Arc<VerifiedNode>, ClientError> {
        let nonce = self.fresh_nonce();
        let node = Arc::new(self.attest_with_nonce(&nonce).await?);
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(Cached {
            node: Arc::clone(&node),
            expires: node.verified_at.saturating_add(self.config.key_cache_ttl),
        });
        Ok(node)
    }

    /// Fetches and verifies evidence for `nonce` (not cached).
    pub async fn attest_with_nonce(&self, nonce: &[u8]) -> Result<VerifiedNode, ClientError> {
        let reply = self.transport.attestation(&hex::encode(nonce)).await?;
        if !(200..300).contains(&reply.status) {
            return Err(refused(reply.status, &reply.body));
        }
        let body = reply.body;
        let att: AttestationResponse =
            serde_json::from_slice(&body).map_err(ClientError::decode("attestation JSON"))?;
        self.verify_attestation(&att, nonce, self.now())
    }

    /// Verifies an attestation answer for `nonce` at `now`: evidence under
    /// the policy, then the binding of the announced key set and the nonce.
    pub fn verify_attestation(
        &self,
        att: &AttestationResponse,
        nonce: &[u8],
        now: UnixTime,
    ) -> Result<VerifiedNode, ClientError> {
        let evidence = B64
            .decode(att.evidence.trim())
            .map_err(ClientError::decode("evidence is not base64"))?;
        let envelope = Envelope {
            version: ENVELOPE_VERSION,
            platform: att.platform,
            evidence,
            certs: att.certs.clone(),
            collateral: att.collateral.clone(),
        };
        envelope
            .check()
            .map_err(ClientError::decode("attestation envelope"))?;
        let expected = Expected {
            nonce: Some(nonce.to_vec()),
            ..Default::default()
        };
        let v = self.verifier.verify(&envelope, &expected, now);
        let verified = v.outcome.map_err(|error| ClientError::Attestation {
            error,
            report: Box::new(v.report.clone()),
        })?;
        let (bound, offset) = match &verified {
            VerifiedEvidence::Nitro(doc) => {
                let d = &doc.document;
                let bound = binding::check_nitro(
                    d.public_key.as_deref(),
                    d.user_data.as_deref(),
                    d.nonce.as_deref(),
                    nonce,
                )?;
                (
                    bound,
                    i128::from(d.timestamp_ms) - i128::from(now.as_millis()),
                )
            }
            // SNP reports carry no time: the node's clock offset is unknown (0).
            VerifiedEvidence::Snp(r) => (
                binding::check_report_data(&r.report.report_data, &att.keyset, nonce)?,
                0,
            ),
            // DCAP quotes carry no time either; they bind like SNP reports.
            VerifiedEvidence::Dcap(q) => (
                binding::check_report_data(q.quote.body.report_data(), &att.keyset, nonce)?,
                0,
            ),
            other => {
                return Err(ClientError::Protocol(format!(
                    "no binding rule for platform {}",
                    other.platform()
                )));
            }
        };
        if bound != att.keyset {
            return Err(attesta_seal::BindingError::KeySetMismatch.into());
        }
        let platform: Platform = verified.platform();
        Ok(VerifiedNode {
            clock_offset_ms: i64::try_from(offset).unwrap_or(0),
            keyset: bound,
            platform,
            evidence: envelope.evidence,
            certs: envelope.certs,
            collateral: envelope.collateral,
            nonce: nonce.to_vec(),
            report: v.report,
            verified_at: now,
        })
    }

    /// Runs `model` on `model_inputs` (the OpenGradient `model_inputs` JSON,
    /// as an object or as a string holding it) through the sealed channel.
    pub async fn infer(
        &self,
        model: &str,
        model_inputs: &str,
    ) -> Result<InferOutcome, ClientError> {
        let inputs = normalise_inputs(model_inputs)?;
        let (node, mut attested) = match self.cached_node() {
            Some(n) => (n, false),
            None => (self.attest().await?, true),
        };
        match self.infer_with(&node, model, &inputs, attested).await {
            // The node restarted with new keys: that is rotation, not an
            // attack, so attest the new key set and try once more. (Anyone
            // can send this refusal; all it can cause is one re-attestation.)
            Err(ClientError::Unauthenticated { code, .. }) if code == "unknown_key_set" => {
                self.forget_node();
                let node = self.attest().await?;
                attested = true;
                self.infer_with(&node, model, &inputs, attested).await
            }
            Err(e) => {
                let refused_decryption = matches!(e, ClientError::Unauthenticated { ref code, .. } if code == "decryption_failed");
                let crypto =
                    matches!(e, ClientError::Answer(ref a) if !matches!(a, AnswerError::Remote(_)));
                if crypto || refused_decryption {
                    // A signature or decryption failure: never trust this key set again without fresh evidence.
                    self.forget_node();
                }
                Err(e)
            }
            ok => ok,
        }
    }

    async fn infer_with(
        &self,
        node: &VerifiedNode,
        model: &str,
        inputs: &RawValue,
        attested: bool,
    ) -> Result<InferOutcome, ClientError> {
        let started = Instant::now();
        let (body, ctx) = self.seal_for(node, model, inputs)?;
        let reply = self.transport.infer(body).await?;
        let (status, sealed, bytes) = (reply.status, reply.sealed, reply.body);
        if !sealed {
            // Never the node's verdict: nothing authenticates a plaintext body.
            let (code, message) = plain_error(&bytes);
            return Err(ClientError::Unauthenticated {
                status,
                code,
                message,
            });
        }
        let answer = ctx.open_verified(&bytes, self.verifier.policy())?;
        let latency = started.elapsed();
        let receipt = *answer.receipt;
        let bundle = node.bundle(receipt.clone());
        Ok(InferOutcome {
            output: answer.output,
            model_hash: answer.model_hash,
            receipt,
            bundle,
            request: ctx.request_bytes().to_vec(),
            latency,
            attested,
        })
    }
}

impl VerifiedNode {
    /// The proof bundle of `receipt`: it with this node's evidence, verifiable offline.
    fn bundle(&self, receipt: SignedReceipt) -> ProofBundle {
        ProofBundle::new(
            self.platform,
            &self.evidence,
            &self.nonce,
            self.keyset,
            receipt,
        )
        .with_envelope_extras(self.certs.clone(), self.collateral.clone())
    }
}

impl Client {
    /// Seals a fresh request for `model` on `inputs` to `node`'s key set (node time, fresh
    /// nonce and request id): the body to send and the context that opens the answer.
    fn seal_for(
        &self,
        node: &VerifiedNode,
        model: &str,
        inputs: &RawValue,
    ) -> Result<(Vec<u8>, attesta_seal::RequestContext), ClientError> {
        let now = node.node_time(self.now());
        let nonce = self.fresh_nonce();
        let request = RequestPlaintext {
            model: model.to_owned(),
            inputs: inputs.to_owned(),
            request_id: hex::encode(nonce.get(..8).unwrap_or(&nonce)),
            issued_at: now.as_secs(),
            nonce: Some(hex::encode(&nonce)),
        };
        request
            .validate()
            .map_err(|e| ClientError::InvalidInput(e.to_string()))?;
        let mut rng = self.config.rng.lock().unwrap_or_else(|p| p.into_inner());
        let mut rng: &mut dyn crate::config::SharedRng = &mut *rng;
        Ok(seal_request(&node.keyset, &request, &mut rng)?)
    }
}

/// The result of one sealed, streamed language-model call.
#[derive(Debug, Clone)]
pub struct CompletionOutcome {
    /// The node's whole OpenAI response (text, usage, finish reason), as signed.
    pub output: serde_json::Value,
    /// The bytes the receipt's `output_digest` covers (a bundle verifier's "output").
    pub summary: Box<RawValue>,
    /// Data chunks received.
    pub chunks: u64,
    /// SHA-256 hex of the model file.
    pub model_hash: String,
    /// The verified receipt.
    pub receipt: SignedReceipt,
    /// Receipt + evidence, verifiable offline.
    pub bundle: ProofBundle,
    /// The request plaintext that was sealed (its digest is in the receipt).
    pub request: Vec<u8>,
    /// Time from sealing to the first data chunk.
    pub first_chunk: Option<Duration>,
    /// Time from sealing to the verified end.
    pub latency: Duration,
}

impl Client {
    /// Sends the OpenAI request `body` (for `path`: `/v1/chat/completions` or
    /// `/v1/completions`) for `model` through the sealed channel and reads the sealed
    /// stream: `on_chunk` sees each OpenAI chunk as it opens (authenticated and in order,
    /// but only the outcome vouches for the whole), and the outcome carries the verified
    /// receipt. The streamed text must add up to the signed final text.
    pub async fn complete(
        &self,
        path: &str,
        model: &str,
        body: &str,
        mut on_chunk: impl FnMut(&serde_json::Value) + Send,
    ) -> Result<CompletionOutcome, ClientError> {
        let inputs: Box<RawValue> = serde_json::from_str(body.trim())
            .map_err(|e| ClientError::InvalidInput(format!("request body: {e}")))?;
        let node = match self.cached_node() {
            Some(n) => n,
            None => self.attest().await?,
        };
        let result = self
            .complete_with(&node, path, model, &inputs, &mut on_chunk)
            .await;
        if let Err(e) = &result {
            let crypto = matches!(e, ClientError::Stream(s) if !matches!(s, attesta_seal::StreamError::Remote(_)))
                || matches!(e, ClientError::Answer(a) if !matches!(a, AnswerError::Remote(_)));
            if crypto {
                self.forget_node();
            }
        }
        result
    }

    async fn complete_with(
        &self,
        node: &VerifiedNode,
        path: &str,
        model: &str,
        inputs: &RawValue,
        on_chunk: &mut (dyn FnMut(&serde_json::Value) + Send),
    ) -> Result<CompletionOutcome, ClientError> {
        use futures::StreamExt;
        let started = Instant::now();
        let (body, ctx) = self.seal_for(node, model, inputs)?;
        let mut reply = self.transport.stream(path, body).await?;
        if reply.media_type != attesta_seal::STREAM_MEDIA_TYPE {
            // A single envelope (the node's verdict) or a plaintext refusal: read it whole
            // (bounded) and answer as `infer` does.
            let mut bytes = Vec::new();
            while let Some(piece) = reply.body.next().await {
                bytes.extend_from_slice(&piece?);
                if bytes.len() > 1 << 20 {
                    return Err(ClientError::Protocol("refusal body over 1 MiB".into()));
                }
            }
            if reply.media_type == attesta_seal::MEDIA_TYPE {
                ctx.open_verified(&bytes, self.verifier.policy())?;
                return Err(ClientError::Protocol(
                    "the node answered a language-model request with a single envelope".into(),
                ));
            }
            let (code, message) = plain_error(&bytes);
            return Err(ClientError::Unauthenticated {
                status: reply.status,
                code,
                message,
            });
        }
        let mut opener = ctx.stream_opener();
        let mut streamed = String::new();
        let mut first_chunk = None;
        while let Some(piece) = reply.body.next().await {
            for chunk in opener.feed(&piece?)? {
                if let attesta_seal::Chunk::Data(data) = chunk {
                    first_chunk.get_or_insert_with(|| started.elapsed());
                    let v: serde_json::Value = serde_json::from_slice(&data)
                        .map_err(ClientError::decode("stream chunk JSON"))?;
                    let text = chunk_text(&v);
                    // The signed final answer repeats the whole text inside one frame, so
                    // streamed text beyond a frame's size can never match it: stop here
                    // rather than buffer whatever a node keeps sending.
                    if streamed.len() + text.len() > attesta_seal::frames::MAX_FRAME_LEN {
                        return Err(ClientError::Protocol(format!(
                            "streamed text over {} bytes, more than the signed answer can hold",
                            attesta_seal::frames::MAX_FRAME_LEN
                        )));
                    }
                    streamed.push_str(text);
                    on_chunk(&v);
                }
            }
        }
        let verified = opener.finish(self.verifier.policy())?;
        let latency = started.elapsed();
        let output: serde_json::Value = serde_json::from_str(verified.output.get())
            .map_err(ClientError::decode("final answer JSON"))?;
        let signed = &output["choices"][0];
        let signed_text = signed["message"]["content"]
            .as_str()
            .or_else(|| signed["text"].as_str())
            .unwrap_or_default();
        if signed_text != streamed {
            return Err(ClientError::Protocol(
                "the streamed text differs from the signed final answer".into(),
            ));
        }
        let receipt = *verified.receipt;
        let bundle = node.bundle(receipt.clone());
        Ok(CompletionOutcome {
            output,
            summary: verified.summary,
            chunks: verified.chunks,
            model_hash: verified.model_hash,
            receipt,
            bundle,
            request: ctx.request_bytes().to_vec(),
            first_chunk,
            latency,
        })
    }
}

/// The text an OpenAI chunk adds (chat delta or completion text).
fn chunk_text(v: &serde_json::Value) -> &str {
    let c = &v["choices"][0];
    c["delta"]["content"]
        .as_str()
        .or_else(|| c["text"].as_str())
        .unwrap_or_default()
}

/// Accepts the `model_inputs` object or a JSON string holding it (OpenGradient's form).
fn normalise_inputs(text: &str) -> Result<Box<RawValue>, ClientError> {
    let bad = |e: serde_json::Error| ClientError::InvalidInput(format!("model_inputs: {e}"));
    let raw: Box<RawValue> = serde_json::from_str(text.trim()).map_err(bad)?;
    if raw.get().starts_with('"') {
        let inner: String = serde_json::from_str(raw.get()).map_err(bad)?;
        return serde_json::from_str(inner.trim()).map_err(bad);
    }
    if !raw.get().starts_with('{') {
        return Err(ClientError::InvalidInput(
            "model_inputs must be a JSON object {\"numbers\": [..], \"strings\": [..]}".into(),
        ));
    }
    Ok(raw)
}

/// `(code, message)` of a plaintext error body (`http_error` when it is not one).
fn plain_error(body: &[u8]) -> (String, String) {
    match serde_json::from_slice::<PlainError>(body) {
        Ok(e) => (e.error.code, e.error.message),
        Err(_) => (
            "http_error".into(),
            String::from_utf8_lossy(body.get(..200).unwrap_or(body)).into_owned(),
        ),
    }
}

fn refused(status: u16, body: &[u8]) -> ClientError {
    let (code, message) = plain_error(body);
    ClientError::Refused {
        status,
        code,
        message,
    }
}
