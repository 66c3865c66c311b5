//! Raw engine latency on one model: random inputs for the declared shapes,
//! a warm-up, then `--iters` sequential runs. Prints one JSON line.
//!
//! ```text
//! cargo run --release -p attesta-engine --example latency -- MODEL.onnx \
//!     [--iters N] [--threads T] [--dim NAME=VALUE]... [--int-max K] [--engine tract|ort]
//!     [--shape D,D,..] [--input NAME=D,D,..]... [--fill NAME=VALUE]...
//! ```
//! `--engine ort` runs onnxruntime from `ATTESTA_ORT_LIB`.
//! Symbolic dimensions take `--dim` values (default 1). Integer inputs get
//! values in `0..K` (default 100), except inputs named `*mask*`, which get 1s
//! (the same rules as `bench/engine_latency.py`). `--shape` sets the first
//! input's shape, `--input` any input's (for models that declare fixed or zero
//! dims, such as Silero VAD's state), `--fill` gives an input one value
//! everywhere (its sample rate, say).

use std::collections::HashMap;
use std::time::Instant;

use attesta_engine::onnxruntime::{OrtEngine, OrtOptions, OrtRuntime};
use attesta_engine::tract::TractEngine;
use attesta_engine::{DType, Dim, Engine, Limits, Tensor, TensorData};

struct Args {
    model: String,
    iters: usize,
    threads: usize,
    dims: HashMap<String, usize>,
    int_max: u64,
    engine: String,
    /// Shape of the first input, overriding its declaration.
    shape: Option<Vec<usize>>,
    /// Shapes of named inputs, overriding their declarations.
    input_shapes: HashMap<String, Vec<usize>>,
    /// Named inputs filled with one value instead of random data.
    fills: HashMap<String, f64>,
}

fn parse_shape(flag: &str, v: &str) -> Result<Vec<usize>, String> {
    if v.is_empty() {
        return Ok(Vec::new());
    }
    v.split(',')
        .map(|d| d.parse::<usize>().map_err(|e| format!("{flag}: {e}")))
        .collect()
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        model: String::new(),
        iters: 100,
        threads: 1,
        dims: HashMap::new(),
        int_max: 100,
        engine: "tract".into(),
        shape: None,
        input_shapes: HashMap::new(),
        fills: HashMap::new(),
    };
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--iters" => args.iters = value()?.parse().map_err(|e| format!("--iters: {e}"))?,
            "--threads" => {
                args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?
            }
            "--engine" => args.engine = value()?,
            "--shape" => args.shape = Some(parse_shape("--shape", &value()?)?),
            "--input" => {
                let v = value()?;
                let (k, dims) = v.split_once('=').ok_or("--input takes NAME=D,D,..")?;
                args.input_shapes
                    .insert(k.to_string(), parse_shape("--input", dims)?);
            }
            "--fill" => {
                let v = value()?;
                let (k, x) = v.split_once('=').ok_or("--fill takes NAME=VALUE")?;
                args.fills.insert(
                    k.to_string(),
                    x.parse().map_err(|e| format!("--fill: {e}"))?,
                );
            }
            "--int-max" => {
                args.int_max = value()?.parse().map_err(|e| format!("--int-max: {e}"))?
            }
            "--dim" => {
                let v = value()?;
                let (k, n) = v.split_once('=').ok_or("--dim takes NAME=VALUE")?;
                args.dims
                    .insert(k.to_string(), n.parse().map_err(|e| format!("--dim: {e}"))?);
            }
            _ if args.model.is_empty() => args.model = a,
            _ => return Err(format!("unexpected argument {a}")),
        }
    }
    if args.model.is_empty() {
        return Err("usage: latency MODEL.onnx [--iters N] [--threads T] [--dim NAME=VALUE]... [--int-max K] [--engine tract|ort] [--shape D,..] [--input NAME=D,..]... [--fill NAME=VALUE]...".into());
    }
    Ok(args)
}

