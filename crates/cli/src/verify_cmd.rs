//! `attesta verify` and `attesta measure`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use attesta_evidence::{Expected, NitroVerifier, UnixTime};
use attesta_seal::{BundleChecks, ProofBundle};
use clap::{Args, Subcommand};

use crate::policy_args::PolicyArgs;

/// Subcommands of `attesta verify`.
#[derive(Subcommand)]
pub enum VerifyCmd {
    /// Verify an attestation document (raw CBOR, base64 or hex; `-` reads stdin) and print a
    /// per-step report. Exit 0 only when every required check passed, 3 when one failed.
    /// A fault a dev node declares is printed (`fault: ... (declared; INSECURE)`) and fails
    /// with `fault_declared` unless `--accept-declared-faults` is given.
    Evidence(EvidenceArgs),
    /// Verify a proof bundle offline: the evidence under the policy, the key binding, the
    /// receipt signature and, when given, the request/output digests. Exit 0 only when verified.
    /// A fault declared in the bundle's evidence is printed and refused as for `evidence`.
    Receipt(ReceiptArgs),
}

/// Options of `attesta verify receipt`.
#[derive(Args)]
pub struct ReceiptArgs {
    /// The proof bundle JSON (`attesta infer --bundle`); `-` reads stdin.
    bundle: PathBuf,
    /// Check the evidence as of this time (RFC 3339) instead of the evidence's own timestamp.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// The `output` JSON the receipt must digest (`attesta infer --save-output`).
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The request plaintext the receipt must digest (`attesta infer --save-request`).
    #[arg(long, value_name = "FILE")]
    request: Option<PathBuf>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `attesta verify evidence`.
#[derive(Args)]
pub struct EvidenceArgs {
    /// The document.
    file: PathBuf,
    /// Verify as of this time (RFC 3339) instead of now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// The nonce the document must carry (hex).
    #[arg(long, value_name = "HEX")]
    nonce: Option<String>,
    /// The `user_data` the document must carry (hex).
    #[arg(long, value_name = "HEX")]
    user_data: Option<String>,
    /// The `public_key` the document must carry (hex).
    #[arg(long, value_name = "HEX")]
    public_key: Option<String>,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Options of `attesta measure`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MeasureArgs {
    #[command(subcommand)]
    what: Option<crate::measure_eif::MeasureWhat>,
    /// Release name to print.
    #[arg(long, default_value = "attesta-dev")]
    name: String,
    /// Measure this executable instead of the running one.
    #[arg(long, value_name = "FILE")]
    executable: Option<PathBuf>,
    /// Also pin the inference library a node runs with (its `--ort-lib`), reported by the dev
    /// TEE in PCR9.
    #[arg(long, value_name = "FILE")]
    engine_lib: Option<PathBuf>,
}

fn hex_arg(v: &Option<String>, what: &str) -> anyhow::Result<Option<Vec<u8>>> {
    v.as_deref()
        .map(|h| hex::decode(h.trim()).with_context(|| format!("--{what} is not hex")))
        .transpose()
}

/// Reads a file argument, `-` meaning stdin.
pub fn read_input(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// The verification time: `--at` or the system clock.
pub fn now_or(at: Option<&str>) -> anyhow::Result<UnixTime> {
    match at {
        Some(t) => UnixTime::parse_rfc3339(t).ok_or_else(|| {
            anyhow::anyhow!("--at {t:?} is not an RFC 3339 time (e.g. 2024-02-26T08:00:00Z)")
        }),
        None => Ok(UnixTime::from_system(std::time::SystemTime::now())),
    }
}

/// Runs `attesta verify ...`.
pub fn run(cmd: VerifyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        VerifyCmd::Evidence(args) => {
            let policy = args.policy.policy()?;
            if policy.measurements().is_empty() {
                eprintln!("warning: no --measurements given: any enclave image is accepted");
            }
            let input = read_input(&args.file)?;
            let expected = Expected {
                nonce: hex_arg(&args.nonce, "nonce")?,
                user_data: hex_arg(&args.user_data, "user-data")?,
                public_key: hex_arg(&args.public_key, "public-key")?,
            };
            let now = now_or(args.at.as_deref())?;
            let verification = NitroVerifier::new(policy).verify(&input, &expected, now);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&verification.report)?);
            } else {
                println!("{}", verification.report);
            }
            Ok(if verification.outcome.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(crate::EXIT_REJECTED)
            })
        }
        VerifyCmd::Receipt(args) => {
            let policy = args.policy.policy()?;
            let bundle = ProofBundle::from_json(&read_input(&args.bundle)?);
            let bundle = match bundle {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("error: not a proof bundle: {e}");
                    return Ok(ExitCode::from(crate::EXIT_REJECTED));
                }
            };
            let output = args.output.as_deref().map(read_input).transpose()?;
            let request = args.request.as_deref().map(read_input).transpose()?;
            let at = args.at.as_deref().map(|t| now_or(Some(t))).transpose()?;
            let checks = BundleChecks {
                at,
                request: request.as_deref(),
                output: output.as_deref(),
            };
            let verification = bundle.verify(&NitroVerifier::new(policy), checks);
            if args.json {
                println!("{}", serde_json::to_string_pretty(&verification.report)?);
            } else {
                println!("{}", verification.report);
            }
            Ok(if verification.outcome.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(crate::EXIT_REJECTED)
            })
        }
    }
}

/// Runs `attesta measure`: the registry entry for this (or the given) executable as the dev TEE measures it.
pub fn measure(args: MeasureArgs) -> anyhow::Result<ExitCode> {
    if let Some(what) = args.what {
        return crate::measure_eif::run(what);
    }
    let exe = match args.executable {
        Some(p) => p,
        None => std::env::current_exe().context("locating the running executable")?,
    };
    let release = attesta_attester::dev::release_for(&exe, args.engine_lib.as_deref(), &args.name)
        .with_context(|| format!("measuring {}", exe.display()))?;
    print!("{}", release.to_toml());
    Ok(ExitCode::SUCCESS)
}
