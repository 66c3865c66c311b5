//! Loading untrusted models under a time and memory budget.
//!
//! A model is first loaded in a child process that limits its own address
//! space and CPU time ([`crate::probe`]); the node waits for it at most
//! `timeout` and kills it (by dropping it) when the wait ends for any
//! reason. Only a model the probe loaded within the budget is then loaded
//! into the node itself. Loads are bounded in number by [`LoadPermit`]s,
//! and a permit moves into the blocking load so that even a load nobody
//! waits for any more keeps counting until it ends.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use attesta_content::Cid;
use attesta_engine::{Engine, EngineError, Limits, Model};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::probe::ProbeReport;

/// The hidden `attesta` subcommand that runs [`crate::probe::run_child`].
pub const PROBE_SUBCOMMAND: &str = "internal-probe-model";

/// Where and how models are checked before they enter the node's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isolation {
    /// Load each new model first in a resource-limited child process.
    Process(ProbeCommand),
    /// INSECURE: load straight into the node. The time budget still bounds
    /// how long requests wait and failures are remembered, but a hostile
    /// model's memory is not bounded and its load thread cannot be stopped.
    /// For in-process tests and platforms without process limits.
    InsecureInProcess,
}

/// The program that runs the probe: an `attesta` executable and the
/// arguments that select [`PROBE_SUBCOMMAND`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeCommand {
    /// Executable to start.
    pub program: PathBuf,
    /// Arguments before the probe's own flags.
    pub args: Vec<OsString>,
}

impl ProbeCommand {
    /// `program internal-probe-model`, for an `attesta` executable.
    pub fn attesta(program: PathBuf) -> Self {
        ProbeCommand {
            program,
            args: vec![PROBE_SUBCOMMAND.into()],
        }
    }

    /// The running executable, assumed to be `attesta` (falls back to
    /// `attesta` on PATH when the platform cannot name it).
    pub fn this_executable() -> Self {
        Self::attesta(std::env::current_exe().unwrap_or_else(|_| PathBuf::from("attesta")))
    }
}

/// Budget and concurrency of model loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadConfig {
    /// Wall-clock budget of one load (probe and in-process load each).
    pub timeout: Duration,
    /// Address-space budget of the probe process, in bytes.
    pub max_memory: u64,
    /// Loads (probes and in-process loads) that may run at once.
    pub max_concurrent: usize,
    /// How new models are checked.
    pub isolation: Isolation,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            timeout: Duration::from_secs(60),
            max_memory: 4 << 30,
            max_concurrent: 2,
            isolation: Isolation::Process(ProbeCommand::this_executable()),
        }
    }
}

