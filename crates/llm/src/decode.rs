//! The single-token forward pass (a decode step) on plain vectors and a few threads.
//!
//! A decode step is a chain of matrix-vector products, each too small for candle's
//! per-op thread fork/join to pay off: with tensor ops between them, the worker threads
//! spent about half the step waiting. Here every thread runs the whole step in lockstep
//! (as llama.cpp's graph threads do): the cheap vector work (norms, residuals, quantising
//! the activation for the next product) is done by every thread on its own copy, so only
//! the products and the attention are split, rows claimed in chunks from a shared cursor,
//! with one barrier after each. Rows and heads are whole units of work, each computed the
//! same way whichever thread takes it, so the result does not depend on the thread count.
//!
//! Numerics follow the batched path (candle's ops): the same quantised row dot products
//! (llama.cpp's), the same rotary tables, norms and softmax formulas.

use crate::config::Architecture;
use crate::error::{LlmError, Result};
use crate::model::{KvCache, Model};
use crate::weights::{Scratch, dot};
use candle_core::{Device, Tensor};
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// Threads of a decode step: candle's count (`RAYON_NUM_THREADS`, else the cores), read
/// once, so the engine uses what the operator configured for candle.
fn thread_count() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| candle_core::utils::get_num_threads().clamp(1, 256))
}

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
    let step = Step {
        model,
        pos,
        x0,
        cos,
        sin,
        nth,
        barrier: SpinBarrier::new(nth),
        cursors: (0..4 * c.n_layer + 1)
            .map(|_| AtomicUsize::new(0))
            .collect(),
        qkv: Shared::new(c.n_embd + 2 * c.n_head_kv * c.head_dim),
        attn: Shared::new(c.n_embd),
        proj: Shared::new(c.n_embd),
        ffn: Shared::new(c.n_ff),
        logits: Shared::new(c.n_vocab),
        error: Mutex::new(None),
    };

    // Deal the KV heads of every layer to the threads as disjoint slices of the cache.
    let head = cache.rows() * c.head_dim;
    let mut dealt: Vec<Vec<HeadKv<'_>>> = (0..nth).map(|_| Vec::new()).collect();
    for (layer, (kb, vb)) in cache
        .keys
        .iter_mut()
        .zip(cache.values.iter_mut())
        .enumerate()
    {
        for (h, (k, v)) in kb.chunks_mut(head).zip(vb.chunks_mut(head)).enumerate() {
            if let Some(list) = dealt.get_mut(h % nth) {
                list.push(HeadKv {
                    layer,
                    head: h,
                    k,
                    v,
                });
            }
        }
    }
    let mut dealt = dealt.into_iter();
    let mine = dealt.next().unwrap_or_default();
    std::thread::scope(|s| {
        for heads in dealt {
            let step = &step;
            let spawned = std::thread::Builder::new()
                .name("attesta-decode".into())
                .spawn_scoped(s, move || step.run(heads));
            if let Err(e) = spawned {
                step.fail(e.into());
                step.barrier.poison();
            }
        }
        step.run(mine);
    });
    if let Some(e) = step.error.lock().ok().and_then(|mut e| e.take()) {
        return Err(e);
    }
    if step.barrier.is_poisoned() {
        return Err(candle_core::Error::Msg("a decode thread failed".into()).into());
    }
    cache.len += 1;
    let mut logits = vec![0f32; c.n_vocab];
    step.logits.read(&mut logits);
    Ok(logits)
}

/// One KV head of one layer: its key and value rows (`[capacity, head_dim]`).
struct HeadKv<'c> {
    layer: usize,
    head: usize,
    k: &'c mut [f32],
    v: &'c mut [f32],
}

/// What the threads of one step share.
struct Step<'m> {
    model: &'m Model,
    pos: usize,
    /// The token's embedding.
    x0: Vec<f32>,
    /// Rotary cos/sin of this position (`head_dim / 2`).
    cos: Vec<f32>,
    sin: Vec<f32>,
    nth: usize,
    barrier: SpinBarrier,
    /// One row cursor per split product, in the order the step runs them.
    cursors: Vec<AtomicUsize>,
    qkv: Shared,
    attn: Shared,
    proj: Shared,
    ffn: Shared,
    logits: Shared,
    error: Mutex<Option<LlmError>>,
}

