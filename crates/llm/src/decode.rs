//! The single-token forward pass (a decode step) on plain vectors and a few threads.
//!
//! A decode step is a chain of matrix-vector products, each too small for candle's
//! per-op thread fork/join to pay off: with tensor ops between them, the worker threads
//! spent about half the step waiting. Here every thread walks the whole step: the cheap
//! vector work (norms, residuals, quantising a product's input) is done by each thread
//! on its own copy, and the products and the attention are cut into units (chunks of
//! rows, KV heads) that threads claim from a per-phase cursor. A phase's result is ready
//! when its units are *done*, not when every thread has arrived: a thread the scheduler
//! preempts (the cores may be shared) holds up the others only while it holds a unit,
//! and catches up afterwards by reading results, since every phase writes a buffer of
//! its own. Rows and heads are whole units, each computed the same way whichever thread
//! takes it, so the result does not depend on the thread count.
//!
//! The batched pass (`prefill`) reuses this module's per-token arithmetic (norms,
//! attention, SwiGLU) and the same row dot products, so both give identical logits.

use crate::config::Architecture;
use crate::error::{LlmError, Result};
use crate::model::{KvCache, Model};
use crate::weights::{Scratch, dot};
use candle_core::{Device, Tensor};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// Threads of a decode step: candle's count (`RAYON_NUM_THREADS`, else the cores), read
/// once, so the engine uses what the operator configured for candle.
pub(crate) fn thread_count() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| candle_core::utils::get_num_threads().clamp(1, 256))
}

/// Phases of one layer: q|k|v rows, attention heads, output projection rows, gate|up
/// rows, down rows.
const PHASES_PER_LAYER: usize = 5;

/// Logits of `token` at position `cache.len()`, appending its keys and values to `cache`.
/// The caller has checked the token id and the cache's room.
pub(crate) fn forward_token(model: &Model, token: u32, cache: &mut KvCache) -> Result<Vec<f32>> {
    let c = &model.cfg;
    let pos = cache.len;
    let ids = Tensor::from_slice(&[token], 1, &Device::Cpu)?;
    let x0 = model
        .embed
        .embedding(&ids)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let cos = model
        .cos
        .narrow(0, pos, 1)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let sin = model
        .sin
        .narrow(0, pos, 1)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let nth = thread_count();
    let e = c.n_embd;
    // Rows per unit: a few units per thread, so a late thread finds work left.
    let chunk = |n: usize| {
        if nth == 1 {
            n.max(1)
        } else {
            n.div_ceil(nth * 8).next_multiple_of(4).max(16)
        }
    };
    let mut phases = Vec::with_capacity(PHASES_PER_LAYER * c.n_layer + 1);
    let mut buffers = Vec::with_capacity(c.n_layer);
    for b in &model.blocks {
        phases.push(Phase::new(b.qkv.rows(), chunk(b.qkv.rows())));
        phases.push(Phase::new(c.n_head_kv, 1));
        phases.push(Phase::new(e, chunk(e)));
        phases.push(Phase::new(c.n_ff, chunk(c.n_ff)));
        phases.push(Phase::new(e, chunk(e)));
        buffers.push(LayerBuffers {
            qkv: Shared::new(b.qkv.rows()),
            attn: Shared::new(e),
            wo: Shared::new(e),
            ffn: Shared::new(c.n_ff),
            down: Shared::new(e),
        });
    }
    phases.push(Phase::new(c.n_vocab, chunk(c.n_vocab)));
    // Every (layer, KV head) of the cache as a slice pair any thread may lock.
    let head = cache.rows() * c.head_dim;
    let mut heads = Vec::with_capacity(c.n_layer * c.n_head_kv);
    for (kb, vb) in cache.keys.iter_mut().zip(cache.values.iter_mut()) {
        for (k, v) in kb.chunks_mut(head).zip(vb.chunks_mut(head)) {
            heads.push(Mutex::new(HeadKv { k, v }));
        }
    }
    let step = Step {
        model,
        pos,
        x0,
        cos,
        sin,
        phases,
        buffers,
        heads,
        logits: Shared::new(c.n_vocab),
        poisoned: AtomicBool::new(false),
        error: Mutex::new(None),
    };
    std::thread::scope(|s| {
        for _ in 1..nth {
            let step = &step;
            let spawned = std::thread::Builder::new()
                .name("attesta-decode".into())
                .spawn_scoped(s, move || step.run());
            // Without that thread the others do its share: units are claimed, not dealt.
            drop(spawned);
        }
        step.run();
    });
    if let Some(e) = step.error.lock().ok().and_then(|mut e| e.take()) {
        return Err(e);
    }
    if step.poisoned.load(Ordering::Acquire) {
        return Err(candle_core::Error::Msg("a decode thread failed".into()).into());
    }
    cache.len += 1;
    let mut logits = vec![0f32; c.n_vocab];
    step.logits.read(&mut logits);
    Ok(logits)
}

