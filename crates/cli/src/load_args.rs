//! `attesta node` options for loading untrusted models under a budget, the
//! in-flight memory budget and the shutdown bound; and the hidden
//! `internal-probe-model` subcommand that runs the isolated load, and the hidden
//! `internal-render-template` worker that renders chat templates under a memory cap.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use attesta_engine::Limits;
use attesta_node::NodeConfig;
use attesta_node::loader::{Isolation, ProbeCommand};
use attesta_node::probe::{ChildBudget, run_child};
use clap::Args;

use crate::config::NodeSection;
use crate::units::{duration_setting as duration, size_setting as size};

/// Default drain period after SIGTERM before the process exits regardless.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Loading, in-flight memory and shutdown options of `attesta node`.
#[derive(Args)]
pub struct LoadArgs {
    /// Time budget of one model load (isolated probe, then in-process load); a model over it
    /// is refused (422 model_load_failed) and never retried [default: 60s].
    #[arg(long, env = "ATTESTA_LOAD_TIMEOUT", value_name = "DURATION")]
    load_timeout: Option<String>,
    /// Address-space budget of the isolated probe that loads each new model first, e.g. 4GiB
    /// [default: 4GiB].
    #[arg(long, env = "ATTESTA_LOAD_MAX_MEMORY", value_name = "SIZE")]
    load_max_memory: Option<String>,
    /// Model loads that may run at once [default: 2].
    #[arg(long, env = "ATTESTA_MAX_CONCURRENT_LOADS", value_name = "N")]
    max_concurrent_loads: Option<usize>,
    /// How new models are checked before they enter the node's memory: `process` (a
    /// resource-limited child process) or `insecure-none` (INSECURE: load in-process, memory
    /// unbounded) [default: process].
    #[arg(long, env = "ATTESTA_LOAD_ISOLATION", value_name = "MODE")]
    load_isolation: Option<IsolationMode>,
    /// Memory budget of the inferences in flight; each is charged an estimate before it runs,
    /// e.g. 1GiB [default: 1GiB].
    #[arg(long, env = "ATTESTA_INFLIGHT_BYTES", value_name = "SIZE")]
    inflight_bytes: Option<String>,
    /// Most tokens one language-model request may generate (a larger `max_tokens` is
    /// refused with 400 `max_tokens_too_large`) [default: 2048].
    #[arg(long, env = "ATTESTA_MAX_COMPLETION_TOKENS", value_name = "N")]
    max_completion_tokens: Option<usize>,
    /// After Ctrl-C or SIGTERM, how long in-flight requests may drain before the process exits
    /// anyway [default: 10s].
    #[arg(long, env = "ATTESTA_SHUTDOWN_TIMEOUT", value_name = "DURATION")]
    shutdown_timeout: Option<String>,
}

/// `--load-isolation` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IsolationMode {
    /// Probe each new model in a resource-limited child process first.
    Process,
    /// INSECURE: load straight into the node.
    InsecureNone,
}

