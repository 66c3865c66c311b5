//! The sealed path of the language-model routes: an HPKE-sealed OpenAI request in
//! (`Content-Type: application/vnd.attesta.sealed`, the sealed plaintext's `inputs` being
//! the OpenAI request body), a sealed stream out (`application/vnd.attesta.sealed-stream`).
//!
//! Every answer is a stream, whatever the request's `stream`: each data chunk is one OpenAI
//! chunk object (what the plain route sends as an SSE `data:` line, token ids included when
//! the body asks `return_token_ids`, the closing chunk with the finish reason and the usage
//! chunk included; only `[DONE]` is left out, the last chunk taking its place),
//! the last chunk carries the whole OpenAI response (text, usage, finish reason) under a
//! receipt signed over the request, the transcript of the chunks and that response. A
//! relay sees sizes and timing only. Refusals before the request is accepted are plain
//! JSON, as on `/v1/infer`; the node's verdicts before the first token are single sealed
//! envelopes; a failure after it is a sealed error chunk that ends the stream.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;

use super::openai::Endpoint;
use super::run::Event;
use super::{Meta, Msg, launch, object_of, parse, prepare, token_chunk, usage_json, whole};
use crate::AppState;
use crate::attested::{attestation, lock_rng, plain_rejection, sealed_verdict};
use crate::error::ApiError;

/// Serves one sealed LLM request.
pub async fn serve(state: Arc<AppState>, body: Bytes, endpoint: Endpoint) -> Response {
    let att = match attestation(&state) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let opened = match att.keys.open_request(&body, &att.replay, (att.clock)()) {
        Ok(o) => o,
        Err(rejected) => return plain_rejection(rejected),
    };
    // Refusals run before the request is admitted, so they never take replay memory.
    let checked = async {
        let mut spec = parse(opened.request.inputs.get().as_bytes(), endpoint)?;
        if spec.model != opened.request.model {
            return Err(ApiError::bad_request(
                "invalid_request",
                "the sealed request's model and its body's model differ",
            ));
        }
        // The answer is always a stream of sealed chunks.
        spec.stream = true;
        prepare(&state, spec).await
    }
    .await;
    let prepared = match checked {
        Ok(p) => p,
        Err(e) => {
            let body = opened.seal_error(e.code, &e.message, &mut *lock_rng(&att.rng));
            return sealed_verdict(e, body);
        }
    };
    let accepted = match opened.admit(&att.replay, (att.clock)()) {
        Ok(a) => a,
        Err(rejected) => return plain_rejection(rejected),
    };
    let responder = accepted.responder;
    let loaded = prepared.loaded.clone();
    // A declared slow or hanging node (devnet demos): the first chunk is late, or never comes.
    crate::fault::before_answer(state.fault()).await;
    let (meta, mut rx) = launch(&state, prepared, endpoint);
    let first = match rx.recv().await {
        Some(Msg::Event(e)) => e,
        Some(Msg::Failed(e)) => {
            let body = responder.seal_error(e.code, &e.message, &mut *lock_rng(&att.rng));
            return sealed_verdict(e, body);
        }
        None => {
            let e = ApiError::internal("generation ended without a result");
            let body = responder.seal_error(e.code, &e.message, &mut *lock_rng(&att.rng));
            return sealed_verdict(e, body);
        }
    };
    let (sealer, header_frame) = match responder.start_stream(&mut *lock_rng(&att.rng)) {
        Ok(s) => s,
        Err(e) => return ApiError::internal_from("starting a sealed stream", e).into_response(),
    };
    state.llm.tokens("prompt", meta.prompt_len);
    let frames = Frames {
        state: state.clone(),
        meta,
        sealer: Some(sealer),
        events: Vec::new(),
        sent_role: false,
        loaded,
    };
    let rest =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let msgs = futures::stream::once(async move { Msg::Event(first) }).chain(rest);
    let body = futures::stream::once(async move { Bytes::from(header_frame) })
        .chain(msgs.scan(frames, |f, msg| {
            let out = f.frame(msg);
            async move { out }
        }))
        .map(Ok::<_, Infallible>);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, attesta_seal::STREAM_MEDIA_TYPE)],
        Body::from_stream(body),
    )
        .into_response()
}

