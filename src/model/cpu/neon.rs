//! aarch64 NEON versions of the block dot products in `dot.rs`. Each block's integer sum is
//! computed with SIMD (`sdot` where the CPU has the dot-product extension, else widening
//! multiplies), and the f32 side repeats the scalar kernel's operations in the scalar
//! kernel's order, so every result is bit-for-bit the scalar fallback's: a model gives the
//! same logits on an ARM CPU with or without these kernels.
//! Input: a row's raw block bytes, activation blocks. Output: f32.
//! Safety: the kernels are `unsafe fn`s with `#[target_feature]`; `kernel()` hands them out
//! only after the run-time check, and they read whole blocks of the slices they are given.

// Kernels index the block layout (quants, high bits, scales) by position, as dot.rs does.
#![allow(clippy::needless_range_loop)]

use super::act::{BlockQ8K, BlockQ8_0, BlockQ8_1};
use super::dot::{Q4_0_BYTES, Q4_1_BYTES, Q4_K_BYTES, Q5_0_BYTES, Q6_K_BYTES, Q8_0_BYTES};
use super::{Kernel, Kernels};
use candle_core::quantized::GgmlDType;
use half::f16;
use std::arch::aarch64::*;

/// NEON kernels for `dtype`, with `sdot` when the CPU has it; `None` for formats without one.
pub(super) fn kernel(dtype: GgmlDType) -> Option<Kernel> {
    if !std::arch::is_aarch64_feature_detected!("neon") {
        return None;
    }
    Some(if std::arch::is_aarch64_feature_detected!("dotprod") {
        for_dtype::<true>(dtype)?
    } else {
        for_dtype::<false>(dtype)?
    })
}

fn for_dtype<const SDOT: bool>(dtype: GgmlDType) -> Option<Kernel> {
    fn one<A>(one: super::Dot<A>) -> Kernels<A> {
        Kernels {
            one,
            four: None,
            eight: None,
        }
    }
    // Each kernel is compiled twice: with the `dotprod` feature (sdot) and without.
    macro_rules! pick {
        ($name:ident) => {
            if SDOT {
                sdot::$name
            } else {
                widen::$name
            }
        };
    }
    Some(match dtype {
        GgmlDType::Q8_0 => Kernel::Q8_0(one(pick!(q8_0))),
        GgmlDType::Q4_0 => Kernel::Q8_0(one(pick!(q4_0))),
        GgmlDType::Q5_0 => Kernel::Q8_0(one(pick!(q5_0))),
        GgmlDType::Q4_1 => Kernel::Q8_1(one(pick!(q4_1))),
        GgmlDType::Q4K => Kernel::Q8K(one(pick!(q4_k))),
        GgmlDType::Q6K => Kernel::Q8K(one(pick!(q6_k))),
        _ => return None,
    })
}

#[inline(always)]
fn f16_at(b: &[u8], off: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[off], b[off + 1]])).to_f32()
}

/// The 16 bits `bits` (bit i for lane i) as bytes: 0x10 where set, 0 elsewhere (Q5_0's
/// fifth bit, already in place).
#[inline(always)]
unsafe fn fifth_bits(bits: u32) -> uint8x16_t {
    let lanes = vcombine_u8(vdup_n_u8(bits as u8), vdup_n_u8((bits >> 8) as u8));
    let select: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let set = vtstq_u8(lanes, vld1q_u8(select.as_ptr()));
    vandq_u8(set, vdupq_n_u8(0x10))
}

