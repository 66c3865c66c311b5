//! Helpers shared by the end-to-end tests: paths, a tiny HTTP/1.1 client,
//! and child processes that are killed when the test ends.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod dev_tee;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
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
    attesta_test_support::python()
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

/// Runs `attesta ARGS` to completion: exit code, stdout, stderr.
pub fn run_status(args: &[&str]) -> (i32, String, String) {
    let out = attesta().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `attesta node` on an ephemeral port and waits for its address.
pub fn start_node(extra: &[&str]) -> Proc {
    let mut cmd = attesta();
    cmd.args(["node", "--listen", "127.0.0.1:0"]).args(extra);
    let (mut p, lines) = spawn_reporting(cmd, "node", 1);
    p.addr = lines[0]
        .strip_prefix("listening on ")
        .expect("unexpected first line")
        .trim()
        .to_string();
    p
}

/// Spawns `cmd` (stdout piped, stderr inherited) and waits up to 90 s for its first
/// `lines` stdout lines (addresses or a ready line); the rest of stdout is drained so
/// the child never blocks on a full pipe.
pub fn spawn_reporting(mut cmd: Command, what: &str, lines: usize) -> (Proc, Vec<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let got = (0..lines)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(90))
                .unwrap_or_else(|_| panic!("{what} did not report its first {lines} line(s)"))
        })
        .collect();
    (
        Proc {
            child,
            addr: String::new(),
        },
        got,
    )
}

pub use attesta_test_support::http::Response;

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
    Response::parse(raw)
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

/// A TCP relay that forwards to `target` and records every byte in both directions.
pub fn logging_relay(target: String) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(64) {
            let Ok(client) = conn else { continue };
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        log.lock().unwrap().extend_from_slice(&buf[..n]);
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    (addr, seen)
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A running `attesta devnet`, stopped when dropped the way an operator stops it: SIGTERM,
/// so it stops its nodes and validator itself; SIGKILL only if it has not exited within 15 s
/// (a SIGKILL'd devnet would leave its children running).
pub struct DevnetProcess(pub std::process::Child);

impl Drop for DevnetProcess {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
