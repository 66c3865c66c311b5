//! The JSON-RPC client against scripted WebSocket peers: answers by id out of order,
//! subscriptions, timeouts, an oversized message, a peer that closes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Duration;

use attesta_bittensor::chain::{ChainError, RpcClient, RpcConfig};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// A one-connection server: `handler` gets each request and returns the messages to send.
async fn peer<F>(handler: F) -> String
where
    F: Fn(&Value) -> Vec<Message> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(t) = msg else { continue };
            let req: Value = serde_json::from_str(t.as_str()).unwrap();
            for out in handler(&req) {
                if matches!(out, Message::Close(_)) {
                    let _ = ws.close(None).await;
                    return;
                }
                ws.send(out).await.unwrap();
            }
        }
    });
    format!("ws://{addr}")
}

fn answer(req: &Value, result: Value) -> Message {
    Message::text(json!({"jsonrpc": "2.0", "id": req["id"], "result": result}).to_string())
}

fn quick() -> RpcConfig {
    RpcConfig {
        request_timeout: Duration::from_millis(500),
        max_message_bytes: 64 * 1024,
        subscription_buffer: 4,
    }
}

#[tokio::test]
async fn answers_are_matched_by_id_and_errors_are_typed() {
    let url = peer(|req| match req["method"].as_str().unwrap() {
        "echo" => vec![answer(req, req["params"][0].clone())],
        "fail" => vec![Message::text(
            json!({"jsonrpc": "2.0", "id": req["id"],
                   "error": {"code": -32601, "message": "Method not found", "data": "x"}})
            .to_string(),
        )],
        _ => vec![],
    })
    .await;
    let c = RpcClient::connect(&url, quick()).await.unwrap();
    let (a, b) = tokio::join!(
        c.request::<String>("echo", json!(["a"])),
        c.request::<String>("echo", json!(["b"]))
    );
    assert_eq!((a.unwrap(), b.unwrap()), ("a".into(), "b".into()));
    match c.request::<Value>("fail", json!([])).await {
        Err(ChainError::Rpc { code, message, .. }) => {
            assert_eq!((code, message.as_str()), (-32601, "Method not found"))
        }
        other => panic!("{other:?}"),
    }
    // A wrong result type is a typed JSON error.
    assert!(matches!(
        c.request::<u64>("echo", json!(["not a number"])).await,
        Err(ChainError::Json { .. })
    ));
}

#[tokio::test]
async fn a_silent_peer_times_out() {
    let url = peer(|_| vec![]).await;
    let c = RpcClient::connect(&url, quick()).await.unwrap();
    let t0 = std::time::Instant::now();
    match c.request::<Value>("anything", json!([])).await {
        Err(ChainError::Timeout { method, .. }) => assert_eq!(method, "anything"),
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_oversized_message_closes_the_connection() {
    let url = peer(|req| vec![answer(req, json!("x".repeat(100 * 1024)))]).await;
    let c = RpcClient::connect(&url, quick()).await.unwrap();
    match c.request::<Value>("big", json!([])).await {
        Err(ChainError::TooLarge { limit }) => assert_eq!(limit, 64 * 1024),
        other => panic!("{other:?}"),
    }
    assert!(c.is_closed());
    assert!(matches!(
        c.request::<Value>("again", json!([])).await,
        Err(ChainError::TooLarge { .. })
    ));
}

#[tokio::test]
async fn a_closing_peer_fails_pending_calls() {
    let url = peer(|_| vec![Message::Close(None)]).await;
    let c = RpcClient::connect(&url, quick()).await.unwrap();
    assert!(matches!(
        c.request::<Value>("x", json!([])).await,
        Err(ChainError::Closed)
    ));
    assert!(matches!(
        c.request::<Value>("y", json!([])).await,
        Err(ChainError::Closed)
    ));
}

#[tokio::test]
async fn subscriptions_get_notifications_sent_right_after_the_answer() {
    let url = peer(|req| match req["method"].as_str().unwrap() {
        "author_submitAndWatchExtrinsic" => {
            let note = |r: Value| {
                Message::text(
                    json!({"jsonrpc": "2.0", "method": "author_extrinsicUpdate",
                       "params": {"subscription": "s1", "result": r}})
                    .to_string(),
                )
            };
            vec![
                answer(req, json!("s1")),
                note(json!("ready")),
                note(json!({"inBlock": "0x01"})),
                // Another subscription's notification is not delivered here.
                Message::text(
                    json!({"jsonrpc": "2.0", "method": "m",
                       "params": {"subscription": "other", "result": 1}})
                    .to_string(),
                ),
                note(json!({"finalized": "0x01"})),
            ]
        }
        "author_unwatchExtrinsic" => vec![answer(req, json!(true))],
        _ => vec![],
    })
    .await;
    let c = RpcClient::connect(&url, quick()).await.unwrap();
    let mut s = c
        .subscribe(
            "author_submitAndWatchExtrinsic",
            json!(["0x00"]),
            "author_unwatchExtrinsic",
        )
        .await
        .unwrap();
    assert_eq!(s.id(), "s1");
    assert_eq!(s.next().await.unwrap().unwrap(), json!("ready"));
    assert_eq!(s.next().await.unwrap().unwrap(), json!({"inBlock": "0x01"}));
    assert_eq!(
        s.next().await.unwrap().unwrap(),
        json!({"finalized": "0x01"})
    );
    assert!(matches!(
        s.next_within(Duration::from_millis(100)).await,
        Some(Err(ChainError::Timeout { .. }))
    ));
    s.unsubscribe().await.unwrap();
}

#[tokio::test]
async fn endpoints_must_be_websocket_urls() {
    assert!(matches!(
        RpcClient::connect("http://127.0.0.1:9944", quick()).await,
        Err(ChainError::Endpoint { .. })
    ));
    // Nothing listens there: a typed connect error.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    assert!(matches!(
        RpcClient::connect(&format!("ws://127.0.0.1:{port}"), quick()).await,
        Err(ChainError::Connect { .. })
    ));
}
