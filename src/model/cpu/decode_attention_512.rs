//! `decode_attention`'s kernels on 512-bit vectors, for head sizes that are a multiple of 16:
//! CPUs that run 512-bit FMAs at the rate of 256-bit ones (AMD Zen 5, Intel's server
//! cores) do the scores' products and the weighted sums' multiply-adds in half the
//! instructions. The same numbers bit for bit: vector `c` here holds the 256-bit path's
//! vectors `2c` and `2c + 1`, so every lane sees the same operations in the same order;
//! the scores' lanes meet in the same tree (pairs of keys share the shuffles of its last
//! 512-bit step) and the horizontal sums and lane combinations are the 256-bit path's own.

use super::avx2::{combine_lanes, reduce16_x8, softmax_rows};
use super::{Scratch, MAX_VECS};
use half::f16;
use std::arch::x86_64::*;

/// The largest head size handled here, in sixteen-float vectors.
pub(super) const MAX_VECS16: usize = MAX_VECS / 2;

/// Sixteen-float vectors per head: `NV` itself (a constant) for the sizes compiled for.
#[inline(always)]
fn vectors<const NV: usize>(hd: usize) -> usize {
    if NV < MAX_VECS16 {
        NV
    } else {
        hd / 16
    }
}

/// Sixteen f16 values at `p` as f32.
#[inline(always)]
unsafe fn load_f16(p: *const f16) -> __m512 {
    _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
}

/// `avx2::heads` on 512-bit vectors (`hd % 16 == 0`).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub(super) unsafe fn heads<const NV: usize>(
    q: &[f32],
    q_stride: usize,
    hd: usize,
    keys: &[f16],
    vals: &[f16],
    seen: usize,
    window: usize,
    sc: &mut Scratch,
    out: &mut [f32],
) {
    let n = out.len() / hd;
    let rows = &mut sc.rows[..n * seen];
    scores::<NV>(q, q_stride, n, hd, keys, seen, rows, &mut sc.keys);
    softmax_rows(rows, seen, window, hd);
    weighted_sums::<NV>(
        rows,
        vals.as_ptr(),
        n,
        hd,
        seen,
        &mut sc.values,
        &mut sc.lanes,
        out,
    );
}

/// `avx2::scores`: key `j`'s 64 lane sums as `[lo | hi]` of the 256-bit path (its `a[c]`
/// is half `c % 2` of vector `c / 2` here), then `hi + lo` for two keys in one add.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn scores<const NV: usize>(
    q: &[f32],
    q_stride: usize,
    n: usize,
    hd: usize,
    keys: &[f16],
    seen: usize,
    out: &mut [f32],
    kbuf: &mut [f32],
) {
    let nv = vectors::<NV>(hd);
    debug_assert!(q.len() >= (n - 1) * q_stride + hd && out.len() >= n * seen);
    debug_assert!(kbuf.len() >= 8 * hd);
    let (qp, kp, op, bp) = (
        q.as_ptr(),
        keys.as_ptr(),
        out.as_mut_ptr(),
        kbuf.as_mut_ptr(),
    );
    // (a0 + a4) + (a2 + a6) in the low half, (a1 + a5) + (a3 + a7) in the high one.
    let key_sum = |qv: &[__m512; NV], kr: *const f32| {
        let zero = _mm512_setzero_ps();
        let mut a = [zero; 4];
        for (c, qc) in qv.iter().enumerate().take(nv) {
            a[c % 4] = _mm512_fmadd_ps(*qc, _mm512_loadu_ps(kr.add(16 * c)), a[c % 4]);
        }
        _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]))
    };
    // `hi + lo` of keys e (low half) and f (high half).
    let pair = |e: __m512, f: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0xEE>(e, f),
            _mm512_shuffle_f32x4::<0x44>(e, f),
        )
    };
    let halves = |v: __m512| {
        let hi = _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v));
        (_mm512_castps512_ps256(v), _mm256_castpd_ps(hi))
    };
    let load_q = |h: usize| {
        let qh = qp.add(h * q_stride);
        let mut qv = [_mm512_setzero_ps(); NV];
        for (c, v) in qv.iter_mut().enumerate().take(nv) {
            *v = _mm512_loadu_ps(qh.add(16 * c));
        }
        qv
    };
    let full = seen / 8 * 8;
    for j0 in (0..full).step_by(8) {
        for e in 0..8 {
            for c in 0..nv {
                let at = (j0 + e) * hd + 16 * c;
                _mm512_storeu_ps(bp.add(e * hd + 16 * c), load_f16(kp.add(at)));
            }
        }
        for h in 0..n {
            let qv = load_q(h);
            let mut t8 = [_mm256_setzero_ps(); 8];
            for e in (0..8).step_by(2) {
                let t = pair(
                    key_sum(&qv, bp.add(e * hd)),
                    key_sum(&qv, bp.add((e + 1) * hd)),
                );
                (t8[e], t8[e + 1]) = halves(t);
            }
            _mm256_storeu_ps(op.add(h * seen + j0), reduce16_x8(t8));
        }
    }
    for j in full..seen {
        for c in 0..nv {
            _mm512_storeu_ps(bp.add(16 * c), load_f16(kp.add(j * hd + 16 * c)));
        }
        for h in 0..n {
            let (lo, hi) = halves(key_sum(&load_q(h), bp));
            let t8 = _mm256_add_ps(hi, lo);
            // `reduce16` after its first step.
            let t4 = _mm_add_ps(_mm256_extractf128_ps::<1>(t8), _mm256_castps256_ps128(t8));
            let s = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
            *op.add(h * seen + j) = _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
        }
    }
}

