//! kill -9 the validator mid-round, again and again (bounded), restart it,
//! and check the SQLite history: rounds contiguous, no duplicate or lost
//! attempts, every committed round still there, scores equal to a replay.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use attesta_validator::config::ValidatorConfig;
use attesta_validator::state::State;

fn attesta() -> Command {
    Command::new(env!("CARGO_BIN_EXE_attesta"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_http(url: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        assert!(
            child.try_wait().unwrap().is_none(),
            "process exited while starting ({url})"
        );
        if let Ok(mut s) = std::net::TcpStream::connect(url.trim_start_matches("http://")) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{url} did not come up");
}

/// Last committed round the validator reports on /v1/nodes (0 if unreachable).
fn reported_round(url: &str) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(url.trim_start_matches("http://")) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"GET /v1/nodes HTTP/1.0\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["round"].as_u64())
        .unwrap_or(0)
}

struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_node(data: &Path, port: u16) -> Child {
    attesta()
        .arg("--data-dir")
        .arg(data)
        .args([
            "node",
            "--tee",
            "dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_dash_nine_mid_round_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let model = root.join("mlp.onnx");
    let (_, spec) = attesta_engine::demo::devnet_set().remove(0);
    std::fs::write(&model, attesta_engine::demo::mlp(&spec)).unwrap();

    // Three nodes sharing one dev root (the first node creates it).
    let mut nodes = Kill(Vec::new());
    let mut entries = Vec::new();
    for i in 0..3 {
        let data = root.join(format!("node-{i}"));
        std::fs::create_dir_all(&data).unwrap();
        if i > 0 {
            for f in ["dev-root.pem", "dev-root.key"] {
                std::fs::copy(root.join("node-0").join(f), data.join(f)).unwrap();
            }
        }
        let add = attesta()
            .arg("--data-dir")
            .arg(&data)
            .args(["models", "add"])
            .arg(&model)
            .output()
            .unwrap();
        assert!(
            add.status.success(),
            "{}",
            String::from_utf8_lossy(&add.stderr)
        );
        let port = free_port();
        let mut child = start_node(&data, port);
        let url = format!("http://127.0.0.1:{port}");
        wait_http(&url, &mut child);
        nodes.0.push(child);
        entries.push(serde_json::json!({"id": format!("node-{i}"), "url": url}));
    }
    let vdata = root.join("validator");
    std::fs::create_dir_all(&vdata).unwrap();
    let add = attesta()
        .arg("--data-dir")
        .arg(&vdata)
        .args(["models", "add"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(add.status.success());
    let cid = String::from_utf8_lossy(&add.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(
        root.join("nodes.json"),
        serde_json::to_vec(&entries).unwrap(),
    )
    .unwrap();
    let vport = free_port();
    let config = format!(
        r#"
[validator]
nodes = "{nodes}"
database = "{db}"
weights_file = "{weights}"
listen = "127.0.0.1:{vport}"
[validator.policy]
dev_root = "{devroot}"
[validator.rounds]
interval_ms = 1
node_timeout_ms = 2000
challenges_per_node = 4
epoch_rounds = 2
[validator.challenges]
store = "{store}"
[[validator.challenges.models]]
cid = "{cid}"
"#,
        nodes = root.join("nodes.json").display(),
        db = vdata.join("v.sqlite").display(),
        weights = vdata.join("weights.json").display(),
        devroot = root.join("node-0/dev-root.pem").display(),
        store = vdata.join("models").display(),
    );
    let config_path = root.join("attesta.toml");
    std::fs::write(&config_path, &config).unwrap();
    let cfg = ValidatorConfig::parse(&config, Path::new("")).unwrap();
    let vurl = format!("http://127.0.0.1:{vport}");
    let start_validator = |extra: &[&str]| {
        attesta()
            .arg("--config")
            .arg(&config_path)
            .arg("--data-dir")
            .arg(&vdata)
            .arg("validator")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };

    // Pseudo-random kill points from the clock, bounded count. With a 1 ms
    // interval the validator is inside a round almost all the time.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut next = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    let mut max_reported = 0;
    for kill in 0..5 {
        let mut v = start_validator(&[]);
        wait_http(&vurl, &mut v);
        // Let it commit at least one round, then kill at a random point of a later one.
        let deadline = Instant::now() + Duration::from_secs(30);
        while reported_round(&vurl) <= max_reported && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(next() % 250));
        max_reported = max_reported.max(reported_round(&vurl));
        v.kill().unwrap(); // SIGKILL
        v.wait().unwrap();
        let st = State::open(&cfg.database).unwrap();
        let committed = st.next_round().unwrap() - 1;
        assert!(
            committed >= max_reported,
            "kill {kill}: reported round {max_reported} but only {committed} committed"
        );
        max_reported = committed;
    }
    // Restart once more and let it finish two more rounds cleanly.
    let target = max_reported + 2;
    let mut v = start_validator(&["--max-rounds", &target.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = v.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "validator did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());

    let st = State::open(&cfg.database).unwrap();
    assert_eq!(st.next_round().unwrap(), target + 1);
    let report = st.replay(&cfg.scoring).unwrap();
    assert!(report.problems.is_empty(), "{:#?}", report.problems);
    assert_eq!(report.rounds, target);
    // Honest nodes: exactly four correct attempts per node per round, none lost, none doubled.
    for i in 0..3 {
        let counts = st.outcome_counts(&format!("node-{i}")).unwrap();
        let total: u64 = counts.values().sum();
        assert_eq!(total, 4 * target, "node-{i}: {counts:?}");
        assert_eq!(
            counts.len(),
            1,
            "node-{i}: only correct answers: {counts:?}"
        );
    }
    assert!(st.latest_scores().unwrap().values().all(|s| *s > 0.0));
    // Weights on disk match the last epoch in the database.
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg.weights_file).unwrap()).unwrap();
    assert_eq!(
        file["epoch"].as_u64(),
        st.latest_weights().unwrap().map(|w| w.epoch)
    );
}
