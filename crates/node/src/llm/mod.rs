//! `POST /v1/completions` and `POST /v1/chat/completions`: OpenAI's API over the
//! node's language models (GGUF files loaded by CID like ONNX models).
//!
//! A request is validated ([`openai`]), its prompt tokenised and sized against the
//! model's context and the node's limit, then generated on the executor's bounded
//! slots, charged its KV-cache bytes against the in-flight memory budget ([`run`]).
//! Answers are OpenAI's JSON or, with `stream`, server-sent events in OpenAI's chunk
//! format ending with `data: [DONE]`. Errors before the first token are HTTP errors in
//! the node's JSON error shape (which carries OpenAI's `type`); a failure after the
//! stream started is sent as an `error` event and ends the stream.

pub mod openai;
pub mod run;
pub mod sealed;
pub mod template_sandbox;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use attesta_content::Cid;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::AppState;
use crate::error::ApiError;
use openai::{ChatRequest, CompletionRequest, Endpoint, GenSpec, Usage};
use run::{Event, TokenLogprob};

/// Default cap on the tokens one request may generate.
pub const DEFAULT_MAX_COMPLETION_TOKENS: usize = 2048;

/// A generation's outcome as the handler receives it: events, or the failure that
/// ended it.
enum Msg {
    Event(Event),
    Failed(ApiError),
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    route(state, headers, body, Endpoint::Completions).await
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    route(state, headers, body, Endpoint::Chat).await
}