/// Turns generation messages into sealed frames; ends after the last chunk.
struct Frames {
    state: Arc<AppState>,
    meta: Meta,
    /// Taken by the last chunk: nothing can be sealed after it.
    sealer: Option<attesta_seal::StreamSealer>,
    events: Vec<Event>,
    sent_role: bool,
    loaded: Arc<crate::cache::LoadedModel>,
}

impl Frames {
    /// The frame for `msg`; None once the stream has ended (the body then ends).
    fn frame(&mut self, msg: Msg) -> Option<Bytes> {
        let sealer = self.sealer.as_mut()?;
        match msg {
            Msg::Event(e @ Event::Token { .. }) => {
                let Event::Token { text, logprob, id } = &e else {
                    return None;
                };
                let mut chunk = token_chunk(
                    &self.meta,
                    &mut self.sent_role,
                    text,
                    logprob.as_ref(),
                    None,
                );
                if self.meta.token_ids.is_some() {
                    chunk["choices"][0]["token_ids"] = json!([id]);
                }
                self.events.push(e);
                match sealer.seal_chunk(chunk.to_string().as_bytes()) {
                    Ok(frame) => Some(Bytes::from(frame)),
                    Err(err) => self.fail(ApiError::internal_from("sealing a chunk", err)),
                }
            }
            Msg::Event(done @ Event::Done { .. }) => {
                let Event::Done {
                    text,
                    finish,
                    usage,
                    eog,
                } = &done
                else {
                    return None;
                };
                self.state.llm.tokens("completion", usage.completion_tokens);
                // The same closing chunks as the plain route's stream: the text held back
                // until the end (an incomplete UTF-8 sequence), the finish reason and the
                // end-of-generation token's id, then usage when asked for. Without them the
                // streamed text could fall short of the signed text, and a caller counting
                // token ids would miss the end-of-generation one.
                let mut frames = Vec::new();
                let mut last = token_chunk(
                    &self.meta,
                    &mut self.sent_role,
                    text,
                    None,
                    Some(finish.as_str()),
                );
                if self.meta.token_ids.is_some() {
                    last["choices"][0]["token_ids"] = json!(eog.iter().collect::<Vec<_>>());
                }
                let mut closing = vec![last];
                if self.meta.include_usage {
                    let mut u = self.meta.envelope(object_of(&self.meta), json!([]));
                    u["usage"] = usage_json(*usage);
                    closing.push(u);
                }
                for chunk in closing {
                    match sealer.seal_chunk(chunk.to_string().as_bytes()) {
                        Ok(frame) => frames.extend_from_slice(&frame),
                        Err(err) => {
                            return self.fail(ApiError::internal_from("sealing a chunk", err));
                        }
                    }
                }
                self.events.push(done);
                let output = match whole(&self.meta, &self.events) {
                    Ok(v) => v.to_string(),
                    Err(e) => return self.fail(e),
                };
                let att = self.state.attestation.as_ref()?;
                let fault = self.state.fault().map(|f| f.to_string());
                let out = attesta_seal::SealedOutput {
                    output_json: output.as_bytes(),
                    model_sha256: self.loaded.sha256,
                    engine: self.loaded.engine,
                    engine_version: self.loaded.engine_version,
                    fault: fault.as_deref(),
                };
                let sealer = self.sealer.take()?;
                match sealer.finish(&att.keys, &out, (att.clock)()) {
                    Ok(frame) => {
                        frames.extend_from_slice(&frame);
                        Some(Bytes::from(frames))
                    }
                    Err(failure) => {
                        tracing::error!(error = %failure.error, "sealing the last chunk failed");
                        failure.sealed.ok().map(|f| {
                            frames.extend_from_slice(&f);
                            Bytes::from(frames)
                        })
                    }
                }
            }
            Msg::Failed(e) => self.fail(e),
        }
    }

    /// Ends the stream with a sealed error chunk.
    fn fail(&mut self, e: ApiError) -> Option<Bytes> {
        let sealer = self.sealer.take()?;
        match sealer.fail(e.code, &e.message) {
            Ok(frame) => Some(Bytes::from(frame)),
            Err(err) => {
                tracing::error!(error = %err, "sealing an error chunk failed");
                None
            }
        }
    }
}

/// The media type a request declared, lowercased without parameters.
pub fn declared_type(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(attesta_seal::media_type)
}