/// One KV head of one layer: its key and value rows (`[capacity, head_dim]`).
pub(crate) struct HeadKv<'c> {
    pub(crate) k: &'c mut [f32],
    pub(crate) v: &'c mut [f32],
}

/// One layer's intermediate results, each written once per step.
struct LayerBuffers {
    qkv: Shared,
    attn: Shared,
    wo: Shared,
    ffn: Shared,
    down: Shared,
}

/// A unit of split work: `n` rows (or heads) in units of `chunk`, claimed from `cursor`,
/// counted in `done` when finished.
struct Phase {
    n: usize,
    chunk: usize,
    units: usize,
    cursor: AtomicUsize,
    done: AtomicUsize,
}

impl Phase {
    fn new(n: usize, chunk: usize) -> Self {
        Phase {
            n,
            chunk,
            units: n.div_ceil(chunk),
            cursor: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        }
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire) >= self.units
    }
}

/// Spins before a waiting thread starts yielding its core.
const SPINS: u32 = 2_000;

/// What the threads of one step share.
struct Step<'m, 'c> {
    model: &'m Model,
    pos: usize,
    /// The token's embedding.
    x0: Vec<f32>,
    /// Rotary cos/sin of this position (`head_dim / 2`).
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// Every split product and attention, in the order the step runs them.
    phases: Vec<Phase>,
    buffers: Vec<LayerBuffers>,
    /// Layer-major: `layer * n_head_kv + head`.
    heads: Vec<Mutex<HeadKv<'c>>>,
    logits: Shared,
    /// Set when a thread failed mid-unit: waiters give up instead of waiting for it.
    poisoned: AtomicBool,
    error: Mutex<Option<LlmError>>,
}