impl LoadArgs {
    /// Applies these options (then the file's `[node]` keys, then defaults)
    /// to `cfg`; returns the shutdown drain bound.
    pub fn apply(&self, file: &NodeSection, cfg: &mut NodeConfig) -> anyhow::Result<Duration> {
        if let Some(t) = duration(
            self.load_timeout.as_ref(),
            file.load_timeout.as_ref(),
            "load-timeout",
        )? {
            anyhow::ensure!(!t.is_zero(), "load-timeout must be positive");
            cfg.loading.timeout = t;
        }
        if let Some(m) = size(
            self.load_max_memory.as_ref(),
            file.load_max_memory.as_ref(),
            "load-max-memory",
        )? {
            cfg.loading.max_memory = m;
        }
        if let Some(n) = self.max_concurrent_loads.or(file.max_concurrent_loads) {
            anyhow::ensure!(n > 0, "max-concurrent-loads must be at least 1");
            cfg.loading.max_concurrent = n;
        }
        let mode = self
            .load_isolation
            .or(file.load_isolation)
            .unwrap_or(IsolationMode::Process);
        cfg.loading.isolation = match mode {
            IsolationMode::Process => {
                let exe = std::env::current_exe()
                    .context("finding the attesta executable for isolated model loads (or pass --load-isolation insecure-none)")?;
                Isolation::Process(ProbeCommand::attesta(exe))
            }
            IsolationMode::InsecureNone => {
                tracing::warn!(
                    "INSECURE: models are loaded without process isolation (--load-isolation insecure-none); a hostile model's memory is not bounded"
                );
                Isolation::InsecureInProcess
            }
        };
        if let Some(b) = size(
            self.inflight_bytes.as_ref(),
            file.inflight_bytes.as_ref(),
            "inflight-bytes",
        )? {
            cfg.inflight_bytes = usize::try_from(b).context("inflight-bytes does not fit")?;
        }
        if let Some(n) = self.max_completion_tokens.or(file.max_completion_tokens) {
            anyhow::ensure!(n >= 1, "--max-completion-tokens must be at least 1");
            cfg.max_completion_tokens = n;
        }
        if cfg.loading.timeout > cfg.request_timeout {
            tracing::info!(
                load_timeout_ms = cfg.loading.timeout.as_millis() as u64,
                request_timeout_ms = cfg.request_timeout.as_millis() as u64,
                "a load that outlasts --request-timeout is stopped when its last request gives up"
            );
        }
        Ok(duration(
            self.shutdown_timeout.as_ref(),
            file.shutdown_timeout.as_ref(),
            "shutdown-timeout",
        )?
        .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT))
    }
}

/// Flags of the hidden probe subcommand, written by
/// `attesta_node::loader::Loader` when it starts a probe.
#[derive(Args)]
pub struct ProbeArgs {
    /// Address-space limit in bytes.
    #[arg(long)]
    max_memory: u64,
    /// CPU-time limit in seconds.
    #[arg(long)]
    cpu_seconds: u64,
    /// Largest model file.
    #[arg(long)]
    max_model_bytes: usize,
    /// Largest tensor.
    #[arg(long)]
    max_tensor_bytes: usize,
    /// Compiled plans per model.
    #[arg(long)]
    max_plans: usize,
    /// Bytes of compiled plans per model.
    #[arg(long)]
    max_plan_bytes: usize,
    /// Graph nodes per model.
    #[arg(long)]
    max_nodes: usize,
    /// Engine to load with (`tract` or `onnxruntime`), as the node will.
    #[arg(long, default_value = "tract")]
    engine: String,
    /// The onnxruntime library (else ATTESTA_ORT_LIB).
    #[arg(long)]
    ort_lib: Option<std::path::PathBuf>,
}

/// Runs the isolated load: model on stdin, one JSON report line on stdout.
pub fn probe(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    // Every field is given: the probe must judge a model by the node's own limits.
    let limits = Limits {
        max_model_bytes: args.max_model_bytes,
        max_tensor_bytes: args.max_tensor_bytes,
        max_plans_per_model: args.max_plans,
        max_plan_bytes: args.max_plan_bytes,
        max_nodes: args.max_nodes,
    };
    let budget = ChildBudget {
        max_memory: args.max_memory,
        cpu_seconds: args.cpu_seconds,
    };
    let engine = crate::engine_args::probe_engine(&args.engine, args.ort_lib.as_deref())?;
    run_child(
        engine.as_ref(),
        &limits,
        &budget,
        std::io::stdin().lock(),
        std::io::stdout().lock(),
    )
    .context("talking to the node")?;
    Ok(ExitCode::SUCCESS)
}

/// Flags of the hidden template worker, written by
/// `attesta_node::llm::template_sandbox` when it starts one.
#[derive(Args)]
pub struct RenderArgs {
    /// Address-space limit in bytes.
    #[arg(long)]
    max_memory: u64,
}

/// Runs the template worker: render jobs on stdin, one JSON reply line each on stdout.
pub fn render_templates(args: RenderArgs) -> anyhow::Result<ExitCode> {
    attesta_node::llm::template_sandbox::run_child(
        args.max_memory,
        std::io::stdin().lock(),
        std::io::stdout().lock(),
    )
    .context("template worker")?;
    Ok(ExitCode::SUCCESS)
}
