//! Batched (prefill) products of Q8_0 and Q4_K weights with many input rows, on AVX-512
//! VNNI.
//!
//! Why its own kernel: a prefill or a validator's teacher-forced check multiplies every
//! weight matrix by hundreds of token rows, so it is compute-bound, and the per-pair dot
//! products of the decode path (candle's and ours) unpack each weight block again for
//! every token: candle's Q4_K × Q8_K dot spends most of its time on nibbles and 6-bit
//! scales. Here a tile of weight rows is unpacked once into plain bytes (Q4_K's 4-bit
//! values, Q8_0's signed bytes), and each 64-value chunk of a (row, token) pair is one
//! `vpdpbusd` (64 u8 × s8 products summed by fours into 16 integer lanes), one conversion
//! and one fused multiply-add (the scale products of a chunk's 4 × 4 pairs are two
//! vector multiplies), with four rows × four tokens held in registers.
//!
//! Layout: the weight side is the unsigned operand (Q4_K's 4-bit values as they are,
//! Q8_0's bytes offset by 128) and the tokens the signed one; for Q8_0 the `128 · Σx` the
//! offset adds to each lane is precomputed per token chunk and is the integer
//! accumulator's starting value, so every lane's integer sum is exact. Both sides are
//! stored in blocks of four rows (four tokens), chunk-major inside a block ([`slot`]),
//! so a register block walks one contiguous run per array. Two
//! 32-value groups with different scales (two Q8_0 blocks; two Q4_K sub-blocks) share a
//! chunk interleaved by fours: even lanes hold the first group, odd lanes the second, and
//! a chunk's scales are one broadcast 64-bit pair. Q4_K's minimums (`dmin · m_j ·
//! Σ x` per sub-block) are subtracted once per 256-value super-block.
//!
//! Numerics: every product and every lane's integer sum is exact; the scaling and the
//! f32 sums run in one fixed order ([`step`], then one horizontal sum), and the decode
//! path's single-vector products ([`dot_rows`]) run the very same
//! steps, so on a CPU with these features batched and single-token logits are identical.
//! Against candle's per-row dot products (the AVX2 and portable paths) results differ by
//! float rounding only (the tests bound it).

use candle_core::quantized::GgmlDType;
use candle_core::quantized::k_quants::{BlockQ4K, BlockQ8_0, BlockQ8K, GgmlType, QK_K, QK8_0};
use std::arch::x86_64::*;
use std::sync::atomic::{AtomicU32, Ordering};

/// Values per chunk: one 512-bit register of bytes.
const CHUNK: usize = 64;
/// Weight rows per work item: unpacked once, then dotted with every token row. Each
/// tile streams the whole token array through the caches once (megabytes for a
/// 256-token prefill), so wider tiles stream it less often: 32 rows made 2-thread Q8_0
/// prefills ~20 % faster than 16; 64 measured no better.
const TILE: usize = 32;
/// Weight rows and token rows per register block.
const R: usize = 4;
const T: usize = 4;

/// Whether this CPU runs the kernels (checked once).
pub(crate) fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("f16c")
    })
}

/// Whether a `[n, k]` matrix of `Q8_0` rows fits the chunking (an even number of blocks).
pub(crate) fn q8_0_fits(k: usize) -> bool {
    k.is_multiple_of(CHUNK)
}

/// The token rows, unpacked in blocks of [`T`] tokens ([`slot`]: block, chunk, token),
/// so a block of tokens is one contiguous run. Reused from call to call by the
/// decode path (one vector per thread), so no step allocates.
#[derive(Default)]
pub(crate) struct Tokens {
    /// The signed values, interleaved by fours.
    q: Vec<__m512i>,
    /// Q8_0 only: `-128 · Σ x` of each lane's four values, the integer accumulator's start
    /// (the weights are offset by 128; see the module doc).
    init: Vec<__m512i>,
    /// The two groups' scales of each chunk (`f32` bits, first group low).
    sc: Vec<u64>,
    /// Q4_K only: per super-block (laid out like the chunks), `d_x · Σ x` of its eight
    /// 32-value sub-blocks, then eight zeros (so one 512-bit multiply covers them).
    sums: Vec<__m512>,
}

/// A tile of weight rows, unpacked like [`Tokens`] in blocks of [`R`] rows.
struct Rows {
    /// The unsigned values (Q8_0's offset by 128, Q4_K's as they are), interleaved.
    u: Vec<__m512i>,
    /// The two groups' scales of each chunk.
    sc: Vec<u64>,
    /// Q4_K only: per super-block (laid out like the chunks), `dmin · m_j` of its eight
    /// sub-blocks, then eight zeros.
    mins: Vec<__m512>,
}

/// Two 32-byte groups as one chunk, interleaved by fours (`a` in even lanes).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
fn chunk(a: __m256i, b: __m256i) -> __m512i {
    let both = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b);
    let order = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    _mm512_permutexvar_epi32(order, both)
}

/// 32 bytes of `b` from `at`.
#[inline(always)]
fn load32(b: &[u8], at: usize) -> __m256i {
    bytemuck::pod_read_unaligned(&b[at..at + 32])
}