impl Step<'_, '_> {
    fn fail(&self, e: LlmError) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
    }

    /// One thread's walk through the step.
    fn run(&self) {
        let _guard = PoisonOnPanic(&self.poisoned);
        if let Err(e) = self.walk() {
            self.fail(e);
            self.poisoned.store(true, Ordering::Release);
        }
    }

    /// Runs units of `phase` until none is left, calling `unit` with each claimed range
    /// and whether it is this thread's first (when it prepares its copy of the input,
    /// work skipped when other threads took every unit). Then waits until every unit is
    /// done (false if the step was poisoned).
    fn work(
        &self,
        phase: &Phase,
        mut unit: impl FnMut(std::ops::Range<usize>, bool) -> Result<()>,
    ) -> Result<bool> {
        let mut first = true;
        loop {
            let u = phase.cursor.fetch_add(1, Ordering::Relaxed);
            if u >= phase.units {
                break;
            }
            let start = u * phase.chunk;
            let r = unit(start..phase.n.min(start + phase.chunk), first);
            first = false;
            phase.done.fetch_add(1, Ordering::Release);
            r?;
        }
        let mut spins = 0u32;
        while !phase.is_done() {
            if self.poisoned.load(Ordering::Acquire) {
                return Ok(false);
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        Ok(true)
    }

    fn walk(&self) -> Result<()> {
        let m = self.model;
        let c = &m.cfg;
        let ff = c.n_ff;
        let mut x = self.x0.clone();
        let mut h = vec![0f32; c.n_embd];
        let mut a = vec![0f32; c.n_embd];
        let mut f = vec![0f32; ff];
        let mut scratch = Scratch::default();
        let mut att = AttnScratch::new(self.pos + 1, c.head_dim, c.n_head / c.n_head_kv);
        let mut gu = Vec::new();
        let mut phases = self.phases.iter();
        let mut next = || {
            phases
                .next()
                .ok_or_else(|| LlmError::from(candle_core::Error::Msg("decode: phases".into())))
        };
        for (layer, (b, buf)) in m.blocks.iter().zip(&self.buffers).enumerate() {
            // q|k|v rows of the normed input.
            let ok = self.work(next()?, |rows, first| {
                if first {
                    rms_norm(&x, &b.attn_norm_v, c.rms_eps, &mut h);
                    scratch.reset();
                }
                b.qkv
                    .dot_rows(&h, &mut scratch, rows, |r, v| buf.qkv.set(r, v))
            })?;
            // Attention, one KV head (and its query heads) per unit.
            let ok = ok
                && self.work(next()?, |heads, _| {
                    for kvh in heads {
                        let slot = self.heads.get(layer * c.n_head_kv + kvh);
                        let Some(Ok(mut kv)) = slot.map(Mutex::lock) else {
                            return Err(candle_core::Error::Msg(
                                "decode: kv head unavailable".into(),
                            )
                            .into());
                        };
                        attend(
                            c,
                            self.pos,
                            (&self.cos, &self.sin),
                            |i| buf.qkv.get(i),
                            b.qkv_bias_v.as_deref(),
                            &mut kv,
                            kvh,
                            &mut att,
                            |i, v| buf.attn.set(i, v),
                        );
                    }
                    Ok(())
                })?;
            // Output projection.
            let ok = ok
                && self.work(next()?, |rows, first| {
                    if first {
                        buf.attn.read(&mut a);
                        scratch.reset();
                    }
                    b.wo.dot_rows(&a, &mut scratch, rows, |r, v| buf.wo.set(r, v))
                })?;
            if !ok {
                return Ok(());
            }
            buf.wo.add_to(&mut x);
            // Feed-forward: gate and up rows of a chunk together, so the chunk's SwiGLU
            // needs no phase of its own.
            let ok = self.work(next()?, |rows, first| {
                if first {
                    rms_norm(&x, &b.ffn_norm_v, c.rms_eps, &mut h);
                    scratch.reset();
                }
                gu.clear();
                gu.resize(2 * rows.len(), 0f32);
                let (g, u) = gu.split_at_mut(rows.len());
                let lo = rows.start;
                b.gate_up
                    .dot_rows(&h, &mut scratch, rows.clone(), |r, v| g[r - lo] = v)?;
                b.gate_up
                    .dot_rows(&h, &mut scratch, ff + lo..ff + rows.end, |r, v| {
                        u[r - ff - lo] = v
                    })?;
                for (i, (&g, &u)) in g.iter().zip(u.iter()).enumerate() {
                    buf.ffn.set(lo + i, swiglu(g, u));
                }
                Ok(())
            })?;
            let ok = ok
                && self.work(next()?, |rows, first| {
                    if first {
                        buf.ffn.read(&mut f);
                        scratch.reset();
                    }
                    b.down
                        .dot_rows(&f, &mut scratch, rows, |r, v| buf.down.set(r, v))
                })?;
            if !ok {
                return Ok(());
            }
            buf.down.add_to(&mut x);
        }
        self.work(next()?, |rows, first| {
            if first {
                rms_norm(&x, &m.norm_v, c.rms_eps, &mut h);
                scratch.reset();
            }
            m.output
                .dot_rows(&h, &mut scratch, rows, |r, v| self.logits.set(r, v))
        })?;
        Ok(())
    }
}

crate::wide::dispatched! {
    /// Rotary-embeds and caches the key and value of position `pos` of KV head `kvh` (read
    /// from its q|k|v row through `qkv`, plus `bias`), then attends each query head of its
    /// group over positions `0..=pos`, passing output element `i` of the group's heads to
    /// `out`. The one attention arithmetic of the engine: decode steps and batched passes
    /// both call it per (position, KV head), so they agree bit for bit; wider vectors
    /// change only the lanes per instruction (the compiler neither reorders float sums
    /// nor fuses a multiply and an add), and attention is a sixth of a batched pass.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attend(
        cfg: &crate::config::ModelConfig,
        pos: usize,
        cos_sin: (&[f32], &[f32]),
        qkv: impl Fn(usize) -> f32,
        bias: Option<&[f32]>,
        kv: &mut HeadKv<'_>,
        kvh: usize,
        s: &mut AttnScratch,
        out: impl FnMut(usize, f32),
    ) => attend_body;
}

