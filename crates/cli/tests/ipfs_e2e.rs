//! Real IPFS end to end: models added to an offline Helia node are fetched
//! with `attesta models fetch` and on demand by `attesta node` for `/infer`,
//! through a lying gateway placed first that must be detected and skipped.
//! Needs Node.js 20+ with `tests/ipfs/node_modules` (scripts/test installs it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::*;

struct Helia {
    child: Child,
    url: String,
    cids: serde_json::Map<String, Value>,
}

impl Helia {
    fn start(files: &[&Path]) -> Helia {
        let dir = workspace().join("tests/ipfs");
        assert!(
            dir.join("node_modules/helia").is_dir(),
            "run `npm ci` in tests/ipfs (scripts/test does it)"
        );
        let mut child = Command::new("node")
            .arg("gateway.mjs")
            .args(files)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node (Node.js 20+) is needed for the Helia gateway");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("Helia gateway did not start");
        let v: Value = serde_json::from_str(&line).unwrap();
        Helia {
            child,
            url: format!("http://127.0.0.1:{}", v["port"]),
            cids: v["cids"].as_object().unwrap().clone(),
        }
    }

    fn cid(&self, file: &Path) -> String {
        self.cids[file.to_str().unwrap()]
            .as_str()
            .unwrap()
            .to_string()
    }
}

impl Drop for Helia {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway that answers every request with well-formed HTTP and wrong bytes.
fn lying_gateway() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming().take(256) {
            let Ok(mut s) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let req = String::from_utf8_lossy(&buf);
            let (ctype, body): (&str, Vec<u8>) = if req.contains("format=raw") {
                (
                    "application/vnd.ipld.raw",
                    b"not the block you asked for".to_vec(),
                )
            } else {
                // A syntactically valid CARv1 header followed by one bogus block.
                let mut car = vec![0x11, 0xa2, 0x65, b'r', b'o', b'o', b't', b's', 0x80, 0x67];
                car.extend_from_slice(b"version");
                car.push(0x01);
                car.push(0x26);
                car.extend_from_slice(&[0x12, 0x20]);
                car.extend_from_slice(&[0xab; 32]);
                car.extend_from_slice(b"bogus!");
                ("application/vnd.ipld.car", car)
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    url
}

#[test]
fn models_come_from_ipfs_verified_even_with_a_lying_gateway_first() {
    let work = tempfile::tempdir().unwrap();
    let models: PathBuf = work.path().join("models");
    make_models(&models, &["mlp.onnx", "cnn.onnx"]);
    let mlp = models.join("mlp.onnx");
    let cnn = models.join("cnn.onnx");
    let helia = Helia::start(&[&mlp, &cnn]);
    let liar = lying_gateway();

    // Our CIDs are Helia's (kubo defaults).
    for f in [&mlp, &cnn] {
        assert_eq!(
            run_ok(&["models", "cid", f.to_str().unwrap()]).trim(),
            helia.cid(f)
        );
    }

    // `models fetch`: the liar first, then Helia.
    let store = work.path().join("store");
    let store_s = store.to_str().unwrap();
    let cnn_cid = helia.cid(&cnn);
    let fetched = run_ok(&[
        "models",
        "fetch",
        &cnn_cid,
        "--gateway",
        &liar,
        "--gateway",
        &helia.url,
        "--store",
        store_s,
    ]);
    assert_eq!(fetched.trim(), cnn_cid);
    let listing: Value =
        serde_json::from_str(&run_ok(&["models", "ls", "--json", "--store", store_s])).unwrap();
    assert_eq!(listing[0]["cid"], cnn_cid.as_str());
    assert_eq!(listing[0]["size"], std::fs::metadata(&cnn).unwrap().len());
    // Only liars: a clear failure naming the gateway, nothing stored.
    let out = attesta()
        .args([
            "models",
            "fetch",
            &helia.cid(&mlp),
            "--gateway",
            &liar,
            "--store",
            store_s,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&liar), "{err}");
    let listing: Value =
        serde_json::from_str(&run_ok(&["models", "ls", "--json", "--store", store_s])).unwrap();
    assert_eq!(
        listing.as_array().unwrap().len(),
        1,
        "a failed fetch leaves nothing behind"
    );

    // The node fetches an unknown CID on demand for /infer.
    let node = start_node(&[
        "--tee",
        "none",
        "--store",
        store_s,
        "--gateway",
        &liar,
        "--gateway",
        &helia.url,
    ]);
    let mlp_cid = helia.cid(&mlp);
    let values: Vec<Value> = (0..784)
        .map(|i| json!({"value": i % 7, "decimals": 1}))
        .collect();
    let inner = json!({"numbers": [{"name": "x", "shape": [1, 784], "values": values}]});
    let body = json!({"ipfs_hash": mlp_cid, "model_inputs": inner.to_string()}).to_string();
    let r = http(&node.addr, "POST", "/infer", body.as_bytes());
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["output"][0]["shape"], json!([1, 10]));
    let metrics = String::from_utf8(http(&node.addr, "GET", "/metrics", b"").body).unwrap();
    assert!(
        metrics.contains(&format!(
            "attesta_ipfs_fetches_total{{gateway=\"{}\",result=\"ok\"}} 1",
            helia.url
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "attesta_ipfs_verification_failures_total{{gateway=\"{liar}\""
        )),
        "{metrics}"
    );

    // With an allow-list, other CIDs are refused before any download.
    drop(node);
    let store2 = work.path().join("store2");
    let node = start_node(&[
        "--tee",
        "none",
        "--store",
        store2.to_str().unwrap(),
        "--gateway",
        &helia.url,
        "--fetch",
        "allow-list",
        "--allow-cid",
        &cnn_cid,
    ]);
    http(&node.addr, "POST", "/infer", body.as_bytes()).assert_error(403, "model_not_allowed");
}