/// `-128 · Σ` of each lane's four signed bytes.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
fn offset_init(signed: __m512i) -> __m512i {
    let zero = _mm512_setzero_si512();
    _mm512_sub_epi32(
        zero,
        _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(-128), signed),
    )
}

fn pair(a: f32, b: f32) -> u64 {
    u64::from(a.to_bits()) | (u64::from(b.to_bits()) << 32)
}

/// The f16 values at byte offsets `a` and `b` of `bytes` as a [`pair`] of f32 (F16C
/// inline: the `half` crate's conversion is a dispatched call per value, too slow for the
/// decode path's two per chunk).
#[target_feature(enable = "avx512f,f16c")]
#[inline]
fn f16_pair(bytes: &[u8], a: usize, b: usize) -> u64 {
    let h = |at: usize| i16::from_le_bytes([bytes[at], bytes[at + 1]]);
    let v = _mm_cvtph_ps(_mm_setr_epi16(h(a), h(b), 0, 0, 0, 0, 0, 0));
    _mm_cvtsi128_si64(_mm_castps_si128(v)) as u64
}

/// The two f32 of a [`pair`].
fn unpair(p: u64) -> (f32, f32) {
    (f32::from_bits(p as u32), f32::from_bits((p >> 32) as u32))
}

fn zeroed<V: bytemuck::Zeroable + Copy>(n: usize) -> Vec<V> {
    vec![V::zeroed(); n]
}

/// `v` cleared and sized to `n` zeroed items, keeping its allocation.
fn reset<V: bytemuck::Zeroable + Copy>(v: &mut Vec<V>, n: usize) {
    v.clear();
    v.resize(n, V::zeroed());
}

/// Where item `c` (a chunk, or a super-block) of row `i` of `n` lies in an array laid out
/// in blocks of `blk` rows (the last block narrower when `blk` does not divide `n`):
/// block by block, then item by item, then row by row. A register block's operands are
/// then one contiguous run, walked item by item without index arithmetic, and a block
/// of rows owns one contiguous slice.
fn slot(i: usize, n: usize, per_row: usize, c: usize, blk: usize) -> usize {
    let first = i - i % blk;
    let width = blk.min(n - first);
    first * per_row + c * width + (i - first)
}

impl Tokens {
    /// Rows `lhs [m, k]` quantised for weights of type `dtype` (Q8_0, else Q4_K's Q8_K),
    /// then unpacked: a block of [`T`] tokens per work item on candle's pool when there
    /// are several (the rows are independent, and this runs between two parallel steps).
    fn fill(&mut self, lhs: &[f32], m: usize, k: usize, dtype: GgmlDType) {
        let (nc, nsb, q8_0) = (k / CHUNK, k / QK_K, dtype == GgmlDType::Q8_0);
        reset(&mut self.q, m * nc);
        reset(&mut self.sc, m * nc);
        reset(&mut self.init, if q8_0 { m * nc } else { 0 });
        reset(&mut self.sums, if q8_0 { 0 } else { m * nsb });
        let blocks = m.div_ceil(T);
        let mut parts = split(&mut self.q, T * nc, blocks)
            .zip(split(&mut self.sc, T * nc, blocks))
            .zip(split(&mut self.init, T * nc, blocks))
            .zip(split(&mut self.sums, T * nsb, blocks))
            .map(|(((q, sc), init), sums)| TokenBlock { q, sc, init, sums });
        if blocks == 1 {
            // One vector (the decode path): no pool, no allocation.
            if let Some(mut part) = parts.next() {
                part.fill(lhs, k, q8_0);
            }
            return;
        }
        let parts: Vec<std::sync::Mutex<TokenBlock<'_>>> =
            parts.map(std::sync::Mutex::new).collect();
        candle_core::utils::barrier_pool().execute_chunked(blocks, |bs| {
            for b in bs {
                if let Some(Ok(mut part)) = parts.get(b).map(|p| p.lock()) {
                    let rows = lhs.get(b * T * k..m.min((b + 1) * T) * k);
                    part.fill(rows.unwrap_or_default(), k, q8_0);
                }
            }
        });
    }
}

/// `blocks` consecutive runs of `per_block` items of `v` (the last one shorter), or
/// `blocks` empty slices when `v` is empty (an array the weight type does not use).
fn split<V>(v: &mut [V], per_block: usize, blocks: usize) -> impl Iterator<Item = &mut [V]> {
    let empty = v.is_empty();
    v.chunks_mut(per_block.max(1))
        .chain(std::iter::repeat_with(|| &mut [][..]))
        .take(blocks)
        .map(move |p| if empty { &mut [][..] } else { p })
}

/// One block of [`Tokens`] (the runs [`slot`] gives a block of up to [`T`] tokens),
/// filled by one work item.
struct TokenBlock<'a> {
    q: &'a mut [__m512i],
    sc: &'a mut [u64],
    init: &'a mut [__m512i],
    sums: &'a mut [__m512],
}

