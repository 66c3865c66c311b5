//! Quantising activations for the integer dot products, rounding as llama.cpp's CPU
//! backend does on x86-64, so that the two engines feed the same integers to the same
//! weights.
//!
//! candle's `from_float` follows GGML's portable reference for Q8_0 (`id = 1 / (amax /
//! 127)`, `roundf`: ties away from zero) and rounds Q8_K ties away from zero too. llama.cpp
//! on x86 quantises Q8_0 with its AVX path (`id = 127 / amax`, `_mm256_round_ps` to
//! nearest: ties to even) and Q8_K with `nearest_int` (ties to even). The scale's last bit
//! and the tie rule decide a quantised value only when `x * id` lies within an ulp of a
//! half, which is rare, but then the two engines dot different integers. Both the
//! decode step and the batched pass quantise here, so the exact check stays exact.

use candle_core::quantized::k_quants::{BlockQ8_0, BlockQ8K, QK_K, QK8_0};
use half::f16;

use crate::weights::block_bytes_mut;

/// Bytes of a Q8_0 block: f16 scale, 32 × i8.
const Q8_0_BYTES: usize = 2 + QK8_0;
/// Bytes of a Q8_K block: f32 scale, 256 × i8, 16 × i16 sums of 16.
const Q8K_BYTES: usize = 4 + QK_K + 2 * (QK_K / 16);

crate::wide::dispatched! {
    /// `xs` (a multiple of 32 long) into `ys` as llama.cpp's x86 `quantize_row_q8_0` does.
    pub(crate) fn q8_0(xs: &[f32], ys: &mut [BlockQ8_0]) => q8_0_body;
}

crate::wide::dispatched! {
    /// `xs` into `ys` as llama.cpp's x86 `quantize_row_q8_K` (the reference) does.
    pub(crate) fn q8k(xs: &[f32], ys: &mut [BlockQ8K]) => q8k_body;
}

#[inline(always)]
fn q8_0_body(xs: &[f32], ys: &mut [BlockQ8_0]) {
    let bytes = block_bytes_mut(ys);
    for (block, x) in bytes
        .chunks_exact_mut(Q8_0_BYTES)
        .zip(xs.chunks_exact(QK8_0))
    {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let (scale, qs) = block.split_at_mut(2);
        scale.copy_from_slice(&f16::from_f32(d).to_le_bytes());
        for (q, v) in qs.iter_mut().zip(x) {
            // |v * id| <= 127 (up to rounding of id, which `as` saturates).
            *q = (nearest_int(v * id) as i8) as u8;
        }
    }
}

/// `xs` (a multiple of 256 long) into `ys` as GGML's `quantize_row_q8_K_ref` does (x86
/// llama.cpp uses the reference).
#[inline(always)]
fn q8k_body(xs: &[f32], ys: &mut [BlockQ8K]) {
    let bytes = block_bytes_mut(ys);
    for (block, x) in bytes.chunks_exact_mut(Q8K_BYTES).zip(xs.chunks_exact(QK_K)) {
        // The signed value of largest magnitude, the first one among equals (the
        // reference's running `if |v| > amax`): the largest magnitude first, a max that
        // vectorises, then its first occurrence.
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(0.0);
        let (scale, rest) = block.split_at_mut(4);
        let (qs, sums) = rest.split_at_mut(QK_K);
        if amax == 0.0 {
            scale.fill(0);
            qs.fill(0);
            sums.fill(0);
            continue;
        }
        let iscale = -127.0 / max;
        for (q, v) in qs.iter_mut().zip(x) {
            *q = (nearest_int(iscale * v).min(127) as i8) as u8;
        }
        for (sum, group) in sums.chunks_exact_mut(2).zip(qs.chunks_exact(16)) {
            let s: i16 = group.iter().map(|&q| i16::from(q as i8)).sum();
            sum.copy_from_slice(&s.to_le_bytes());
        }
        scale.copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

/// `v` rounded to the nearest integer, ties to even, for |v| < 2^22: GGML's
/// `nearest_int`. Adding 1.5 · 2^23 leaves the integer in the low mantissa bits, rounded by
/// the addition itself (to even); unlike `f32::round_ties_even`, which compiles to a libm
/// call on baseline x86-64, it vectorises.
#[inline(always)]
fn nearest_int(v: f32) -> i32 {
    let shifted = v + 12_582_912.0;
    (shifted.to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::GgmlType;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 6.0
            })
            .collect()
    }

    #[test]
    fn agrees_with_candle_except_at_ties_and_rounds_ties_to_even() {
        let xs = values(4096, 7);
        let mut ours = vec![BlockQ8_0::zeros(); xs.len() / QK8_0];
        let mut theirs = ours.clone();
        q8_0(&xs, &mut ours);
        BlockQ8_0::from_float(&xs, &mut theirs);
        let (a, b) = (
            block_bytes_mut(&mut ours).to_vec(),
            block_bytes_mut(&mut theirs).to_vec(),
        );
        let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!(
            differing <= 4,
            "{differing} bytes differ from candle's Q8_0"
        );

        let mut ours = vec![BlockQ8K::zeros(); xs.len() / QK_K];
        let mut theirs = ours.clone();
        q8k(&xs, &mut ours);
        BlockQ8K::from_float(&xs, &mut theirs);
        assert_eq!(block_bytes_mut(&mut ours), block_bytes_mut(&mut theirs));

        // Exact ties: with amax = 254 the scale is exactly 0.5, so 1 -> 0.5 and -3 -> -1.5;
        // ties to even give 0 and -2 where candle's rounding gives 1 and -2.
        let mut x = vec![0f32; QK8_0];
        x[0] = 254.0;
        x[1] = 1.0;
        x[2] = -3.0;
        let mut ours = vec![BlockQ8_0::zeros(); 1];
        q8_0(&x, &mut ours);
        let bytes = block_bytes_mut(&mut ours);
        assert_eq!(bytes[2] as i8, 127);
        assert_eq!(bytes[3] as i8, 0);
        assert_eq!(bytes[4] as i8, -2);
    }

    /// The dispatched functions (the wider build on a CPU that has it) write the same
    /// bytes as the baseline build of their bodies: the claim that makes a check on one
    /// machine agree with a generation on another.
    #[test]
    fn the_wider_build_writes_the_baseline_bytes() {
        let xs = values(1 << 14, 11);
        let mut wide = vec![BlockQ8_0::zeros(); xs.len() / QK8_0];
        let mut base = wide.clone();
        q8_0(&xs, &mut wide);
        q8_0_body(&xs, &mut base);
        assert_eq!(block_bytes_mut(&mut wide), block_bytes_mut(&mut base));
        let mut wide = vec![BlockQ8K::zeros(); xs.len() / QK_K];
        let mut base = wide.clone();
        q8k(&xs, &mut wide);
        q8k_body(&xs, &mut base);
        assert_eq!(block_bytes_mut(&mut wide), block_bytes_mut(&mut base));
    }

    #[test]
    fn nearest_int_is_round_ties_even() {
        for i in -2_000_000..2_000_000 {
            let v = i as f32 * 0.000_25 - 3.0;
            assert_eq!(nearest_int(v), v.round_ties_even() as i32, "{v}");
        }
        for v in [0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 127.49999, -127.5, 126.5] {
            assert_eq!(nearest_int(v), v.round_ties_even() as i32, "{v}");
        }
    }
}
