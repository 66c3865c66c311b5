//! Helpers shared by the end-to-end tests: paths, a tiny HTTP/1.1 client,
//! and child processes that are killed when the test ends.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The `attesta` binary under test.
pub fn attesta() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_attesta"));
    c.env_remove("ATTESTA_CONFIG").env("ATTESTA_LOG", "warn");
    c
}

/// The Python interpreter with onnx/onnxruntime (see scripts/setup-venv).
pub fn python() -> PathBuf {
    let p = std::env::var_os("ATTESTA_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "Python venv not found at {} — run scripts/setup-venv",
        p.display()
    );
    p
}

/// Builds the named test models with scripts/make_models.py into `dir`.
pub fn make_models(dir: &Path, names: &[&str]) {
    let out = Command::new(python())
        .arg(workspace().join("scripts/make_models.py"))
        .arg(dir)
        .arg("--only")
        .args(names)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "make_models failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `attesta` to completion and returns stdout, asserting success.
pub fn run_ok(args: &[&str]) -> String {
    let out = attesta().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "attesta {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub addr: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `attesta node` on an ephemeral port and waits for its address.
pub fn start_node(extra: &[&str]) -> Proc {
    let mut cmd = attesta();
    cmd.args(["node", "--listen", "127.0.0.1:0"]).args(extra);
    let (mut p, line) = spawn_reporting(cmd, "node");
    p.addr = line
        .strip_prefix("listening on ")
        .expect("unexpected first line")
        .trim()
        .to_string();
    p
}

/// Spawns `cmd` (stdout piped, stderr inherited) and waits up to 90 s for its first
/// stdout line (an address or a ready line); the rest of stdout is drained.
pub fn spawn_reporting(mut cmd: Command, what: &str) -> (Proc, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(90))
        .unwrap_or_else(|_| panic!("{what} did not report its first line"));
    (
        Proc {
            child,
            addr: String::new(),
        },
        line,
    )
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a JSON error with the given status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let j = self.json();
        assert_eq!(j["error"]["code"], code, "body: {j}");
        assert!(
            j["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "body: {j}"
        );
    }
}

/// Sends one request with `Connection: close` and reads the whole answer.
pub fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> Response {
    http_typed(addr, method, path, "application/json", body)
}

/// [`http`] with the given `Content-Type`.
pub fn http_typed(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (e.g. 413) before reading everything; ignore write errors.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = std::str::from_utf8(&raw[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let len = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if len == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + len]);
        b = &b[nl + 4 + len..];
    }
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