impl TokenBlock<'_> {
    /// Rows `lhs` (`k` values each) quantised for Q8_0 weights (`q8_0`), else for Q4_K.
    fn fill(&mut self, lhs: &[f32], k: usize, q8_0: bool) {
        // SAFETY: as in `matmul`.
        #[allow(unsafe_code)]
        unsafe {
            if q8_0 {
                self.fill_q8_0(lhs, k)
            } else {
                self.fill_q8k(lhs, k)
            }
        }
    }

    /// Rows `lhs` (`k` values each) quantised to Q8_0 (as the AVX2 path and llama.cpp
    /// quantise them), then unpacked.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
    fn fill_q8_0(&mut self, lhs: &[f32], k: usize) {
        let (kb, nc, width) = (k / QK8_0, k / CHUNK, lhs.len() / k);
        let mut blocks = vec![BlockQ8_0::zeros(); kb];
        for (t, row) in lhs.chunks_exact(k).enumerate() {
            crate::quantize::q8_0(row, &mut blocks);
            let bytes = super::weights::block_bytes(&blocks);
            for c in 0..nc {
                let v = chunk(load32(bytes, 68 * c + 2), load32(bytes, 68 * c + 36));
                let at = slot(t, width, nc, c, T);
                self.q[at] = v;
                self.init[at] = offset_init(v);
                self.sc[at] = f16_pair(bytes, 68 * c, 68 * c + 34);
            }
        }
    }

    /// Rows `lhs` (`k` values each) quantised to Q8_K (Q4_K's partner, as candle and
    /// llama.cpp quantise them), then unpacked.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
    fn fill_q8k(&mut self, lhs: &[f32], k: usize) {
        let (nsb, nc, width) = (k / QK_K, k / CHUNK, lhs.len() / k);
        let mut blocks = vec![BlockQ8K::zeros(); nsb];
        for (t, row) in lhs.chunks_exact(k).enumerate() {
            crate::quantize::q8k(row, &mut blocks);
            let bytes = super::weights::block_bytes(&blocks);
            for (s, blk) in bytes.chunks_exact(292).enumerate() {
                let d = f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]);
                for j in 0..4 {
                    let at = slot(t, width, nc, 4 * s + j, T);
                    self.q[at] = chunk(load32(blk, 4 + 64 * j), load32(blk, 36 + 64 * j));
                    self.sc[at] = pair(d, d);
                }
                let bsum =
                    |i: usize| i32::from(i16::from_le_bytes([blk[260 + 2 * i], blk[261 + 2 * i]]));
                let lanes = bytemuck::cast_mut::<__m512, [f32; 16]>(
                    &mut self.sums[slot(t, width, nsb, s, T)],
                );
                for (j, lane) in lanes.iter_mut().take(8).enumerate() {
                    *lane = d * (bsum(2 * j) + bsum(2 * j + 1)) as f32;
                }
            }
        }
    }
}

/// Chunk `c` of a Q8_0 row: its values offset to unsigned, and its scale pair.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
#[inline]
fn q8_0_chunk(row: &[u8], c: usize) -> (__m512i, u64) {
    let v = chunk(load32(row, 68 * c + 2), load32(row, 68 * c + 36));
    // A signed byte + 128, as an unsigned byte.
    let u = _mm512_xor_si512(v, _mm512_set1_epi8(-128));
    (u, f16_pair(row, 68 * c, 68 * c + 34))
}

/// A Q4_K super-block's scales: the scale pair of each of its four chunks, and the
/// minimums (`dmin · m_j`, then eight zeros).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
#[inline]
fn q4k_scales(blk: &[u8]) -> ([u64; 4], __m512) {
    let (d, dmin) = unpair(f16_pair(blk, 0, 2));
    let scales = &blk[4..16];
    let mut mins = [0f32; 16];
    let mut sc = [0f32; 8];
    for j in 0..8 {
        let (s, m) = scale_min(scales, j);
        sc[j] = d * f32::from(s);
        mins[j] = dmin * f32::from(m);
    }
    let pairs = std::array::from_fn(|j| pair(sc[2 * j], sc[2 * j + 1]));
    (pairs, bytemuck::cast(mins))
}

/// Chunk `j` (0..4) of a Q4_K super-block: sub-block `2j` is the low nibbles of its 32
/// bytes, `2j + 1` the high ones.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
fn q4k_chunk(blk: &[u8], j: usize) -> __m512i {
    let nibble = _mm256_set1_epi8(0x0F);
    let v = load32(blk, 16 + 32 * j);
    let lo = _mm256_and_si256(v, nibble);
    let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), nibble);
    chunk(lo, hi)
}

/// Bytes of a Q4_K super-block, of a Q8_0 block.
const Q4K_BYTES: usize = 144;
const Q8_0_BYTES: usize = 34;

/// Unpacks Q8_0 rows `rows` (each `k / 32` blocks of `w`).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
fn rows_q8_0(w: &[u8], k: usize, rows: std::ops::Range<usize>) -> Rows {
    let (nc, row_bytes) = (k / CHUNK, k / QK8_0 * Q8_0_BYTES);
    let n = rows.len();
    let (mut u, mut sc) = (zeroed(n * nc), vec![0u64; n * nc]);
    for (i, r) in rows.enumerate() {
        let row = &w[r * row_bytes..(r + 1) * row_bytes];
        for c in 0..nc {
            let at = slot(i, n, nc, c, R);
            (u[at], sc[at]) = q8_0_chunk(row, c);
        }
    }
    Rows {
        u,
        sc,
        mins: Vec::new(),
    }
}

