//! Real IPFS: an offline Helia node (npm: helia, @helia/unixfs, @helia/verified-fetch) adds
//! files with kubo-default settings and serves them as a trustless gateway on 127.0.0.1.
//! Our CIDs must equal Helia's, and `Fetcher` must fetch through it with a lying gateway first.
//!
//! Needs `node` (20+) and `npm`. The test runs `npm ci` in `tests/ipfs` when its
//! `node_modules` is missing (about two minutes the first time; package registry access needed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: failing loudly is the point

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use attesta_content::fetch::FetchStats;
use attesta_content::{
    Cid, Fetcher, GatewayConfig, ModelStore, NoProgress, Profile, StoreOptions, cid_of_reader,
};
use common::gateway::{Gateway, Mode};

fn ipfs_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/ipfs"))
}

fn ensure_node_modules() {
    let dir = ipfs_dir();
    if dir.join("node_modules/helia").is_dir() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status()
        .expect("npm not found: install Node.js 20+ and npm to run the Helia test");
    assert!(status.success(), "npm ci failed in {}", dir.display());
}

/// The gateway process; killed (by its own PID, via the handle) if the test ends early.
struct HeliaGateway {
    child: Child,
    url: String,
    cids: serde_json::Map<String, serde_json::Value>,
}

impl HeliaGateway {
    fn start(files: &[PathBuf]) -> HeliaGateway {
        let mut child = Command::new("node")
            .arg("gateway.mjs")
            .args(files)
            .current_dir(ipfs_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node not found: install Node.js 20+ to run the Helia test");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(l) if !l.trim().is_empty() => l,
            other => {
                let _ = child.kill();
                panic!("Helia gateway did not start: {other:?}");
            }
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let port = v["port"].as_u64().unwrap();
        HeliaGateway {
            child,
            url: format!("http://127.0.0.1:{port}"),
            cids: v["cids"].as_object().unwrap().clone(),
        }
    }

    fn cid(&self, file: &std::path::Path) -> Cid {
        self.cids[file.to_str().unwrap()]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for HeliaGateway {
    fn drop(&mut self) {
        // Closing stdin asks it to stop; kill if it does not within a few seconds.
        drop(self.child.stdin.take());
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helia_cids_match_and_fetch_through_helia_with_a_liar_first() {
    ensure_node_modules();
    let tmp = tempfile::tempdir().unwrap();
    // 50 MiB = 200 chunks of 256 KiB: more than 174, so the DAG has two levels.
    let big_data = common::det(50 * 1024 * 1024);
    let small_data = b"hello world".to_vec();
    let big = tmp.path().join("big.bin");
    let small = tmp.path().join("hello.txt");
    std::fs::write(&big, &big_data).unwrap();
    std::fs::write(&small, &small_data).unwrap();

    let helia = HeliaGateway::start(&[big.clone(), small.clone()]);
    let files = [(&big, &big_data), (&small, &small_data)];
    let liar = Gateway::start(Mode::Lying).await;
    for (path, data) in files {
        let ours =
            cid_of_reader(std::fs::File::open(path).unwrap(), Profile::KuboDefaultV0).unwrap();
        assert_eq!(ours, helia.cid(path), "{}", path.display());
        assert_eq!(liar.add(data, Profile::KuboDefaultV0), ours);
    }
    assert_eq!(
        helia.cid(&small).to_string(),
        "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"
    );

    for prefer_car in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let stats = FetchStats::default();
        let cfg = GatewayConfig {
            urls: vec![liar.url.clone(), helia.url.clone()],
            timeout: Duration::from_secs(30),
            prefer_car,
            ..GatewayConfig::default()
        };
        let store = ModelStore::open(dir.path(), StoreOptions::default()).unwrap();
        let fetcher = Fetcher::new(cfg, store).with_observer(Arc::new(stats.clone()));
        for (path, data) in files {
            let cid = helia.cid(path);
            let m = fetcher.fetch(&cid, &NoProgress).await.unwrap();
            assert!(
                std::fs::read(&m.path).unwrap() == *data,
                "{} car={prefer_car}",
                path.display()
            );
            assert_eq!(m.sha256_hex(), common::sha256_hex(data));
        }
        let snap = stats.snapshot();
        assert_eq!(snap[&liar.url].failed, 2, "the liar fails both files");
        assert_eq!(
            snap[&liar.url].verification_failures.get("bad_block_hash"),
            Some(&2)
        );
        assert_eq!(snap[&helia.url].ok, 2);
        assert_eq!(snap[&helia.url].failed, 0);
    }
}
