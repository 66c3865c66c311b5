//! OpenAI's own routes on the gateway, plaintext-compatible (docs/PROTOCOL.md, "Gateway"):
//! `POST /v1/chat/completions`, `POST /v1/completions` and `GET /v1/models`, so OpenAI's
//! clients work unchanged with the gateway as their base URL.
//!
//! A request names a language model by CID; it goes to a verified node the validator's
//! rounds saw serve that model, through the gateway's attesting client (sealed to the
//! node's attested keys, its receipt verified), and the answer carries an `attesta` field
//! (node, model hash, proof bundle). A stream forwards each chunk as it opens, then ends
//! with a `choices: []` chunk carrying `attesta` and `data: [DONE]`; if the answer fails
//! verification after chunks went out, the stream ends with an error event instead, so a
//! client never sees a clean end on an unverified answer. Errors are in OpenAI's shape.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use attesta_client::{Client, ClientError, CompletionOutcome};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::limits::Admitted;
use super::pick::{Pick, verified};
use super::{Gateway, GwError, body_error, count};
use crate::leaderboard::Board;

/// Which OpenAI route a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Chat,
    Completions,
}

impl Endpoint {
    /// The node's route for it.
    fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
        }
    }

    /// The metrics label.
    fn label(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat_completions",
            Endpoint::Completions => "completions",
        }
    }

    /// The `object` of its stream chunks (OpenAI's names).
    fn chunk_object(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Completions => "text_completion",
        }
    }
}

/// An OpenAI request as the gateway needs it: the model it is routed by, whether the
/// user wants a stream, and the body, sealed to the node unchanged.
#[derive(Debug)]
struct OpenAiRequest {
    endpoint: Endpoint,
    model: String,
    stream: bool,
    body: String,
}

