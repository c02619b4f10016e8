//! Activation quantizers: f32 rows → the 8-bit block types ggml dots quantized weights
//! with (`vec_dot_type`). They reproduce ggml's x86 quantizers value for value (scale
//! `127/amax`, round half to even, scales rounded through f16 where ggml stores f16), so the
//! integer dot products that follow are the ones llama.cpp computes.
//! Input: f32 slices whose length is a multiple of the block size. Output: blocks.
//! Must not depend on candle or on the weight formats.

use half::f16;

pub(crate) const QK8_0: usize = 32;
pub(crate) const QK_K: usize = 256;

/// Q8_0: 32 values, one scale. `d` holds the f16-rounded scale as f32 (the value ggml
/// multiplies with), converted once here instead of in every dot product.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockQ8_0 {
    pub d: f32,
    pub qs: [i8; QK8_0],
}

/// Q8_0 for the repacked tiles (`q8_x8`): the block plus, per group `c` of four values,
/// `-128 * sum(qs[4c..4c + 4])`. With VNNI the tiles dot the weights shifted to unsigned
/// (`w + 128`) and start each lane's integer sum from this term, which gives exactly
/// `sum(w * x)` without moving signs first (one instruction less per lane and token).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BlockQ8_0s {
    pub d: f32,
    pub qs: [i8; QK8_0],
    pub neg_sums: [i32; QK8_0 / 4],
}

/// Q8_1: Q8_0 plus `s = d * sum(qs)` (f16-rounded), which the dot with offset formats
/// (Q4_1) needs for the weights' minimum term.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockQ8_1 {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; QK8_0],
}

/// Q8_K: 256 values, an f32 scale, and the sums of each 16 values (K-quant minimums).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

impl Default for BlockQ8_0 {
    fn default() -> Self {
        BlockQ8_0 {
            d: 0.0,
            qs: [0; QK8_0],
        }
    }
}

impl Default for BlockQ8_1 {
    fn default() -> Self {
        BlockQ8_1 {
            d: 0.0,
            s: 0.0,
            qs: [0; QK8_0],
        }
    }
}

impl Default for BlockQ8K {
    fn default() -> Self {
        BlockQ8K {
            d: 0.0,
            qs: [0; QK_K],
            bsums: [0; QK_K / 16],
        }
    }
}

fn round_f16(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// Shared Q8_0/Q8_1 core: (unrounded scale, quants, sum of quants).
fn quantize_32(x: &[f32], qs: &mut [i8; QK8_0]) -> (f32, i32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        let r = (v * id).round_ties_even() as i32;
        *q = r as i8;
        sum += r;
    }
    (d, sum)
}

pub(crate) fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    debug_assert_eq!(x.len(), out.len() * QK8_0);
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK8_0)) {
        let (d, _) = quantize_32(x, &mut b.qs);
        b.d = round_f16(d);
    }
}

/// `quantize_q8_0` plus the tiles' per-lane offsets (`BlockQ8_0s`).
pub(crate) fn quantize_q8_0s(x: &[f32], out: &mut [BlockQ8_0s]) {
    debug_assert_eq!(x.len(), out.len() * QK8_0);
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK8_0)) {
        let (d, _) = quantize_32(x, &mut b.qs);
        b.d = round_f16(d);
        for (s, q) in b.neg_sums.iter_mut().zip(b.qs.chunks_exact(4)) {
            *s = -128 * q.iter().map(|&v| v as i32).sum::<i32>();
        }
    }
}

pub(crate) fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    debug_assert_eq!(x.len(), out.len() * QK8_0);
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK8_0)) {
        let (d, sum) = quantize_32(x, &mut b.qs);
        b.d = round_f16(d);
        b.s = round_f16(d * sum as f32);
    }
}

/// ggml's `quantize_row_q8_K_ref`: the scale comes from the signed value of largest
/// magnitude (`-127/max`), so that value maps to -127.
pub(crate) fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8K]) {
    debug_assert_eq!(x.len(), out.len() * QK_K);
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *b = BlockQ8K::default();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i16).sum();
        }
        b.d = 1.0 / iscale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_maps_the_largest_magnitude_to_127_and_rounds_half_to_even() {
        let mut x = [0f32; 32];
        x[0] = -2.0;
        x[1] = 2.0 * 2.5 / 127.0; // exactly 2.5 steps: rounds to 2
        x[2] = 2.0 * 3.5 / 127.0; // 3.5 steps: rounds to 4
        let mut b = [BlockQ8_0::default()];
        quantize_q8_0(&x, &mut b);
        assert_eq!(b[0].qs[0], -127);
        assert_eq!(b[0].qs[1], 2);
        assert_eq!(b[0].qs[2], 4);
        assert_eq!(b[0].d, f16::from_f32(2.0 / 127.0).to_f32());
    }

    #[test]
    fn q8_1_sum_matches_quants() {
        let x: Vec<f32> = (0..32).map(|i| (i as f32 - 10.0) * 0.37).collect();
        let mut b = [BlockQ8_1::default()];
        quantize_q8_1(&x, &mut b);
        let sum: i32 = b[0].qs.iter().map(|&q| q as i32).sum();
        let d = 21.0 * 0.37 / 127.0;
        assert!((b[0].s - d * sum as f32).abs() <= (d * sum as f32).abs() * 1e-3);
    }

    #[test]
    fn q8_k_uses_the_signed_maximum_and_block_sums() {
        let mut x = vec![0.5f32; 256];
        x[7] = -3.0;
        let mut b = [BlockQ8K::default()];
        quantize_q8_k(&x, &mut b);
        assert_eq!(b[0].qs[7], -127);
        assert_eq!(b[0].qs[0], 21); // 0.5 * 127 / 3 = 21.17
        assert_eq!(b[0].bsums[0], 15 * 21 - 127);
        assert_eq!(b[0].bsums[1], 16 * 21);
        assert!((b[0].d - 3.0 / 127.0).abs() < 1e-7);
        let mut z = [BlockQ8K::default()];
        quantize_q8_k(&[0.0; 256], &mut z);
        assert_eq!(z[0].d, 0.0);
    }
}