/// JSON bodies take the plain route, sealed envelopes the sealed one; anything else is
/// 415 (so a browser page on another origin cannot post a "simple" form here).
async fn route(
    state: Arc<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Response {
    let started = Instant::now();
    state.metrics.inflight().inc();
    let sealed_type = sealed::declared_type(&headers).as_deref() == Some(attesta_seal::MEDIA_TYPE);
    let resp = if sealed_type {
        match body.map_err(crate::infer::body_error) {
            Ok(b) => sealed::serve(state.clone(), b, endpoint).await,
            Err(e) => e.into_response(),
        }
    } else {
        match crate::media::require(&headers, crate::media::JSON) {
            Ok(()) => handle(state.clone(), body, endpoint)
                .await
                .unwrap_or_else(IntoResponse::into_response),
            Err(e) => e.into_response(),
        }
    };
    state.metrics.inflight().dec();
    state.llm.first_token(started.elapsed());
    resp
}

fn parse(body: &[u8], endpoint: Endpoint) -> Result<GenSpec, ApiError> {
    let bad = |e: serde_json::Error| {
        ApiError::bad_request("invalid_request", format!("request body: {e}"))
    };
    match endpoint {
        Endpoint::Completions => serde_json::from_slice::<CompletionRequest>(body)
            .map_err(bad)?
            .into_spec(),
        Endpoint::Chat => serde_json::from_slice::<ChatRequest>(body)
            .map_err(bad)?
            .into_spec(),
    }
}

/// A request ready to generate: its model loaded, its prompt tokenised and its
/// completion budget fixed.
pub(crate) struct Prepared {
    spec: GenSpec,
    /// The model's identity (CID, sha256, engine) for receipts.
    loaded: Arc<crate::cache::LoadedModel>,
    llm: Arc<attesta_llm::LlmModel>,
    prompt: Vec<u32>,
    max_tokens: usize,
}

/// Loads the model of `spec`, draws a seed when the caller gave none, tokenises the prompt
/// and sizes the completion: every refusal that does not need the model to run.
pub(crate) async fn prepare(state: &AppState, mut spec: GenSpec) -> Result<Prepared, ApiError> {
    let cid: Cid = spec.model.parse().map_err(|e| {
        ApiError::bad_request(
            "invalid_model",
            format!("model {:?} is not a CID: {e}", spec.model),
        )
    })?;
    let loaded = state.cache.get(&cid).await?;
    let llm = loaded.llm()?.clone();
    if !spec.seed_given {
        spec.sampling.seed = fresh_u64();
    }
    // The chat template is the model file's code: it renders in the sandbox first.
    let rendered = match &spec.prompt {
        openai::PromptSpec::Messages(messages) => {
            let template = llm
                .template()
                .ok_or_else(|| run::no_chat_template(&spec.model))?;
            Some(
                state
                    .llm
                    .templates
                    .render(template, messages)
                    .await
                    .map_err(render_error)?,
            )
        }
        _ => None,
    };
    // Tokenising a long prompt is CPU work: off the async workers.
    let limit = state.llm.max_completion_tokens;
    tokio::task::spawn_blocking(move || {
        let prompt = match rendered {
            Some(text) => run::chat_tokens(&llm, &text)?,
            None => run::prompt_tokens(&llm, &spec)?,
        };
        let ctx = llm.info().context_length;
        let max_tokens = run::completion_budget(&spec, prompt.len(), ctx, limit)?;
        Ok::<_, ApiError>(Prepared {
            spec,
            loaded,
            llm,
            prompt,
            max_tokens,
        })
    })
    .await
    .map_err(|e| ApiError::internal_from("tokenising task failed", e))?
}

/// A failed template render as the caller sees it: the template's fault is a 400, a
/// worker the node cannot run is its own (500).
fn render_error(e: template_sandbox::RenderError) -> ApiError {
    use template_sandbox::RenderError;
    match e {
        RenderError::Unavailable(_) => ApiError::internal_from("rendering the chat template", e),
        other => ApiError::bad_request("chat_template_failed", format!("chat template: {other}")),
    }
}

/// Starts generating `p` on the executor (charged its KV cache) and returns what every
/// answer repeats and the receiver of its events; dropping the receiver stops it.
fn launch(state: &Arc<AppState>, p: Prepared, endpoint: Endpoint) -> (Meta, mpsc::Receiver<Msg>) {
    let Prepared {
        spec,
        llm,
        prompt,
        max_tokens,
        ..
    } = p;
    let kv_bytes = (prompt.len() + max_tokens) * llm.model().config().kv_bytes_per_token();
    let (tx, rx) = mpsc::channel::<Msg>(64);
    let deadline = Instant::now() + state.executor_timeout();
    let job_state = state.clone();
    let job_spec = spec.clone();
    // Only a node whose (dev) evidence declares the fault ever applies it.
    let perturb = state.fault() == Some(crate::fault::Fault::WrongOutput);
    let meta = Meta {
        id: format!(
            "{}-{:016x}",
            if endpoint == Endpoint::Chat {
                "chatcmpl"
            } else {
                "cmpl"
            },
            fresh_u64()
        ),
        created: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        model: spec.model.clone(),
        endpoint,
        include_usage: spec.include_usage,
        token_ids: spec.return_token_ids.then(|| prompt.clone()),
        prompt_len: prompt.len(),
        stream: spec.stream,
        fingerprint: format!(
            "{}-{}",
            attesta_llm::ENGINE_NAME,
            attesta_llm::ENGINE_VERSION
        ),
    };
    tokio::spawn(async move {
        let (etx, mut erx) = mpsc::channel::<Event>(64);
        let forward = tx.clone();
        // Events pass through as they come; the job's own result follows them.
        let pump = tokio::spawn(async move {
            while let Some(e) = erx.recv().await {
                if forward.send(Msg::Event(e)).await.is_err() {
                    break;
                }
            }
        });
        let result = job_state
            .executor
            .run_charged(kv_bytes, move || {
                run::generate(
                    &llm, &job_spec, &prompt, max_tokens, deadline, &etx, perturb,
                )
            })
            .await;
        let _ = pump.await;
        if let Err(e) = result {
            let _ = tx.send(Msg::Failed(e)).await;
        }
    });
    (meta, rx)
}

async fn handle(
    state: Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status(), "invalid_body", e.body_text()))?;
    let spec = parse(&body, endpoint)?;
    drop(body);
    let prepared = prepare(&state, spec).await?;
    // A declared slow or hanging node (devnet demos): the first token is late, or never comes.
    crate::fault::before_answer(state.fault()).await;
    let (meta, mut rx) = launch(&state, prepared, endpoint);
    let prompt_len = meta.prompt_len;
    // The first message decides between an HTTP error and an answer.
    let first = match rx.recv().await {
        Some(Msg::Failed(e)) => return Err(e),
        Some(Msg::Event(e)) => e,
        None => return Err(ApiError::internal("generation ended without a result")),
    };
    state.llm.tokens("prompt", prompt_len);
    if meta.stream {
        Ok(stream(state, meta, first, rx).into_response())
    } else {
        let mut events = vec![first];
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Event(e) => events.push(e),
                Msg::Failed(e) => return Err(e),
            }
        }
        let body = whole(&meta, &events)?;
        if let Some(Event::Done { usage, .. }) = events.last() {
            state.llm.tokens("completion", usage.completion_tokens);
        }
        Ok(axum::Json(body).into_response())
    }
}

