//! The reveal-round computation against the epoch-schedule vectors (transcribed from
//! `bittensor-drand`) and, on random schedules, against PyPI `bittensor-drand` 2.0.0's
//! `get_encrypted_commit_v2` itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use attesta_bittensor::chain::reveal::{self, EpochSchedule, RevealError};
use serde_json::{Value, json};

fn vectors() -> Value {
    let bytes = attesta_test_support::read_fixture("bittensor/chain/epoch_schedule_vectors.json");
    serde_json::from_slice(&bytes).unwrap()
}

fn schedule(v: &Value) -> EpochSchedule {
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k}"));
    EpochSchedule {
        last_epoch_block: n("last_epoch_block"),
        pending_epoch_at: n("pending_epoch_at"),
        subnet_epoch_index: n("subnet_epoch_index"),
        tempo: u16::try_from(n("tempo")).unwrap(),
        blocks_since_last_step: n("blocks_since_last_step"),
        current_block: n("current_block"),
    }
}

#[test]
fn every_epoch_schedule_vector() {
    let v = vectors();
    let mut n = 0;
    for case in v["predict_first_reveal_block"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let s = schedule(&case["state"]);
        let got = s.first_reveal_block(case["reveal_period_epochs"].as_u64().unwrap());
        match (
            case["expected_reveal_block"].as_u64(),
            case["expected_error"].as_str(),
        ) {
            (Some(block), None) => assert_eq!(got, Ok(block), "{name}"),
            (None, Some("TempoIsZero")) => assert_eq!(got, Err(RevealError::TempoIsZero), "{name}"),
            other => panic!("{name}: unknown expectation {other:?}"),
        }
        n += 1;
    }
    for case in v["commit_epoch_at_extrinsic_block"].as_array().unwrap() {
        let s = schedule(&case["state"]);
        assert_eq!(
            s.commit_epoch(),
            case["expected_commit_epoch"].as_u64().unwrap(),
            "{}",
            case["name"]
        );
        n += 1;
    }
    assert_eq!(n, 4, "the vector file changed: check every case is covered");
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_schedules_match_bittensor_drand() {
    let py = attesta_test_support::bittensor_python();
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let mut cases = Vec::new();
    for _ in 0..300 {
        let tempo = 1 + g.below(400) as u16;
        let current = 1_000 + g.below(1_000_000);
        let last = current - g.below(u64::from(tempo) * 2 + 1);
        let pending = match g.below(3) {
            0 => current + g.below(u64::from(tempo) + 1),
            1 => current - g.below(5),
            _ => 0,
        };
        let s = EpochSchedule {
            last_epoch_block: last,
            pending_epoch_at: pending,
            subnet_epoch_index: g.below(10_000),
            tempo,
            blocks_since_last_step: g.below(u64::from(tempo) * 2),
            current_block: current,
        };
        cases.push((s, g.below(4)));
    }
    let input: Vec<Value> = cases
        .iter()
        .map(|(s, p)| {
            json!([
                s.last_epoch_block,
                s.pending_epoch_at,
                s.subnet_epoch_index,
                s.tempo,
                s.blocks_since_last_step,
                s.current_block,
                p
            ])
        })
        .collect();
    // 12 s blocks = 4 rounds per block: a reveal block off by one is 4 rounds off, far more
    // than the clock moves during the call.
    let script = r#"
import json, sys, bittensor_drand as d
out = []
for (le, pe, ix, t, bs, cb, p) in json.loads(sys.stdin.read()):
    _, rnd = d.get_encrypted_commit_v2([0], [1], 0, le, pe, ix, t, bs, cb, p, 12.0, bytes(32))
    out.append(rnd)
print(json.dumps(out))
"#;
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let before = now();
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(serde_json::to_string(&input).unwrap().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let after = now();
    assert!(
        out.status.success(),
        "bittensor_drand: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rounds: Vec<u64> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rounds.len(), cases.len());
    let bt = Duration::from_secs(12);
    for ((s, p), theirs) in cases.iter().zip(rounds) {
        let lo = reveal::reveal_round(s, *p, before, bt).unwrap();
        let hi = reveal::reveal_round(s, *p, after, bt).unwrap();
        assert!(
            (lo..=hi).contains(&theirs),
            "{s:?} period {p}: ours {lo}..={hi}, bittensor-drand {theirs}"
        );
    }
}
