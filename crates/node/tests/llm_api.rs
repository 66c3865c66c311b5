//! The OpenAI-compatible language-model routes on a real node with a real test GGUF:
//! answers equal the engine's own greedy output, streams concatenate to the whole answer,
//! seeds reproduce, stop strings cut, errors are the documented 4xx, and the official
//! `openai` Python client works unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::sync::Arc;

use attesta_llm::LlmModel;
use attesta_llm::generate::Generation;
use attesta_llm::sample::SamplingParams;
use serde_json::{Value, json};
use support::*;

const MODEL: &str = "tiny-spm-q8_0";

async fn llm_node() -> (TestNode, String) {
    let node = start(test_config(), Arc::new(FakeEngine::default())).await;
    let bytes = std::fs::read(attesta_test_support::llm::test_gguf(MODEL)).unwrap();
    let cid = add_model(&node.store, &bytes).to_string();
    (node, cid)
}

/// POSTs JSON and reads the whole answer; streamed (chunked) answers are de-chunked.
async fn post(node: &TestNode, path: &str, body: &Value) -> Response {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = body.to_string();
    let mut s = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        node.addr,
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(60), s.read_to_end(&mut raw))
        .await
        .expect("no complete answer within 60 s")
        .unwrap();
    Response::parse(&raw)
}

/// The `data:` payloads of a server-sent event stream.
fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8(body.to_vec())
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect()
}

/// What the engine itself generates greedily for a completion prompt.
fn engine_greedy(prompt: &str, n: usize) -> String {
    let llm = LlmModel::open(&attesta_test_support::llm::test_gguf(MODEL)).unwrap();
    let tok = llm.tokenizer();
    let p = tok.encode(prompt, true, true);
    let mut g = Generation::start(llm.model(), &p, SamplingParams::greedy(), n, 0).unwrap();
    let mut ids = Vec::new();
    while let Some(s) = g.step().unwrap() {
        if tok.is_eog(s.token) {
            break;
        }
        ids.push(s.token);
    }
    tok.decode(&ids, false)
}