/// The kernels, written once over `$dot16` (the sum of 16 signed byte products, as lanes
/// to add up) and instantiated per target feature set.
macro_rules! kernels {
    ($features:literal, $dot16:ident) => {
        use super::*;

        /// Sum of the 32 products of two blocks of 32 signed bytes.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn dot32(w0: int8x16_t, w1: int8x16_t, a: *const i8) -> i32 {
            let acc = $dot16(vdupq_n_s32(0), w0, vld1q_s8(a));
            vaddvq_s32($dot16(acc, w1, vld1q_s8(a.add(16))))
        }

        #[target_feature(enable = $features)]
        pub(super) unsafe fn q8_0(w: &[u8], a: &[BlockQ8_0]) -> f32 {
            let mut sum = 0f32;
            for (blk, a) in w.chunks_exact(Q8_0_BYTES).zip(a) {
                let p = blk.as_ptr().add(2) as *const i8;
                let s = dot32(vld1q_s8(p), vld1q_s8(p.add(16)), a.qs.as_ptr());
                sum += s as f32 * (f16_at(blk, 0) * a.d);
            }
            sum
        }

        #[target_feature(enable = $features)]
        pub(super) unsafe fn q4_0(w: &[u8], a: &[BlockQ8_0]) -> f32 {
            let mut sum = 0f32;
            let (low, eight) = (vdupq_n_u8(0x0F), vdupq_n_s8(8));
            for (blk, a) in w.chunks_exact(Q4_0_BYTES).zip(a) {
                let v = vld1q_u8(blk.as_ptr().add(2));
                let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, low)), eight);
                let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);
                let s = dot32(lo, hi, a.qs.as_ptr());
                sum += s as f32 * (f16_at(blk, 0) * a.d);
            }
            sum
        }

        #[target_feature(enable = $features)]
        pub(super) unsafe fn q5_0(w: &[u8], a: &[BlockQ8_0]) -> f32 {
            let mut sum = 0f32;
            let (low, sixteen) = (vdupq_n_u8(0x0F), vdupq_n_s8(16));
            for (blk, a) in w.chunks_exact(Q5_0_BYTES).zip(a) {
                let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                let v = vld1q_u8(blk.as_ptr().add(6));
                let lo = vorrq_u8(vandq_u8(v, low), fifth_bits(qh));
                let hi = vorrq_u8(vshrq_n_u8(v, 4), fifth_bits(qh >> 16));
                let lo = vsubq_s8(vreinterpretq_s8_u8(lo), sixteen);
                let hi = vsubq_s8(vreinterpretq_s8_u8(hi), sixteen);
                let s = dot32(lo, hi, a.qs.as_ptr());
                sum += s as f32 * (f16_at(blk, 0) * a.d);
            }
            sum
        }

        #[target_feature(enable = $features)]
        pub(super) unsafe fn q4_1(w: &[u8], a: &[BlockQ8_1]) -> f32 {
            let (mut sum, mut mins) = (0f32, 0f32);
            let low = vdupq_n_u8(0x0F);
            for (blk, a) in w.chunks_exact(Q4_1_BYTES).zip(a) {
                // Nibbles are 0..=15: the same values read as signed bytes.
                let v = vld1q_u8(blk.as_ptr().add(4));
                let lo = vreinterpretq_s8_u8(vandq_u8(v, low));
                let hi = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
                let s = dot32(lo, hi, a.qs.as_ptr());
                sum += s as f32 * (f16_at(blk, 0) * a.d);
                mins = f16_at(blk, 2).mul_add(a.s, mins);
            }
            sum + mins
        }

        #[target_feature(enable = $features)]
        pub(super) unsafe fn q4_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
            let mut sum = 0f32;
            let low = vdupq_n_u8(0x0F);
            for (blk, a) in w.chunks_exact(Q4_K_BYTES).zip(a) {
                let d = f16_at(blk, 0) * a.d;
                let dmin = f16_at(blk, 2) * a.d;
                let (sc, mn) = super::super::dot::q4k_scales_mins(&blk[4..16]);
                let qs = blk.as_ptr().add(16);
                let mut sumi = 0i32;
                for j in 0..4 {
                    let q0 = vld1q_u8(qs.add(j * 32));
                    let q1 = vld1q_u8(qs.add(j * 32 + 16));
                    let x = a.qs.as_ptr().add(j * 64);
                    let lo = dot32(
                        vreinterpretq_s8_u8(vandq_u8(q0, low)),
                        vreinterpretq_s8_u8(vandq_u8(q1, low)),
                        x,
                    );
                    let hi = dot32(
                        vreinterpretq_s8_u8(vshrq_n_u8(q0, 4)),
                        vreinterpretq_s8_u8(vshrq_n_u8(q1, 4)),
                        x.add(32),
                    );
                    sumi += lo * sc[2 * j] as i32 + hi * sc[2 * j + 1] as i32;
                }
                let summ: i32 = (0..8)
                    .map(|j| mn[j] as i32 * (a.bsums[2 * j] as i32 + a.bsums[2 * j + 1] as i32))
                    .sum();
                sum += d * sumi as f32 - dmin * summ as f32;
            }
            sum
        }

        /// Sum of 16 products of signed six-bit values (`q - 32`) and activations.
        #[inline]
        #[target_feature(enable = $features)]
        unsafe fn dot16_6bit(lo4: uint8x16_t, hi2: uint8x16_t, x: *const i8) -> i32 {
            let q = vorrq_u8(lo4, vshlq_n_u8(vandq_u8(hi2, vdupq_n_u8(3)), 4));
            let q = vsubq_s8(vreinterpretq_s8_u8(q), vdupq_n_s8(32));
            vaddvq_s32($dot16(vdupq_n_s32(0), q, vld1q_s8(x)))
        }

        #[target_feature(enable = $features)]
        pub(super) unsafe fn q6_k(w: &[u8], a: &[BlockQ8K]) -> f32 {
            let mut sum = 0f32;
            let low = vdupq_n_u8(0x0F);
            for (blk, a) in w.chunks_exact(Q6_K_BYTES).zip(a) {
                let d = f16_at(blk, 208) * a.d;
                let b = blk.as_ptr();
                let mut sumi = 0i32;
                for n in 0..2 {
                    let ql = b.add(n * 64);
                    let qh = b.add(128 + n * 32);
                    let sc = &blk[192 + n * 8..192 + n * 8 + 8];
                    let x = a.qs.as_ptr().add(n * 128);
                    // Halves h = 0, 1 hold positions l = 16h..16h+16 of the scalar kernel.
                    let mut sub = [0i32; 8];
                    for h in 0..2 {
                        let l0 = vld1q_u8(ql.add(16 * h));
                        let l1 = vld1q_u8(ql.add(32 + 16 * h));
                        let hb = vld1q_u8(qh.add(16 * h));
                        let xh = x.add(16 * h);
                        sub[h] = dot16_6bit(vandq_u8(l0, low), hb, xh);
                        sub[h + 2] = dot16_6bit(vandq_u8(l1, low), vshrq_n_u8(hb, 2), xh.add(32));
                        sub[h + 4] = dot16_6bit(vshrq_n_u8(l0, 4), vshrq_n_u8(hb, 4), xh.add(64));
                        sub[h + 6] = dot16_6bit(vshrq_n_u8(l1, 4), vshrq_n_u8(hb, 6), xh.add(96));
                    }
                    for j in 0..8 {
                        sumi += sub[j] * sc[j] as i8 as i32;
                    }
                }
                sum += d * sumi as f32;
            }
            sum
        }
    };
}

