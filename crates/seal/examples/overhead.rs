//! What the sealed channel adds per request, in process, for the two
//! benchmark models' payload sizes (MLP: 784 fixed-point inputs, 10 outputs;
//! MiniLM-sized: 2 × 128 int64 inputs, 384 outputs). Not a test.
//!
//! `cargo run --release -p attesta-seal --example overhead [ITERATIONS]`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::convert::Infallible;
use std::time::Instant;

use attesta_seal::channel::SealedOutput;
use attesta_seal::rand_core::{TryCryptoRng, TryRng};
use attesta_seal::{
    NodeKeys, ReplayConfig, ReplayGuard, RequestPlaintext, UnixTime, seal_request, sha256,
};

/// The OS RNG, through the infallible interface.
struct Os;
impl TryRng for Os {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, dst))
            .expect("urandom");
        Ok(())
    }
}
impl TryCryptoRng for Os {}

fn numbers(name: &str, shape: &[usize], f: impl Fn(usize) -> (String, u32)) -> String {
    let n: usize = shape.iter().product();
    let values: Vec<String> = (0..n)
        .map(|i| {
            let (v, d) = f(i);
            format!(r#"{{"value":"{v}","decimals":{d}}}"#)
        })
        .collect();
    format!(
        r#"{{"name":"{name}","shape":{shape:?},"values":[{}]}}"#,
        values.join(",")
    )
}

fn output(n: usize) -> Vec<u8> {
    let xs: Vec<f64> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f64 / 997.0 - 0.5)
        .collect();
    serde_json::to_vec(
        &serde_json::json!([{"name":"y","shape":[1,n],"result":[xs],"type":"number"}]),
    )
    .unwrap()
}

struct Case {
    name: &'static str,
    inputs: String,
    output: Vec<u8>,
}

fn cases() -> Vec<Case> {
    let mlp = format!(
        r#"{{"numbers":[{}],"strings":[]}}"#,
        numbers("x", &[1, 784], |i| (format!("{}", (i * 37) % 1000), 3))
    );
    let minilm = format!(
        r#"{{"numbers":[{},{}],"strings":[]}}"#,
        numbers("input_ids", &[1, 128], |i| (
            format!("{}", 101 + (i * 131) % 30000),
            0
        )),
        numbers("attention_mask", &[1, 128], |_| ("1".into(), 0))
    );
    vec![
        Case {
            name: "mlp",
            inputs: mlp,
            output: output(10),
        },
        Case {
            name: "minilm",
            inputs: minilm,
            output: output(384),
        },
    ]
}

/// CPU time of this thread (ns), from the scheduler: wall time inflates on a busy machine, this does not.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

struct Timer(Instant, u64);
impl Timer {
    fn start() -> Self {
        Timer(Instant::now(), cpu_ns())
    }
    /// (wall µs, cpu µs) per item.
    fn per(&self, n: usize) -> (f64, f64) {
        let wall = self.0.elapsed().as_secs_f64() * 1e6 / n as f64;
        let cpu = (cpu_ns() - self.1) as f64 / 1e3 / n as f64;
        (wall, cpu)
    }
}

/// Requests handled per batch.
const BATCH: usize = 50;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(2000)
        .max(BATCH)
        / BATCH
        * BATCH;
    let keys = NodeKeys::generate(&mut Os);
    let policy = attesta_evidence::Policy::aws_nitro().unwrap();
    let now = UnixTime::from_secs(1_767_225_600);
    println!("{n} requests per case; µs per request, CPU time (wall time in parentheses)\n");
    println!(
        "| payload | request bytes | answer bytes | client seal | node open | node sign + seal | client open + verify | **node total** |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for case in cases() {
        let guard = ReplayGuard::new(ReplayConfig {
            capacity: n * 2,
            ..ReplayConfig::default()
        });
        let requests: Vec<RequestPlaintext> = (0..n)
            .map(|i| RequestPlaintext {
                model: "QmWATWQ7fVPP2EFGu71UkfnqhYXDYH566qy47CnJDgvs8u".into(),
                inputs: serde_json::value::RawValue::from_string(case.inputs.clone()).unwrap(),
                request_id: format!("{i}"),
                issued_at: now.as_secs(),
                nonce: Some("00112233445566778899aabbccddeeff".into()),
            })
            .collect();
        // In batches small enough that the allocator reuses memory, as a serving node
        // does: holding every request's buffers at once would time page faults instead.
        let (mut c_seal, mut n_open, mut n_seal, mut c_open) =
            ([0.0; 2], [0.0; 2], [0.0; 2], [0.0; 2]);
        let add = |acc: &mut [f64; 2], (w, c): (f64, f64)| {
            acc[0] += w / (n / BATCH) as f64;
            acc[1] += c / (n / BATCH) as f64;
        };
        let (mut request_bytes, mut answer_bytes) = (0, 0);
        for batch in requests.chunks_exact(BATCH) {
            let t = Timer::start();
            let sealed: Vec<_> = batch
                .iter()
                .map(|r| seal_request(keys.public(), r, &mut Os).unwrap())
                .collect();
            add(&mut c_seal, t.per(BATCH));
            let t = Timer::start();
            let opened: Vec<_> = sealed
                .iter()
                .map(|(body, _)| {
                    keys.open_request(body, &guard, now)
                        .unwrap()
                        .admit(&guard, now)
                        .unwrap()
                })
                .collect();
            add(&mut n_open, t.per(BATCH));
            let out = SealedOutput {
                output_json: &case.output,
                model_sha256: sha256(b"model"),
                engine: "tract",
                engine_version: "0.23",
                fault: None,
            };
            let t = Timer::start();
            let answers: Vec<Vec<u8>> = opened
                .into_iter()
                .map(|o| o.responder.seal_output(&keys, &out, now, &mut Os).unwrap())
                .collect();
            add(&mut n_seal, t.per(BATCH));
            let t = Timer::start();
            for ((_, ctx), a) in sealed.iter().zip(&answers) {
                std::hint::black_box(ctx.open_verified(a, &policy).unwrap());
            }
            add(&mut c_open, t.per(BATCH));
            request_bytes = sealed[0].0.len();
            answer_bytes = answers[0].len();
        }
        let (c_seal, n_open, n_seal, c_open) = (
            (c_seal[0], c_seal[1]),
            (n_open[0], n_open[1]),
            (n_seal[0], n_seal[1]),
            (c_open[0], c_open[1]),
        );
        let f = |(w, c): (f64, f64)| format!("{c:.1} ({w:.1})");
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | **{}** |",
            case.name,
            request_bytes,
            answer_bytes,
            f(c_seal),
            f(n_open),
            f(n_seal),
            f(c_open),
            f((n_open.0 + n_seal.0, n_open.1 + n_seal.1)),
        );
    }
}