/// Q4_K's 6-bit scale and minimum of sub-block `j` (llama.cpp's `get_scale_min_k4`).
fn scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Unpacks Q4_K rows `rows` (each `k / 256` super-blocks of `w`).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
fn rows_q4k(w: &[u8], k: usize, rows: std::ops::Range<usize>) -> Rows {
    let (nsb, nc) = (k / QK_K, k / CHUNK);
    let row_bytes = nsb * Q4K_BYTES;
    let n = rows.len();
    let (mut u, mut sc, mut mins) = (zeroed(n * nc), vec![0u64; n * nc], zeroed(n * nsb));
    for (i, r) in rows.enumerate() {
        let row = &w[r * row_bytes..(r + 1) * row_bytes];
        for (s, blk) in row.chunks_exact(Q4K_BYTES).enumerate() {
            let (pairs, m) = q4k_scales(blk);
            for (j, &p) in pairs.iter().enumerate() {
                let at = slot(i, n, nc, 4 * s + j, R);
                u[at] = q4k_chunk(blk, j);
                sc[at] = p;
            }
            mins[slot(i, n, nsb, s, R)] = m;
        }
    }
    Rows { u, sc, mins }
}

/// Weights these kernels take: Q8_0 rows (`k` a multiple of 64, see [`q8_0_fits`]) or
/// Q4_K rows.
#[derive(Clone, Copy)]
pub(crate) enum Quant<'w> {
    Q8_0(&'w [BlockQ8_0]),
    Q4K(&'w [BlockQ4K]),
}

impl Quant<'_> {
    fn dtype(self) -> GgmlDType {
        match self {
            Quant::Q8_0(_) => GgmlDType::Q8_0,
            Quant::Q4K(_) => GgmlDType::Q4K,
        }
    }
}

/// `lhs [m, k] @ w^T` for weights `w` (`[n, k]`).
pub(crate) fn matmul(w: Quant<'_>, lhs: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut x = Tokens::default();
    x.fill(lhs, m, k, w.dtype());
    // SAFETY (this and the unsafe calls below): callers check `available()` first, which
    // confirmed the CPU has the features these functions are compiled for.
    #[allow(unsafe_code)]
    match w {
        Quant::Q8_0(w) => {
            let w = super::weights::block_bytes(w);
            let row_bytes = k / QK8_0 * Q8_0_BYTES;
            tiles(&x, m, n, k / CHUNK, (w, row_bytes), |rows| unsafe {
                rows_q8_0(w, k, rows)
            })
        }
        Quant::Q4K(w) => {
            let w = super::weights::block_bytes(w);
            let row_bytes = k / QK_K * Q4K_BYTES;
            tiles(&x, m, n, k / CHUNK, (w, row_bytes), |rows| unsafe {
                rows_q4k(w, k, rows)
            })
        }
    }
}

/// One input vector for [`dot_rows`], quantised and unpacked once
/// per vector and reused by every row (the decode path keeps one per thread).
#[derive(Default)]
pub(crate) struct Vector {
    x: Tokens,
    ready: Option<GgmlDType>,
}

impl Vector {
    /// Forgets the vector: the next product prepares its input again.
    pub(crate) fn reset(&mut self) {
        self.ready = None;
    }
}