/// [`attend`]'s arithmetic, inlined into each build of it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_body(
    cfg: &crate::config::ModelConfig,
    pos: usize,
    (cos, sin): (&[f32], &[f32]),
    qkv: impl Fn(usize) -> f32,
    bias: Option<&[f32]>,
    kv: &mut HeadKv<'_>,
    kvh: usize,
    s: &mut AttnScratch,
    mut out: impl FnMut(usize, f32),
) {
    let c = cfg;
    let hd = c.head_dim;
    let (e, kvd) = (c.n_embd, c.n_head_kv * hd);
    let group = c.n_head / c.n_head_kv;
    let load = |at: usize, dst: &mut [f32]| {
        for (i, d) in dst.iter_mut().enumerate() {
            *d = qkv(at + i) + bias.map_or(0.0, |b| b[at + i]);
        }
    };
    let key = &mut kv.k[pos * hd..(pos + 1) * hd];
    load(e + kvh * hd, key);
    rope(c.arch, cos, sin, key, &mut s.tmp);
    load(e + kvd + kvh * hd, &mut kv.v[pos * hd..(pos + 1) * hd]);
    let t = pos + 1;
    let scale = (1.0 / (hd as f64).sqrt()) as f32;
    // The query heads of the group pass over each cached key and value together,
    // so each is loaded from memory once; per head the arithmetic is unchanged.
    for (g, q) in s.q.chunks_exact_mut(hd).enumerate().take(group) {
        load((kvh * group + g) * hd, q);
        rope(c.arch, cos, sin, q, &mut s.tmp);
    }
    for j in 0..t {
        let k = &kv.k[j * hd..(j + 1) * hd];
        for (q, sc) in
            s.q.chunks_exact(hd)
                .zip(s.scores.chunks_exact_mut(t))
                .take(group)
        {
            sc[j] = dot(q, k) * scale;
        }
    }
    for (scores, sum) in s
        .scores
        .chunks_exact_mut(t)
        .zip(s.sums.iter_mut())
        .take(group)
    {
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        *sum = 0.0;
        for sc in scores.iter_mut() {
            *sc = (*sc - max).exp();
            *sum += *sc;
        }
        // The weights, each `score / sum`, in one pass (vector divisions) rather than
        // one scalar division per position inside the loop below.
        for sc in scores.iter_mut() {
            *sc /= *sum;
        }
    }
    s.out.fill(0.0);
    // Per query head, its output accumulates over the positions in order: for the usual
    // 64-wide heads in a local array the compiler keeps in registers.
    for (o, weights) in s
        .out
        .chunks_exact_mut(hd)
        .zip(s.scores.chunks_exact(t))
        .take(group)
    {
        match <&mut [f32; 64]>::try_from(&mut *o) {
            Ok(o) => *o = weighted_sum(*o, weights, kv.v),
            Err(_) => {
                for (&p, v) in weights.iter().zip(kv.v.chunks_exact(hd)) {
                    for (o, &v) in o.iter_mut().zip(v) {
                        *o += p * v;
                    }
                }
            }
        }
    }
    for (i, &o) in s.out.iter().enumerate().take(group * hd) {
        out(kvh * group * hd + i, o);
    }
}

