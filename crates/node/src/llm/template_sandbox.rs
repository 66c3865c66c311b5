//! Chat templates render in a memory-limited child process.
//!
//! A chat template comes from the model file, and the node loads any model a caller
//! names by CID: the template is untrusted code. minijinja's fuel bounds the steps it
//! takes and the output writer bounds what it prints, but nothing inside the process
//! bounds the strings it builds on the way: a dozen `s ~ s` doublings ask for gigabytes
//! in a few steps, and an allocation failure aborts the whole node. So, as untrusted
//! ONNX models load in a probe first ([`crate::probe`]), templates render in a worker
//! process that caps its own address space (`attesta internal-render-template`). A
//! render that outgrows the cap kills only the worker; the request gets a typed 400 and
//! the next render starts a fresh worker.
//!
//! One long-lived worker serves every render, one at a time (a render takes
//! microseconds; generation, not templating, is what requests wait for). Jobs and
//! replies are single JSON lines on the worker's stdin and stdout.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use attesta_gguf::{ChatMessage, ChatTemplate, TemplateError};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::probe::{ChildBudget, apply_budget};

/// The hidden `attesta` subcommand that runs [`run_child`].
pub const RENDER_SUBCOMMAND: &str = "internal-render-template";

/// Default address-space cap of the render worker.
pub const DEFAULT_RENDER_MEMORY: u64 = 512 << 20;

/// Default wall-clock bound of one render (fuel bounds its steps long before this).
pub const DEFAULT_RENDER_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes of one job line the worker reads: messages are bounded by the node's
/// request size, templates by the GGUF reader's string limit.
const MAX_JOB_LINE: u64 = 256 << 20;

/// The CPU-time backstop of the worker (RLIMIT_CPU counts its whole life): only for a
/// worker orphaned in a way the parent-death signal misses. Fuel bounds each render.
const WORKER_CPU_SECONDS: u64 = 24 * 3600;

/// One render: everything the worker needs to compile and run the template.
#[derive(Debug, Serialize, Deserialize)]
struct Job {
    source: String,
    bos_token: String,
    eos_token: String,
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
}

/// The worker's answer to one [`Job`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    /// The rendered prompt.
    Text(String),
    /// The template failed (syntax, fuel, output size, raise_exception, ...).
    Failed(String),
}

/// Why a render gave no prompt.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The template itself failed: the model's fault, a 400.
    #[error("{0}")]
    Template(String),
    /// The worker died during the render: the template outgrew the memory cap.
    #[error("chat template exceeded the render memory budget of {} MiB", .0 >> 20)]
    OverMemory(u64),
    /// The render outlasted the wall-clock bound.
    #[error("chat template render did not finish within {0:?}")]
    TimedOut(Duration),
    /// The worker could not be started or talked to: a node fault.
    #[error("chat template worker unavailable")]
    Unavailable(#[source] io::Error),
}

/// Where chat templates render.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenderIsolation {
    /// In a worker process started as `program internal-render-template`, capped at
    /// `max_memory` bytes of address space.
    Process {
        /// The `attesta` executable.
        program: PathBuf,
        /// The worker's address-space cap.
        max_memory: u64,
    },
    /// INSECURE: in the node's own process; a hostile template's memory is not bounded.
    InsecureInProcess,
}