/// Rows `rows` of weights `w` (`x.len()` inputs each) dotted with one vector `x`, each
/// passed to `out`: the decode path's product, with exactly the batched kernel's
/// arithmetic, so a teacher-forced pass reproduces a generation's logits bit for bit.
pub(crate) fn dot_rows(
    w: Quant<'_>,
    x: &[f32],
    v: &mut Vector,
    rows: std::ops::Range<usize>,
    out: &mut impl FnMut(usize, f32),
) {
    if v.ready != Some(w.dtype()) {
        v.x.fill(x, 1, x.len(), w.dtype());
        v.ready = Some(w.dtype());
    }
    // SAFETY: as in `matmul`.
    #[allow(unsafe_code)]
    unsafe {
        match w {
            Quant::Q8_0(w) => {
                rows_times_vector_q8_0(super::weights::block_bytes(w), x.len(), &v.x, rows, out)
            }
            Quant::Q4K(w) => {
                rows_times_vector_q4k(super::weights::block_bytes(w), x.len(), &v.x, rows, out)
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
fn rows_times_vector_q8_0(
    w: &[u8],
    k: usize,
    x: &Tokens,
    rows: std::ops::Range<usize>,
    out: &mut impl FnMut(usize, f32),
) {
    let (nc, row_bytes) = (k / CHUNK, k / QK8_0 * Q8_0_BYTES);
    for r in rows {
        let row = &w[r * row_bytes..(r + 1) * row_bytes];
        let mut acc = _mm512_setzero_ps();
        for c in 0..nc {
            let (u, sc) = q8_0_chunk(row, c);
            acc = step(acc, x.init[c], u, x.q[c], bcast(sc), bcast(x.sc[c]));
        }
        out(r, _mm512_reduce_add_ps(acc));
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
fn rows_times_vector_q4k(
    w: &[u8],
    k: usize,
    x: &Tokens,
    rows: std::ops::Range<usize>,
    out: &mut impl FnMut(usize, f32),
) {
    let row_bytes = k / QK_K * Q4K_BYTES;
    let zero = _mm512_setzero_si512();
    for r in rows {
        let row = &w[r * row_bytes..(r + 1) * row_bytes];
        let mut acc = _mm512_setzero_ps();
        for (s, blk) in row.chunks_exact(Q4K_BYTES).enumerate() {
            let (pairs, mins) = q4k_scales(blk);
            for (j, &p) in pairs.iter().enumerate() {
                let c = 4 * s + j;
                acc = step(
                    acc,
                    zero,
                    q4k_chunk(blk, j),
                    x.q[c],
                    bcast(p),
                    bcast(x.sc[c]),
                );
            }
            acc = _mm512_fnmadd_ps(mins, x.sums[s], acc);
        }
        out(r, _mm512_reduce_add_ps(acc));
    }
}

/// One chunk of one (row, token) product: the exact integer lane sums (starting from
/// `init`), scaled by the row's and the token's scale pairs, added to `acc`. Both
/// kernels use it, so their results agree bit for bit.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
fn step(acc: __m512, init: __m512i, u: __m512i, q: __m512i, ws: __m512, xs: __m512) -> __m512 {
    step_scaled(acc, init, u, q, _mm512_mul_ps(ws, xs))
}

/// [`step`] with the scale pairs' product already formed (the same `f32` products,
/// however computed: see [`scale_products`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
fn step_scaled(acc: __m512, init: __m512i, u: __m512i, q: __m512i, scale: __m512) -> __m512 {
    let p = _mm512_dpbusd_epi32(init, u, q);
    _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), scale, acc)
}

/// Splits the weight rows into tiles on candle's pool; each tile is unpacked by `unpack`
/// and dotted with every token row. `(w, row_bytes)`: the packed weights, for prefetching.
fn tiles(
    x: &Tokens,
    m: usize,
    n: usize,
    nc: usize,
    (w, row_bytes): (&[u8], usize),
    unpack: impl Fn(std::ops::Range<usize>) -> Rows + Sync,
) -> Vec<f32> {
    // Each output is written by exactly one item; relaxed atomics are plain stores.
    let dst: Vec<AtomicU32> = (0..m * n).map(|_| AtomicU32::new(0)).collect();
    candle_core::utils::barrier_pool().execute_chunked(n.div_ceil(TILE), |items| {
        for item in items {
            let rows = item * TILE..n.min((item + 1) * TILE);
            // The next tile's weights come from memory while this one computes: the
            // unpacking otherwise stalls on them (a weight is read once per pass).
            let next = (rows.end * row_bytes).min(w.len())
                ..(n.min(rows.end + TILE) * row_bytes).min(w.len());
            prefetch(&w[next]);
            let tile = unpack(rows.clone());
            let mut out = |t: usize, r: usize, vs: &[f32]| {
                let at = t * n + rows.start + r;
                for (d, v) in dst[at..at + vs.len()].iter().zip(vs) {
                    d.store(v.to_bits(), Ordering::Relaxed)
                }
            };
            // SAFETY: as in `matmul`.
            #[allow(unsafe_code)]
            unsafe {
                tile_times_tokens(&tile, rows.len(), x, m, nc, &mut out)
            };
        }
    });
    dst.into_iter()
        .map(|a| f32::from_bits(a.into_inner()))
        .collect()
}

/// Asks the CPU to bring `bytes` into its L2 cache, without waiting for them.
fn prefetch(bytes: &[u8]) {
    for line in bytes.chunks(64) {
        // SAFETY: a prefetch reads nothing architecturally and never faults; the address
        // is inside `bytes` anyway. SSE, which has it, is part of x86-64.
        #[allow(unsafe_code)]
        unsafe {
            _mm_prefetch::<_MM_HINT_T1>(line.as_ptr().cast())
        };
    }
}

/// Every (row, token) dot product of a tile, in register blocks of up to `R × T`, passed
/// to `out` as runs of consecutive rows of one token.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,f16c")]
fn tile_times_tokens(
    w: &Rows,
    rows: usize,
    x: &Tokens,
    m: usize,
    nc: usize,
    out: &mut impl FnMut(usize, usize, &[f32]),
) {
    for t0 in (0..m).step_by(T) {
        let xb = x.block(t0, T.min(m - t0), nc);
        for r0 in (0..rows).step_by(R) {
            let wb = w.block(r0, R.min(rows - r0), nc);
            // The widths as constants, so every block's accumulators live in registers
            // (`R` and `T` are 4).
            match wb.width {
                4 => with_tokens::<4>(&wb, &xb, r0, t0, out),
                3 => with_tokens::<3>(&wb, &xb, r0, t0, out),
                2 => with_tokens::<2>(&wb, &xb, r0, t0, out),
                _ => with_tokens::<1>(&wb, &xb, r0, t0, out),
            }
        }
    }
}

/// A block of `RB` rows with a block of tokens, whose width becomes a constant.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
fn with_tokens<const RB: usize>(
    w: &Operands<'_>,
    x: &Operands<'_>,
    r0: usize,
    t0: usize,
    out: &mut impl FnMut(usize, usize, &[f32]),
) {
    match x.width {
        4 => emit(block::<RB, 4>(w, x), r0, t0, out),
        3 => emit(block::<RB, 3>(w, x), r0, t0, out),
        2 => emit(block::<RB, 2>(w, x), r0, t0, out),
        _ => emit(block::<RB, 1>(w, x), r0, t0, out),
    }
}

/// A register block's lane sums, one horizontal sum each, passed to `out` a token at a
/// time (the token, the first row, the rows' sums).
#[target_feature(enable = "avx512f")]
#[inline]
fn emit<const RB: usize, const TB: usize>(
    acc: [[__m512; TB]; RB],
    r0: usize,
    t0: usize,
    out: &mut impl FnMut(usize, usize, &[f32]),
) {
    if RB == 4 && TB == 4 {
        // (`get`: these are the accumulators themselves once `RB` and `TB` are 4.)
        let zero = _mm512_setzero_ps();
        let sums: [f32; 16] = bytemuck::cast(sums_4x4(std::array::from_fn(|r| {
            std::array::from_fn(|t| acc.get(r).and_then(|a| a.get(t)).copied().unwrap_or(zero))
        })));
        for (t, sums) in sums.chunks_exact(4).enumerate() {
            out(t0 + t, r0, sums);
        }
        return;
    }
    let sums: [[f32; RB]; TB] =
        std::array::from_fn(|t| std::array::from_fn(|r| _mm512_reduce_add_ps(acc[r][t])));
    for (t, sums) in sums.iter().enumerate() {
        out(t0 + t, r0, sums);
    }
}

/// The horizontal sums of 16 accumulators (`acc[r][t]` in lane `4t + r`), each summed
/// in `_mm512_reduce_add_ps`'s order (lane `i` with `i + 8`, then with `i + 4`, `i + 2`,
/// `i + 1`, pairwise) so the sums equal the single-vector path's bit for bit, but four
/// levels of shuffles and adds shared by all sixteen instead of one reduction each.
#[target_feature(enable = "avx512f")]
#[inline]
fn sums_4x4(acc: [[__m512; 4]; 4]) -> __m512 {
    let a: [__m512; 16] = std::array::from_fn(|k| acc[k / 4][k % 4]);
    // Lanes i + 8: two accumulators per vector, their eight partial sums each.
    let halves: [__m512; 8] = std::array::from_fn(|j| {
        let (x, y) = (a[2 * j], a[2 * j + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(x, y),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(x, y),
        )
    });
    // Lanes i + 4: one accumulator per 128-bit block, four partial sums each.
    let quarters: [__m512; 4] = std::array::from_fn(|j| {
        let (x, y) = (halves[2 * j], halves[2 * j + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(x, y),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(x, y),
        )
    });
    // Lanes i + 2: per block, two partial sums of each of two accumulators.
    let pairs: [__m512; 2] = std::array::from_fn(|j| {
        let (x, y) = (
            _mm512_castps_pd(quarters[2 * j]),
            _mm512_castps_pd(quarters[2 * j + 1]),
        );
        _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)),
        )
    });
    // Lanes i + 1: per block, the sums of four accumulators.
    let (x, y) = (pairs[0], pairs[1]);
    _mm512_add_ps(
        _mm512_shuffle_ps::<0b10_00_10_00>(x, y),
        _mm512_shuffle_ps::<0b11_01_11_01>(x, y),
    )
}

/// One block of `width` rows (of a tile) or tokens, as [`slot`] lays them out: per
/// chunk, `width` values and scale pairs; per super-block, `width` minimums or sums
/// (Q4_K); per chunk, `width` integer starts (Q8_0's tokens; else empty).
struct Operands<'a> {
    u: &'a [__m512i],
    sc: &'a [u64],
    per_sb: &'a [__m512],
    init: &'a [__m512i],
    width: usize,
}

/// The block of `width` items from `first` of arrays laid out by [`slot`] (`nc` chunks,
/// so `nc / 4` super-blocks, per item). Empty arrays stay empty.
fn block_of<'a>(
    (u, sc, per_sb, init): (&'a [__m512i], &'a [u64], &'a [__m512], &'a [__m512i]),
    first: usize,
    width: usize,
    nc: usize,
) -> Operands<'a> {
    let run = |per: usize| first * per..(first + width) * per;
    Operands {
        u: u.get(run(nc)).unwrap_or_default(),
        sc: sc.get(run(nc)).unwrap_or_default(),
        per_sb: per_sb.get(run(nc / 4)).unwrap_or_default(),
        init: init.get(run(nc)).unwrap_or_default(),
        width,
    }
}