impl Step<'_> {
    fn fail(&self, e: LlmError) {
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
    }

    /// One thread's part of the step. Returns early (every thread alike) only when the
    /// barrier is poisoned; an error is recorded and the thread keeps to the lockstep.
    fn run(&self, mut heads: Vec<HeadKv<'_>>) {
        let _guard = PoisonOnPanic(&self.barrier);
        if let Err(e) = self.layers(&mut heads) {
            self.fail(e);
            // The others wait at barriers this thread will not reach.
            self.barrier.poison();
        }
    }

    fn layers(&self, heads: &mut [HeadKv<'_>]) -> Result<()> {
        let m = self.model;
        let c = &m.cfg;
        let (e, ff) = (c.n_embd, c.n_ff);
        let mut x = self.x0.clone();
        let mut h = vec![0f32; e];
        let mut a = vec![0f32; e];
        let mut f = vec![0f32; ff];
        let mut scratch = Scratch::default();
        let mut att = AttnScratch::new(self.pos + 1, c.head_dim);
        let mut gu = Vec::new();
        let mut phase = 0;
        let mut next_head = 0;
        for (layer, b) in m.blocks.iter().enumerate() {
            // Attention: norm, q|k|v rows, then this thread's KV heads.
            rms_norm(&x, &b.attn_norm_v, c.rms_eps, &mut h);
            scratch.reset();
            self.split(phase, b.qkv.rows(), |rows| {
                b.qkv
                    .dot_rows(&h, &mut scratch, rows, |r, v| self.qkv.set(r, v))
            })?;
            phase += 1;
            if !self.barrier.wait() {
                return Ok(());
            }
            while let Some(kv) = heads.get_mut(next_head).filter(|kv| kv.layer == layer) {
                self.attend(kv, b.qkv_bias_v.as_deref(), &mut att);
                next_head += 1;
            }
            if !self.barrier.wait() {
                return Ok(());
            }
            self.attn.read(&mut a);
            scratch.reset();
            self.split(phase, e, |rows| {
                b.wo.dot_rows(&a, &mut scratch, rows, |r, v| self.proj.set(r, v))
            })?;
            phase += 1;
            if !self.barrier.wait() {
                return Ok(());
            }
            self.proj.add_to(&mut x);

            // Feed-forward: gate and up rows of a chunk together, so the chunk's SwiGLU
            // needs no extra barrier.
            rms_norm(&x, &b.ffn_norm_v, c.rms_eps, &mut h);
            scratch.reset();
            self.split(phase, ff, |rows| {
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
                    self.ffn.set(lo + i, g / (1.0 + (-g).exp()) * u);
                }
                Ok(())
            })?;
            phase += 1;
            if !self.barrier.wait() {
                return Ok(());
            }
            self.ffn.read(&mut f);
            scratch.reset();
            self.split(phase, e, |rows| {
                b.down
                    .dot_rows(&f, &mut scratch, rows, |r, v| self.proj.set(r, v))
            })?;
            phase += 1;
            if !self.barrier.wait() {
                return Ok(());
            }
            self.proj.add_to(&mut x);
        }
        rms_norm(&x, &m.norm_v, c.rms_eps, &mut h);
        scratch.reset();
        self.split(phase, c.n_vocab, |rows| {
            m.output
                .dot_rows(&h, &mut scratch, rows, |r, v| self.logits.set(r, v))
        })?;
        Ok(())
    }

    /// Claims chunks of `0..n` from cursor `phase` until none is left: threads that run
    /// ahead (or are not preempted) take more, so a descheduled thread delays the step by
    /// at most one chunk.
    fn split(
        &self,
        phase: usize,
        n: usize,
        mut f: impl FnMut(Range<usize>) -> Result<()>,
    ) -> Result<()> {
        let Some(cursor) = self.cursors.get(phase) else {
            return Err(candle_core::Error::Msg("decode: phase out of range".into()).into());
        };
        let chunk = if self.nth == 1 {
            n
        } else {
            n.div_ceil(self.nth * 8).next_multiple_of(4).max(16)
        };
        loop {
            let start = cursor.fetch_add(chunk, Ordering::Relaxed);
            if start >= n {
                return Ok(());
            }
            f(start..n.min(start + chunk))?;
        }
    }

    /// Rotary-embeds and caches this position's key and value of KV head `kv`, then
    /// attends each query head of its group over positions `0..=pos`.
    fn attend(&self, kv: &mut HeadKv<'_>, bias: Option<&[f32]>, s: &mut AttnScratch) {
        let c = &self.model.cfg;
        let hd = c.head_dim;
        let (e, kvd) = (c.n_embd, c.n_head_kv * hd);
        let pos = self.pos;
        let group = c.n_head / c.n_head_kv;
        let load = |at: usize, dst: &mut [f32]| {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = self.qkv.get(at + i) + bias.map_or(0.0, |b| b[at + i]);
            }
        };
        let key = &mut kv.k[pos * hd..(pos + 1) * hd];
        load(e + kv.head * hd, key);
        self.rope(key, &mut s.tmp);
        load(e + kvd + kv.head * hd, &mut kv.v[pos * hd..(pos + 1) * hd]);
        let t = pos + 1;
        let scale = (1.0 / (hd as f64).sqrt()) as f32;
        for g in 0..group {
            let qh = kv.head * group + g;
            load(qh * hd, &mut s.q);
            self.rope(&mut s.q, &mut s.tmp);
            let scores = &mut s.scores[..t];
            for (j, sc) in scores.iter_mut().enumerate() {
                *sc = dot(&s.q, &kv.k[j * hd..(j + 1) * hd]) * scale;
            }
            let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut sum = 0f32;
            for sc in scores.iter_mut() {
                *sc = (*sc - max).exp();
                sum += *sc;
            }
            s.out.fill(0.0);
            for (j, sc) in scores.iter_mut().enumerate() {
                let p = *sc / sum;
                for (o, &v) in s.out.iter_mut().zip(&kv.v[j * hd..(j + 1) * hd]) {
                    *o += p * v;
                }
            }
            for (i, &o) in s.out.iter().enumerate() {
                self.attn.set(qh * hd + i, o);
            }
        }
    }

    /// Rotates one head in place: adjacent pairs for Llama (`rope_i`), halves for Qwen2
    /// (`rope`), as the batched path.
    fn rope(&self, x: &mut [f32], tmp: &mut [f32]) {
        let half = x.len() / 2;
        tmp.copy_from_slice(x);
        for (i, (&c, &s)) in self.cos.iter().zip(&self.sin).enumerate().take(half) {
            let (a, b) = match self.model.cfg.arch {
                Architecture::Llama => (2 * i, 2 * i + 1),
                Architecture::Qwen2 => (i, i + half),
            };
            let (x0, x1) = (tmp[a], tmp[b]);
            x[a] = x0 * c - x1 * s;
            x[b] = x0 * s + x1 * c;
        }
    }
}