/// `avx2::shared_weighted_sums` (for any number of heads): lane `l`'s values (positions
/// `l, l + 64, ...`) converted once into `values`, then each head's multiply-adds over
/// them in position order, the 64 lane sums combined as the 256-bit path does.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn weighted_sums<const NV: usize>(
    probs: &[f32],
    vh: *const f16,
    n: usize,
    hd: usize,
    seen: usize,
    values: &mut [f32],
    lanes: &mut [f32],
    out: &mut [f32],
) {
    let nv = vectors::<NV>(hd);
    let vb = values.as_mut_ptr();
    let lp = lanes.as_mut_ptr();
    debug_assert!(values.len() >= seen.div_ceil(64) * hd && lanes.len() >= n * 64 * hd);
    for l in 0..64.min(seen) {
        let mut count = 0;
        let mut p = l;
        while p < seen {
            for c in 0..nv {
                let v = load_f16(vh.add(p * hd + 16 * c));
                _mm512_storeu_ps(vb.add(count * hd + 16 * c), v);
            }
            count += 1;
            p += 64;
        }
        // Two heads at a time where a head's accumulators are few (they would wait on the
        // FMA latency): each head's sums are unchanged, the value loads shared.
        let pair = nv <= 4;
        let mut h = 0;
        while h < n {
            let two = pair && h + 1 < n;
            let pr = probs.as_ptr().add(h * seen + l);
            let pr1 = probs.as_ptr().add((h + usize::from(two)) * seen + l);
            let mut acc = [_mm512_setzero_ps(); NV];
            let mut acc1 = [_mm512_setzero_ps(); NV];
            for i in 0..count {
                let w = _mm512_set1_ps(*pr.add(64 * i));
                let w1 = _mm512_set1_ps(*pr1.add(64 * i));
                for c in 0..nv {
                    let x = _mm512_loadu_ps(vb.add(i * hd + 16 * c));
                    acc[c] = _mm512_fmadd_ps(w, x, acc[c]);
                    if two {
                        acc1[c] = _mm512_fmadd_ps(w1, x, acc1[c]);
                    }
                }
            }
            for (c, a) in acc.iter().enumerate().take(nv) {
                _mm512_storeu_ps(lp.add((h * 64 + l) * hd + 16 * c), *a);
            }
            if two {
                for (c, a) in acc1.iter().enumerate().take(nv) {
                    _mm512_storeu_ps(lp.add(((h + 1) * 64 + l) * hd + 16 * c), *a);
                }
            }
            h += 1 + usize::from(two);
        }
    }
    // Lanes with no position (fewer than 64 keys) sum nothing.
    for h in 0..n {
        for l in seen.min(64)..64 {
            std::slice::from_raw_parts_mut(lp.add((h * 64 + l) * hd), hd).fill(0.0);
        }
        let lanes = std::slice::from_raw_parts(lp.add(h * 64 * hd), 64 * hd);
        combine_lanes::<MAX_VECS>(lanes, hd, &mut out[h * hd..(h + 1) * hd]);
    }
}
