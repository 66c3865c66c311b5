//! The production [`NodeChannel`]: `attesta-client` (fresh-nonce attestation
//! under the policy, HPKE-sealed request, sealed answer, receipt checked
//! against the attested key set and the request/output digests), for ONNX
//! challenges (`/v1/infer`) and language-model challenges (the sealed stream of
//! `/v1/completions`) alike, directly or through the node's axon.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attesta_client::{Client, ClientConfig, ClientError};
use attesta_evidence::{Policy, Report, Status, StepId, UnixTime};
use futures::future::BoxFuture;

pub use attesta_client::{RngHandle, system_rng};

use attesta_bittensor::Dendrite;

use crate::axon_transport::AxonTransport;
use crate::challenge::Challenge;
use crate::llm_challenge::{ChunkCollector, LlmChallenge, StreamedAnswer, check_binding};
use crate::probe::{Answer, Attested, ChannelFactory, NodeChannel, ProbeError};
use crate::registry::{NodeEntry, Via};
use crate::round::Clock;
use crate::status::MEASUREMENT_MISMATCH;

/// Makes one [`Client`] per node (kept across rounds, so connections and the
/// verified certificate chains are reused) with the validator's policy,
/// clock and RNG.
pub struct ClientFactory {
    policy: Policy,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    rng: RngHandle,
    /// Signs calls to nodes reached through their axons (`via = "axon"`).
    dendrite: Option<Arc<Dendrite>>,
    clients: Mutex<HashMap<(String, String, Via), Arc<ClientChannel>>>,
}

impl std::fmt::Debug for ClientFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientFactory")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ClientFactory {
    /// A factory for clients verifying under `policy`, each HTTP request
    /// bounded by `timeout`, nonces and HPKE keys drawn from `rng`.
    pub fn new(policy: Policy, timeout: Duration, clock: Arc<dyn Clock>, rng: RngHandle) -> Self {
        ClientFactory {
            policy,
            timeout,
            clock,
            rng,
            dendrite: None,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Reaches `via = "axon"` nodes through their axons with this dendrite (without one,
    /// such nodes fail with a transport error).
    pub fn with_dendrite(mut self, dendrite: Arc<Dendrite>) -> Self {
        self.dendrite = Some(dendrite);
        self
    }
}

impl ChannelFactory for ClientFactory {
    fn channel(&self, node: &NodeEntry) -> Result<Arc<dyn NodeChannel>, ProbeError> {
        let key = (node.id.clone(), node.url.clone(), node.via);
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = clients.get(&key) {
            return Ok(Arc::clone(c) as Arc<dyn NodeChannel>);
        }
        let clock = Arc::clone(&self.clock);
        let config = ClientConfig {
            policy: self.policy.clone(),
            // Every round re-attests explicitly; the cache only spans one node check.
            key_cache_ttl: self.timeout.saturating_mul(2),
            timeout: self.timeout,
            nonce_len: 32,
            clock: Arc::new(move || UnixTime::from_system(clock.now())),
            rng: Arc::clone(&self.rng),
        };
        let client = match node.via {
            Via::Http => Client::new(&node.url, config),
            Via::Axon => {
                let dendrite = self.dendrite.clone().ok_or_else(|| {
                    ProbeError::Transport(format!(
                        "node `{}` is reached via its axon, but the validator has no hotkey ([validator.bittensor])",
                        node.id
                    ))
                })?;
                let transport = AxonTransport::new(dendrite, node)
                    .map_err(|e| ProbeError::Transport(e.to_string()))?;
                Client::with_transport(Arc::new(transport), config)
            }
        }
        .map_err(|e| ProbeError::Transport(e.to_string()))?;
        let ch = Arc::new(ClientChannel {
            client,
            clock: Arc::clone(&self.clock),
            // A synapse is one request and one response: an axon hands over the whole
            // sealed stream at once.
            at_once: node.via == Via::Axon,
        });
        clients.insert(key, Arc::clone(&ch));
        Ok(ch as Arc<dyn NodeChannel>)
    }
}

/// One node's client.
pub struct ClientChannel {
    client: Client,
    /// Times language-model answers.
    clock: Arc<dyn Clock>,
    /// Whether the transport delivers a sealed stream in one piece (an axon).
    at_once: bool,
}

impl std::fmt::Debug for ClientChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientChannel")
            .field("client", &self.client)
            .field("at_once", &self.at_once)
            .finish_non_exhaustive()
    }
}