/// splitmix64: deterministic, dependency-free input data.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn random_input(
    name: &str,
    dtype: DType,
    shape: Vec<usize>,
    int_max: u64,
    fill: Option<f64>,
    rng: &mut Rng,
) -> Result<Tensor, String> {
    let n: usize = shape.iter().product();
    if let Some(v) = fill {
        let data = match dtype {
            DType::F32 => TensorData::F32(vec![v as f32; n]),
            DType::F64 => TensorData::F64(vec![v; n]),
            DType::I64 => TensorData::I64(vec![v as i64; n]),
            DType::I32 => TensorData::I32(vec![v as i32; n]),
            other => return Err(format!("input {name}: --fill does not take {other}")),
        };
        return Tensor::new(shape, data).map_err(|e| e.to_string());
    }
    let ints = |rng: &mut Rng| -> Vec<u64> {
        if name.contains("mask") {
            vec![1; n]
        } else {
            (0..n).map(|_| rng.next() % int_max.max(1)).collect()
        }
    };
    let data = match dtype {
        DType::F32 => TensorData::F32((0..n).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect()),
        DType::F64 => TensorData::F64((0..n).map(|_| rng.unit() * 2.0 - 1.0).collect()),
        DType::I64 => TensorData::I64(ints(rng).into_iter().map(|v| v as i64).collect()),
        DType::I32 => TensorData::I32(ints(rng).into_iter().map(|v| v as i32).collect()),
        DType::U8 => TensorData::U8(ints(rng).into_iter().map(|v| v as u8).collect()),
        DType::Bool => TensorData::Bool(ints(rng).into_iter().map(|v| v % 2 == 1).collect()),
        other => return Err(format!("input {name}: no generator for {other}")),
    };
    Tensor::new(shape, data).map_err(|e| e.to_string())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("latency: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let bytes = std::fs::read(&args.model).map_err(|e| format!("{}: {e}", args.model))?;
    let engine: Box<dyn Engine> = match args.engine.as_str() {
        "tract" => Box::new(TractEngine::new(args.threads)),
        "ort" => {
            let rt = OrtRuntime::from_config(None).map_err(|e| format!("onnxruntime: {e}"))?;
            Box::new(OrtEngine::new(
                rt,
                OrtOptions {
                    intra_threads: args.threads,
                    sessions_per_model: 1,
                },
            ))
        }
        other => return Err(format!("unknown engine {other}")),
    };
    let load_start = Instant::now();
    let model = engine
        .load(&bytes, &Limits::default())
        .map_err(|e| e.to_string())?;
    let load_ms = load_start.elapsed().as_secs_f64() * 1e3;

    let mut rng = Rng(42);
    let mut inputs = Vec::new();
    for (ix, decl) in model.info().inputs.iter().enumerate() {
        let declared: Vec<usize> = decl
            .shape
            .iter()
            .flatten()
            .map(|d| match d {
                Dim::Fixed(n) => *n,
                Dim::Symbolic(s) => args.dims.get(s).copied().unwrap_or(1),
            })
            .collect();
        let shape = match (&args.shape, ix) {
            (Some(s), 0) => s.clone(),
            _ => args
                .input_shapes
                .get(&decl.name)
                .cloned()
                .unwrap_or(declared),
        };
        inputs.push(random_input(
            &decl.name,
            decl.dtype,
            shape,
            args.int_max,
            args.fills.get(&decl.name).copied(),
            &mut rng,
        )?);
    }

    let compile_start = Instant::now();
    model.run(inputs.clone()).map_err(|e| e.to_string())?;
    let first_ms = compile_start.elapsed().as_secs_f64() * 1e3;
    for _ in 0..(args.iters / 10).max(3) {
        model.run(inputs.clone()).map_err(|e| e.to_string())?;
    }
    let mut times = Vec::with_capacity(args.iters);
    for _ in 0..args.iters.max(1) {
        let batch = inputs.clone();
        let t = Instant::now();
        let out = model.run(batch).map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(out);
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let p50 = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let line = serde_json::json!({
        "engine": if args.engine == "ort" { "ort" } else { "tract" },
        "version": engine.version(),
        "model": args.model,
        "threads": args.threads,
        "iters": times.len(),
        "load_ms": load_ms,
        "first_run_ms": first_ms,
        "p50_ms": p50,
        "mean_ms": mean,
        "min_ms": times.first().copied().unwrap_or(f64::NAN),
    });
    println!("{line}");
    Ok(())
}
