//! The child side of isolated model loading: a process that caps its own
//! address space and CPU time, loads one untrusted model read from stdin,
//! runs it once at its declared shapes, and reports one JSON line.
//!
//! The parent ([`crate::loader`]) only loads a model into the node's own
//! memory after this probe has loaded it within the budget, so a model that
//! would take minutes or gigabytes costs at most one budget, once.

use std::io::{self, Read, Write};
use std::time::Instant;

use attesta_engine::{DType, Dim, Engine, EngineError, Limits, Model, Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Resource limits the probe process sets on itself before touching the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildBudget {
    /// Address-space limit (RLIMIT_AS) in bytes.
    pub max_memory: u64,
    /// CPU-time limit (RLIMIT_CPU) in seconds: a backstop should the parent
    /// die before it can kill the probe.
    pub cpu_seconds: u64,
}

/// What the probe found, written as one JSON line on stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProbeReport {
    /// The model loaded within the budget.
    Loaded {
        /// Milliseconds the engine took to load it.
        load_ms: u64,
        /// The engine's estimate of the model's resident size.
        memory_estimate: usize,
        /// Whether one run at the declared shapes was made, and how it went.
        warmup: Warmup,
        /// Peak resident set of the probe process (VmHWM), when readable.
        peak_rss_bytes: Option<u64>,
    },
    /// The engine refused the model (corrupt, hostile, unsupported).
    Refused {
        /// The engine's reason.
        message: String,
    },
    /// The engine ran out of memory (under the probe's address-space limit).
    OverMemory {
        /// The engine's message.
        message: String,
    },
    /// The probe could not set up its limits; says nothing about the model.
    Unavailable {
        /// What failed.
        message: String,
    },
}

/// The outcome of the probe's one run at the model's declared shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Warmup {
    /// Ran to the end (plan compiled and evaluated on zeros).
    Ran,
    /// Not attempted: some input has a symbolic or undeclared shape.
    Skipped,
    /// The run returned an error (the model may still serve other inputs).
    Failed,
}

/// Applies `budget` to the calling process. Limits only ever shrink, so a
/// model cannot undo them.
#[cfg(unix)]
pub fn apply_budget(budget: &ChildBudget) -> io::Result<()> {
    use rustix::process::{Resource, Rlimit, Signal, setrlimit};
    setrlimit(
        Resource::As,
        Rlimit {
            current: Some(budget.max_memory),
            maximum: Some(budget.max_memory),
        },
    )?;
    // Soft limit sends SIGXCPU, the hard one a second later SIGKILL.
    setrlimit(
        Resource::Cpu,
        Rlimit {
            current: Some(budget.cpu_seconds.max(1)),
            maximum: Some(budget.cpu_seconds.max(1).saturating_add(1)),
        },
    )?;
    // A child killed at its cap must not dump its memory (requests, keys) to disk.
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    // Die with the node rather than linger as an orphan.
    #[cfg(target_os = "linux")]
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    #[cfg(not(target_os = "linux"))]
    let _ = Signal::KILL;
    Ok(())
}

/// Without rlimits there is no isolation: refuse rather than pretend.
#[cfg(not(unix))]
pub fn apply_budget(_budget: &ChildBudget) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "resource limits need a Unix platform",
    ))
}

/// The probe process's whole job: limit itself, read the model from `input`
/// (at most `limits.max_model_bytes`), load and warm it with `engine`, and
/// write the report to `output`. Errors are only I/O errors on the pipes;
/// everything about the model is in the report.
pub fn run_child(
    engine: &dyn Engine,
    limits: &Limits,
    budget: &ChildBudget,
    input: impl Read,
    mut output: impl Write,
) -> io::Result<()> {
    let report = match apply_budget(budget) {
        Err(e) => ProbeReport::Unavailable {
            message: format!("setting resource limits: {e}"),
        },
        Ok(()) => probe(engine, limits, input)?,
    };
    let mut line = serde_json::to_vec(&report).map_err(io::Error::other)?;
    line.push(b'\n');
    output.write_all(&line)?;
    output.flush()
}