/// Why a model could not be loaded.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file is over `Limits::max_model_bytes`.
    #[error("the model is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// File size.
        size: u64,
        /// The limit.
        limit: usize,
    },
    /// The engine refused the file (in the probe or in-process).
    #[error("{}", engine_reason(.0))]
    Engine(#[source] Arc<EngineError>),
    /// Loading did not finish within the time budget.
    #[error(
        "loading it exceeded the time budget of {} ms (--load-timeout)",
        .budget.as_millis()
    )]
    OverTime {
        /// The budget.
        budget: Duration,
    },
    /// The probe ran out of its address space.
    #[error("loading it exceeded the memory budget of {budget} bytes (--load-max-memory)")]
    OverMemory {
        /// The budget.
        budget: u64,
    },
    /// The probe died without a report for another reason (a crash on this
    /// file, e.g. a stack overflow).
    #[error(
        "the isolated load died ({status}) before reaching its time or memory budget: {stderr}"
    )]
    Crashed {
        /// How it ended.
        status: ExitStatus,
        /// The end of what it wrote to stderr.
        stderr: String,
    },
    /// The probe ended but its report could not be read (a node fault).
    #[error("the isolated load sent no usable report ({status})")]
    BadReport {
        /// How it ended.
        status: ExitStatus,
        /// Why the report did not parse.
        #[source]
        source: Arc<serde_json::Error>,
    },
    /// The probe could not limit itself (a node fault).
    #[error("isolated loading is unavailable: {message}")]
    Unavailable {
        /// The probe's explanation.
        message: String,
    },
    /// The probe process could not be started or talked to (a node fault).
    #[error("running the isolated load")]
    Spawn(#[source] Arc<io::Error>),
    /// The in-process load task died (a node fault).
    #[error("the model load task failed")]
    Task(#[source] Arc<tokio::task::JoinError>),
    /// The language-model engine refused the GGUF file.
    #[error("{0}")]
    Llm(#[source] Arc<attesta_llm::LlmError>),
}

impl LoadError {
    /// True when the failure is a verdict on the file itself: the same bytes
    /// would fail again, so the cache remembers it and never retries.
    pub fn is_verdict(&self) -> bool {
        match self {
            LoadError::TooLarge { .. }
            | LoadError::OverTime { .. }
            | LoadError::OverMemory { .. }
            | LoadError::Crashed { .. } => true,
            LoadError::Engine(e) => {
                matches!(**e, EngineError::Load(_) | EngineError::OutOfMemory(_))
            }
            // Reading our own store can fail transiently; anything else is about the file.
            LoadError::Llm(e) => !matches!(**e, attesta_llm::LlmError::Io(_)),
            LoadError::BadReport { .. }
            | LoadError::Unavailable { .. }
            | LoadError::Spawn(_)
            | LoadError::Task(_) => false,
        }
    }
}

/// A slot among the `max_concurrent` loads; held until the load ends, even
/// past the moment its waiters give up.
#[derive(Debug)]
pub struct LoadPermit(#[allow(dead_code)] OwnedSemaphorePermit);

/// The engine each model is loaded with: a default and per-model choices.
#[derive(Clone)]
pub struct Engines {
    default: Arc<dyn Engine>,
    by_model: HashMap<Cid, Arc<dyn Engine>>,
}

impl Engines {
    /// Every model on `default`.
    pub fn new(default: Arc<dyn Engine>) -> Self {
        Engines {
            default,
            by_model: HashMap::new(),
        }
    }

    /// Loads the model `cid` with `engine` instead of the default.
    pub fn with_override(mut self, cid: Cid, engine: Arc<dyn Engine>) -> Self {
        self.by_model.insert(cid, engine);
        self
    }

    /// The default engine.
    pub fn default_engine(&self) -> &Arc<dyn Engine> {
        &self.default
    }

    /// The engine that loads `cid`.
    pub fn for_model(&self, cid: &Cid) -> &Arc<dyn Engine> {
        self.by_model.get(cid).unwrap_or(&self.default)
    }
}

/// Loads models under a [`LoadConfig`].
pub struct Loader {
    engines: Engines,
    limits: Limits,
    config: LoadConfig,
    permits: Arc<Semaphore>,
}

/// What Rust's default allocation-error handler prints before it aborts: the
/// probe's sign that it hit its address-space limit.
const ALLOC_FAILURE_MARKER: &str = "memory allocation of";
/// Largest probe report accepted.
const MAX_REPORT_BYTES: u64 = 64 << 10;
/// How much of the probe's stderr is kept for an error message.
const STDERR_TAIL_BYTES: usize = 512;

impl Loader {
    /// A loader for models of `engine` within `limits`.
    pub fn new(engine: Arc<dyn Engine>, limits: Limits, config: LoadConfig) -> Self {
        Self::with_engines(Engines::new(engine), limits, config)
    }

    /// A loader whose engine may differ per model.
    pub fn with_engines(engines: Engines, limits: Limits, config: LoadConfig) -> Self {
        let permits = Arc::new(Semaphore::new(config.max_concurrent.max(1)));
        Loader {
            engines,
            limits,
            config,
            permits,
        }
    }

    /// The default engine models are loaded with.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        self.engines.default_engine()
    }

    /// The engines, per model.
    pub fn engines(&self) -> &Engines {
        &self.engines
    }

    /// The caps applied to model files.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The budget and isolation in force.
    pub fn config(&self) -> &LoadConfig {
        &self.config
    }

    /// Waits for a free load slot. (The semaphore is never closed, so the
    /// error cannot happen; it is passed on rather than unwrapped.)
    pub async fn permit(&self) -> Result<LoadPermit, tokio::sync::AcquireError> {
        self.permits.clone().acquire_owned().await.map(LoadPermit)
    }

    /// Loads `bytes` with `engine` (by its name) in a resource-limited child
    /// process and returns its report, or `None` when isolation is off.
    /// Dropping the returned future kills the child.
    pub async fn probe(
        &self,
        engine: &dyn Engine,
        bytes: &[u8],
    ) -> Result<Option<ProbeReport>, LoadError> {
        let Isolation::Process(cmd) = &self.config.isolation else {
            return Ok(None);
        };
        let mut child = tokio::process::Command::new(&cmd.program)
            .args(&cmd.args)
            .args(self.probe_args())
            .args(["--engine", engine.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LoadError::Spawn(Arc::new(e)))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(LoadError::Spawn(Arc::new(io::Error::other(
                "probe pipes missing",
            ))));
        };
        let write = async move {
            // A probe that dies early closes the pipe; its exit status tells why.
            let _ = stdin.write_all(bytes).await;
            drop(stdin);
        };
        let read_report = async move {
            let mut out = Vec::new();
            let _ = stdout.take(MAX_REPORT_BYTES).read_to_end(&mut out).await;
            out
        };
        let run = async {
            let ((), out, err) = tokio::join!(write, read_report, tail(stderr));
            let status = child.wait().await;
            (status, out, err)
        };
        let (status, out, err) = match tokio::time::timeout(self.config.timeout, run).await {
            Ok(r) => r,
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(LoadError::OverTime {
                    budget: self.config.timeout,
                });
            }
        };
        let status = status.map_err(|e| LoadError::Spawn(Arc::new(e)))?;
        self.judge(status, &out, &err).map(Some)
    }

    /// Turns the probe's exit status, stdout and stderr into a verdict.
    fn judge(&self, status: ExitStatus, out: &[u8], err: &[u8]) -> Result<ProbeReport, LoadError> {
        if status.success() {
            let line = out
                .split(|b| *b == b'\n')
                .rfind(|l| !l.is_empty())
                .unwrap_or_default();
            let report: ProbeReport =
                serde_json::from_slice(line).map_err(|e| LoadError::BadReport {
                    status,
                    source: Arc::new(e),
                })?;
            return match report {
                ProbeReport::Refused { message } => {
                    Err(LoadError::Engine(Arc::new(EngineError::Load(message))))
                }
                ProbeReport::Unavailable { message } => Err(LoadError::Unavailable { message }),
                ProbeReport::OverMemory { .. } => Err(LoadError::OverMemory {
                    budget: self.config.max_memory,
                }),
                loaded => Ok(loaded),
            };
        }
        let stderr = String::from_utf8_lossy(err);
        if stderr.contains(ALLOC_FAILURE_MARKER) {
            return Err(LoadError::OverMemory {
                budget: self.config.max_memory,
            });
        }
        if killed_for_cpu(&status) {
            return Err(LoadError::OverTime {
                budget: self.config.timeout,
            });
        }
        Err(LoadError::Crashed {
            status,
            stderr: stderr.trim().to_string(),
        })
    }

    fn probe_args(&self) -> Vec<String> {
        // The CPU limit is a backstop behind the parent's wall-clock kill.
        let cpu = self.config.timeout.as_secs().saturating_add(2);
        vec![
            "--max-memory".into(),
            self.config.max_memory.to_string(),
            "--cpu-seconds".into(),
            cpu.to_string(),
            "--max-model-bytes".into(),
            self.limits.max_model_bytes.to_string(),
            "--max-tensor-bytes".into(),
            self.limits.max_tensor_bytes.to_string(),
            "--max-plans".into(),
            self.limits.max_plans_per_model.to_string(),
            "--max-plan-bytes".into(),
            self.limits.max_plan_bytes.to_string(),
            "--max-nodes".into(),
            self.limits.max_nodes.to_string(),
        ]
    }

    /// Loads `bytes` into this process with `engine`, holding `permit` until
    /// the engine returns even if the time budget runs out first.
    pub async fn load(
        &self,
        engine: Arc<dyn Engine>,
        permit: LoadPermit,
        bytes: Vec<u8>,
    ) -> Result<Arc<dyn Model>, LoadError> {
        let limits = self.limits.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            engine.load(&bytes, &limits)
        });
        match tokio::time::timeout(self.config.timeout, task).await {
            Ok(Ok(loaded)) => loaded.map_err(|e| LoadError::Engine(Arc::new(e))),
            Ok(Err(e)) => Err(LoadError::Task(Arc::new(e))),
            Err(_) => Err(LoadError::OverTime {
                budget: self.config.timeout,
            }),
        }
    }
}

