//! `attesta node` engine choice: tract (pure Rust) or onnxruntime (a shared
//! library loaded at start, measured into the node's attestation), globally
//! and per model.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use attesta_content::Cid;
use attesta_engine::Engine;
use attesta_engine::onnxruntime::{OrtEngine, OrtOptions, OrtRuntime};
use attesta_engine::tract::TractEngine;
use clap::Args;

use crate::config::NodeSection;

/// `--engine` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineMode {
    /// onnxruntime when its library loads, else tract.
    Auto,
    /// tract, the pure-Rust engine.
    Tract,
    /// onnxruntime (`--ort-lib`); the node does not start without it.
    Ort,
}

/// Engine options of `attesta node`.
#[derive(Args)]
pub struct EngineArgs {
    /// Inference engine: `auto` (onnxruntime when its library loads, else tract), `tract`
    /// (pure Rust) or `ort` (onnxruntime; refuse to start without it) [default: auto].
    #[arg(long, env = "ATTESTA_ENGINE", value_name = "ENGINE")]
    engine: Option<EngineMode>,
    /// The onnxruntime shared library (libonnxruntime.so.*) for the ort engine; its SHA-384 is
    /// part of what the node attests.
    #[arg(long, env = "ATTESTA_ORT_LIB", value_name = "FILE")]
    ort_lib: Option<PathBuf>,
    /// Sessions per model on the ort engine: runs of one model that proceed at once
    /// [default: workers, at most 4].
    #[arg(long, env = "ATTESTA_ORT_SESSIONS", value_name = "N")]
    ort_sessions_per_model: Option<usize>,
}

/// The engines a node runs: the default and the per-model choices.
pub struct ChosenEngines {
    /// Engine of every model without an override.
    pub default: Arc<dyn Engine>,
    /// Per-model overrides from the config file's `model_engines`.
    pub overrides: Vec<(Cid, Arc<dyn Engine>)>,
    /// The onnxruntime library, when loaded (its hash is attested).
    pub ort: Option<&'static OrtRuntime>,
}

impl EngineArgs {
    /// The `--ort-lib` path from the flag, then the file.
    pub fn ort_lib(&self, file: &NodeSection) -> Option<PathBuf> {
        self.ort_lib.clone().or_else(|| file.ort_lib.clone())
    }

    /// Builds the engines: `--engine`, then the file, then `auto`; `auto`
    /// falls back to tract (logged) when onnxruntime does not load.
    pub fn choose(
        &self,
        file: &NodeSection,
        intra_threads: usize,
        workers: usize,
    ) -> anyhow::Result<ChosenEngines> {
        let mode = self.engine.or(file.engine).unwrap_or(EngineMode::Auto);
        let lib = self.ort_lib(file);
        let sessions = self
            .ort_sessions_per_model
            .or(file.ort_sessions_per_model)
            .unwrap_or_else(|| workers.clamp(1, 4));
        anyhow::ensure!(sessions > 0, "ort-sessions-per-model must be at least 1");
        let options = OrtOptions {
            intra_threads,
            sessions_per_model: sessions,
        };
        let overrides_file = file.model_engines.clone().unwrap_or_default();
        let needs_ort =
            mode == EngineMode::Ort || overrides_file.values().any(|m| *m == EngineMode::Ort);
        let ort = match OrtRuntime::from_config(lib.as_deref()) {
            Ok(rt) => Some(rt),
            Err(e) if needs_ort => {
                return Err(anyhow::Error::new(e).context("the ort engine was asked for"));
            }
            Err(e) => {
                if mode == EngineMode::Auto {
                    let reason = format!("{:#}", anyhow::Error::new(e));
                    tracing::info!(%reason, "onnxruntime not loaded; using tract");
                }
                None
            }
        };
        let tract: Arc<dyn Engine> = Arc::new(TractEngine::new(intra_threads));
        let ort_engine: Option<Arc<dyn Engine>> =
            ort.map(|rt| Arc::new(OrtEngine::new(rt, options)) as Arc<dyn Engine>);
        let pick = |m: EngineMode| -> Arc<dyn Engine> {
            match (m, &ort_engine) {
                (EngineMode::Tract, _) | (_, None) => tract.clone(),
                (_, Some(o)) => o.clone(),
            }
        };
        let default = pick(mode);
        let overrides = overrides_file
            .iter()
            .map(|(cid, m)| {
                let cid: Cid = cid
                    .parse()
                    .map_err(|e| anyhow::anyhow!("model_engines key {cid:?}: {e}"))?;
                Ok((cid, pick(*m)))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        match ort {
            Some(rt) => tracing::info!(
                engine = default.name(),
                engine_version = default.version(),
                ort_lib = %rt.path().display(),
                ort_sha384 = %hex::encode(rt.sha384()),
                overrides = overrides.len(),
                "inference engine"
            ),
            None => tracing::info!(
                engine = default.name(),
                engine_version = default.version(),
                overrides = overrides.len(),
                "inference engine"
            ),
        }
        Ok(ChosenEngines {
            default,
            overrides,
            ort,
        })
    }
}

/// Builds the engine a probe process was asked for by name.
pub fn probe_engine(
    name: &str,
    ort_lib: Option<&std::path::Path>,
) -> anyhow::Result<Box<dyn Engine>> {
    match name {
        "tract" => Ok(Box::new(TractEngine::new(1))),
        "onnxruntime" => {
            let rt =
                OrtRuntime::from_config(ort_lib).context("loading onnxruntime in the probe")?;
            Ok(Box::new(OrtEngine::new(
                rt,
                OrtOptions {
                    intra_threads: 1,
                    sessions_per_model: 1,
                },
            )))
        }
        other => anyhow::bail!("unknown engine {other:?}"),
    }
}