/// `acc + Σ_j weights[j] · values[j]` for 64-wide value rows, each element summed in
/// position order (the general loop's arithmetic).
#[inline(always)]
fn weighted_sum(mut acc: [f32; 64], weights: &[f32], values: &[f32]) -> [f32; 64] {
    for (&p, v) in weights.iter().zip(values.chunks_exact(64)) {
        for (o, &v) in acc.iter_mut().zip(v) {
            *o += p * v;
        }
    }
    acc
}

/// Rotates one head in place: adjacent pairs for Llama (`rope_i`), halves for Qwen2
/// (`rope`), with the position's `cos`/`sin` (`head_dim / 2` each).
#[inline(always)]
fn rope(arch: Architecture, cos: &[f32], sin: &[f32], x: &mut [f32], tmp: &mut [f32]) {
    let half = x.len() / 2;
    tmp.copy_from_slice(x);
    for (i, (&c, &s)) in cos.iter().zip(sin).enumerate().take(half) {
        let (a, b) = match arch {
            Architecture::Llama => (2 * i, 2 * i + 1),
            Architecture::Qwen2 => (i, i + half),
        };
        let (x0, x1) = (tmp[a], tmp[b]);
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
    }
}

/// Per-thread buffers of the attention.
pub(crate) struct AttnScratch {
    q: Vec<f32>,
    tmp: Vec<f32>,
    out: Vec<f32>,
    scores: Vec<f32>,
    sums: Vec<f32>,
}

impl AttnScratch {
    /// Buffers for attending over up to `t` positions.
    pub(crate) fn new(t: usize, hd: usize, group: usize) -> Self {
        AttnScratch {
            q: vec![0.0; group * hd],
            tmp: vec![0.0; hd],
            out: vec![0.0; group * hd],
            scores: vec![0.0; group * t],
            sums: vec![0.0; group],
        }
    }
}

/// SwiGLU of one gate and up value: `silu(g) * u`.
pub(crate) fn swiglu(g: f32, u: f32) -> f32 {
    g / (1.0 + (-g).exp()) * u
}

/// `x / sqrt(mean(x²) + eps) * w`, rounded as ggml's `rms_norm` then `mul` round it.
pub(crate) fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    // As ggml rounds it: squares in f32 summed in f64, the mean rounded to f32, one
    // reciprocal square root, then `x * scale` and `* w` as two roundings. Every ulp
    // matters downstream: the next matmul quantises these values, and an ulp across a
    // rounding boundary moves a quantised activation by one step.
    let sum2: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum2 / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(w) {
        *o = (v * scale) * w;
    }
}

/// An f32 vector written by many threads (each element by one) and read by all after a
/// barrier. Relaxed atomic stores and loads compile to plain moves; the barrier orders them.
struct Shared(Vec<AtomicU32>);

impl Shared {
    fn new(n: usize) -> Self {
        Shared((0..n).map(|_| AtomicU32::new(0)).collect())
    }

    fn set(&self, i: usize, v: f32) {
        if let Some(a) = self.0.get(i) {
            a.store(v.to_bits(), Ordering::Relaxed);
        }
    }

    fn get(&self, i: usize) -> f32 {
        self.0
            .get(i)
            .map_or(0.0, |a| f32::from_bits(a.load(Ordering::Relaxed)))
    }

    fn read(&self, dst: &mut [f32]) {
        for (d, a) in dst.iter_mut().zip(&self.0) {
            *d = f32::from_bits(a.load(Ordering::Relaxed));
        }
    }

    fn add_to(&self, dst: &mut [f32]) {
        for (d, a) in dst.iter_mut().zip(&self.0) {
            *d += f32::from_bits(a.load(Ordering::Relaxed));
        }
    }
}

/// Marks the step poisoned if the thread unwinds, so no other thread waits forever for
/// a unit it held.
struct PoisonOnPanic<'a>(&'a AtomicBool);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Release);
        }
    }
}