/// Renders chat templates under [`RenderIsolation`].
pub struct TemplateSandbox {
    isolation: RenderIsolation,
    timeout: Duration,
    worker: tokio::sync::Mutex<Option<Worker>>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl TemplateSandbox {
    /// A sandbox rendering under `isolation`, each render bounded by `timeout`.
    pub fn new(isolation: RenderIsolation, timeout: Duration) -> Self {
        TemplateSandbox {
            isolation,
            timeout,
            worker: tokio::sync::Mutex::new(None),
        }
    }

    /// Renders `messages` with `template`, appending the assistant's turn header.
    pub async fn render(
        &self,
        template: &ChatTemplate,
        messages: &[ChatMessage],
    ) -> Result<String, RenderError> {
        let (program, max_memory) = match &self.isolation {
            RenderIsolation::InsecureInProcess => {
                return template
                    .render(messages, true)
                    .map_err(|e| RenderError::Template(describe(&e)));
            }
            RenderIsolation::Process {
                program,
                max_memory,
            } => (program, *max_memory),
        };
        let job = Job {
            source: template.source().to_owned(),
            bos_token: template.bos_token().to_owned(),
            eos_token: template.eos_token().to_owned(),
            messages: messages.to_vec(),
            add_generation_prompt: true,
        };
        let mut line = serde_json::to_vec(&job).map_err(|e| RenderError::Unavailable(e.into()))?;
        line.push(b'\n');
        let mut slot = self.worker.lock().await;
        if slot.is_none() {
            *slot = Some(spawn(program, max_memory).map_err(RenderError::Unavailable)?);
        }
        let Some(worker) = slot.as_mut() else {
            return Err(RenderError::Unavailable(io::Error::other("no worker")));
        };
        let outcome = tokio::time::timeout(self.timeout, exchange(worker, &line)).await;
        match outcome {
            Ok(Ok(Reply::Text(text))) => Ok(text),
            Ok(Ok(Reply::Failed(message))) => Err(RenderError::Template(message)),
            Ok(Err(Exchange::Died)) => {
                *slot = None;
                Err(RenderError::OverMemory(max_memory))
            }
            Ok(Err(Exchange::Io(e))) => {
                *slot = None;
                Err(RenderError::Unavailable(e))
            }
            Err(_) => {
                // Dropping the worker kills it (kill_on_drop): the next render starts afresh.
                *slot = None;
                Err(RenderError::TimedOut(self.timeout))
            }
        }
    }
}

enum Exchange {
    /// The worker closed its stdout mid-job: it died (an allocation over its cap aborts it).
    Died,
    Io(io::Error),
}

async fn exchange(worker: &mut Worker, line: &[u8]) -> Result<Reply, Exchange> {
    // A write to a dead worker fails with a broken pipe: the same death as an EOF.
    if worker.stdin.write_all(line).await.is_err() || worker.stdin.flush().await.is_err() {
        return Err(Exchange::Died);
    }
    // The reply is at most the template's output limit, JSON-escaped (<= 6 bytes a byte).
    let cap = u64::try_from(attesta_gguf::TemplateLimits::default().max_output)
        .unwrap_or(u64::MAX)
        .saturating_mul(6)
        .saturating_add(1024);
    let mut reply = Vec::new();
    let n = (&mut worker.stdout)
        .take(cap)
        .read_until(b'\n', &mut reply)
        .await
        .map_err(Exchange::Io)?;
    if n == 0 || reply.last() != Some(&b'\n') {
        if reply.len() as u64 >= cap {
            return Err(Exchange::Io(io::Error::other(
                "worker reply over its bound",
            )));
        }
        let _ = worker.child.start_kill();
        return Err(Exchange::Died);
    }
    serde_json::from_slice(&reply).map_err(|e| Exchange::Io(e.into()))
}

fn spawn(program: &PathBuf, max_memory: u64) -> io::Result<Worker> {
    let mut child = tokio::process::Command::new(program)
        .arg(RENDER_SUBCOMMAND)
        .arg("--max-memory")
        .arg(max_memory.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // The abort message of a worker over its cap ("memory allocation ... failed").
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("worker stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other("worker stdout"))?;
    Ok(Worker {
        child,
        stdin,
        stdout: BufReader::new(stdout),
    })
}

/// The worker process's whole job: cap its own address space at `max_memory`, then
/// answer render jobs from `input` on `output` until `input` ends.
pub fn run_child(max_memory: u64, input: impl BufRead, output: impl Write) -> io::Result<()> {
    apply_budget(&ChildBudget {
        max_memory,
        cpu_seconds: WORKER_CPU_SECONDS,
    })?;
    serve(input, output)
}

/// Answers each job line of `input` with one reply line on `output` (no limits of its
/// own: [`run_child`] sets them first).
pub fn serve(mut input: impl BufRead, mut output: impl Write) -> io::Result<()> {
    loop {
        let mut line = Vec::new();
        let n = io::Read::take(input.by_ref(), MAX_JOB_LINE).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') && n as u64 == MAX_JOB_LINE {
            // The rest of an over-long line would read as further jobs: answer and stop.
            let reply = Reply::Failed(format!("render job over {MAX_JOB_LINE} bytes"));
            return write_reply(&mut output, &reply);
        }
        let reply = match serde_json::from_slice::<Job>(&line) {
            Ok(job) => render_job(&job),
            Err(e) => Reply::Failed(format!("malformed render job: {e}")),
        };
        write_reply(&mut output, &reply)?;
    }
}

fn write_reply(output: &mut impl Write, reply: &Reply) -> io::Result<()> {
    let mut out = serde_json::to_vec(reply).map_err(io::Error::other)?;
    out.push(b'\n');
    output.write_all(&out)?;
    output.flush()
}

fn render_job(job: &Job) -> Reply {
    let rendered = ChatTemplate::new(&job.source, &job.bos_token, &job.eos_token)
        .and_then(|t| t.render(&job.messages, job.add_generation_prompt));
    match rendered {
        Ok(text) => Reply::Text(text),
        Err(e) => Reply::Failed(describe(&e)),
    }
}

/// The error and its causes, for the caller (minijinja's cause says where it failed).
pub fn describe(e: &TemplateError) -> String {
    let mut text = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(cause) = cur {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        cur = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn job(source: &str) -> Vec<u8> {
        let mut line = serde_json::to_vec(&Job {
            source: source.into(),
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
            messages: vec![ChatMessage::new("user", "hi")],
            add_generation_prompt: true,
        })
        .unwrap();
        line.push(b'\n');
        line
    }

    fn replies(input: Vec<u8>) -> Vec<Reply> {
        let mut out = Vec::new();
        serve(&input[..], &mut out).unwrap();
        out.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    #[test]
    fn the_worker_answers_every_job_in_order() {
        let mut input = job(
            "{{ bos_token }}{% for m in messages %}{{ m.role }}={{ m.content }}{% endfor %}{% if add_generation_prompt %}>{% endif %}",
        );
        input.extend(job("{{ raise_exception('no system role') }}"));
        input.extend(b"not json\n");
        input.extend(job("{% for %}"));
        input.extend(job("{{ 'ok' }}"));
        let r = replies(input);
        assert_eq!(r.len(), 5);
        assert!(
            matches!(&r[0], Reply::Text(t) if t == "<s>user=hi>"),
            "{r:?}"
        );
        assert!(
            matches!(&r[1], Reply::Failed(m) if m.contains("no system role")),
            "{r:?}"
        );
        assert!(
            matches!(&r[2], Reply::Failed(m) if m.starts_with("malformed render job")),
            "{r:?}"
        );
        assert!(
            matches!(&r[3], Reply::Failed(m) if m.contains("syntax")),
            "{r:?}"
        );
        assert!(matches!(&r[4], Reply::Text(t) if t == "ok"), "{r:?}");
    }

    #[test]
    fn an_endless_template_runs_out_of_fuel_in_the_worker() {
        let r = replies(job(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        ));
        assert!(
            matches!(&r[0], Reply::Failed(m) if m.contains("step budget")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_missing_worker_program_is_a_node_fault_not_a_template_error() {
        let sandbox = TemplateSandbox::new(
            RenderIsolation::Process {
                program: PathBuf::from("/nonexistent/attesta"),
                max_memory: DEFAULT_RENDER_MEMORY,
            },
            DEFAULT_RENDER_TIMEOUT,
        );
        let t = ChatTemplate::new("{{ 'x' }}", "", "").unwrap();
        let err = sandbox
            .render(&t, &[ChatMessage::new("user", "hi")])
            .await
            .unwrap_err();
        assert!(matches!(err, RenderError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_worker_that_dies_mid_job_is_reported_as_over_memory_and_replaced() {
        // `false` exits at once without answering: the render sees its pipe close, as when
        // an allocation over the cap aborts the worker.
        let sandbox = TemplateSandbox::new(
            RenderIsolation::Process {
                program: PathBuf::from("false"),
                max_memory: 64 << 20,
            },
            DEFAULT_RENDER_TIMEOUT,
        );
        let t = ChatTemplate::new("{{ 'x' }}", "", "").unwrap();
        for _ in 0..2 {
            let err = sandbox
                .render(&t, &[ChatMessage::new("user", "hi")])
                .await
                .unwrap_err();
            assert!(
                matches!(err, RenderError::OverMemory(m) if m == 64 << 20),
                "{err:?}"
            );
            assert!(err.to_string().contains("64 MiB"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_worker_that_never_answers_times_out() {
        // `sleep` ignores its stdin and never writes a line.
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("hang");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sandbox = TemplateSandbox::new(
            RenderIsolation::Process {
                program: script,
                max_memory: DEFAULT_RENDER_MEMORY,
            },
            Duration::from_millis(300),
        );
        let t = ChatTemplate::new("{{ 'x' }}", "", "").unwrap();
        let err = sandbox
            .render(&t, &[ChatMessage::new("user", "hi")])
            .await
            .unwrap_err();
        assert!(matches!(err, RenderError::TimedOut(_)), "{err:?}");
    }
}