fn probe(engine: &dyn Engine, limits: &Limits, input: impl Read) -> io::Result<ProbeReport> {
    let cap = u64::try_from(limits.max_model_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut bytes = Vec::new();
    input.take(cap).read_to_end(&mut bytes)?;
    if bytes.len() > limits.max_model_bytes {
        return Ok(ProbeReport::Refused {
            message: format!("model is over the {} byte limit", limits.max_model_bytes),
        });
    }
    let started = Instant::now();
    let model = match engine.load(&bytes, limits) {
        Ok(m) => m,
        Err(EngineError::OutOfMemory(message)) => return Ok(ProbeReport::OverMemory { message }),
        Err(e) => {
            return Ok(ProbeReport::Refused {
                message: refusal_text(e),
            });
        }
    };
    let load_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    drop(bytes);
    let warmup = warm_up(model.as_ref(), limits);
    Ok(ProbeReport::Loaded {
        load_ms,
        memory_estimate: model.memory_estimate(),
        warmup,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// The engine's reason without its "model cannot be loaded" prefix, which the
/// parent adds back when it rebuilds the error.
fn refusal_text(e: EngineError) -> String {
    match e {
        EngineError::Load(msg) => msg,
        other => other.to_string(),
    }
}

/// Runs the model once on zeros when every input has a fixed declared shape,
/// so the compile cost of those shapes is paid inside the budget too.
fn warm_up(model: &dyn Model, limits: &Limits) -> Warmup {
    let Some(inputs) = zero_inputs(model, limits.max_tensor_bytes) else {
        return Warmup::Skipped;
    };
    match model.run(inputs) {
        Ok(_) => Warmup::Ran,
        Err(_) => Warmup::Failed,
    }
}

fn zero_inputs(model: &dyn Model, max_tensor_bytes: usize) -> Option<Vec<Tensor>> {
    model
        .info()
        .inputs
        .iter()
        .map(|info| {
            let shape: Vec<usize> = info
                .shape
                .as_ref()?
                .iter()
                .map(|d| match d {
                    Dim::Fixed(n) => Some(*n),
                    Dim::Symbolic(_) => None,
                })
                .collect::<Option<_>>()?;
            let n = attesta_engine::element_count(&shape)?;
            if n.checked_mul(info.dtype.size_of())? > max_tensor_bytes {
                return None;
            }
            Tensor::new(shape, zeros(info.dtype, n)?).ok()
        })
        .collect()
}

fn zeros(dtype: DType, n: usize) -> Option<TensorData> {
    Some(match dtype {
        DType::F32 => TensorData::F32(vec![0.0; n]),
        DType::F64 => TensorData::F64(vec![0.0; n]),
        DType::I8 => TensorData::I8(vec![0; n]),
        DType::I16 => TensorData::I16(vec![0; n]),
        DType::I32 => TensorData::I32(vec![0; n]),
        DType::I64 => TensorData::I64(vec![0; n]),
        DType::U8 => TensorData::U8(vec![0; n]),
        DType::U16 => TensorData::U16(vec![0; n]),
        DType::U32 => TensorData::U32(vec![0; n]),
        DType::U64 => TensorData::U64(vec![0; n]),
        DType::Bool => TensorData::Bool(vec![false; n]),
        DType::String => TensorData::String(vec![String::new(); n]),
        _ => return None,
    })
}

/// Peak resident set size of this process (`VmHWM` in /proc/self/status).
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_kib(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmHWM:",
    )
    .map(|kib| kib.saturating_mul(1024))
}

/// Reads a `Name:   1234 kB` line of a /proc status file, in KiB.
pub fn proc_status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_a_status_field() {
        let s = "Name:\tx\nVmHWM:\t   2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(proc_status_kib(s, "VmHWM:"), Some(2048));
        assert_eq!(proc_status_kib(s, "VmRSS:"), Some(1024));
        assert_eq!(proc_status_kib(s, "VmPeak:"), None);
    }

    #[test]
    fn reports_round_trip() {
        let r = ProbeReport::Loaded {
            load_ms: 3,
            memory_estimate: 10,
            warmup: Warmup::Ran,
            peak_rss_bytes: Some(1),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(text.contains("\"outcome\":\"loaded\""), "{text}");
        assert_eq!(serde_json::from_str::<ProbeReport>(&text).unwrap(), r);
    }
}