#[tokio::test(flavor = "multi_thread")]
async fn completions_answer_the_engines_greedy_text_with_counts() {
    let (node, cid) = llm_node().await;
    let body =
        json!({"model": cid, "prompt": "Once upon a time", "max_tokens": 12, "temperature": 0});
    let a = post(&node, "/v1/completions", &body).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let a = a.json();
    assert_eq!(a["object"], "text_completion");
    assert_eq!(a["model"], cid);
    let text = a["choices"][0]["text"].as_str().unwrap();
    assert_eq!(text, engine_greedy("Once upon a time", 12));
    let usage = &a["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() >= 4);
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    if a["choices"][0]["finish_reason"] == "length" {
        assert_eq!(usage["completion_tokens"], 12);
    }
    // Greedy is deterministic run to run.
    let b = post(&node, "/v1/completions", &body).await.json();
    assert_eq!(b["choices"][0]["text"], a["choices"][0]["text"]);
    // With token ids, what a validator checks: every generated token (an end-of-generation
    // token included) is the model's argmax.
    let mut with_ids = body.clone();
    with_ids["return_token_ids"] = json!(true);
    let c = post(&node, "/v1/completions", &with_ids).await.json();
    let prompt: Vec<u32> = serde_json::from_value(c["prompt_token_ids"].clone()).unwrap();
    let ids: Vec<u32> = serde_json::from_value(c["choices"][0]["token_ids"].clone()).unwrap();
    assert_eq!(
        prompt.len() as u64,
        c["usage"]["prompt_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        ids.len() as u64,
        c["usage"]["completion_tokens"].as_u64().unwrap()
    );
    let llm = LlmModel::open(&attesta_test_support::llm::test_gguf(MODEL)).unwrap();
    let report = attesta_llm::check::check_greedy(
        llm.model(),
        &prompt,
        &ids,
        attesta_llm::check::DEFAULT_TOLERANCE,
    )
    .unwrap();
    assert!(report.passed(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn streams_concatenate_to_the_whole_answer_and_end_with_done() {
    let (node, cid) = llm_node().await;
    for path in ["/v1/completions", "/v1/chat/completions"] {
        let mut body = if path == "/v1/completions" {
            json!({"model": cid, "prompt": "The sea", "max_tokens": 16, "temperature": 0.8, "seed": 7})
        } else {
            json!({"model": cid, "messages": [{"role": "user", "content": "The sea"}], "max_tokens": 16, "temperature": 0.8, "seed": 7})
        };
        let whole = post(&node, path, &body).await;
        assert_eq!(whole.status, 200);
        let whole = whole.json();
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let s = post(&node, path, &body).await;
        assert_eq!(s.status, 200);
        assert!(
            s.header("content-type")
                .unwrap()
                .starts_with("text/event-stream")
        );
        let data = sse_data(&s.body);
        assert_eq!(data.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let mut text = String::new();
        let mut finish = None;
        for c in &chunks {
            for ch in c["choices"].as_array().unwrap() {
                let piece = if path == "/v1/completions" {
                    ch["text"].as_str()
                } else {
                    ch["delta"]["content"].as_str()
                };
                text.push_str(piece.unwrap_or(""));
                if !ch["finish_reason"].is_null() {
                    finish = Some(ch["finish_reason"].clone());
                }
            }
        }
        let (want_text, want_finish) = if path == "/v1/completions" {
            (
                whole["choices"][0]["text"].clone(),
                whole["choices"][0]["finish_reason"].clone(),
            )
        } else {
            (
                whole["choices"][0]["message"]["content"].clone(),
                whole["choices"][0]["finish_reason"].clone(),
            )
        };
        // Same seed: the stream carries exactly the non-streamed answer.
        assert_eq!(json!(text), want_text, "{path}");
        assert_eq!(finish, Some(want_finish), "{path}");
        let usage = &chunks.last().unwrap()["usage"];
        assert_eq!(*usage, whole["usage"], "{path}");
        if path == "/v1/chat/completions" {
            assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
            assert_eq!(chunks[0]["object"], "chat.completion.chunk");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn seeds_reproduce_and_differ() {
    let (node, cid) = llm_node().await;
    let ask = |seed: u64| json!({"model": cid, "prompt": "Numbers:", "max_tokens": 24, "temperature": 1.0, "top_p": 0.9, "seed": seed});
    let a = post(&node, "/v1/completions", &ask(1)).await.json();
    let b = post(&node, "/v1/completions", &ask(1)).await.json();
    let c = post(&node, "/v1/completions", &ask(2)).await.json();
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);
    assert_ne!(a["choices"][0]["text"], c["choices"][0]["text"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_strings_cut_the_answer() {
    let (node, cid) = llm_node().await;
    let full = engine_greedy("Once upon a time", 24);
    // Stop at a piece of the greedy answer that does not start it.
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() > 6, "answer too short: {full:?}");
    let stop: String = chars[3..6].iter().collect();
    let want = &full[..full.find(&stop).unwrap()];
    for stream in [false, true] {
        let body = json!({"model": cid, "prompt": "Once upon a time", "max_tokens": 24, "temperature": 0, "stop": [stop], "stream": stream});
        let r = post(&node, "/v1/completions", &body).await;
        assert_eq!(r.status, 200);
        let (text, finish) = if stream {
            let data = sse_data(&r.body);
            let mut t = String::new();
            let mut f = Value::Null;
            for d in &data[..data.len() - 1] {
                let c: Value = serde_json::from_str(d).unwrap();
                t.push_str(c["choices"][0]["text"].as_str().unwrap_or(""));
                if !c["choices"][0]["finish_reason"].is_null() {
                    f = c["choices"][0]["finish_reason"].clone();
                }
            }
            (t, f)
        } else {
            let j = r.json();
            (
                j["choices"][0]["text"].as_str().unwrap().to_string(),
                j["choices"][0]["finish_reason"].clone(),
            )
        };
        assert_eq!(text, want, "stream={stream}");
        assert_eq!(finish, "stop");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_the_documented_errors() {
    let (node, cid) = llm_node().await;
    let onnx = add_model(&node.store, &FakeSpec::sized(100, 1).file()).to_string();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/v1/completions",
            json!({"model": cid}),
            400,
            "invalid_request",
        ),
        (
            "/v1/completions",
            json!({"model": cid, "prompt": "x", "max_tokens": 600}),
            400,
            "context_length_exceeded",
        ),
        (
            "/v1/completions",
            json!({"model": cid, "prompt": "x", "max_tokens": 100000}),
            400,
            "max_tokens_too_large",
        ),
        (
            "/v1/completions",
            json!({"model": cid, "prompt": "x", "n": 2}),
            400,
            "unsupported_parameter",
        ),
        (
            "/v1/completions",
            json!({"model": cid, "prompt": "x", "temperature": 3}),
            400,
            "invalid_request",
        ),
        (
            "/v1/completions",
            json!({"model": cid, "prompt": "x", "logprobs": 9}),
            400,
            "invalid_request",
        ),
        (
            "/v1/completions",
            json!({"model": cid, "prompt": [1, 2, 99999999]}),
            400,
            "invalid_request",
        ),
        (
            "/v1/completions",
            json!({"model": "nope", "prompt": "x"}),
            400,
            "invalid_model",
        ),
        (
            "/v1/completions",
            json!({"model": "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy", "prompt": "x"}),
            404,
            "model_not_found",
        ),
        (
            "/v1/completions",
            json!({"model": onnx, "prompt": "x"}),
            400,
            "model_not_llm",
        ),
        (
            "/v1/chat/completions",
            json!({"model": cid, "messages": []}),
            400,
            "invalid_request",
        ),
        (
            "/v1/chat/completions",
            json!({"model": cid, "messages": [{"role": "wizard", "content": "x"}]}),
            400,
            "invalid_request",
        ),
        (
            "/v1/chat/completions",
            json!({"model": cid, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            400,
            "unsupported_parameter",
        ),
        (
            "/v1/chat/completions",
            json!({"model": cid, "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}),
            400,
            "unsupported_parameter",
        ),
    ];
    for (path, body, status, code) in cases {
        let r = post(&node, path, &body).await;
        assert_eq!(
            r.status,
            status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.assert_error(status, code);
        assert_eq!(r.json()["error"]["type"], "invalid_request_error", "{body}");
    }
    // Malformed JSON.
    let r = request(
        node.addr,
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json")],
        b"{nope",
    )
    .await;
    r.assert_error(400, "invalid_request");
    // An ONNX route asked about a language model.
    let r = post(
        &node,
        "/infer",
        &json!({"ipfs_hash": cid, "model_input": {}}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test(flavor = "multi_thread")]
async fn models_lists_language_models_in_openai_shape() {
    let (node, cid) = llm_node().await;
    let r = request(node.addr, "GET", "/v1/models", &[], b"").await;
    let j = r.json();
    assert_eq!(j["object"], "list");
    let m = j["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == cid)
        .unwrap();
    assert_eq!(m["object"], "model");
    assert_eq!(m["context_length"], 512);
    assert_eq!(m["architecture"], "llama");
    assert_eq!(m["quantisation"], "Q8_0");
    let listed = j["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["cid"] == cid)
        .unwrap();
    assert_eq!(listed["llm"]["context_length"], 512);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_openai_client_works_unchanged() {
    let (node, cid) = llm_node().await;
    let base = format!("http://{}", node.addr);
    let script = attesta_test_support::workspace_root().join("tests/llm/openai_client.py");
    let out = tokio::process::Command::new(attesta_test_support::llm::llm_python())
        .arg(&script)
        .arg(&base)
        .arg(&cid)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "openai client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["models"].as_array().unwrap().contains(&json!(cid)));
    assert_eq!(r["chat"]["role"], "assistant");
    assert_eq!(r["chat"]["object"], "chat.completion");
    assert!(r["chat"]["logprob_tokens"].as_u64().unwrap() >= 1);
    assert!(
        r["chat"]["top_logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n == 3)
    );
    assert_eq!(r["chat_stream"]["content"], r["chat"]["content"]);
    assert_eq!(r["chat_stream"]["usage"], r["chat"]["usage"]);
    assert_eq!(r["completion_stream"], r["completion"]["text"]);
    assert_eq!(
        r["completion"]["text"],
        json!(engine_greedy("Once upon a time", 10))
    );
    assert!(
        r["completion"]["top"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n == 2)
    );
    assert_eq!(r["errors"]["overflow"]["status"], 400);
    assert_eq!(r["errors"]["overflow"]["code"], "context_length_exceeded");
    assert_eq!(r["errors"]["overflow"]["type"], "invalid_request_error");
    assert_eq!(r["errors"]["no_messages"]["code"], "invalid_request");
    assert_eq!(r["errors"]["bad_model"]["code"], "invalid_model");
}

/// A node declaring `slow:MS` answers language-model requests correctly but that much later;
/// one declaring `hang` never answers (the devnet's slow and hanging LLM nodes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_hanging_faults_reach_the_language_model_routes() {
    use attesta_node::fault::{ActiveFault, Fault};
    use std::time::{Duration, Instant};
    let faulty = |fault| async move {
        let mut config = test_config();
        config.fault = Some(ActiveFault::unattested(fault));
        let node = start(config, Arc::new(FakeEngine::default())).await;
        let bytes = std::fs::read(attesta_test_support::llm::test_gguf(MODEL)).unwrap();
        let cid = add_model(&node.store, &bytes).to_string();
        (node, cid)
    };
    let body =
        |cid: &str| json!({"model": cid, "prompt": "Once upon", "max_tokens": 4, "temperature": 0});

    let (node, cid) = faulty(Fault::Slow(Duration::from_millis(600))).await;
    let started = Instant::now();
    let r = post(&node, "/v1/completions", &body(&cid)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(started.elapsed() >= Duration::from_millis(600));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["choices"][0]["text"], engine_greedy("Once upon", 4));

    let (node, cid) = faulty(Fault::Hang).await;
    let answer = tokio::time::timeout(
        Duration::from_millis(1500),
        post(&node, "/v1/completions", &body(&cid)),
    )
    .await;
    assert!(answer.is_err(), "a hanging node answered");
}