/// Reads the fields the gateway routes by; everything else is the node's to check (its
/// refusals come back authenticated and are passed on).
fn parse(body: &[u8], endpoint: Endpoint) -> Result<OpenAiRequest, GwError> {
    let invalid = |m: String| GwError::new(400, "invalid_request", m);
    let text = std::str::from_utf8(body).map_err(|e| invalid(format!("body: {e}")))?;
    let v: Value =
        serde_json::from_str(text).map_err(|e| invalid(format!("body is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| invalid("body must be a JSON object".into()))?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("`model` (the model's CID) is required".into()))?;
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("`stream` must be a boolean".into())),
    };
    Ok(OpenAiRequest {
        endpoint,
        model: model.to_owned(),
        stream,
        body: text.to_owned(),
    })
}

/// `type` of an OpenAI error for an HTTP status.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// OpenAI's error object `{"error": {"message", "type", "code", "param"}}` for `e`.
fn error_json(e: &GwError) -> Value {
    let param = match e.code.as_ref() {
        "model_not_found" | "invalid_model" | "model_not_llm" | "no_chat_template" => {
            Value::from("model")
        }
        "max_tokens_too_large" => Value::from("max_tokens"),
        _ => Value::Null,
    };
    json!({"error": {
        "message": e.message,
        "type": error_type(e.status),
        "code": e.code,
        "param": param,
    }})
}

/// `e` as an HTTP answer in OpenAI's error shape (`Retry-After` kept).
fn error_response(e: GwError) -> Response {
    e.respond_with(error_json(&e).to_string().into_bytes())
}

/// `POST /v1/chat/completions`.
pub(super) async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    serve(gw, peer, headers, body, Endpoint::Chat).await
}

/// `POST /v1/completions`.
pub(super) async fn completions(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    serve(gw, peer, headers, body, Endpoint::Completions).await
}

/// `GET /v1/models`: the language models verified nodes serve, in OpenAI's list shape.
pub(super) async fn models(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let resp = match gw.check_client(&headers, peer) {
        Ok(_) => axum::Json(model_list(&gw.parts_status.board())).into_response(),
        Err(e) => error_response(e),
    };
    count(&gw, "models", &resp);
    resp
}

/// The language models of verified nodes, each once, with its context length.
fn model_list(board: &Board) -> Value {
    let mut served = BTreeMap::new();
    for m in board
        .nodes
        .iter()
        .filter(|n| verified(n))
        .flat_map(|n| &n.llms)
    {
        served.entry(m.cid.as_str()).or_insert(m.context_length);
    }
    let data: Vec<Value> = served
        .into_iter()
        .map(|(id, context_length)| {
            json!({
                "id": id,
                "object": "model",
                "created": 0,
                "owned_by": "attesta",
                "context_length": context_length,
            })
        })
        .collect();
    json!({"object": "list", "data": data})
}

async fn serve(
    gw: Arc<Gateway>,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Response {
    let resp = match body {
        Ok(body) => answer(&gw, peer, &headers, &body, endpoint, complete_on).await,
        Err(e) => Err(body_error(&e)),
    }
    .unwrap_or_else(error_response);
    count(&gw, endpoint.label(), &resp);
    resp
}

/// One sealed, verified language-model call on a node: [`complete_on`] in service, a
/// stand-in in tests (a fn pointer: `Copy`, `Send`, nothing captured).
type Completer = fn(Arc<Client>, Arc<OpenAiRequest>, ChunkSink) -> BoxFuture<'static, CallResult>;

/// What one call on a node gives.
type CallResult = Result<CompletionOutcome, ClientError>;

/// `Client::complete`: attests the node (cached), seals, streams, verifies.
fn complete_on(
    client: Arc<Client>,
    req: Arc<OpenAiRequest>,
    sink: ChunkSink,
) -> BoxFuture<'static, CallResult> {
    Box::pin(async move {
        let path = req.endpoint.path();
        client
            .complete(path, &req.model, &req.body, |c| sink.send(c))
            .await
    })
}

async fn answer(
    gw: &Arc<Gateway>,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &[u8],
    endpoint: Endpoint,
    complete: Completer,
) -> Result<Response, GwError> {
    gw.check_client(headers, peer)?;
    let req = Arc::new(parse(body, endpoint)?);
    if !gw.llm_served(&req.model) {
        return Err(GwError::new(
            404,
            "model_not_found",
            format!(
                "no verified node serves the model `{}` (GET /v1/models lists those that do)",
                req.model
            ),
        ));
    }
    let slot = gw.limiter.admit().await.map_err(GwError::refused)?;
    if req.stream {
        return streamed(Arc::clone(gw), req, slot, complete).await;
    }
    let sink = ChunkSink::discard();
    let (pick, outcome) = gw
        .with_failover(Some(&req.model), &|| false, |client| {
            complete(client, Arc::clone(&req), sink.clone())
        })
        .await?;
    drop(slot);
    let mut whole = outcome.output.clone();
    let Some(obj) = whole.as_object_mut() else {
        return Err(GwError::new(
            502,
            "bad_output",
            "the node's signed answer is not a JSON object",
        ));
    };
    obj.insert("attesta".into(), attesta_field(&pick, &outcome)?);
    Ok(axum::Json(whole).into_response())
}

impl Gateway {
    /// Whether a verified node serves the language model `cid` (cooling down or not: that
    /// is "try later", not "no such model").
    fn llm_served(&self, cid: &str) -> bool {
        self.parts_status
            .board()
            .nodes
            .iter()
            .any(|n| verified(n) && n.serves_llm(cid))
    }
}

/// What the answering task passes to the response body, in order.
#[derive(Debug)]
enum Event {
    /// One OpenAI chunk as it opened.
    Chunk(Value),
    /// The verified end: the `choices: []` chunk with `attesta`.
    End(Value),
    /// The request failed (before any chunk: the HTTP answer; after: an error event).
    Failed(GwError),
}

/// Where a call's chunks go: the user's stream, or nowhere for a whole answer. Remembers
/// whether any went out (then the request is committed to that node).
#[derive(Clone)]
struct ChunkSink {
    tx: Option<mpsc::UnboundedSender<Event>>,
    sent: Arc<AtomicBool>,
}

impl ChunkSink {
    fn discard() -> Self {
        ChunkSink {
            tx: None,
            sent: Arc::new(AtomicBool::new(false)),
        }
    }

    fn send(&self, chunk: &Value) {
        if let Some(tx) = &self.tx {
            self.sent.store(true, Ordering::SeqCst);
            // A closed channel means the user left; the task notices and stops.
            let _ = tx.send(Event::Chunk(chunk.clone()));
        }
    }
}

/// Answers `req` as server-sent events. The work runs in its own task that owns the
/// admission `slot` until the stream ends; the HTTP status waits for the first event, so
/// a failure before any chunk is still a plain OpenAI error with its status.
async fn streamed(
    gw: Arc<Gateway>,
    req: Arc<OpenAiRequest>,
    slot: Admitted,
    complete: Completer,
) -> Result<Response, GwError> {
    // Unbounded: the sink is called from inside the client's (synchronous) chunk callback;
    // the node's answer is itself bounded (its token limit, the envelope cap).
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sink = ChunkSink {
        tx: Some(tx.clone()),
        sent: Arc::new(AtomicBool::new(false)),
    };
    tokio::spawn(async move {
        let _slot = slot;
        let sent = Arc::clone(&sink.sent);
        let committed = move || sent.load(Ordering::SeqCst);
        let run = gw.with_failover(Some(&req.model), &committed, |client| {
            complete(client, Arc::clone(&req), sink.clone())
        });
        // A user who goes away stops the node's work (its connection is dropped).
        let result = tokio::select! {
            r = run => r,
            () = tx.closed() => return,
        };
        let event = match result.and_then(|(pick, outcome)| final_chunk(&req, &pick, &outcome)) {
            Ok(end) => Event::End(end),
            Err(e) => Event::Failed(e),
        };
        let _ = tx.send(event);
    });
    let first = match rx.recv().await {
        Some(Event::Failed(e)) => return Err(e),
        Some(first) => first,
        None => {
            return Err(GwError::new(
                500,
                "internal",
                "the answering task ended without an answer",
            ));
        }
    };
    let rest =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    let events = futures::stream::once(async move { first })
        .chain(rest)
        .map(|e| Ok::<Bytes, std::convert::Infallible>(sse(e)));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(events),
    )
        .into_response())
}