impl Loader {
    /// Loads a GGUF language model in this process, holding `permit` until it is done.
    /// No probe process: the GGUF reader bounds every allocation by the file's own size
    /// and the configuration is checked before any tensor is read, so a hostile file
    /// costs at most its own size in memory and one read of it in time.
    pub async fn load_llm(
        &self,
        permit: LoadPermit,
        bytes: Vec<u8>,
    ) -> Result<Arc<attesta_llm::LlmModel>, LoadError> {
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            attesta_llm::LlmModel::from_bytes(&bytes)
        });
        match tokio::time::timeout(self.config.timeout, task).await {
            Ok(Ok(loaded)) => loaded
                .map(Arc::new)
                .map_err(|e| LoadError::Llm(Arc::new(e))),
            Ok(Err(e)) => Err(LoadError::Task(Arc::new(e))),
            Err(_) => Err(LoadError::OverTime {
                budget: self.config.timeout,
            }),
        }
    }
}

/// The engine's reason without the "model cannot be loaded" prefix that
/// callers put in front of every [`LoadError`].
fn engine_reason(e: &EngineError) -> String {
    match e {
        EngineError::Load(msg) => msg.clone(),
        other => other.to_string(),
    }
}

/// Reads `r` to its end, keeping only the last [`STDERR_TAIL_BYTES`] bytes
/// (so a chatty probe can neither block on a full pipe nor fill our memory).
async fn tail(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = r.read(&mut buf).await {
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            break;
        };
        kept.extend_from_slice(chunk);
        if kept.len() > STDERR_TAIL_BYTES {
            kept.drain(..kept.len() - STDERR_TAIL_BYTES);
        }
    }
    kept
}

#[cfg(unix)]
fn killed_for_cpu(status: &ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    // Past the soft CPU limit the kernel sends SIGXCPU, past the hard one SIGKILL.
    status.signal().is_some_and(|s| {
        s == rustix::process::Signal::XCPU.as_raw() || s == rustix::process::Signal::KILL.as_raw()
    })
}

#[cfg(not(unix))]
fn killed_for_cpu(_status: &ExitStatus) -> bool {
    false
}