impl Rows {
    /// Rows `r0..r0 + width` of the tile.
    fn block(&self, r0: usize, width: usize, nc: usize) -> Operands<'_> {
        block_of((&self.u, &self.sc, &self.mins, &[]), r0, width, nc)
    }
}

impl Tokens {
    /// Tokens `t0..t0 + width`.
    fn block(&self, t0: usize, width: usize, nc: usize) -> Operands<'_> {
        block_of((&self.q, &self.sc, &self.sums, &self.init), t0, width, nc)
    }
}

/// `RB` rows dotted with `TB` tokens (blocks of exactly those widths): the lane sums.
/// Q4_K's chunks run a super-block at a time (four chunks, then its minimums); Q8_0's
/// integer sums start from the tokens' `init`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
fn block<const RB: usize, const TB: usize>(
    w: &Operands<'_>,
    x: &Operands<'_>,
) -> [[__m512; TB]; RB] {
    let mut acc = [[_mm512_setzero_ps(); TB]; RB];
    let (wu, ws) = (w.u.as_chunks::<RB>().0, w.sc.as_chunks::<RB>().0);
    let (xq, xs) = (x.u.as_chunks::<TB>().0, x.sc.as_chunks::<TB>().0);
    if w.per_sb.is_empty() {
        let xi = x.init.as_chunks::<TB>().0;
        for ((wu, ws), ((xq, xs), xi)) in wu.iter().zip(ws).zip(xq.iter().zip(xs).zip(xi)) {
            chunk_block(&mut acc, wu, ws, xq, xs, xi);
        }
    } else {
        let zero = [_mm512_setzero_si512(); TB];
        let (wm, xb) = (w.per_sb.as_chunks::<RB>().0, x.per_sb.as_chunks::<TB>().0);
        let sb = wu
            .chunks_exact(4)
            .zip(ws.chunks_exact(4))
            .zip(xq.chunks_exact(4).zip(xs.chunks_exact(4)))
            .zip(wm.iter().zip(xb));
        for (((wu, ws), (xq, xs)), (wm, xb)) in sb {
            for ((wu, ws), (xq, xs)) in wu.iter().zip(ws).zip(xq.iter().zip(xs)) {
                chunk_block(&mut acc, wu, ws, xq, xs, &zero);
            }
            for (a, &wm) in acc.iter_mut().zip(wm) {
                for (a, &xb) in a.iter_mut().zip(xb) {
                    *a = _mm512_fnmadd_ps(wm, xb, *a);
                }
            }
        }
    }
    acc
}