/// With the dot-product extension: one `sdot` per 16 bytes (ARMv8.2+: Apple M1 and later,
/// Graviton 2+, Ampere Altra, Cortex-A76+). `vdotq_s32` is not stable Rust yet, so it is
/// written as the instruction.
mod sdot {
    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn dot16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        std::arch::asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            options(pure, nomem, nostack, preserves_flags)
        );
        acc
    }
    kernels!("neon,dotprod", dot16);
}

/// Plain ARMv8 NEON: 8 widening multiplies into i16, pairwise added into the i32 lanes.
mod widen {
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn dot16(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
        let hi = vmull_high_s8(a, b);
        vpadalq_s16(vpadalq_s16(acc, lo), hi)
    }
    kernels!("neon", dot16);
}

#[cfg(test)]
mod tests {
    use super::super::act::{quantize_q8_0, quantize_q8_1, quantize_q8_k, QK8_0, QK_K};
    use super::super::dot;
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};

    /// Pseudo-random values in [-1, 1] with a large outlier every 97 (as dot.rs's tests).
    fn values(n: usize, seed: u32) -> Vec<f32> {
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

    fn weight(dtype: GgmlDType, k: usize, seed: u32) -> Vec<u8> {
        let t = Tensor::from_vec(values(k, seed), (1, k), &Device::Cpu).unwrap();
        QTensor::quantize(&t, dtype)
            .unwrap()
            .data()
            .unwrap()
            .into_owned()
    }

    fn acts<A: Default + Clone>(
        k: usize,
        block: usize,
        seed: u32,
        q: fn(&[f32], &mut [A]),
    ) -> Vec<A> {
        let mut a = vec![A::default(); k / block];
        q(&values(k, seed), &mut a);
        a
    }

    /// Both NEON variants give exactly the scalar kernels' f32 results, for every format.
    #[test]
    fn neon_kernels_equal_scalar_bit_for_bit() {
        let k = 1024;
        let mut variants = vec![for_dtype::<false> as fn(GgmlDType) -> Option<Kernel>];
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            variants.push(for_dtype::<true>);
        } else {
            eprintln!("this CPU has no dotprod: only the widening kernels are checked");
        }
        for seed in 0..8 {
            let a8_0 = acts(k, QK8_0, 100 + seed, quantize_q8_0);
            let a8_1 = acts(k, QK8_0, 200 + seed, quantize_q8_1);
            let a8k = acts(k, QK_K, 300 + seed, quantize_q8_k);
            for dt in [
                GgmlDType::Q8_0,
                GgmlDType::Q4_0,
                GgmlDType::Q5_0,
                GgmlDType::Q4_1,
                GgmlDType::Q4K,
                GgmlDType::Q6K,
            ] {
                let w = weight(dt, k, seed);
                let want = match dt {
                    GgmlDType::Q8_0 => dot::q8_0_scalar(&w, &a8_0),
                    GgmlDType::Q4_0 => dot::q4_0_scalar(&w, &a8_0),
                    GgmlDType::Q5_0 => dot::q5_0_scalar(&w, &a8_0),
                    GgmlDType::Q4_1 => dot::q4_1_scalar(&w, &a8_1),
                    GgmlDType::Q4K => dot::q4_k_scalar(&w, &a8k),
                    _ => dot::q6_k_scalar(&w, &a8k),
                };
                for (v, variant) in variants.iter().enumerate() {
                    // SAFETY: the variants exist only for features this CPU was checked for.
                    let got = match variant(dt).unwrap() {
                        Kernel::Q8_0(k) => unsafe { (k.one)(&w, &a8_0) },
                        Kernel::Q8_1(k) => unsafe { (k.one)(&w, &a8_1) },
                        Kernel::Q8K(k) => unsafe { (k.one)(&w, &a8k) },
                        Kernel::Q8_0x8(_)
                        | Kernel::Q8Kx8(_)
                        | Kernel::Q8_0x16(_)
                        | Kernel::Q8Kx16(_) => {
                            unreachable!("weights are repacked on x86-64 only")
                        }
                    };
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{dt:?} variant {v} seed {seed}: {got} vs scalar {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn picks_neon_for_covered_formats_only() {
        assert!(kernel(GgmlDType::Q6K).is_some());
        assert!(kernel(GgmlDType::Q5K).is_none());
    }
}
