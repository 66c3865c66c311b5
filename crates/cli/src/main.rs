//! `attesta`: verified, private ML inference on trusted execution environments.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod axon_cmd;
mod chain_args;
mod chat_cmd;
mod config;
mod devnet_cmd;
mod endorse_args;
mod engine_args;
mod infer_cmd;
mod load_args;
mod measure_eif;
mod measure_hw;
mod models_cmd;
mod node_cmd;
mod policy_args;
mod proxy_cmd;
mod signals;
mod target_args;
mod units;
mod validator_cmd;
mod verify_cmd;
mod wallet_args;

/// Exit status for "ran fine, but the answer is no" (e.g. verification failed).
pub const EXIT_REJECTED: u8 = 3;
/// Exit status for flags that contradict each other (as clap's usage errors),
/// e.g. `--insecure-fault` under a hardware TEE.
pub const EXIT_USAGE: u8 = 2;
/// Exit status of `attesta axon --announce` when its hotkey is not registered on the subnet.
pub const EXIT_NOT_REGISTERED: u8 = 4;

#[derive(Parser)]
#[command(
    name = "attesta",
    version,
    about = "Verified, private ML inference on trusted execution environments",
    long_about = "attesta runs ONNX models by IPFS content address inside a TEE, proves what it is \
                  with remote attestation, and lets validators score nodes.\n\n\
                  Exit codes: 0 success, 1 error, 2 usage error, 3 verification rejected, \
                  4 hotkey not registered on the subnet (axon --announce)."
)]
struct Cli {
    /// TOML config file (flags and env vars override it).
    #[arg(long, global = true, env = "ATTESTA_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory for attesta's state [default: $XDG_DATA_HOME/attesta or ~/.local/share/attesta].
    #[arg(long, global = true, env = "ATTESTA_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        env = "ATTESTA_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `attesta_node=debug` (also RUST_LOG).
    #[arg(long, global = true, env = "ATTESTA_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run an inference node (HTTP: /infer, sealed /v1/infer, attestation, /v1/models, /healthz, /metrics).
    Node(Box<node_cmd::NodeArgs>),
    /// Manage the content-addressed model store.
    #[command(subcommand)]
    Models(models_cmd::ModelsCmd),
    /// Run one inference through the attested, sealed channel and verify its receipt.
    Infer(infer_cmd::InferArgs),
    /// Chat with a language model through the attested, sealed channel: tokens stream as
    /// their sealed chunks open; the receipt is verified at the end.
    Chat(chat_cmd::ChatArgs),
    /// Verify attestation evidence (and, with the sealed channel, proof bundles).
    #[command(subcommand)]
    Verify(verify_cmd::VerifyCmd),
    /// Print the measurement registry entry (PCR0) the dev TEE reports for this binary, or
    /// (`measure eif FILE`) the PCRs a Nitro enclave image will report.
    Measure(verify_cmd::MeasureArgs),
    /// Run a validator: challenge nodes, verify, score, emit weights (config: `[validator]`).
    Validator(validator_cmd::ValidatorArgs),
    /// Start a local network of dev-TEE nodes and a validator, and show it working.
    Devnet(devnet_cmd::DevnetArgs),
    /// On a Nitro parent instance: relay TCP to the enclave's vsock API and the enclave's
    /// vsock gateway fetches to TCP.
    Proxy(proxy_cmd::ProxyArgs),
    /// Serve a node behind a Bittensor axon (the SDK's wire format; relays sealed traffic only).
    Axon(axon_cmd::AxonArgs),
    /// Internal: load one model from stdin under resource limits and report (run by `attesta node`).
    #[command(name = "internal-probe-model", hide = true)]
    InternalProbeModel(load_args::ProbeArgs),
    /// Renders chat templates for the node under a memory cap (hidden; started by the node).
    #[command(name = "internal-render-template", hide = true)]
    InternalRenderTemplate(load_args::RenderArgs),
}

/// Settings every subcommand sees.
pub struct Global {
    /// Parsed config file (empty when none given).
    pub file: config::FileConfig,
    /// Resolved data directory.
    pub data_dir: PathBuf,
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .unwrap_or_else(|| filter.to_string());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log);
    let result = (|| {
        let file = config::load(cli.config.as_deref())?;
        let data_dir = cli
            .data_dir
            .clone()
            .or_else(|| file.data_dir.clone())
            .unwrap_or_else(config::default_data_dir);
        let global = Global { file, data_dir };
        match cli.command {
            Command::Node(args) => node_cmd::run(*args, &global),
            Command::Models(cmd) => models_cmd::run(cmd, &global),
            Command::Verify(cmd) => verify_cmd::run(cmd),
            Command::Infer(args) => infer_cmd::run(args),
            Command::Chat(args) => chat_cmd::run(args),
            Command::Measure(args) => verify_cmd::measure(args),
            Command::Validator(args) => validator_cmd::run(args, &global),
            Command::Devnet(args) => devnet_cmd::run(args, &global),
            Command::Proxy(args) => proxy_cmd::run(args),
            Command::Axon(args) => axon_cmd::run(args),
            Command::InternalProbeModel(args) => load_args::probe(args),
            Command::InternalRenderTemplate(args) => load_args::render_templates(args),
        }
    })();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