/// What every chunk of one answer repeats.
struct Meta {
    id: String,
    created: u64,
    model: String,
    endpoint: Endpoint,
    include_usage: bool,
    /// The prompt's token ids when the request asked for token ids.
    token_ids: Option<Vec<u32>>,
    /// Prompt tokens.
    prompt_len: usize,
    /// Whether the caller asked for a stream.
    stream: bool,
    fingerprint: String,
}

impl Meta {
    fn envelope(&self, object: &str, choices: Value) -> Value {
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": choices,
        })
    }
}

fn whole(meta: &Meta, events: &[Event]) -> Result<Value, ApiError> {
    let mut text = String::new();
    let mut lps: Vec<&TokenLogprob> = Vec::new();
    let mut ids = Vec::new();
    let mut end = None;
    for e in events {
        match e {
            Event::Token {
                text: t,
                logprob,
                id,
            } => {
                text.push_str(t);
                lps.extend(logprob.as_ref());
                ids.push(*id);
            }
            Event::Done {
                text: t,
                finish,
                usage,
                eog,
            } => {
                text.push_str(t);
                ids.extend(*eog);
                end = Some((*finish, *usage));
            }
        }
    }
    let (finish, usage) =
        end.ok_or_else(|| ApiError::internal("generation ended without its last event"))?;
    let want_logprobs = events.iter().any(|e| {
        matches!(
            e,
            Event::Token {
                logprob: Some(_),
                ..
            }
        )
    });
    let mut body = match meta.endpoint {
        Endpoint::Chat => meta.envelope(
            "chat.completion",
            json!([{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": if want_logprobs { chat_logprobs(&lps) } else { Value::Null },
                "finish_reason": finish.as_str(),
            }]),
        ),
        Endpoint::Completions => meta.envelope(
            "text_completion",
            json!([{
                "index": 0,
                "text": text,
                "logprobs": if want_logprobs { completion_logprobs(&lps, 0) } else { Value::Null },
                "finish_reason": finish.as_str(),
            }]),
        ),
    };
    body["usage"] = usage_json(usage);
    if let Some(prompt_ids) = &meta.token_ids {
        body["prompt_token_ids"] = json!(prompt_ids);
        body["choices"][0]["token_ids"] = json!(ids);
    }
    Ok(body)
}

fn usage_json(u: Usage) -> Value {
    serde_json::to_value(u).unwrap_or(Value::Null)
}