/// Per-thread buffers of the attention.
struct AttnScratch {
    q: Vec<f32>,
    tmp: Vec<f32>,
    out: Vec<f32>,
    scores: Vec<f32>,
}

impl AttnScratch {
    fn new(t: usize, hd: usize) -> Self {
        AttnScratch {
            q: vec![0.0; hd],
            tmp: vec![0.0; hd],
            out: vec![0.0; hd],
            scores: vec![0.0; t],
        }
    }
}

/// `x / sqrt(mean(x²) + eps) * w`, as candle's `rms_norm` computes it.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum2 = x.iter().map(|&v| v * v).sum::<f32>();
    let m = (sum2 / x.len() as f32 + eps).sqrt();
    for ((o, &v), &w) in out.iter_mut().zip(x).zip(w) {
        *o = v / m * w;
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

/// A reusable spinning barrier for the few threads of one step. Waits are short (one
/// product's imbalance), so it spins, then yields to the scheduler (the cores may be
/// shared). Poisoning releases every waiter for good, so a failed thread cannot leave
/// the others waiting.
struct SpinBarrier {
    n: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    poisoned: AtomicBool,
}

/// Spins before a waiting thread starts yielding.
const SPINS: u32 = 20_000;

impl SpinBarrier {
    fn new(n: usize) -> Self {
        SpinBarrier {
            n,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            poisoned: AtomicBool::new(false),
        }
    }

    /// Waits for all `n` threads; false if the barrier was poisoned.
    fn wait(&self) -> bool {
        if self.n == 1 {
            return !self.is_poisoned();
        }
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.n {
            self.arrived.store(0, Ordering::Relaxed);
            self.generation
                .store(generation.wrapping_add(1), Ordering::Release);
        } else {
            let mut spins = 0u32;
            while self.generation.load(Ordering::Acquire) == generation {
                if self.is_poisoned() {
                    return false;
                }
                if spins < SPINS {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
        }
        !self.is_poisoned()
    }

    fn poison(&self) {
        self.poisoned.store(true, Ordering::Release);
    }

    fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }
}

/// Poisons the barrier if the thread unwinds, so no other thread waits forever.
struct PoisonOnPanic<'a>(&'a SpinBarrier);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poison();
        }
    }
}