/// One chunk of `RB` rows and `TB` tokens: one [`step`] per pair, the integer sums
/// starting from `xi`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
fn chunk_block<const RB: usize, const TB: usize>(
    acc: &mut [[__m512; TB]; RB],
    wu: &[__m512i; RB],
    ws: &[u64; RB],
    xq: &[__m512i; TB],
    xs: &[u64; TB],
    xi: &[__m512i; TB],
) {
    let scales = scale_products(ws, xs);
    for t in 0..TB {
        for r in 0..RB {
            acc[r][t] = step_scaled(acc[r][t], xi[t], wu[r], xq[t], bcast(scales[r][t]));
        }
    }
}

/// Every (row, token) product of the rows' and the tokens' scale pairs: the factor
/// [`step`] computes per pair, here as a few vector multiplies for a full block (two for
/// `4 × 4`, read back by broadcasts) instead of one per pair.
#[target_feature(enable = "avx512f")]
#[inline]
fn scale_products<const RB: usize, const TB: usize>(
    ws: &[u64; RB],
    xs: &[u64; TB],
) -> [[u64; TB]; RB] {
    if RB == 4 && TB == 4 {
        // (`get`: these are the arrays themselves once `RB` and `TB` are 4.)
        let four = |v: &[u64]| -> __m256i {
            bytemuck::cast::<[u64; 4], _>(std::array::from_fn(|i| v.get(i).copied().unwrap_or(0)))
        };
        let w = _mm512_castsi256_si512(four(ws));
        let x = _mm512_broadcast_i64x4(four(xs));
        let rows = |a: i64, b: i64| {
            let idx = _mm512_setr_epi64(a, a, a, a, b, b, b, b);
            _mm512_castsi512_ps(_mm512_permutexvar_epi64(idx, w))
        };
        let x = _mm512_castsi512_ps(x);
        let flat: [u64; 16] =
            bytemuck::cast([_mm512_mul_ps(rows(0, 1), x), _mm512_mul_ps(rows(2, 3), x)]);
        std::array::from_fn(|r| std::array::from_fn(|t| flat[r * 4 + t]))
    } else {
        std::array::from_fn(|r| {
            std::array::from_fn(|t| {
                let ((w0, w1), (x0, x1)) = (unpair(ws[r]), unpair(xs[t]));
                pair(w0 * x0, w1 * x1)
            })
        })
    }
}