fn chat_logprobs(lps: &[&TokenLogprob]) -> Value {
    let content: Vec<Value> = lps
        .iter()
        .map(|l| {
            json!({
                "token": l.token,
                "logprob": l.logprob,
                "bytes": l.bytes,
                "top_logprobs": l.top.iter().map(|(t, b, lp)| json!({"token": t, "logprob": lp, "bytes": b})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "content": content })
}

fn completion_logprobs(lps: &[&TokenLogprob], offset: usize) -> Value {
    let mut text_offset = Vec::with_capacity(lps.len());
    let mut at = offset;
    for l in lps {
        text_offset.push(at);
        at += l.token.len();
    }
    json!({
        "tokens": lps.iter().map(|l| l.token.clone()).collect::<Vec<_>>(),
        "token_logprobs": lps.iter().map(|l| l.logprob).collect::<Vec<_>>(),
        "top_logprobs": lps.iter().map(|l| {
            l.top.iter().map(|(t, _, lp)| (t.clone(), json!(lp))).collect::<serde_json::Map<_, _>>()
        }).collect::<Vec<_>>(),
        "text_offset": text_offset,
    })
}

/// The answer as server-sent events.
fn stream(
    state: Arc<AppState>,
    meta: Meta,
    first: Event,
    rx: mpsc::Receiver<Msg>,
) -> Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>> {
    let meta = Arc::new(meta);
    let mut sent_role = false;
    let rest =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let all = futures::stream::once(async move { Msg::Event(first) }).chain(rest);
    let chunks = all.flat_map(move |msg| {
        let mut out: Vec<SseEvent> = Vec::new();
        match msg {
            Msg::Failed(e) => {
                out.push(
                    SseEvent::default()
                        .event("error")
                        .data(json!({"error": {"code": e.code, "message": e.message}}).to_string()),
                );
            }
            Msg::Event(Event::Token { text, logprob, id }) => {
                let mut chunk = token_chunk(&meta, &mut sent_role, &text, logprob.as_ref(), None);
                if meta.token_ids.is_some() {
                    chunk["choices"][0]["token_ids"] = json!([id]);
                }
                out.push(data(chunk));
            }
            Msg::Event(Event::Done {
                text,
                finish,
                usage,
                eog,
            }) => {
                state.llm.tokens("completion", usage.completion_tokens);
                let mut last =
                    token_chunk(&meta, &mut sent_role, &text, None, Some(finish.as_str()));
                if meta.token_ids.is_some() {
                    last["choices"][0]["token_ids"] = json!(eog.into_iter().collect::<Vec<_>>());
                }
                out.push(data(last));
                if meta.include_usage {
                    let mut u = meta.envelope(object_of(&meta), json!([]));
                    u["usage"] = usage_json(usage);
                    out.push(data(u));
                }
                out.push(SseEvent::default().data("[DONE]"));
            }
        }
        futures::stream::iter(out.into_iter().map(Ok))
    });
    Sse::new(chunks)
        .keep_alive(axum::response::sse::KeepAlive::new().interval(Duration::from_secs(15)))
}

fn object_of(meta: &Meta) -> &'static str {
    match meta.endpoint {
        Endpoint::Chat => "chat.completion.chunk",
        Endpoint::Completions => "text_completion",
    }
}

fn data(v: Value) -> SseEvent {
    SseEvent::default().data(v.to_string())
}

fn token_chunk(
    meta: &Meta,
    sent_role: &mut bool,
    text: &str,
    logprob: Option<&TokenLogprob>,
    finish: Option<&str>,
) -> Value {
    let choice = match meta.endpoint {
        Endpoint::Chat => {
            let mut delta = serde_json::Map::new();
            if !*sent_role {
                delta.insert("role".into(), json!("assistant"));
                *sent_role = true;
            }
            if !text.is_empty() || finish.is_none() {
                delta.insert("content".into(), json!(text));
            }
            json!({
                "index": 0,
                "delta": delta,
                "logprobs": logprob.map_or(Value::Null, |l| chat_logprobs(&[l])),
                "finish_reason": finish,
            })
        }
        Endpoint::Completions => json!({
            "index": 0,
            "text": text,
            "logprobs": logprob.map_or(Value::Null, |l| completion_logprobs(&[l], 0)),
            "finish_reason": finish,
        }),
    };
    meta.envelope(object_of(meta), json!([choice]))
}

/// A fresh random u64 from the OS (sampler seeds the caller did not give, answer ids).
fn fresh_u64() -> u64 {
    use rand_core::Rng;
    rand_core::UnwrapErr(getrandom::SysRng).next_u64()
}

/// Settings and metrics of the language-model routes.
pub struct LlmState {
    /// Most tokens one request may generate.
    pub max_completion_tokens: usize,
    /// Where chat templates (untrusted code from the model file) render.
    templates: template_sandbox::TemplateSandbox,
    tokens: prometheus_client::metrics::family::Family<
        KindLabel,
        prometheus_client::metrics::counter::Counter,
    >,
    first_token: prometheus_client::metrics::histogram::Histogram,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

impl LlmState {
    /// Registers the metrics in `metrics`; chat templates render under `templates`.
    pub fn new(
        max_completion_tokens: usize,
        templates: template_sandbox::RenderIsolation,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        let tokens = prometheus_client::metrics::family::Family::default();
        let first_token = prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 14),
        );
        metrics.with_registry(|r| {
            r.register(
                "llm_tokens",
                "Language-model tokens by kind (prompt, completion)",
                tokens.clone(),
            );
            r.register(
                "llm_first_token_seconds",
                "Time from request to the answer's head: the first token, or the refusal",
                first_token.clone(),
            );
        });
        LlmState {
            max_completion_tokens,
            templates: template_sandbox::TemplateSandbox::new(
                templates,
                template_sandbox::DEFAULT_RENDER_TIMEOUT,
            ),
            tokens,
            first_token,
        }
    }

    fn tokens(&self, kind: &'static str, n: usize) {
        self.tokens
            .get_or_create(&KindLabel { kind })
            .inc_by(n as u64);
    }

    fn first_token(&self, d: Duration) {
        self.first_token.observe(d.as_secs_f64());
    }
}
