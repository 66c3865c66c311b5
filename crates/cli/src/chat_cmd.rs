//! `attesta chat`: one language-model completion through the attested, sealed channel,
//! tokens printed as their sealed chunks open, the receipt verified at the end.

use std::io::Write;
use std::process::ExitCode;

use attesta_client::ClientConfig;
use clap::Args;
use serde_json::json;

use crate::policy_args::PolicyArgs;
use crate::target_args::{TargetArgs, gateway_retryable};
use crate::units::parse_duration;

/// Options of `attesta chat`.
#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// CID of the language model (a GGUF file).
    #[arg(long, value_name = "CID")]
    model: String,
    /// Print tokens as they arrive (otherwise the answer is printed once verified).
    #[arg(long)]
    stream: bool,
    /// A system message before the prompt.
    #[arg(long, value_name = "TEXT")]
    system: Option<String>,
    /// Send the prompt as a raw completion (`/v1/completions`) instead of a chat.
    #[arg(long)]
    raw: bool,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256, value_name = "N")]
    max_tokens: u32,
    /// Sampling temperature (0 = greedy, reproducible).
    #[arg(long, default_value_t = 0.0, value_name = "T")]
    temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 1.0, value_name = "P")]
    top_p: f32,
    /// Seed of the node's sampler (reproduces a sampled answer).
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    #[command(flatten)]
    policy: PolicyArgs,
    #[command(flatten)]
    files: crate::infer_cmd::AnswerFiles,
    /// Deadline of the whole answer.
    #[arg(long, default_value = "120s", value_name = "DURATION")]
    timeout: String,
    /// The prompt.
    prompt: String,
}

/// Runs `attesta chat`.
pub fn run(args: ChatArgs) -> anyhow::Result<ExitCode> {
    let policy = args.policy.policy()?;
    if policy.measurements().is_empty() {
        eprintln!("warning: no --measurements given: any enclave image is accepted");
    }
    let mut config = ClientConfig::new(policy);
    config.timeout =
        parse_duration(&args.timeout).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    let client = args.target.client(&args.model, config)?;
    let mut body = json!({
        "model": args.model,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "stream": true,
    });
    if let Some(seed) = args.seed {
        body["seed"] = json!(seed);
    }
    let path = if args.raw {
        body["prompt"] = json!(args.prompt);
        "/v1/completions"
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": args.prompt}));
        body["messages"] = json!(messages);
        "/v1/chat/completions"
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let stream = args.stream;
    let (body, attempts) = (body.to_string(), args.target.attempts());
    let mut tries = 0;
    let printed = loop {
        tries += 1;
        let mut shown = false;
        let result = runtime.block_on(client.complete(path, &args.model, &body, |chunk| {
            if stream {
                let c = &chunk["choices"][0];
                let text = c["delta"]["content"]
                    .as_str()
                    .or_else(|| c["text"].as_str());
                if let Some(t) = text {
                    shown |= !t.is_empty();
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(t.as_bytes());
                    let _ = out.flush();
                }
            }
        }));
        match result {
            // Through a gateway, a node that went away before answering is routed around
            // (never once tokens were shown: the user would see two answers).
            Err(e) if tries < attempts && !shown && gateway_retryable(&e) => {
                eprintln!("retrying through the gateway: {e}");
                client.forget_node();
            }
            other => break other,
        }
    };
    let outcome = match printed {
        Ok(o) => o,
        Err(e) => {
            if stream {
                println!();
            }
            return Ok(crate::infer_cmd::report_failure(&e));
        }
    };
    let choice = &outcome.output["choices"][0];
    let text = choice["message"]["content"]
        .as_str()
        .or_else(|| choice["text"].as_str())
        .unwrap_or_default();
    if stream {
        println!();
    } else {
        println!("{text}");
    }
    if let Some(n) = client.cached_node() {
        eprintln!(
            "attested: {} (key set {}), receipt verified: {} tokens in {} chunks, first after {:.0} ms, all {:.0} ms, finish {}",
            n.platform,
            hex::encode(&n.keyset.digest()[..8]),
            outcome.output["usage"]["completion_tokens"],
            outcome.chunks,
            outcome
                .first_chunk
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0),
            outcome.latency.as_secs_f64() * 1000.0,
            choice["finish_reason"].as_str().unwrap_or("?"),
        );
    }
    args.files.save(
        &outcome.receipt,
        &outcome.bundle,
        outcome.summary.get().as_bytes(),
        &outcome.request,
    )?;
    Ok(ExitCode::SUCCESS)
}
