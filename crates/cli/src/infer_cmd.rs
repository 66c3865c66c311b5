//! `attesta infer`: one inference through the attested, sealed channel.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use attesta_client::{ClientConfig, ClientError};
use clap::Args;

use crate::policy_args::PolicyArgs;
use crate::target_args::{TargetArgs, gateway_retryable};
use crate::units::parse_duration;
use crate::verify_cmd::read_input;

/// Options of `attesta infer`.
#[derive(Args)]
pub struct InferArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// CID of the model.
    #[arg(long, value_name = "CID")]
    model: String,
    /// OpenGradient `model_inputs` JSON (`{"numbers": [...], "strings": [...]}`); `-` reads stdin.
    #[arg(long, value_name = "FILE")]
    inputs: PathBuf,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    files: AnswerFiles,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    timeout: String,
}

/// Runs `attesta infer`.
pub fn run(args: InferArgs) -> anyhow::Result<ExitCode> {
    let policy = args.policy.policy()?;
    if policy.measurements().is_empty() {
        eprintln!("warning: no --measurements given: any enclave image is accepted");
    }
    let inputs = String::from_utf8(read_input(&args.inputs)?).context("inputs are not UTF-8")?;
    let mut config = ClientConfig::new(policy);
    config.timeout =
        parse_duration(&args.timeout).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    let client = args.target.client(&args.model, config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let attempts = args.target.attempts();
    let mut tries = 0;
    let outcome = loop {
        tries += 1;
        match runtime.block_on(client.infer(&args.model, &inputs)) {
            Ok(o) => break o,
            // Through a gateway, a node that went away is routed around: ask again.
            Err(e) if tries < attempts && gateway_retryable(&e) => {
                eprintln!("retrying through the gateway: {e}");
                client.forget_node();
            }
            Err(e) => return Ok(report_failure(&e)),
        }
    };
    let node = client.cached_node();
    if let Some(n) = &node {
        eprintln!(
            "attested: {} (key set {}), receipt verified, {:.1} ms",
            n.platform,
            hex::encode(&n.keyset.digest()[..8]),
            outcome.latency.as_secs_f64() * 1000.0
        );
    }
    args.files.save(
        &outcome.receipt,
        &outcome.bundle,
        outcome.output.get().as_bytes(),
        &outcome.request,
    )?;
    let answer = serde_json::json!({
        "output": serde_json::from_str::<serde_json::Value>(outcome.output.get())?,
        "model_hash": outcome.model_hash,
    });
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(ExitCode::SUCCESS)
}

/// Where `attesta infer` and `attesta chat` write what the receipt vouches for.
#[derive(clap::Args)]
pub(crate) struct AnswerFiles {
    /// Write the proof bundle (receipt + evidence) here.
    #[arg(long, value_name = "FILE")]
    bundle: Option<PathBuf>,
    /// Write the bytes the receipt's output digest covers (for `attesta verify receipt
    /// --output`): the `output` JSON of an inference, the stream summary of a chat.
    #[arg(long, value_name = "FILE")]
    save_output: Option<PathBuf>,
    /// Write the sealed request's plaintext exactly as the receipt digests it.
    #[arg(long, value_name = "FILE")]
    save_request: Option<PathBuf>,
}

impl AnswerFiles {
    /// Warns about a declared fault, then writes the files asked for.
    pub(crate) fn save(
        &self,
        receipt: &attesta_seal::SignedReceipt,
        bundle: &attesta_seal::ProofBundle,
        output: &[u8],
        request: &[u8],
    ) -> anyhow::Result<()> {
        if let Some(fault) = receipt.declared_fault() {
            eprintln!(
                "warning: the receipt declares the fault `{fault}` (accepted by --accept-declared-faults): this answer may be wrong on purpose"
            );
        }
        let write = |path: &std::path::Path, bytes: &[u8]| {
            std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
        };
        if let Some(path) = &self.bundle {
            write(
                path,
                &bundle.to_json().context("encoding the proof bundle")?,
            )?;
        }
        if let Some(path) = &self.save_output {
            write(path, output)?;
        }
        if let Some(path) = &self.save_request {
            write(path, request)?;
        }
        Ok(())
    }
}

/// Security failures and the node's sealed verdicts exit 3 (rejected);
/// transport, input problems and unauthenticated refusals exit 1.
pub(crate) fn report_failure(e: &ClientError) -> ExitCode {
    match e {
        ClientError::Unauthenticated {
            status,
            code,
            message,
        } => eprintln!(
            "error: unauthenticated refusal (may come from a relay): {code} (HTTP {status}: {message})\n\
             nothing authenticates this answer: it is not the node's verdict, and the request's outcome is unknown"
        ),
        ClientError::Answer(attesta_seal::AnswerError::Remote(r)) => eprintln!(
            "error: the node's authenticated answer: {}: {}",
            r.0.code, r.0.message
        ),
        _ => eprintln!("error: {e}"),
    }
    if let ClientError::Attestation { report, .. } = e {
        eprintln!("{report}");
    }
    match e {
        ClientError::Attestation { .. } | ClientError::Binding(_) | ClientError::Answer(_) => {
            ExitCode::from(crate::EXIT_REJECTED)
        }
        _ => ExitCode::FAILURE,
    }
}