/// A chunk's scale pair in every 64-bit element (first group in even lanes).
#[target_feature(enable = "avx512f")]
#[inline]
fn bcast(pair: u64) -> __m512 {
    _mm512_castsi512_ps(_mm512_set1_epi64(pair as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: usize, seed: &mut u64, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                ((*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    }

    /// Each output against candle's per-row dot product of the same quantised operands;
    /// returns the largest difference relative to the row's scale.
    fn compare<W: GgmlType>(
        m: usize,
        k: usize,
        n: usize,
        ours: impl Fn(&[W], &[f32]) -> Vec<f32>,
    ) -> f32
    where
        W::VecDotType: crate::weights::Activation,
    {
        let mut seed = 0x9e37_79b9_7f4a_7c15 ^ (m * 31 + n) as u64;
        let wf = random(n * k, &mut seed, 1.0);
        let mut w = vec![W::zeros(); n * k / W::BLCK_SIZE];
        W::from_float(&wf, &mut w);
        let x = random(m * k, &mut seed, 3.0);
        let got = ours(&w, &x);
        assert_eq!(got.len(), m * n);
        let kb = k / W::BLCK_SIZE;
        let mut worst = 0f32;
        for t in 0..m {
            let mut xq = vec![W::VecDotType::zeros(); kb];
            <W::VecDotType as crate::weights::Activation>::quantize(
                &x[t * k..(t + 1) * k],
                &mut xq,
            );
            for r in 0..n {
                let want = W::vec_dot(k, &w[r * kb..(r + 1) * kb], &xq);
                let scale = 1.0f32.max(want.abs());
                worst = worst.max((got[t * n + r] - want).abs() / scale);
            }
        }
        worst
    }

    /// Token and row counts that exercise full register blocks, every remainder and a
    /// partial tile.
    const SHAPES: [(usize, usize); 5] = [(4, 16), (5, 17), (7, 35), (16, 64), (33, 3)];

    #[test]
    fn q8_0_products_match_the_row_dot_products() {
        if !available() {
            eprintln!("no AVX-512 VNNI here: the kernel is not used");
            return;
        }
        for (m, n) in SHAPES {
            for k in [64, 512] {
                let worst =
                    compare::<BlockQ8_0>(m, k, n, |w, x| matmul(Quant::Q8_0(w), x, m, k, n));
                assert!(worst < 1e-4, "m {m} n {n} k {k}: {worst}");
            }
        }
    }

    /// The decode path's single-vector products are the batched kernel's, bit for bit
    /// (what makes a validator's teacher-forced check exact).
    #[test]
    fn single_vector_products_equal_the_batched_ones_bit_for_bit() {
        if !available() {
            return;
        }
        let (m, k, n) = (7, 512, 21);
        let mut seed = 17u64;
        let wf = random(n * k, &mut seed, 1.0);
        let x = random(m * k, &mut seed, 3.0);
        let mut q4 = vec![BlockQ4K::zeros(); n * k / QK_K];
        BlockQ4K::from_float(&wf, &mut q4);
        let mut q8 = vec![BlockQ8_0::zeros(); n * k / QK8_0];
        BlockQ8_0::from_float(&wf, &mut q8);
        for w in [Quant::Q4K(&q4), Quant::Q8_0(&q8)] {
            let batched = matmul(w, &x, m, k, n);
            for t in 0..m {
                let mut v = Vector::default();
                let mut single = vec![0f32; n];
                dot_rows(w, &x[t * k..(t + 1) * k], &mut v, 0..n, &mut |r, y| {
                    single[r] = y
                });
                for r in 0..n {
                    assert_eq!(
                        single[r].to_bits(),
                        batched[t * n + r].to_bits(),
                        "token {t} row {r}"
                    );
                }
            }
        }
    }

    #[test]
    fn q4_k_products_match_the_row_dot_products() {
        if !available() {
            eprintln!("no AVX-512 VNNI here: the kernel is not used");
            return;
        }
        for (m, n) in SHAPES {
            for k in [256, 1024] {
                let worst = compare::<BlockQ4K>(m, k, n, |w, x| matmul(Quant::Q4K(w), x, m, k, n));
                assert!(worst < 1e-4, "m {m} n {n} k {k}: {worst}");
            }
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// Fastest of many runs of a `[m, k] × [n, k]^T` product, per weight type (run with
    /// `--ignored --nocapture`; single-threaded with `RAYON_NUM_THREADS=1`).
    #[test]
    #[ignore]
    fn kernel_speed() {
        let (m, k, n) = (256, 1024, 1024);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let wf: Vec<f32> = (0..n * k)
            .map(|i| ((i * 104729) % 997) as f32 / 498.0 - 1.0)
            .collect();
        let mut q4 = vec![BlockQ4K::zeros(); n * k / QK_K];
        BlockQ4K::from_float(&wf, &mut q4);
        let mut q8 = vec![BlockQ8_0::zeros(); n * k / QK8_0];
        BlockQ8_0::from_float(&wf, &mut q8);
        for (name, w) in [("q4_k", Quant::Q4K(&q4)), ("q8_0", Quant::Q8_0(&q8))] {
            let mut best = f64::MAX;
            for _ in 0..60 {
                let t = std::time::Instant::now();
                std::hint::black_box(matmul(w, &x, m, k, n));
                best = best.min(t.elapsed().as_secs_f64());
            }
            let gops = 2.0 * (m * k * n) as f64 / best / 1e9;
            eprintln!("{name}: {:.3} ms, {gops:.1} GOP/s", best * 1e3);
        }
    }
}
