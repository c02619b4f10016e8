//! Block dot products: one weight row in a GGUF block format against one quantized
//! activation row. Each product is the exact integer sum of a block times the product of
//! the two scales, accumulated in f32, as ggml computes it. A scalar version of every
//! kernel is the reference; x86-64 with AVX2+FMA+F16C gets SIMD versions (picked at run
//! time), which the tests check against the scalar ones.
//! Input: a row's raw block bytes, activation blocks. Output: f32.

// Block kernels index several parallel arrays (quants, high bits, activations) with one
// position; iterator chains would hide the block layout they follow.
#![allow(clippy::needless_range_loop)]

use super::act::{BlockQ8K, BlockQ8_0, BlockQ8_1, QK8_0};
use half::f16;

/// Byte sizes of the weight blocks (ggml's block structs).
pub(crate) const Q4_0_BYTES: usize = 18;
pub(crate) const Q4_1_BYTES: usize = 20;
pub(crate) const Q5_0_BYTES: usize = 22;
pub(crate) const Q8_0_BYTES: usize = 34;
pub(crate) const Q4_K_BYTES: usize = 144;
pub(crate) const Q6_K_BYTES: usize = 210;

#[inline(always)]
fn f16_at(b: &[u8], off: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

pub(crate) fn q8_0_scalar(w: &[u8], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0f32;
    for (blk, a) in w.chunks_exact(Q8_0_BYTES).zip(a) {
        let s: i32 = blk[2..]
            .iter()
            .zip(&a.qs)
            .map(|(&w, &x)| w as i8 as i32 * x as i32)
            .sum();
        sum += s as f32 * (f16_at(blk, 0) * a.d);
    }
    sum
}

pub(crate) fn q4_0_scalar(w: &[u8], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0f32;
    for (blk, a) in w.chunks_exact(Q4_0_BYTES).zip(a) {
        let qs = &blk[2..18];
        let mut s = 0i32;
        for j in 0..QK8_0 / 2 {
            s += ((qs[j] & 0x0F) as i32 - 8) * a.qs[j] as i32;
            s += ((qs[j] >> 4) as i32 - 8) * a.qs[j + 16] as i32;
        }
        sum += s as f32 * (f16_at(blk, 0) * a.d);
    }
    sum
}

pub(crate) fn q5_0_scalar(w: &[u8], a: &[BlockQ8_0]) -> f32 {
    let mut sum = 0f32;
    for (blk, a) in w.chunks_exact(Q5_0_BYTES).zip(a) {
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        let qs = &blk[6..22];
        let mut s = 0i32;
        for j in 0..QK8_0 / 2 {
            let h0 = ((qh >> j) & 1) as i32;
            let h1 = ((qh >> (j + 16)) & 1) as i32;
            s += (((qs[j] & 0x0F) as i32 | (h0 << 4)) - 16) * a.qs[j] as i32;
            s += (((qs[j] >> 4) as i32 | (h1 << 4)) - 16) * a.qs[j + 16] as i32;
        }
        sum += s as f32 * (f16_at(blk, 0) * a.d);
    }
    sum
}

pub(crate) fn q4_1_scalar(w: &[u8], a: &[BlockQ8_1]) -> f32 {
    let (mut sum, mut mins) = (0f32, 0f32);
    for (blk, a) in w.chunks_exact(Q4_1_BYTES).zip(a) {
        let qs = &blk[4..20];
        let mut s = 0i32;
        for j in 0..QK8_0 / 2 {
            s += (qs[j] & 0x0F) as i32 * a.qs[j] as i32;
            s += (qs[j] >> 4) as i32 * a.qs[j + 16] as i32;
        }
        sum += s as f32 * (f16_at(blk, 0) * a.d);
        mins = f16_at(blk, 2).mul_add(a.s, mins);
    }
    sum + mins
}

/// The 8 six-bit scales and 8 mins of a Q4_K block (ggml's `get_scale_min_k4`).
#[inline(always)]
pub(super) fn q4k_scales_mins(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for j in 0..8 {
        if j < 4 {
            sc[j] = s[j] & 63;
            mn[j] = s[j + 4] & 63;
        } else {
            sc[j] = (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
            mn[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        }
    }
    (sc, mn)
}

pub(crate) fn q4_k_scalar(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (blk, a) in w.chunks_exact(Q4_K_BYTES).zip(a) {
        let d = f16_at(blk, 0) * a.d;
        let dmin = f16_at(blk, 2) * a.d;
        let (sc, mn) = q4k_scales_mins(&blk[4..16]);
        let qs = &blk[16..144];
        let mut sumi = 0i32;
        for j in 0..4 {
            let q = &qs[j * 32..j * 32 + 32];
            let x = &a.qs[j * 64..j * 64 + 64];
            let (mut lo, mut hi) = (0i32, 0i32);
            for l in 0..32 {
                lo += (q[l] & 0x0F) as i32 * x[l] as i32;
                hi += (q[l] >> 4) as i32 * x[l + 32] as i32;
            }
            sumi += lo * sc[2 * j] as i32 + hi * sc[2 * j + 1] as i32;
        }
        let summ: i32 = (0..8)
            .map(|j| mn[j] as i32 * (a.bsums[2 * j] as i32 + a.bsums[2 * j + 1] as i32))
            .sum();
        sum += d * sumi as f32 - dmin * summ as f32;
    }
    sum
}

pub(crate) fn q6_k_scalar(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (blk, a) in w.chunks_exact(Q6_K_BYTES).zip(a) {
        let d = f16_at(blk, 208) * a.d;
        let mut sumi = 0i32;
        for n in 0..2 {
            let ql = &blk[n * 64..n * 64 + 64];
            let qh = &blk[128 + n * 32..128 + n * 32 + 32];
            let sc = &blk[192 + n * 8..192 + n * 8 + 8];
            let x = &a.qs[n * 128..n * 128 + 128];
            let mut sub = [0i32; 8];
            for l in 0..32 {
                let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                let is = l / 16;
                sub[is] += q1 * x[l] as i32;
                sub[is + 2] += q2 * x[l + 32] as i32;
                sub[is + 4] += q3 * x[l + 64] as i32;
                sub[is + 6] += q4 * x[l + 96] as i32;
            }
            for j in 0..8 {
                sumi += sub[j] * sc[j] as i8 as i32;
            }
        }
        sum += d * sumi as f32;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    //! AVX2 kernels. Safety: callers must have checked `available()`; slices hold whole
    //! blocks and `a` has at least as many blocks as the row.
    use super::super::act::{BlockQ8K, BlockQ8_0, BlockQ8_1};
    use super::{Q4_0_BYTES, Q4_1_BYTES, Q4_K_BYTES, Q5_0_BYTES, Q6_K_BYTES, Q8_0_BYTES};
    use std::arch::x86_64::*;

    pub(crate) fn available() -> bool {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }

    // SAFETY (callers): `p` points to 2 readable bytes and the CPU has F16C.
    #[inline(always)]
    unsafe fn f16_at(p: *const u8) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
            std::ptr::read_unaligned(p as *const u16) as i32,
        )))
    }

    // SAFETY (callers): the CPU has AVX2; registers only, no memory access.
    #[inline(always)]
    unsafe fn hsum_f32(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Sums of 4 adjacent products of unsigned `u` and signed `s` bytes, as 8 i32: one
    /// `vpdpbusd` where the build has VNNI (AVX-512's, or AVX-VNNI's on CPUs without
    /// AVX-512), else `maddubs` + `madd` (the same integers: a pair of products here is at
    /// most 2 * 128 * 127, within `maddubs`'s i16).
    // SAFETY (callers): the CPU has AVX2 (and the VNNI the build targets); registers only.
    #[inline(always)]
    pub(crate) unsafe fn dot_us8(u: __m256i, s: __m256i) -> __m256i {
        #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
        {
            _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
        }
        #[cfg(all(
            target_feature = "avxvnni",
            not(all(target_feature = "avx512vnni", target_feature = "avx512vl"))
        ))]
        {
            _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s)
        }
        #[cfg(not(any(
            target_feature = "avxvnni",
            all(target_feature = "avx512vnni", target_feature = "avx512vl")
        )))]
        {
            _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
        }
    }

    /// Signed × signed bytes: move the sign of `x` onto `y` so `|x|` can be the unsigned side.
    // SAFETY (callers): the CPU has AVX2; registers only.
    #[inline(always)]
    unsafe fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
        dot_us8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
    }

    /// 32 nibbles → 32 bytes: low nibbles in lanes 0..16, high nibbles in 16..32.
    // SAFETY (callers): `p` points to 16 readable bytes and the CPU has AVX2.
    #[inline(always)]
    unsafe fn nibbles_32(p: *const u8) -> __m256i {
        let t = _mm_loadu_si128(p as *const __m128i);
        let b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
        _mm256_and_si256(b, _mm256_set1_epi8(0x0F))
    }

    /// 32 bits → 32 bytes, 0xFF where the bit is set.
    // SAFETY (callers): `p` points to 4 readable bytes and the CPU has AVX2.
    #[inline(always)]
    unsafe fn bits_32(p: *const u8) -> __m256i {
        let x = std::ptr::read_unaligned(p as *const u32) as i32;
        let shuf = _mm256_set_epi64x(
            0x0303030303030303,
            0x0202020202020202,
            0x0101010101010101,
            0x0000000000000000,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(x), shuf);
        let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
        _mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1))
    }

    /// One accumulator in block order, exactly like the four-row kernels, so a row's result
    /// does not depend on how many rows are batched with it.
    macro_rules! blocks_q8 {
        ($w:expr, $a:expr, $bytes:expr, |$p:ident| $load:expr) => {{
            let n = $a.len().min($w.len() / $bytes);
            let mut acc = _mm256_setzero_ps();
            let wp = $w.as_ptr();
            for (i, y) in $a.iter().enumerate().take(n) {
                let $p = wp.add(i * $bytes);
                let qx = $load;
                let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                let q = _mm256_cvtepi32_ps(dot_i8(qx, qy));
                acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at($p) * y.d), q, acc);
            }
            hsum_f32(acc)
        }};
    }

    // SAFETY (callers): the CPU has AVX2, FMA and F16C (`available()`). Reads stay inside `w` and
    // `a`: only the blocks both hold are read (the count is the smaller of the two).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q8_0(w: &[u8], a: &[BlockQ8_0]) -> f32 {
        blocks_q8!(w, a, Q8_0_BYTES, |p| _mm256_loadu_si256(
            p.add(2) as *const __m256i
        ))
    }

    // SAFETY (callers): the CPU has AVX2, FMA and F16C (`available()`). Reads stay inside `w` and
    // `a`: only the blocks both hold are read (the count is the smaller of the two).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q4_0(w: &[u8], a: &[BlockQ8_0]) -> f32 {
        blocks_q8!(w, a, Q4_0_BYTES, |p| _mm256_sub_epi8(
            nibbles_32(p.add(2)),
            _mm256_set1_epi8(8)
        ))
    }

    // SAFETY (callers): the CPU has AVX2, FMA and F16C (`available()`). Reads stay inside `w` and
    // `a`: only the blocks both hold are read (the count is the smaller of the two).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q5_0(w: &[u8], a: &[BlockQ8_0]) -> f32 {
        // A clear high bit means value - 16 < 0: OR in 0xF0 there (two's complement).
        blocks_q8!(w, a, Q5_0_BYTES, |p| _mm256_or_si256(
            nibbles_32(p.add(6)),
            _mm256_andnot_si256(bits_32(p.add(2)), _mm256_set1_epi8(0xF0u8 as i8))
        ))
    }

    /// Four activation rows against one weight row: each block is loaded and unpacked once
    /// (prefill). Same per-block arithmetic as the one-row kernels.
    macro_rules! blocks_q8_x4 {
        ($w:expr, $a:expr, $bytes:expr, |$p:ident| $load:expr) => {{
            let a: [&[BlockQ8_0]; 4] = $a;
            let n = a.iter().fold($w.len() / $bytes, |m, r| m.min(r.len()));
            let mut acc = [_mm256_setzero_ps(); 4];
            let wp = $w.as_ptr();
            for i in 0..n {
                let $p = wp.add(i * $bytes);
                let qx = $load;
                let ax = _mm256_sign_epi8(qx, qx);
                let dw = f16_at($p);
                for j in 0..4 {
                    let y = a[j].get_unchecked(i); // i < n <= every a[j].len()
                    let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                    let q = _mm256_cvtepi32_ps(dot_us8(ax, _mm256_sign_epi8(qy, qx)));
                    acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw * y.d), q, acc[j]);
                }
            }
            [
                hsum_f32(acc[0]),
                hsum_f32(acc[1]),
                hsum_f32(acc[2]),
                hsum_f32(acc[3]),
            ]
        }};
    }

    /// Eight activation rows (`a[j * stride..]`, j < 8) against one weight row: each block
    /// is loaded and unpacked once per eight tokens (prefill). Same per-block arithmetic as
    /// the one-row kernels (`dw * dy` is the same f32 product, done in a vector).
    macro_rules! blocks_q8_x8 {
        ($w:expr, $a:expr, $stride:expr, $bytes:expr, |$p:ident| $load:expr) => {{
            let (a, stride): (&[BlockQ8_0], usize) = ($a, $stride);
            let n = ($w.len() / $bytes).min(stride);
            assert!(a.len() >= 7 * stride + n, "eight activation rows");
            let mut acc = [_mm256_setzero_ps(); 8];
            let (wp, ap) = ($w.as_ptr(), a.as_ptr());
            for i in 0..n {
                let $p = wp.add(i * $bytes);
                let qx = $load;
                let ax = _mm256_sign_epi8(qx, qx);
                let dw = _mm256_set1_ps(f16_at($p));
                for (j, acc) in acc.iter_mut().enumerate() {
                    let y = &*ap.add(j * stride + i); // checked by the assert above
                    let qy = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                    let q = _mm256_cvtepi32_ps(dot_us8(ax, _mm256_sign_epi8(qy, qx)));
                    let d = _mm256_mul_ps(dw, _mm256_broadcast_ss(&y.d));
                    *acc = _mm256_fmadd_ps(d, q, *acc);
                }
            }
            let mut out = [0f32; 8];
            for (o, acc) in out.iter_mut().zip(acc) {
                *o = hsum_f32(acc);
            }
            out
        }};
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q8_0_x8(w: &[u8], a: &[BlockQ8_0], stride: usize) -> [f32; 8] {
        blocks_q8_x8!(w, a, stride, Q8_0_BYTES, |p| _mm256_loadu_si256(
            p.add(2) as *const __m256i
        ))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q4_0_x8(w: &[u8], a: &[BlockQ8_0], stride: usize) -> [f32; 8] {
        blocks_q8_x8!(w, a, stride, Q4_0_BYTES, |p| _mm256_sub_epi8(
            nibbles_32(p.add(2)),
            _mm256_set1_epi8(8)
        ))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q5_0_x8(w: &[u8], a: &[BlockQ8_0], stride: usize) -> [f32; 8] {
        blocks_q8_x8!(w, a, stride, Q5_0_BYTES, |p| _mm256_or_si256(
            nibbles_32(p.add(6)),
            _mm256_andnot_si256(bits_32(p.add(2)), _mm256_set1_epi8(0xF0u8 as i8))
        ))
    }

    /// Q4_1 against eight activation rows, as `q4_1_x4`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q4_1_x8(w: &[u8], a: &[BlockQ8_1], stride: usize) -> [f32; 8] {
        let n = (w.len() / Q4_1_BYTES).min(stride);
        assert!(a.len() >= 7 * stride + n, "eight activation rows");
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut mins = [0f32; 8];
        for i in 0..n {
            let p = wp.add(i * Q4_1_BYTES);
            let (dw, mw) = (f16_at(p), f16_at(p.add(2)));
            let vdw = _mm256_set1_ps(dw);
            let qx = nibbles_32(p.add(4));
            for j in 0..8 {
                let y = &*ap.add(j * stride + i); // checked by the assert above
                mins[j] = mw.mul_add(y.s, mins[j]);
                let q = dot_us8(qx, _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i));
                let d = _mm256_mul_ps(vdw, _mm256_broadcast_ss(&y.d));
                acc[j] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q), acc[j]);
            }
        }
        let mut out = [0f32; 8];
        for j in 0..8 {
            out[j] = hsum_f32(acc[j]) + mins[j];
        }
        out
    }

    // SAFETY (callers): the CPU has AVX2, FMA and F16C (`available()`). Reads stay inside `w` and
    // `a`: only the blocks both hold are read (the count is the smaller of the two).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q8_0_x4(w: &[u8], a: [&[BlockQ8_0]; 4]) -> [f32; 4] {
        blocks_q8_x4!(w, a, Q8_0_BYTES, |p| _mm256_loadu_si256(
            p.add(2) as *const __m256i
        ))
    }

    // SAFETY (callers): the CPU has AVX2, FMA and F16C (`available()`). Reads stay inside `w` and
    // `a`: only the blocks both hold are read (the count is the smaller of the two).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q4_0_x4(w: &[u8], a: [&[BlockQ8_0]; 4]) -> [f32; 4] {
        blocks_q8_x4!(w, a, Q4_0_BYTES, |p| _mm256_sub_epi8(
            nibbles_32(p.add(2)),
            _mm256_set1_epi8(8)
        ))
    }

    // SAFETY (callers): the CPU has AVX2, FMA and F16C (`available()`). Reads stay inside `w` and
    // `a`: only the blocks both hold are read (the count is the smaller of the two).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q5_0_x4(w: &[u8], a: [&[BlockQ8_0]; 4]) -> [f32; 4] {
        blocks_q8_x4!(w, a, Q5_0_BYTES, |p| _mm256_or_si256(
            nibbles_32(p.add(6)),
            _mm256_andnot_si256(bits_32(p.add(2)), _mm256_set1_epi8(0xF0u8 as i8))
        ))
    }

    // SAFETY (callers): the CPU has AVX2, FMA and F16C (`available()`). Reads stay inside `w` and
    // `a`: only the blocks both hold are read (the count is the smaller of the two).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q4_1_x4(w: &[u8], a: [&[BlockQ8_1]; 4]) -> [f32; 4] {
        let n = a.iter().fold(w.len() / Q4_1_BYTES, |m, r| m.min(r.len()));
        let wp = w.as_ptr();
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut mins = [0f32; 4];
        for i in 0..n {
            let p = wp.add(i * Q4_1_BYTES);
            let (dw, mw) = (f16_at(p), f16_at(p.add(2)));
            let qx = nibbles_32(p.add(4));
            for j in 0..4 {
                let y = a[j].get_unchecked(i); // i < n <= every a[j].len()
                mins[j] = mw.mul_add(y.s, mins[j]);
                let q = dot_us8(qx, _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i));
                acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(dw * y.d), _mm256_cvtepi32_ps(q), acc[j]);
            }
        }
        [
            hsum_f32(acc[0]) + mins[0],
            hsum_f32(acc[1]) + mins[1],
            hsum_f32(acc[2]) + mins[2],
            hsum_f32(acc[3]) + mins[3],
        ]
    }

    // SAFETY (callers): the CPU has AVX2, FMA and F16C (`available()`). Reads stay inside `w` and
    // `a`: only the blocks both hold are read (the count is the smaller of the two).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q4_k_x4(w: &[u8], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
        let n = a.iter().fold(w.len() / Q4_K_BYTES, |m, r| m.min(r.len()));
        let wp = w.as_ptr();
        let mut acc = [0f32; 4];
        let mut mins = [0f32; 4];
        let low = _mm256_set1_epi8(0x0F);
        for i in 0..n {
            let p = wp.add(i * Q4_K_BYTES);
            let blk = std::slice::from_raw_parts(p, Q4_K_BYTES);
            let (sc, mn) = super::q4k_scales_mins(&blk[4..16]);
            let mut q = [_mm256_setzero_si256(); 8];
            for j in 0..4 {
                let q4 = _mm256_loadu_si256(p.add(16 + 32 * j) as *const __m256i);
                q[2 * j] = _mm256_and_si256(q4, low);
                q[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(q4, 4), low);
            }
            for t in 0..4 {
                let y = a[t].get_unchecked(i); // i < n <= every a[t].len()
                let mut sumi = _mm256_setzero_si256();
                for (j, qj) in q.iter().enumerate() {
                    let x = _mm256_loadu_si256(y.qs.as_ptr().add(32 * j) as *const __m256i);
                    let pj = dot_us8(*qj, x);
                    sumi = _mm256_add_epi32(
                        sumi,
                        _mm256_mullo_epi32(pj, _mm256_set1_epi32(sc[j] as i32)),
                    );
                }
                (acc[t], mins[t]) = q4k_accumulate(acc[t], mins[t], hsum_i32(sumi), &mn, p, y);
            }
        }
        [
            acc[0] - mins[0],
            acc[1] - mins[1],
            acc[2] - mins[2],
            acc[3] - mins[3],
        ]
    }

    // SAFETY (callers): the CPU has AVX2, FMA and F16C (`available()`). Reads stay inside `w` and
    // `a`: only the blocks both hold are read (the count is the smaller of the two).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q6_k_x4(w: &[u8], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
        let n = a.iter().fold(w.len() / Q6_K_BYTES, |m, r| m.min(r.len()));
        let wp = w.as_ptr();
        let mut acc = [_mm256_setzero_ps(); 4];
        let low = _mm256_set1_epi8(0x0F);
        let three = _mm256_set1_epi8(3);
        for i in 0..n {
            let p = wp.add(i * Q6_K_BYTES);
            let mut q = [_mm256_setzero_si256(); 8];
            let mut scales = [_mm256_setzero_si256(); 8];
            for h in 0..2 {
                let ql0 = _mm256_loadu_si256(p.add(h * 64) as *const __m256i);
                let ql1 = _mm256_loadu_si256(p.add(h * 64 + 32) as *const __m256i);
                let qh = _mm256_loadu_si256(p.add(128 + h * 32) as *const __m256i);
                // The 2 high bits of each value, moved to bits 4..6.
                macro_rules! hi {
                    ($s:literal) => {
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, $s), three), 4)
                    };
                }
                q[4 * h] = _mm256_or_si256(_mm256_and_si256(ql0, low), hi!(0));
                q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(ql1, low), hi!(2));
                q[4 * h + 2] =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low), hi!(4));
                q[4 * h + 3] =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low), hi!(6));
                for k in 0..4 {
                    let sc = p.add(192 + h * 8 + 2 * k) as *const i8;
                    scales[4 * h + k] = _mm256_set_m128i(
                        _mm_set1_epi16(*sc.add(1) as i16),
                        _mm_set1_epi16(*sc as i16),
                    );
                }
            }
            for t in 0..4 {
                let y = a[t].get_unchecked(i); // i < n <= every a[t].len()
                let mut sumi = _mm256_setzero_si256();
                for j in 0..8 {
                    let x = _mm256_loadu_si256(y.qs.as_ptr().add(32 * j) as *const __m256i);
                    let prod = _mm256_maddubs_epi16(q[j], x);
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(prod, scales[j]));
                }
                acc[t] = q6k_accumulate(acc[t], sumi, p, y);
            }
        }
        [
            hsum_f32(acc[0]),
            hsum_f32(acc[1]),
            hsum_f32(acc[2]),
            hsum_f32(acc[3]),
        ]
    }

    /// Eight vectors of i32 lanes → one vector of their eight lane totals (`v[t]`'s total
    /// in lane `t`). Integer sums: exact in any order.
    #[inline(always)]
    unsafe fn hsum8_i32(v: [__m256i; 8]) -> __m256i {
        let h01 = _mm256_hadd_epi32(v[0], v[1]);
        let h23 = _mm256_hadd_epi32(v[2], v[3]);
        let h45 = _mm256_hadd_epi32(v[4], v[5]);
        let h67 = _mm256_hadd_epi32(v[6], v[7]);
        // Per 128-bit half: [t0, t1, t2, t3] partial totals.
        let h0123 = _mm256_hadd_epi32(h01, h23);
        let h4567 = _mm256_hadd_epi32(h45, h67);
        _mm256_add_epi32(
            _mm256_permute2x128_si256::<0x20>(h0123, h4567),
            _mm256_permute2x128_si256::<0x31>(h0123, h4567),
        )
    }

    /// Q4_K against eight activation rows (`a[j * stride..]`): each super-block unpacked
    /// once. Per token the block's integer sums are those of `q4_k` (exact; the scales are
    /// applied in i16 `madd`s instead of i32 multiplies), the eight tokens' sums are reduced
    /// together, and each token's two f32 FMAs are `q4k_accumulate`'s, one per lane.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q4_k_x8(w: &[u8], a: &[BlockQ8K], stride: usize) -> [f32; 8] {
        let n = (w.len() / Q4_K_BYTES).min(stride);
        assert!(a.len() >= 7 * stride + n, "eight activation rows");
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        let low = _mm256_set1_epi8(0x0F);
        let (mut acc, mut mins) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in 0..n {
            let p = wp.add(i * Q4_K_BYTES);
            let (sc, mn) = super::q4k_scales_mins(std::slice::from_raw_parts(p.add(4), 12));
            let mut q = [_mm256_setzero_si256(); 8];
            for j in 0..4 {
                let q4 = _mm256_loadu_si256(p.add(16 + 32 * j) as *const __m256i);
                q[2 * j] = _mm256_and_si256(q4, low);
                q[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(q4, 4), low);
            }
            let s16: [__m256i; 8] = std::array::from_fn(|j| _mm256_set1_epi16(sc[j] as i16));
            // Each minimum twice: it multiplies the two 16-value sums of its sub-block.
            let m16: [i16; 16] = std::array::from_fn(|l| mn[l / 2] as i16);
            let m16 = _mm256_loadu_si256(m16.as_ptr() as *const __m256i);
            let mut sums = [_mm256_setzero_si256(); 8];
            let mut msums = [_mm256_setzero_si256(); 8];
            let mut yd = [0f32; 8];
            for t in 0..8 {
                let y = &*ap.add(t * stride + i); // checked by the assert above
                let mut s = _mm256_setzero_si256();
                for j in 0..8 {
                    let x = _mm256_loadu_si256(y.qs.as_ptr().add(32 * j) as *const __m256i);
                    let prod = _mm256_maddubs_epi16(q[j], x);
                    s = _mm256_add_epi32(s, _mm256_madd_epi16(prod, s16[j]));
                }
                sums[t] = s;
                let bsums = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
                msums[t] = _mm256_madd_epi16(bsums, m16);
                yd[t] = y.d;
            }
            let yd = _mm256_loadu_ps(yd.as_ptr());
            let sumi = _mm256_cvtepi32_ps(hsum8_i32(sums));
            let summ = _mm256_cvtepi32_ps(hsum8_i32(msums));
            acc = _mm256_fmadd_ps(sumi, _mm256_mul_ps(_mm256_set1_ps(f16_at(p)), yd), acc);
            let dmin = _mm256_mul_ps(_mm256_set1_ps(f16_at(p.add(2))), yd);
            mins = _mm256_fmadd_ps(summ, dmin, mins);
        }
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), _mm256_sub_ps(acc, mins));
        out
    }

    /// Q6_K against eight activation rows, as `q6_k_x4`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q6_k_x8(w: &[u8], a: &[BlockQ8K], stride: usize) -> [f32; 8] {
        let n = (w.len() / Q6_K_BYTES).min(stride);
        assert!(a.len() >= 7 * stride + n, "eight activation rows");
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 8];
        let low = _mm256_set1_epi8(0x0F);
        let three = _mm256_set1_epi8(3);
        for i in 0..n {
            let p = wp.add(i * Q6_K_BYTES);
            let mut q = [_mm256_setzero_si256(); 8];
            let mut scales = [_mm256_setzero_si256(); 8];
            for h in 0..2 {
                let ql0 = _mm256_loadu_si256(p.add(h * 64) as *const __m256i);
                let ql1 = _mm256_loadu_si256(p.add(h * 64 + 32) as *const __m256i);
                let qh = _mm256_loadu_si256(p.add(128 + h * 32) as *const __m256i);
                macro_rules! hi {
                    ($s:literal) => {
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, $s), three), 4)
                    };
                }
                q[4 * h] = _mm256_or_si256(_mm256_and_si256(ql0, low), hi!(0));
                q[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(ql1, low), hi!(2));
                q[4 * h + 2] =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low), hi!(4));
                q[4 * h + 3] =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low), hi!(6));
                for k in 0..4 {
                    let sc = p.add(192 + h * 8 + 2 * k) as *const i8;
                    scales[4 * h + k] = _mm256_set_m128i(
                        _mm_set1_epi16(*sc.add(1) as i16),
                        _mm_set1_epi16(*sc as i16),
                    );
                }
            }
            for (t, acc) in acc.iter_mut().enumerate() {
                let y = &*ap.add(t * stride + i); // checked by the assert above
                let mut sumi = _mm256_setzero_si256();
                for j in 0..8 {
                    let x = _mm256_loadu_si256(y.qs.as_ptr().add(32 * j) as *const __m256i);
                    let prod = _mm256_maddubs_epi16(q[j], x);
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(prod, scales[j]));
                }
                *acc = q6k_accumulate(*acc, sumi, p, y);
            }
        }
        let mut out = [0f32; 8];
        for (o, acc) in out.iter_mut().zip(acc) {
            *o = hsum_f32(acc);
        }
        out
    }

    // SAFETY (callers): the CPU has AVX2, FMA and F16C (`available()`). Reads stay inside `w` and
    // `a`: only the blocks both hold are read (the count is the smaller of the two).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q4_1(w: &[u8], a: &[BlockQ8_1]) -> f32 {
        let n = a.len().min(w.len() / Q4_1_BYTES);
        let wp = w.as_ptr();
        let mut acc = _mm256_setzero_ps();
        let mut mins = 0f32;
        for (i, y) in a.iter().enumerate().take(n) {
            let p = wp.add(i * Q4_1_BYTES);
            mins = f16_at(p.add(2)).mul_add(y.s, mins);
            let q = dot_us8(
                nibbles_32(p.add(4)),
                _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i),
            );
            let d = _mm256_set1_ps(f16_at(p) * y.d);
            acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(q), acc);
        }
        hsum_f32(acc) + mins
    }

    // SAFETY (callers): the CPU has AVX2, FMA and F16C (`available()`). Reads stay inside `w` and
    // `a`: only the blocks both hold are read (the count is the smaller of the two).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q4_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
        let n = a.len().min(w.len() / Q4_K_BYTES);
        let wp = w.as_ptr();
        let (mut acc, mut mins) = (0f32, 0f32);
        let low = _mm256_set1_epi8(0x0F);
        for (i, y) in a.iter().enumerate().take(n) {
            let p = wp.add(i * Q4_K_BYTES);
            let blk = std::slice::from_raw_parts(p, Q4_K_BYTES);
            let (sc, mn) = super::q4k_scales_mins(&blk[4..16]);
            let mut sumi = _mm256_setzero_si256();
            for j in 0..4 {
                let q4 = _mm256_loadu_si256(p.add(16 + 32 * j) as *const __m256i);
                let lo = _mm256_and_si256(q4, low);
                let hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), low);
                let x = y.qs.as_ptr().add(64 * j);
                let plo = dot_us8(lo, _mm256_loadu_si256(x as *const __m256i));
                let phi = dot_us8(hi, _mm256_loadu_si256(x.add(32) as *const __m256i));
                sumi = _mm256_add_epi32(
                    sumi,
                    _mm256_mullo_epi32(plo, _mm256_set1_epi32(sc[2 * j] as i32)),
                );
                sumi = _mm256_add_epi32(
                    sumi,
                    _mm256_mullo_epi32(phi, _mm256_set1_epi32(sc[2 * j + 1] as i32)),
                );
            }
            (acc, mins) = q4k_accumulate(acc, mins, hsum_i32(sumi), &mn, p, y);
        }
        acc - mins
    }

    /// The end of a Q4_K super-block as llama.cpp's x86 kernel (weights repacked 8x8) does
    /// it: the block's exact integer sum times `d_w * d_x`, and the minimum term likewise,
    /// each in its own f32 FMA chain; the result is their difference.
    // SAFETY (callers): `p` points to a whole Q4_K block (its f16 scales) and the CPU has F16C.
    #[inline(always)]
    unsafe fn q4k_accumulate(
        acc: f32,
        mins: f32,
        sumi: i32,
        mn: &[u8; 8],
        p: *const u8,
        y: &BlockQ8K,
    ) -> (f32, f32) {
        let summ: i32 = (0..8)
            .map(|j| mn[j] as i32 * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32))
            .sum();
        (
            (sumi as f32).mul_add(f16_at(p) * y.d, acc),
            (summ as f32).mul_add(f16_at(p.add(2)) * y.d, mins),
        )
    }

    // SAFETY (callers): the CPU has AVX2; registers only.
    #[inline(always)]
    unsafe fn hsum_i32(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01));
        _mm_cvtsi128_si32(s)
    }

    // SAFETY (callers): the CPU has AVX2, FMA and F16C (`available()`). Reads stay inside `w` and
    // `a`: only the blocks both hold are read (the count is the smaller of the two).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn q6_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
        let n = a.len().min(w.len() / Q6_K_BYTES);
        let wp = w.as_ptr();
        let mut acc = _mm256_setzero_ps();
        let low = _mm256_set1_epi8(0x0F);
        let three = _mm256_set1_epi8(3);
        for (i, y) in a.iter().enumerate().take(n) {
            let p = wp.add(i * Q6_K_BYTES);
            let mut sumi = _mm256_setzero_si256();
            for h in 0..2 {
                let ql0 = _mm256_loadu_si256(p.add(h * 64) as *const __m256i);
                let ql1 = _mm256_loadu_si256(p.add(h * 64 + 32) as *const __m256i);
                let qh = _mm256_loadu_si256(p.add(128 + h * 32) as *const __m256i);
                let sc = p.add(192 + h * 8) as *const i8;
                // Unsigned 6-bit values; the -32 offset is applied through the block sums.
                let q = [
                    _mm256_or_si256(
                        _mm256_and_si256(ql0, low),
                        _mm256_slli_epi16(_mm256_and_si256(qh, three), 4),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(ql1, low),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), three), 4),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), three), 4),
                    ),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), three), 4),
                    ),
                ];
                for (k, qk) in q.iter().enumerate() {
                    let x =
                        _mm256_loadu_si256(y.qs.as_ptr().add(h * 128 + k * 32) as *const __m256i);
                    // 16 i16 pair sums: lanes 0..8 are the first 16 values, 8..16 the next.
                    let prod = _mm256_maddubs_epi16(*qk, x);
                    let s0 = *sc.add(2 * k) as i16;
                    let s1 = *sc.add(2 * k + 1) as i16;
                    let scales = _mm256_set_m128i(_mm_set1_epi16(s1), _mm_set1_epi16(s0));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(prod, scales));
                }
            }
            acc = q6k_accumulate(acc, sumi, p, y);
        }
        hsum_f32(acc)
    }

    /// The end of a Q6_K super-block as ggml does it, lane by lane: subtract the -32 offset
    /// (`32 * scale * block sum`, two sub-blocks per lane), then `acc += d * lanes`.
    // SAFETY (callers): `p` points to a whole Q6_K block (its scales at byte 192) and the CPU has AVX2.
    #[inline(always)]
    unsafe fn q6k_accumulate(acc: __m256, sumi: __m256i, p: *const u8, y: &BlockQ8K) -> __m256 {
        let bsums = _mm256_loadu_si256(y.bsums.as_ptr() as *const __m256i);
        let scales = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(192) as *const __m128i));
        let offset = _mm256_slli_epi32(_mm256_madd_epi16(bsums, scales), 5);
        let lanes = _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi, offset));
        _mm256_fmadd_ps(_mm256_set1_ps(y.d * f16_at(p.add(208))), lanes, acc)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::act::{quantize_q8_0, quantize_q8_1, quantize_q8_k};
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    /// Deterministic pseudo-random weights/activations with some large outliers (the
    /// repacked kernels' tests too).
    pub(in crate::model::cpu) fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let v = (s % 2001) as f32 / 1000.0 - 1.0;
                if i % 97 == 0 {
                    v * 8.0
                } else {
                    v
                }
            })
            .collect()
    }

    /// A quantized row through candle's quantizer, plus its dequantized values.
    fn weight(dtype: GgmlDType, k: usize, seed: u32) -> (Vec<u8>, Vec<f32>) {
        let t = Tensor::from_vec(values(k, seed), (1, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        let deq: Vec<f32> = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        (q.data().unwrap().into_owned(), deq)
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-4 * (1.0 + b.abs())
    }

    #[test]
    fn q8_0_family_equals_dequantized_dot() {
        let k = 512;
        let x = values(k, 7);
        let mut a = vec![BlockQ8_0::default(); k / 32];
        quantize_q8_0(&x, &mut a);
        let xq: Vec<f32> = a
            .iter()
            .flat_map(|b| b.qs.iter().map(move |&q| q as f32 * b.d))
            .collect();
        type Kernel = fn(&[u8], &[BlockQ8_0]) -> f32;
        let cases: [(GgmlDType, Kernel); 3] = [
            (GgmlDType::Q8_0, q8_0_scalar),
            (GgmlDType::Q4_0, q4_0_scalar),
            (GgmlDType::Q5_0, q5_0_scalar),
        ];
        for (dt, scalar) in cases {
            let (w, deq) = weight(dt, k, 3);
            let want: f32 = deq.iter().zip(&xq).map(|(a, b)| a * b).sum();
            let got = scalar(&w, &a);
            assert!(close(got, want), "{dt:?} scalar {got} vs {want}");
            #[cfg(target_arch = "x86_64")]
            if avx2::available() {
                // SAFETY: `avx2::available()` was checked above; `w` and `a` hold whole blocks.
                let simd = unsafe {
                    match dt {
                        GgmlDType::Q8_0 => avx2::q8_0(&w, &a),
                        GgmlDType::Q4_0 => avx2::q4_0(&w, &a),
                        _ => avx2::q5_0(&w, &a),
                    }
                };
                assert!(close(simd, got), "{dt:?} avx2 {simd} vs scalar {got}");
            }
        }
    }

    /// The four-row kernels equal four one-row calls.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn four_row_kernels_equal_one_row_kernels() {
        if !avx2::available() {
            return;
        }
        let k = 512;
        let rows: Vec<Vec<f32>> = (0..4).map(|r| values(k, 100 + r)).collect();
        let q8_0: Vec<Vec<BlockQ8_0>> = rows
            .iter()
            .map(|x| {
                let mut a = vec![BlockQ8_0::default(); k / 32];
                quantize_q8_0(x, &mut a);
                a
            })
            .collect();
        let q8_1: Vec<Vec<BlockQ8_1>> = rows
            .iter()
            .map(|x| {
                let mut a = vec![BlockQ8_1::default(); k / 32];
                quantize_q8_1(x, &mut a);
                a
            })
            .collect();
        let q8k: Vec<Vec<BlockQ8K>> = rows
            .iter()
            .map(|x| {
                let mut a = vec![BlockQ8K::default(); k / 256];
                quantize_q8_k(x, &mut a);
                a
            })
            .collect();
        fn r4<A>(v: &[Vec<A>]) -> [&[A]; 4] {
            [&v[0][..], &v[1][..], &v[2][..], &v[3][..]]
        }
        for dt in [
            GgmlDType::Q8_0,
            GgmlDType::Q4_0,
            GgmlDType::Q5_0,
            GgmlDType::Q4_1,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
        ] {
            let (w, _) = weight(dt, k, 9);
            // SAFETY: `avx2::available()` was checked above; every row holds whole blocks.
            let (four, one): ([f32; 4], Vec<f32>) = unsafe {
                match dt {
                    GgmlDType::Q8_0 => (
                        avx2::q8_0_x4(&w, r4(&q8_0)),
                        q8_0.iter().map(|a| avx2::q8_0(&w, a)).collect(),
                    ),
                    GgmlDType::Q4_0 => (
                        avx2::q4_0_x4(&w, r4(&q8_0)),
                        q8_0.iter().map(|a| avx2::q4_0(&w, a)).collect(),
                    ),
                    GgmlDType::Q5_0 => (
                        avx2::q5_0_x4(&w, r4(&q8_0)),
                        q8_0.iter().map(|a| avx2::q5_0(&w, a)).collect(),
                    ),
                    GgmlDType::Q4_1 => (
                        avx2::q4_1_x4(&w, r4(&q8_1)),
                        q8_1.iter().map(|a| avx2::q4_1(&w, a)).collect(),
                    ),
                    GgmlDType::Q4K => (
                        avx2::q4_k_x4(&w, r4(&q8k)),
                        q8k.iter().map(|a| avx2::q4_k(&w, a)).collect(),
                    ),
                    _ => (
                        avx2::q6_k_x4(&w, r4(&q8k)),
                        q8k.iter().map(|a| avx2::q6_k(&w, a)).collect(),
                    ),
                }
            };
            for (f, o) in four.iter().zip(&one) {
                assert!(close(*f, *o), "{dt:?}: four-row {f} vs one-row {o}");
            }
        }
    }

    /// The eight-row kernels equal eight one-row calls bit for bit (a row's result must
    /// not depend on how many tokens are batched with it).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn eight_row_kernels_equal_one_row_kernels_exactly() {
        if !avx2::available() {
            return;
        }
        let k = 512;
        let x: Vec<f32> = (0..8).flat_map(|r| values(k, 200 + r)).collect();
        let mut q8_0 = vec![BlockQ8_0::default(); 8 * k / 32];
        quantize_q8_0(&x, &mut q8_0);
        let mut q8_1 = vec![BlockQ8_1::default(); 8 * k / 32];
        quantize_q8_1(&x, &mut q8_1);
        let mut q8k = vec![BlockQ8K::default(); 8 * k / 256];
        quantize_q8_k(&x, &mut q8k);
        let pr = k / 32;
        let prk = k / 256;
        for dt in [
            GgmlDType::Q8_0,
            GgmlDType::Q4_0,
            GgmlDType::Q5_0,
            GgmlDType::Q4_1,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
        ] {
            let (w, _) = weight(dt, k, 19);
            // SAFETY: AVX2/FMA/F16C checked above; every row holds `pr` blocks.
            let (eight, one): ([f32; 8], Vec<f32>) = unsafe {
                let rows0 = || q8_0.chunks(pr);
                match dt {
                    GgmlDType::Q8_0 => (
                        avx2::q8_0_x8(&w, &q8_0, pr),
                        rows0().map(|a| avx2::q8_0(&w, a)).collect(),
                    ),
                    GgmlDType::Q4_0 => (
                        avx2::q4_0_x8(&w, &q8_0, pr),
                        rows0().map(|a| avx2::q4_0(&w, a)).collect(),
                    ),
                    GgmlDType::Q5_0 => (
                        avx2::q5_0_x8(&w, &q8_0, pr),
                        rows0().map(|a| avx2::q5_0(&w, a)).collect(),
                    ),
                    GgmlDType::Q4_1 => (
                        avx2::q4_1_x8(&w, &q8_1, pr),
                        q8_1.chunks(pr).map(|a| avx2::q4_1(&w, a)).collect(),
                    ),
                    GgmlDType::Q4K => (
                        avx2::q4_k_x8(&w, &q8k, prk),
                        q8k.chunks(prk).map(|a| avx2::q4_k(&w, a)).collect(),
                    ),
                    _ => (
                        avx2::q6_k_x8(&w, &q8k, prk),
                        q8k.chunks(prk).map(|a| avx2::q6_k(&w, a)).collect(),
                    ),
                }
            };
            for (e, o) in eight.iter().zip(&one) {
                assert_eq!(
                    e.to_bits(),
                    o.to_bits(),
                    "{dt:?}: eight-row {e} vs one-row {o}"
                );
            }
        }
    }

    #[test]
    fn q4_1_equals_dequantized_dot() {
        let k = 256;
        let x = values(k, 11);
        let mut a = vec![BlockQ8_1::default(); k / 32];
        quantize_q8_1(&x, &mut a);
        let (w, deq) = weight(GgmlDType::Q4_1, k, 5);
        // d*q*x + m*s with s the rounded block sum: compare against the same formula.
        let want: f32 = w
            .chunks_exact(Q4_1_BYTES)
            .zip(&a)
            .zip(deq.chunks_exact(32))
            .map(|((blk, b), dq)| {
                let m = f16_at(blk, 2);
                let s: f32 = dq
                    .iter()
                    .zip(&b.qs)
                    .map(|(w, &q)| (w - m) * q as f32 * b.d)
                    .sum();
                s + m * b.s
            })
            .sum();
        let got = q4_1_scalar(&w, &a);
        assert!(close(got, want), "scalar {got} vs {want}");
        #[cfg(target_arch = "x86_64")]
        if avx2::available() {
            // SAFETY: `avx2::available()` was checked above; `w` and `a` hold whole blocks.
            let simd = unsafe { avx2::q4_1(&w, &a) };
            assert!(close(simd, got), "avx2 {simd} vs scalar {got}");
        }
    }

    #[test]
    fn k_quants_equal_dequantized_dot() {
        let k = 1024;
        let x = values(k, 13);
        let mut a = vec![BlockQ8K::default(); k / 256];
        quantize_q8_k(&x, &mut a);
        let xq: Vec<f32> = a
            .iter()
            .flat_map(|b| b.qs.iter().map(move |&q| q as f32 * b.d))
            .collect();
        for dt in [GgmlDType::Q4K, GgmlDType::Q6K] {
            let (w, deq) = weight(dt, k, 17);
            let want: f32 = deq.iter().zip(&xq).map(|(a, b)| a * b).sum();
            let got = match dt {
                GgmlDType::Q4K => q4_k_scalar(&w, &a),
                _ => q6_k_scalar(&w, &a),
            };
            assert!(close(got, want), "{dt:?} scalar {got} vs {want}");
            #[cfg(target_arch = "x86_64")]
            if avx2::available() {
                // SAFETY: `avx2::available()` was checked above; `w` and `a` hold whole blocks.
                let simd = unsafe {
                    match dt {
                        GgmlDType::Q4K => avx2::q4_k(&w, &a),
                        _ => avx2::q6_k(&w, &a),
                    }
                };
                assert!(close(simd, got), "{dt:?} avx2 {simd} vs scalar {got}");
            }
        }
    }
}
