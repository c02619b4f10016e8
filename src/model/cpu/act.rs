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
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        // SAFETY: AVX2 is present; `x` holds 32 values (the callers' chunks).
        return unsafe { simd::quantize_32(x, qs) };
    }
    scalar::quantize_32(x, qs)
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
    #[cfg(target_arch = "x86_64")]
    let fast = simd::available();
    for (b, x) in out.iter_mut().zip(x.chunks_exact(QK_K)) {
        #[cfg(target_arch = "x86_64")]
        if fast {
            // SAFETY: AVX2 is present; `x` holds 256 values.
            unsafe { simd::q8_k_quants(x, b) };
        } else {
            scalar::q8_k_quants(x, b);
        }
        #[cfg(not(target_arch = "x86_64"))]
        scalar::q8_k_quants(x, b);
        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = q.iter().map(|&v| v as i16).sum();
        }
    }
}

/// The reference forms, value for value ggml's scalar code; the SIMD forms are tested
/// against them.
mod scalar {
    use super::{BlockQ8K, QK8_0};

    pub(super) fn quantize_32(x: &[f32], qs: &mut [i8; QK8_0]) -> (f32, i32) {
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

    /// A Q8_K block's scale and quants (not its sums).
    pub(super) fn q8_k_quants(x: &[f32], b: &mut BlockQ8K) {
        let (mut max, mut amax) = (0f32, 0f32);
        for &v in x {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *b = BlockQ8K::default();
            return;
        }
        let iscale = -127.0 / max;
        for (q, &v) in b.qs.iter_mut().zip(x) {
            *q = ((iscale * v).round_ties_even() as i32).min(127) as i8;
        }
        b.d = 1.0 / iscale;
    }
}

/// AVX2 forms of the scalar ones, the same values for finite inputs: the maximum is exact
/// in any order, each quant is the same product rounded half to even, and integer sums
/// do not depend on order. Activation quantization runs on one thread between the
/// parallel matmuls, so its speed shows in every forward pass.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{BlockQ8K, QK8_0, QK_K};
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2")
    }

    /// |v| (the sign bit cleared).
    #[inline(always)]
    unsafe fn abs(v: __m256) -> __m256 {
        _mm256_andnot_ps(_mm256_set1_ps(-0.0), v)
    }

    /// The largest of eight floats.
    #[inline(always)]
    unsafe fn hmax(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
    }

    /// `round_ties_even(v * by)` as i32.
    #[inline(always)]
    unsafe fn quant(v: __m256, by: __m256) -> __m256i {
        _mm256_cvtps_epi32(_mm256_round_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(_mm256_mul_ps(v, by)))
    }

    /// Four vectors of eight i32 (each within i8) as 32 bytes in order.
    #[inline(always)]
    unsafe fn pack(q: [__m256i; 4], out: *mut i8) {
        let lo = _mm256_packs_epi32(q[0], q[1]);
        let hi = _mm256_packs_epi32(q[2], q[3]);
        let bytes = _mm256_packs_epi16(lo, hi);
        let ordered = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(out.cast(), ordered);
    }

    /// `scalar::quantize_32`. NaN is skipped by the maximum as `f32::max` skips it.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn quantize_32(x: &[f32], qs: &mut [i8; QK8_0]) -> (f32, i32) {
        debug_assert!(x.len() >= QK8_0);
        let p = x.as_ptr();
        let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(p.add(8 * i)));
        // `max_ps(a, b)` returns `b` where either is NaN: the running maximum is `b`.
        let mut m = _mm256_setzero_ps();
        for vi in v {
            m = _mm256_max_ps(abs(vi), m);
        }
        let amax = hmax(m);
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let q: [__m256i; 4] = std::array::from_fn(|i| quant(v[i], id));
        pack(q, qs.as_mut_ptr());
        let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        (d, _mm_cvtsi128_si32(s))
    }

    /// `scalar::q8_k_quants`: the first value of largest magnitude sets the scale.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn q8_k_quants(x: &[f32], b: &mut BlockQ8K) {
        debug_assert!(x.len() >= QK_K);
        let p = x.as_ptr();
        let mut m = _mm256_setzero_ps();
        for i in 0..QK_K / 8 {
            m = _mm256_max_ps(abs(_mm256_loadu_ps(p.add(8 * i))), m);
        }
        let amax = hmax(m);
        if amax == 0.0 {
            *b = BlockQ8K::default();
            return;
        }
        let target = _mm256_set1_ps(amax);
        let mut max = 0.0;
        for i in 0..QK_K / 8 {
            let hit = _mm256_cmp_ps::<_CMP_EQ_OQ>(abs(_mm256_loadu_ps(p.add(8 * i))), target);
            let bits = _mm256_movemask_ps(hit);
            if bits != 0 {
                max = x[8 * i + bits.trailing_zeros() as usize];
                break;
            }
        }
        let iscale = -127.0 / max;
        let by = _mm256_set1_ps(iscale);
        let top = _mm256_set1_epi32(127);
        for g in 0..QK_K / 32 {
            let q: [__m256i; 4] = std::array::from_fn(|i| {
                _mm256_min_epi32(quant(_mm256_loadu_ps(p.add(32 * g + 8 * i)), by), top)
            });
            pack(q, b.qs.as_mut_ptr().add(32 * g));
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

    /// Activations of every kind the quantizers see: mixed magnitudes, exact half steps,
    /// zeros, a repeated largest magnitude with either sign first, one huge outlier.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn cases() -> Vec<Vec<f32>> {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        };
        let mut out = Vec::new();
        for scale in [1e-4f32, 0.03, 1.0, 7.5, 300.0] {
            out.push((0..512).map(|_| rand() * scale).collect());
        }
        let mut halves: Vec<f32> = (0..512).map(|i| (i % 40) as f32 * 0.5 - 10.0).collect();
        halves[3] = 127.0;
        out.push(halves);
        out.push(vec![0.0; 512]);
        let mut ties: Vec<f32> = (0..512).map(|_| rand()).collect();
        ties[10] = 2.0;
        ties[20] = -2.0;
        ties[300] = -2.0;
        ties[310] = 2.0;
        out.push(ties);
        let mut outlier: Vec<f32> = (0..512).map(|_| rand() * 0.01).collect();
        outlier[77] = -900.0;
        out.push(outlier);
        out
    }

    #[test]
    fn simd_quantizers_equal_the_scalar_ones() {
        #[cfg(target_arch = "x86_64")]
        if simd::available() {
            for x in cases() {
                for c in x.chunks_exact(QK8_0) {
                    let (mut a, mut b) = ([0i8; QK8_0], [0i8; QK8_0]);
                    // SAFETY: AVX2 checked; 32 values.
                    let fast = unsafe { simd::quantize_32(c, &mut a) };
                    let reference = scalar::quantize_32(c, &mut b);
                    assert_eq!(
                        (fast.0.to_bits(), fast.1, a),
                        (reference.0.to_bits(), reference.1, b)
                    );
                }
                for c in x.chunks_exact(QK_K) {
                    let (mut a, mut b) = (BlockQ8K::default(), BlockQ8K::default());
                    // SAFETY: AVX2 checked; 256 values.
                    unsafe { simd::q8_k_quants(c, &mut a) };
                    scalar::q8_k_quants(c, &mut b);
                    assert_eq!((a.d.to_bits(), a.qs), (b.d.to_bits(), b.qs));
                }
            }
        }
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