fn measurement_of(report: &Report) -> Option<String> {
    let step = report.step(StepId::Measurements)?;
    Some(match step.status {
        Status::Pass => step.detail.clone(),
        Status::Fail => format!("{MEASUREMENT_MISMATCH}: {}", step.detail),
        Status::Skipped => "not checked".into(),
    })
}

fn probe_error(e: ClientError) -> ProbeError {
    use attesta_seal::StreamError;
    use attesta_seal::channel::AnswerError;
    match e {
        ClientError::Transport(m) => ProbeError::Transport(m),
        ClientError::Http(e) => ProbeError::Transport(e.to_string()),
        ClientError::Timeout(d) => ProbeError::Timeout(format!("request timed out after {d:?}")),
        ClientError::Attestation { error, report } => ProbeError::Attestation {
            reason: format!("{} ({})", error, error.code()),
            measurement: measurement_of(&report),
            platform: report.platform.map(|p| p.to_string()),
        },
        ClientError::Binding(b) => ProbeError::Attestation {
            reason: format!("key binding: {b}"),
            measurement: None,
            platform: None,
        },
        // An answer that does not authenticate is as bad as a forged receipt.
        ClientError::Answer(AnswerError::Receipt(r)) => ProbeError::Receipt(r.to_string()),
        ClientError::Answer(AnswerError::Envelope(env)) => {
            ProbeError::Receipt(format!("answer did not open: {env}"))
        }
        // The node's own (authenticated) error, or a stream cut short: a failed answer
        // that proves nothing false.
        ClientError::Stream(
            e @ (StreamError::Remote(_) | StreamError::Truncated { .. } | StreamError::Frame(_)),
        ) => ProbeError::Protocol(format!("stream: {e} ({})", e.code())),
        // A chunk that does not open, one left out, repeated or moved, a summary or receipt
        // that does not match: the sealed answer was tampered with.
        ClientError::Stream(e) => ProbeError::Receipt(format!("stream: {e} ({})", e.code())),
        // Includes plaintext refusals (`Unauthenticated`): a failed attempt, never the node's verdict.
        other => ProbeError::Protocol(format!("{other} ({})", other.code())),
    }
}

impl NodeChannel for ClientChannel {
    fn attest(&self) -> BoxFuture<'_, Result<Attested, ProbeError>> {
        Box::pin(async move {
            self.client.forget_node();
            let node = self.client.attest().await.map_err(probe_error)?;
            Ok(Attested {
                nonce: node.nonce.clone(),
                platform: node.platform.to_string(),
                measurement: measurement_of(&node.report).unwrap_or_else(|| "not checked".into()),
            })
        })
    }

    fn infer<'a>(&'a self, challenge: &'a Challenge) -> BoxFuture<'a, Result<Answer, ProbeError>> {
        Box::pin(async move {
            let out = self
                .client
                .infer(&challenge.model_cid, &challenge.inputs.to_string())
                .await
                .map_err(probe_error)?;
            let output = serde_json::from_str(out.output.get())
                .map_err(|e| ProbeError::Protocol(format!("output is not JSON: {e}")))?;
            let bundle = bundle_json(&out.bundle)?;
            Ok(Answer {
                output,
                receipt_model_cid: out.receipt.receipt.model_cid.clone(),
                receipt_model_sha256: hex::encode(out.receipt.receipt.model_sha256),
                receipt_engine: out.receipt.receipt.engine.clone(),
                latency: out.latency,
                bundle,
            })
        })
    }

    fn complete<'a>(
        &'a self,
        challenge: &'a LlmChallenge,
    ) -> BoxFuture<'a, Result<StreamedAnswer, ProbeError>> {
        Box::pin(async move {
            let body = challenge.request_body().to_string();
            let clock = self.clock.as_ref();
            let t0 = clock.now();
            let mut chunks = ChunkCollector::new(challenge, clock, t0, self.at_once);
            let out = self
                .client
                .complete("/v1/completions", challenge.model_cid(), &body, |chunk| {
                    chunks.push(chunk)
                })
                .await
                .map_err(probe_error)?;
            let total = clock.now().duration_since(t0).unwrap_or_default();
            let mut ans = chunks.finish(total)?;
            check_binding(challenge, &out, &ans)?;
            ans.bundle = Some(bundle_json(&out.bundle)?);
            Ok(ans)
        })
    }
}

/// A proof bundle as the JSON text the state keeps.
fn bundle_json(bundle: &attesta_seal::ProofBundle) -> Result<String, ProbeError> {
    let json = bundle
        .to_json()
        .map_err(|e| ProbeError::Protocol(format!("bundle does not serialise: {e}")))?;
    String::from_utf8(json).map_err(|e| ProbeError::Protocol(format!("bundle is not UTF-8: {e}")))
}
