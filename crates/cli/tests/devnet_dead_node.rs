//! `attesta devnet` survives a dead node: one node child is killed by PID
//! mid-run; the devnet keeps running its rounds, the validator keeps scoring
//! the others, and the final JSON shows the node dead with a decayed score.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::DevnetProcess;

const ROUNDS: u64 = 12;

/// `GET /v1/nodes` of the validator, if it answers.
fn board(addr: &str) -> Option<Value> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /v1/nodes HTTP/1.0\r\n\r\n").ok()?;
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    serde_json::from_str(buf.split("\r\n\r\n").nth(1)?).ok()
}

/// The PID of the child of `parent` whose command line names `data_dir`.
fn child_pid(parent: u32, data_dir: &Path) -> Option<u32> {
    let want = data_dir.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        // `pid (comm) state ppid ...`; comm may contain anything, so split after the last `)`.
        let ppid: u32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        (ppid == parent && cmdline.split(|b| *b == 0).any(|a| a == want)).then_some(pid)
    })
}

fn node<'a>(state: &'a Value, id: &str) -> &'a Value {
    state["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {state:#}"))
}

#[test]
fn a_killed_node_is_shown_dead_and_the_rest_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let workdir = dir.path().canonicalize().unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let mut devnet = DevnetProcess(
        Command::new(env!("CARGO_BIN_EXE_attesta"))
            .args([
                "devnet",
                "--nodes",
                "3",
                "--rounds",
                &ROUNDS.to_string(),
                "--json",
            ])
            .args(["--interval", "300ms", "--timeout", "1500ms"])
            .arg("--dir")
            .arg(&workdir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let devnet_pid = devnet.0.id();

    // The validator's address, from the config the devnet writes.
    let config = workdir.join("validator.toml");
    let addr = loop {
        assert!(Instant::now() < deadline, "no validator config");
        assert!(devnet.0.try_wait().unwrap().is_none(), "devnet ended early");
        if let Ok(text) = std::fs::read_to_string(&config)
            && let Ok(cfg) = attesta_validator::config::ValidatorConfig::parse(&text, &workdir)
        {
            break cfg.listen.unwrap().to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    };

    // Let node-2 earn some score, then kill it by PID.
    let score_before = loop {
        assert!(Instant::now() < deadline, "node-2 never scored");
        assert!(devnet.0.try_wait().unwrap().is_none(), "devnet ended early");
        if let Some(b) = board(&addr)
            && b["round"].as_u64().unwrap_or(0) >= 2
        {
            let score = node(&b, "node-2")["score"].as_f64().unwrap();
            if score > 0.0 {
                break score;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let pid = child_pid(devnet_pid, &workdir.join("node-2")).expect("node-2 process");
    let killed = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let status = loop {
        if let Some(s) = devnet.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "devnet did not finish its rounds"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    devnet
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    devnet
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        status.success(),
        "devnet failed after a node died: {stderr}"
    );
    let state: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let rounds = state["rounds"].as_u64().unwrap();
    assert!(rounds >= ROUNDS, "{state:#}");

    let dead = node(&state, "node-2");
    assert_eq!(dead["status"], "dead", "{state:#}");
    assert_eq!(dead["exit"], "signal 9", "{state:#}");
    let score_after = dead["score"].as_f64().unwrap();
    assert!(
        score_after < score_before,
        "a dead node's score decays: {score_before} -> {score_after}"
    );
    assert!(dead["other_failures"].as_u64().unwrap() >= 1, "{dead:#}");
    // The others kept running and were scored every round.
    for id in ["node-0", "node-1"] {
        let n = node(&state, id);
        assert_eq!(n["status"], "running", "{state:#}");
        assert_eq!(n["exit"], Value::Null);
        assert_eq!(n["correct"].as_u64().unwrap(), 2 * rounds, "{state:#}");
        assert!(n["score"].as_f64().unwrap() > score_after, "{state:#}");
    }
}
