//! The attested channel through a node's Bittensor axon: the client's exchanges carried
//! by the dendrite as `TeeAttestation`, `TeeInference` and (language-model calls)
//! `TeeCompletion` / `TeeChatCompletion` synapses. The axon is not trusted: the client
//! verifies the evidence and opens the sealed answer or stream exactly as over direct
//! HTTP, and a refusal the axon relays is only ever a plaintext refusal.
//!
//! A synapse is one request and one response, so a sealed stream comes back whole, when
//! the node has finished it: the client reads it as a stream delivered in one piece, and
//! the validator times such an answer by its total only (no first token before the last,
//! no decode rate; see `crate::scoring::llm_time_at_once_secs`).

use std::sync::Arc;

use attesta_bittensor::dendrite::DendriteError;
use attesta_bittensor::ss58::Ss58Error;
use attesta_bittensor::{AccountId, AxonTarget, CompletionReply, Dendrite};
use attesta_client::{ClientError, Reply, StreamFuture, StreamReply, Transport, TransportFuture};
use serde_json::json;

use crate::registry::NodeEntry;

/// A [`Transport`] over one node's axon.
#[derive(Debug)]
pub struct AxonTransport {
    dendrite: Arc<Dendrite>,
    target: AxonTarget,
}

impl AxonTransport {
    /// The transport to `node`'s axon at `node.url`, whose hotkey is `node.hotkey`.
    pub fn new(dendrite: Arc<Dendrite>, node: &NodeEntry) -> Result<Self, Ss58Error> {
        let hotkey = AccountId::from_ss58(node.hotkey.as_deref().unwrap_or_default())?;
        Ok(AxonTransport {
            dendrite,
            target: AxonTarget {
                url: node.url.clone(),
                hotkey,
            },
        })
    }
}

/// A dendrite failure as the client sees it: refusals become plaintext replies (never
/// authenticated), the rest transport errors.
fn reply_or_error(e: DendriteError) -> Result<Reply, ClientError> {
    match e {
        DendriteError::Refused {
            status,
            code,
            message,
        } => Ok(Reply {
            status,
            sealed: false,
            body: json!({"error": {"code": code, "message": message}})
                .to_string()
                .into_bytes(),
        }),
        DendriteError::Timeout(d) => Err(ClientError::Timeout(d)),
        DendriteError::Malformed(m) => Err(ClientError::Protocol(format!("axon: {m}"))),
        other => Err(ClientError::Transport(other.to_string())),
    }
}

impl Transport for AxonTransport {
    fn attestation<'a>(&'a self, nonce_hex: &'a str) -> TransportFuture<'a> {
        Box::pin(async move {
            match self.dendrite.attestation(&self.target, nonce_hex).await {
                Ok(a) => Ok(Reply {
                    status: 200,
                    sealed: false,
                    // The node's answer rebuilt; the client verifies all of it.
                    body: json!({
                        "platform": a.platform, "evidence": a.evidence,
                        "keyset": a.keyset, "nonce": nonce_hex,
                    })
                    .to_string()
                    .into_bytes(),
                }),
                Err(e) => reply_or_error(e),
            }
        })
    }

    fn stream<'a>(&'a self, path: &'a str, envelope: Vec<u8>) -> StreamFuture<'a> {
        Box::pin(async move {
            let (media_type, body) = match self
                .dendrite
                .completion(&self.target, path, &envelope)
                .await
            {
                Ok(CompletionReply::Stream(b)) => (attesta_seal::STREAM_MEDIA_TYPE, b),
                Ok(CompletionReply::Envelope(b)) => (attesta_seal::MEDIA_TYPE, b),
                Err(e) => {
                    // A refusal: the client reads it as the plaintext body it is.
                    let reply = reply_or_error(e)?;
                    return Ok(StreamReply {
                        status: reply.status,
                        media_type: "application/json".into(),
                        body: Box::pin(futures::stream::once(async move { Ok(reply.body) })),
                    });
                }
            };
            Ok(StreamReply {
                status: 200,
                media_type: media_type.into(),
                // The whole stream in one piece: the synapse's answer.
                body: Box::pin(futures::stream::once(async move { Ok(body) })),
            })
        })
    }

    fn infer(&self, envelope: Vec<u8>) -> TransportFuture<'_> {
        Box::pin(async move {
            match self.dendrite.inference(&self.target, &envelope).await {
                Ok(body) => Ok(Reply {
                    status: 200,
                    sealed: true,
                    body,
                }),
                Err(e) => reply_or_error(e),
            }
        })
    }
}
