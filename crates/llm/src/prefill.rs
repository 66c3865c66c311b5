//! The batched forward pass (a prompt's prefill, a validator's teacher-forced check) on
//! plain vectors, with the decode step's arithmetic.
//!
//! Why not tensor ops: a validator accepts a completion when every claimed token is the
//! argmax of its teacher-forced logits, and those logits must be the ones the node saw
//! while generating. With quantised activations a difference of one rounding in one
//! product can flip a quantisation step and move later logits by tenths; two different
//! summation orders (candle's batched ops, the decode step's loops) did exactly that on
//! a 24-layer test model. So a batched pass is a decode step done for many tokens at once:
//! the same norms, rotary embedding, attention (`decode::attend`, per position and KV
//! head, in position order) and SwiGLU per token, and products through
//! [`Linear::forward_rows`], whose every output is the decode path's row dot product.
//! The result: on one build and CPU, a check's logits equal the generation's bit for bit,
//! whatever the chunking and thread count.

use crate::decode::{AttnScratch, HeadKv, attend, rms_norm, swiglu};
use crate::error::{LlmError, Result};
use crate::model::{KvCache, Logits, Model};
use candle_core::{Device, Tensor};
use std::sync::Mutex;

/// Logits of `tokens` (positions `cache.len()..`), appending their keys and values to
/// `cache`: the last row (`Logits::Last`) or every row. The caller has checked the ids
/// and the cache's room.
pub(crate) fn forward_batch(
    model: &Model,
    tokens: &[u32],
    cache: &mut KvCache,
    which: Logits,
) -> Result<Vec<f32>> {
    let c = &model.cfg;
    let (n, e, ff) = (tokens.len(), c.n_embd, c.n_ff);
    let pos = cache.len;
    let ids = Tensor::from_slice(tokens, n, &Device::Cpu)?;
    let mut x = model
        .embed
        .embedding(&ids)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let half = model.cos.dim(1)?;
    let cos = model
        .cos
        .narrow(0, pos, n)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let sin = model
        .sin
        .narrow(0, pos, n)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut h = vec![0f32; n * e];
    let head = cache.rows() * c.head_dim;
    for (layer, b) in model.blocks.iter().enumerate() {
        per_row(&mut h, e, |t, ht| {
            rms_norm(&x[t * e..(t + 1) * e], &b.attn_norm_v, c.rms_eps, ht)
        });
        let qkv = b.qkv.forward_rows(&h, n)?;
        let width = b.qkv.rows();
        // Attention: one unit per KV head, its positions in order.
        let attn: Vec<Mutex<Vec<f32>>> = (0..c.n_head_kv).map(|_| Mutex::new(Vec::new())).collect();
        let heads: Vec<Mutex<HeadKv<'_>>> = cache.keys[layer]
            .chunks_mut(head)
            .zip(cache.values[layer].chunks_mut(head))
            .map(|(k, v)| Mutex::new(HeadKv { k, v }))
            .collect();
        let group = c.n_head / c.n_head_kv;
        let failed = Mutex::new(false);
        candle_core::utils::barrier_pool().execute_chunked(c.n_head_kv, |units| {
            let mut s = AttnScratch::new(pos + n, c.head_dim, group);
            for kvh in units {
                let (Some(Ok(mut kv)), Some(Ok(mut out))) = (
                    heads.get(kvh).map(Mutex::lock),
                    attn.get(kvh).map(Mutex::lock),
                ) else {
                    if let Ok(mut f) = failed.lock() {
                        *f = true;
                    }
                    return;
                };
                let span = group * c.head_dim;
                out.resize(n * span, 0.0);
                for t in 0..n {
                    let row = &qkv[t * width..(t + 1) * width];
                    let o = &mut out[t * span..(t + 1) * span];
                    let base = kvh * span;
                    attend(
                        c,
                        pos + t,
                        (
                            &cos[t * half..(t + 1) * half],
                            &sin[t * half..(t + 1) * half],
                        ),
                        |i| row[i],
                        b.qkv_bias_v.as_deref(),
                        &mut kv,
                        kvh,
                        &mut s,
                        |i, v| o[i - base] = v,
                    );
                }
            }
        });
        drop(heads);
        if failed.into_inner().unwrap_or(true) {
            return Err(LlmError::from(candle_core::Error::Msg(
                "prefill: attention head unavailable".into(),
            )));
        }
        // Heads back into token-major rows: [n, e].
        let span = group * c.head_dim;
        for (kvh, part) in attn.into_iter().enumerate() {
            let part = part.into_inner().unwrap_or_default();
            for t in 0..n {
                h[t * e + kvh * span..t * e + (kvh + 1) * span]
                    .copy_from_slice(&part[t * span..(t + 1) * span]);
            }
        }
        let wo = b.wo.forward_rows(&h, n)?;
        per_row(&mut x, e, |t, xt| add(xt, &wo[t * e..(t + 1) * e]));
        per_row(&mut h, e, |t, ht| {
            rms_norm(&x[t * e..(t + 1) * e], &b.ffn_norm_v, c.rms_eps, ht)
        });
        let gu = b.gate_up.forward_rows(&h, n)?;
        let mut f = vec![0f32; n * ff];
        per_row(&mut f, ff, |t, ft| {
            let (g, u) = gu[t * 2 * ff..(t + 1) * 2 * ff].split_at(ff);
            for ((o, &g), &u) in ft.iter_mut().zip(g).zip(u) {
                *o = swiglu(g, u);
            }
        });
        let down = b.down.forward_rows(&f, n)?;
        per_row(&mut x, e, |t, xt| add(xt, &down[t * e..(t + 1) * e]));
    }
    cache.len += n;
    let keep = match which {
        Logits::Last => 1,
        Logits::All => n,
        Logits::Tail(t) => t.clamp(1, n),
    };
    let rows = &x[(n - keep) * e..];
    let m = rows.len() / e;
    let mut normed = vec![0f32; rows.len()];
    for (xt, ht) in rows.chunks_exact(e).zip(normed.chunks_exact_mut(e)) {
        rms_norm(xt, &model.norm_v, c.rms_eps, ht);
    }
    model.output.forward_rows(&normed, m)
}

/// `f(t, row)` for every row `t` of `rows` (`width` values each), a few rows per work
/// item on candle's pool: the per-token steps between two products (norms, SwiGLU,
/// residual adds) would otherwise leave the other threads waiting. Each row is computed
/// as a decode step computes it, whichever thread runs it.
fn per_row(rows: &mut [f32], width: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    /// Rows per work item.
    const ROWS: usize = 8;
    let blocks: Vec<Mutex<&mut [f32]>> = rows.chunks_mut(ROWS * width).map(Mutex::new).collect();
    candle_core::utils::barrier_pool().execute_chunked(blocks.len(), |items| {
        for b in items {
            if let Some(Ok(mut block)) = blocks.get(b).map(Mutex::lock) {
                for (i, row) in block.chunks_exact_mut(width).enumerate() {
                    f(b * ROWS + i, row);
                }
            }
        }
    });
}

/// `x += y`, element by element (the decode step's residual add).
fn add(x: &mut [f32], y: &[f32]) {
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