use futures::StreamExt as _;

/// One event's bytes on the wire.
fn sse(e: Event) -> Bytes {
    Bytes::from(match e {
        Event::Chunk(v) => format!("data: {v}\n\n"),
        Event::End(v) => format!("data: {v}\n\ndata: [DONE]\n\n"),
        Event::Failed(e) => format!("data: {}\n\n", error_json(&e)),
    })
}

/// The stream's last chunk: no choices (as OpenAI's usage chunk), the `attesta` field.
fn final_chunk(
    req: &OpenAiRequest,
    pick: &Pick,
    outcome: &CompletionOutcome,
) -> Result<Value, GwError> {
    let o = &outcome.output;
    Ok(json!({
        "id": o["id"],
        "object": req.endpoint.chunk_object(),
        "created": o["created"],
        "model": o["model"],
        "choices": [],
        "attesta": attesta_field(pick, outcome)?,
    }))
}

/// `attesta: {node, model_hash, proof, output}`: who answered, the model file's hash, the
/// proof bundle (`attesta verify receipt`), and the exact JSON text the receipt's output
/// digest covers (`--output`).
fn attesta_field(pick: &Pick, outcome: &CompletionOutcome) -> Result<Value, GwError> {
    let proof = serde_json::to_value(&outcome.bundle)
        .map_err(|e| GwError::new(500, "internal", format!("proof bundle: {e}")))?;
    Ok(json!({
        "node": pick.id,
        "model_hash": outcome.model_hash,
        "proof": proof,
        "output": outcome.summary.get(),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::registry::NodeEntry;
    use crate::state::{Attempt, NodeRound, Outcome, Step};
    use crate::status::Status;
    use attesta_seal::{ErrorBody, ResponseError, StreamError};
    use std::time::Duration;

    const MODEL: &str = "bafkreillm";

    /// A served model's verified challenge answer.
    fn llm_attempt(cid: &str) -> Attempt {
        Attempt {
            seq: 0,
            time_ms: 0,
            nonce_hex: String::new(),
            model: Some(cid.into()),
            attestation: Step::Pass,
            receipt: Step::Pass,
            correctness: Step::Pass,
            outcome: Outcome::Correct,
            latency_us: Some(1000),
            reason: None,
            platform: Some("dev (insecure)".into()),
            measurement: None,
            bundle: None,
            llm: Some(crate::llm_challenge::LlmTiming::for_tests()),
        }
    }

    /// A gateway whose board has two verified nodes serving [`MODEL`] (and one another
    /// model) at addresses nobody listens on: the calls are stand-ins.
    fn gateway() -> Arc<Gateway> {
        let status = Arc::new(Status::new());
        let node = |id: &str, cid: &str| NodeRound {
            node: NodeEntry {
                id: id.into(),
                url: format!("http://127.0.0.1:9/{id}"),
                hotkey: None,
                via: Default::default(),
            },
            attempts: vec![llm_attempt(cid)],
        };
        let scores = BTreeMap::from([
            ("a".to_owned(), 1.0),
            ("b".to_owned(), 1.0),
            ("c".to_owned(), 1.0),
        ]);
        status.record_round(
            1,
            1,
            &[
                node("a", MODEL),
                node("b", MODEL),
                node("c", "bafkreiother"),
            ],
            &scores,
            None,
        );
        let parts = super::super::GatewayParts {
            status,
            policy: attesta_evidence::Policy::aws_nitro().unwrap(),
            node_timeout: Duration::from_secs(2),
            clock: Arc::new(crate::round::SystemClock),
            rng: crate::os_rng().unwrap(),
            client_rng: crate::client_channel::system_rng(),
        };
        let cfg = super::super::GatewayConfig {
            enabled: true,
            ..Default::default()
        };
        Gateway::new(cfg, parts).unwrap()
    }

    async fn call(gw: &Arc<Gateway>, body: Value, complete: Completer) -> (u16, String) {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let body = body.to_string();
        let resp = answer(
            gw,
            peer,
            &HeaderMap::new(),
            body.as_bytes(),
            Endpoint::Completions,
            complete,
        )
        .await
        .unwrap_or_else(error_response);
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    fn request(stream: bool) -> Value {
        json!({"model": MODEL, "prompt": "hi", "max_tokens": 4, "stream": stream})
    }

    /// (ok, refused, failed) of all nodes.
    fn traffic(gw: &Gateway) -> (u64, u64, u64) {
        let t = gw.metrics.traffic.lock().unwrap();
        t.per_node.values().fold((0, 0, 0), |(o, r, f), n| {
            (o + n.ok, r + n.refused, f + n.failed)
        })
    }

    fn chunk_then_unverified(
        _: Arc<Client>,
        _: Arc<OpenAiRequest>,
        sink: ChunkSink,
    ) -> BoxFuture<'static, CallResult> {
        Box::pin(async move {
            sink.send(
                &json!({"object": "text_completion", "choices": [{"index": 0, "text": "Once"}]}),
            );
            Err(ClientError::Protocol(
                "the streamed text differs from the signed final answer".into(),
            ))
        })
    }

    fn unreachable(
        _: Arc<Client>,
        req: Arc<OpenAiRequest>,
        _: ChunkSink,
    ) -> BoxFuture<'static, CallResult> {
        assert_eq!(req.model, MODEL);
        Box::pin(async { Err(ClientError::Transport("connection refused".into())) })
    }

    fn context_overflow(
        _: Arc<Client>,
        _: Arc<OpenAiRequest>,
        _: ChunkSink,
    ) -> BoxFuture<'static, CallResult> {
        Box::pin(async {
            Err(ClientError::Stream(StreamError::Remote(ResponseError(
                ErrorBody {
                    code: "context_length_exceeded".into(),
                    message: "this model's context is 512 tokens".into(),
                },
            ))))
        })
    }

    #[tokio::test]
    async fn a_stream_that_fails_verification_after_a_chunk_ends_with_an_error_event_on_the_same_node()
     {
        let gw = gateway();
        let (status, body) = call(&gw, request(true), chunk_then_unverified).await;
        assert_eq!(status, 200, "{body}");
        let events: Vec<&str> = body.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2, "{body}");
        assert!(events[0].starts_with("data: {") && events[0].contains("Once"));
        let error: Value = serde_json::from_str(events[1].strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(error["error"]["code"], "answer_not_verified", "{body}");
        assert_eq!(error["error"]["type"], "api_error");
        assert!(!body.contains("[DONE]"), "{body}");
        // Committed after the first chunk: no second node was asked.
        assert_eq!(traffic(&gw), (0, 0, 1));
    }

    #[tokio::test]
    async fn failures_before_any_chunk_fail_over_to_every_node_serving_the_model() {
        let gw = gateway();
        for stream in [true, false] {
            let (status, body) = call(&gw, request(stream), unreachable).await;
            assert_eq!(status, 503, "{body}");
            let e: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(e["error"]["code"], "no_node_available", "{body}");
            assert!(e["error"]["message"].is_string() && e["error"]["param"].is_null());
        }
        // a and b each time (c does not serve the model); then both cool down.
        assert_eq!(traffic(&gw), (0, 0, 2));
        let t = gw.metrics.traffic.lock().unwrap().clone();
        assert!(!t.per_node.contains_key("c"), "{t:?}");
    }

    #[tokio::test]
    async fn a_nodes_request_fault_verdict_is_the_answer_with_its_status() {
        let gw = gateway();
        for stream in [true, false] {
            let (status, body) = call(&gw, request(stream), context_overflow).await;
            assert_eq!(status, 400, "{body}");
            let e: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(e["error"]["code"], "context_length_exceeded");
            assert_eq!(e["error"]["type"], "invalid_request_error");
        }
        assert_eq!(traffic(&gw), (0, 2, 0));
    }

    #[tokio::test]
    async fn unknown_models_and_malformed_bodies_get_openai_errors_without_a_node_call() {
        let gw = gateway();
        let cases = [
            (
                json!({"model": "bafkreinobody", "prompt": "hi"}),
                404,
                "model_not_found",
            ),
            (json!({"model": "bafkreiother-x"}), 404, "model_not_found"),
            (json!({"prompt": "hi"}), 400, "invalid_request"),
            (
                json!({"model": MODEL, "stream": "yes"}),
                400,
                "invalid_request",
            ),
            (json!([1, 2]), 400, "invalid_request"),
        ];
        for (body, want, code) in cases {
            let (status, text) = call(&gw, body, unreachable).await;
            assert_eq!(status, want, "{text}");
            let e: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(e["error"]["code"], code, "{text}");
            assert_eq!(e["error"]["type"], "invalid_request_error");
        }
        let (status, _) = call(&gw, Value::from("x"), unreachable).await;
        assert_eq!(status, 400);
        assert_eq!(traffic(&gw), (0, 0, 0));
    }

    #[test]
    fn the_model_list_has_each_verified_nodes_language_model_once() {
        let gw = gateway();
        let mut board = gw.parts_status.board();
        let list = model_list(&board);
        assert_eq!(list["object"], "list");
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["bafkreillm", "bafkreiother"]);
        assert_eq!(list["data"][0]["context_length"], 512);
        assert_eq!(list["data"][0]["object"], "model");
        // A node that is no longer verified does not count.
        for n in &mut board.nodes {
            if n.id == "c" {
                n.attested = false;
            }
        }
        assert_eq!(model_list(&board)["data"].as_array().unwrap().len(), 1);
    }
}
