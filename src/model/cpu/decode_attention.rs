//! Decode attention on the CPU: each query row attends to its keys in decode order
//! (`ggml_ops::attend` with one query: `ggml_vec_dot_f16`'s 64 lanes), bit for bit, read
//! straight from the f16 KV cache with F16C. The reference path converts a layer's whole
//! cache to f32 (and transposes K) on every layer of every step, then runs scalar loops on
//! one thread: at 2,000 cached positions that made a decode step several times slower than
//! at 100. Here nothing is copied, the work splits over the kernel pool by (row, group of
//! query heads sharing a KV head), and the per-key dot and the per-lane weighted sums run
//! eight floats at a time. The heads of a group share each key's and value's f16 -> f32
//! conversion (the conversions, not the multiply-adds, bounded the one-head-at-a-time
//! loop): same products, same sums, same order per output.
//! Input: `q` `[n_head, t, head_dim]` (f16-rounded), the cache's K and V buffers of one
//! layer, `[n_kv_head, stride, head_dim]` f16. Output `[t, n_head * head_dim]`. Row `i` is
//! the query at position `pos + i` and sees keys `..=pos + i` (a speculative verification
//! batch computed exactly as one-token steps would).

use super::pool;
use crate::model::ggml_ops::AttnShape;
use half::f16;
use std::cell::RefCell;

/// The largest head size handled here (eight-float vectors per query row kept in
/// registers or on the stack).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const MAX_VECS: usize = 32;

/// Whether this CPU and head size can take `attend`.
pub(crate) fn supported(head_dim: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        head_dim > 0
            && head_dim.is_multiple_of(8)
            && head_dim / 8 <= MAX_VECS
            && super::dot::avx2::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = head_dim;
        false
    }
}

/// An output buffer written by several threads at disjoint rows.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every work item writes only its own (row, head) slice of the output, which
// outlives the parallel section.
unsafe impl Sync for SharedOut {}
// SAFETY: as for `Sync`.
unsafe impl Send for SharedOut {}

impl SharedOut {
    /// The output at offset `at` (a method, so closures capture the whole `Sync` wrapper).
    fn at(self, at: usize) -> *mut f32 {
        self.0.wrapping_add(at)
    }
}

/// Per-thread buffers, reused across calls: the score rows of a group's heads, the 64 lane
/// sums of a weighted sum, and the group's values converted to f32.
#[derive(Default)]
struct Scratch {
    rows: Vec<f32>,
    lanes: Vec<f32>,
    values: Vec<f32>,
    keys: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// `ggml_ops::attend` for `s.t` decode-order rows; the caller checked `supported`.
/// `stride` is the cache's allocated positions per head (`>= s.total`).
pub(crate) fn attend(q: &[f32], k: &[f16], v: &[f16], stride: usize, s: &AttnShape) -> Vec<f32> {
    attend_on(q, k, v, stride, s, super::wide_vectors())
}

/// `attend` on the 512-bit kernels where `wide` and the build has them, else the 256-bit ones.
fn attend_on(
    q: &[f32],
    k: &[f16],
    v: &[f16],
    stride: usize,
    s: &AttnShape,
    wide: bool,
) -> Vec<f32> {
    let (nh, hd, t) = (s.n_head, s.head_dim, s.t);
    debug_assert!(supported(hd));
    debug_assert!(stride >= s.total && k.len() >= s.n_kv_head * stride * hd);
    let mut out = vec![0f32; t * nh * hd];
    let dst = SharedOut(out.as_mut_ptr());
    // Work items: (row, KV head, sub-group of its query heads). Whole groups share the
    // most; they are split only when there are fewer items than threads.
    let group = nh / s.n_kv_head;
    let subs = pool::pool()
        .threads()
        .div_ceil(t * s.n_kv_head)
        .clamp(1, group);
    let per = group.div_ceil(subs);
    let heads = match hd / 8 {
        4 => avx2::heads::<4>,
        8 => avx2::heads::<8>,
        16 => avx2::heads::<16>,
        _ => avx2::heads::<MAX_VECS>,
    };
    #[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
    let _ = wide;
    #[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
    let heads = if hd.is_multiple_of(16) && wide {
        match hd / 16 {
            2 => avx512::heads::<2>,
            4 => avx512::heads::<4>,
            8 => avx512::heads::<8>,
            _ => avx512::heads::<{ avx512::MAX_VECS16 }>,
        }
    } else {
        heads
    };
    let body = |items: std::ops::Range<usize>| {
        SCRATCH.with(|scratch| {
            let sc = &mut *scratch.borrow_mut();
            grow(&mut sc.rows, per * s.total);
            grow(&mut sc.lanes, per * 64 * hd);
            grow(&mut sc.keys, 8 * hd);
            grow(&mut sc.values, s.total.div_ceil(64) * hd);
            for item in items {
                let (i, rest) = (item / (s.n_kv_head * subs), item % (s.n_kv_head * subs));
                let (kvh, sub) = (rest / subs, rest % subs);
                let h0 = kvh * group + sub * per;
                let h1 = (h0 + per).min((kvh + 1) * group);
                if h0 >= h1 {
                    continue;
                }
                let keys = &k[kvh * stride * hd..(kvh * stride + s.total) * hd];
                let vals = &v[kvh * stride * hd..(kvh * stride + s.total) * hd];
                // Head h's query for row i is at (h * t + i) * hd: heads are t * hd apart.
                let qs = &q[(h0 * t + i) * hd..];
                let seen = s.pos + i + 1;
                // SAFETY: `supported` checked AVX2/FMA/F16C and the head size; the slices
                // hold `seen` keys of `hd` values and the queries of heads h0..h1; this
                // item owns output rows (i, h0..h1), which are contiguous.
                unsafe {
                    let o =
                        std::slice::from_raw_parts_mut(dst.at((i * nh + h0) * hd), (h1 - h0) * hd);
                    heads(qs, t * hd, hd, keys, vals, seen, s.window, sc, o);
                }
            }
        })
    };
    pool::pool().run(t * s.n_kv_head * subs, &body);
    out
}

fn grow(buf: &mut Vec<f32>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
}

#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[path = "decode_attention_512.rs"]
mod avx512;

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::MAX_VECS;
    use crate::model::cpu::attention::avx2 as tiled;
    use crate::model::ggml_ops;
    use half::f16;
    use std::arch::x86_64::*;

    /// One query row of each head of a group sharing `keys` and `vals`: scores, softmax
    /// rounded to f16, weighted sum of V. Head `j`'s query is `q[j * q_stride..][..hd]`,
    /// its output `out[j * hd..][..hd]` (`out` holds the group's heads).
    /// `NV`: the head's eight-float vectors when it is one of the sizes compiled for
    /// (`vectors`), so that they stay in registers; `MAX_VECS` for any other size.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn heads<const NV: usize>(
        q: &[f32],
        q_stride: usize,
        hd: usize,
        keys: &[f16],
        vals: &[f16],
        seen: usize,
        window: usize,
        sc: &mut super::Scratch,
        out: &mut [f32],
    ) {
        let n = out.len() / hd;
        let rows = &mut sc.rows[..n * seen];
        scores::<NV>(q, q_stride, n, hd, keys, seen, rows, &mut sc.keys);
        softmax_rows(rows, seen, window, hd);
        if n == 1 {
            weighted_sum::<NV>(rows, vals.as_ptr(), hd, &mut sc.lanes, out);
            return;
        }
        shared_weighted_sums::<NV>(
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

    /// Each score row (`seen` long) to its probabilities, rounded to f16 as ggml stores them.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn softmax_rows(rows: &mut [f32], seen: usize, window: usize, hd: usize) {
        for row in rows.chunks_exact_mut(seen) {
            let masked = seen.saturating_sub(window);
            if masked > 0 {
                // Sliding-window layers: the scalar softmax, as the reference masks it.
                row[..masked].fill(f32::NEG_INFINITY);
                ggml_ops::softmax(row, 1.0 / (hd as f32).sqrt());
                for r in row.iter_mut() {
                    *r = f16::from_f32(*r).to_f32();
                }
            } else {
                tiled::softmax_f16(row, 1.0 / (hd as f32).sqrt());
            }
        }
    }

    /// `weighted_sum` for the `n` heads of a group (probability rows `probs[h * seen..]`,
    /// outputs `out[h * hd..]`), lane by lane: lane `l`'s values (positions `l, l + 64, ...`)
    /// are converted to f32 once into a small buffer that stays in L1 while every head runs
    /// over them, instead of each head streaming the whole converted V from L2. Per head,
    /// lane and output the same FMAs in the same order, then the same combination.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn shared_weighted_sums<const NV: usize>(
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
                    let v = load_f16(vh.add(p * hd + 8 * c));
                    _mm256_storeu_ps(vb.add(count * hd + 8 * c), v);
                }
                count += 1;
                p += 64;
            }
            for h in 0..n {
                let pr = probs.as_ptr().add(h * seen + l);
                let mut acc = [_mm256_setzero_ps(); NV];
                for i in 0..count {
                    let w = _mm256_set1_ps(*pr.add(64 * i));
                    for (c, a) in acc.iter_mut().enumerate().take(nv) {
                        *a = _mm256_fmadd_ps(w, _mm256_loadu_ps(vb.add(i * hd + 8 * c)), *a);
                    }
                }
                for (c, a) in acc.iter().enumerate().take(nv) {
                    _mm256_storeu_ps(lp.add((h * 64 + l) * hd + 8 * c), *a);
                }
            }
        }
        // Lanes with no position (fewer than 64 keys) sum nothing.
        for h in 0..n {
            for l in seen.min(64)..64 {
                std::slice::from_raw_parts_mut(lp.add((h * 64 + l) * hd), hd).fill(0.0);
            }
            let lanes = std::slice::from_raw_parts(lp.add(h * 64 * hd), 64 * hd);
            combine_lanes::<NV>(lanes, hd, &mut out[h * hd..(h + 1) * hd]);
        }
    }

    /// Eight-float vectors per head: `NV` itself (a constant) for the sizes compiled for.
    #[inline(always)]
    pub(super) fn vectors<const NV: usize>(hd: usize) -> usize {
        if NV < MAX_VECS {
            NV
        } else {
            hd / 8
        }
    }

    /// Eight f16 values at `p` as f32.
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> __m256 {
        _mm256_cvtph_ps(_mm_loadu_si128(p.cast()))
    }

    /// `out[h * seen + j] = q_h . k_j` for the `n` heads of a group (head `h`'s query at
    /// `q[h * q_stride..]`), each summed as `ggml_vec_dot_f16` (64 lanes): dimension `e`
    /// goes to lane `e % 64` (vector `(e / 8) % 8`), each lane in dimension order, lanes
    /// combined as `(l + (32+l)) + ((16+l) + (48+l))`, then `reduce16`. Keys go eight at a
    /// time: converted once into `kbuf` for all the heads, and their eight horizontal sums
    /// done side by side (`reduce16_x8`) instead of one shuffle chain per key.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
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
        // The 16 lane sums of one key as `lo ++ hi` added (`reduce16`'s first step).
        let key_sum = |qv: &[__m256; NV], kr: *const f32| {
            let zero = _mm256_setzero_ps();
            let mut a = [zero; 8];
            for (c, qc) in qv.iter().enumerate().take(nv) {
                a[c % 8] = _mm256_fmadd_ps(*qc, _mm256_loadu_ps(kr.add(8 * c)), a[c % 8]);
            }
            let lo = _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6]));
            let hi = _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7]));
            _mm256_add_ps(hi, lo)
        };
        let load_q = |h: usize| {
            let qh = qp.add(h * q_stride);
            let mut qv = [_mm256_setzero_ps(); NV];
            for (c, v) in qv.iter_mut().enumerate().take(nv) {
                *v = _mm256_loadu_ps(qh.add(8 * c));
            }
            qv
        };
        let full = seen / 8 * 8;
        for j0 in (0..full).step_by(8) {
            for e in 0..8 {
                for c in 0..nv {
                    let at = (j0 + e) * hd + 8 * c;
                    _mm256_storeu_ps(bp.add(e * hd + 8 * c), load_f16(kp.add(at)));
                }
            }
            for h in 0..n {
                let qv = load_q(h);
                let t8: [__m256; 8] = std::array::from_fn(|e| key_sum(&qv, bp.add(e * hd)));
                _mm256_storeu_ps(op.add(h * seen + j0), reduce16_x8(t8));
            }
        }
        for j in full..seen {
            for c in 0..nv {
                _mm256_storeu_ps(bp.add(8 * c), load_f16(kp.add(j * hd + 8 * c)));
            }
            for h in 0..n {
                let t8 = key_sum(&load_q(h), bp);
                // `reduce16` after its first step.
                let t4 = _mm_add_ps(_mm256_extractf128_ps::<1>(t8), _mm256_castps256_ps128(t8));
                let s = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
                *op.add(h * seen + j) = _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
            }
        }
    }

    /// The 64 lane sums `lanes[l * hd..]` of one output combined as `scores` combines a
    /// dot product's lanes.
    #[inline(always)]
    pub(super) unsafe fn combine_lanes<const NV: usize>(lanes: &[f32], hd: usize, out: &mut [f32]) {
        let nv = vectors::<NV>(hd);
        let lp = lanes.as_ptr();
        let lane = |l: usize, c: usize| _mm256_loadu_ps(lp.add(l * hd + 8 * c));
        for c in 0..nv {
            let s: [__m256; 16] = std::array::from_fn(|l| {
                _mm256_add_ps(
                    _mm256_add_ps(lane(l, c), lane(32 + l, c)),
                    _mm256_add_ps(lane(16 + l, c), lane(48 + l, c)),
                )
            });
            let t8: [__m256; 8] = std::array::from_fn(|i| _mm256_add_ps(s[i + 8], s[i]));
            let t4: [__m256; 4] = std::array::from_fn(|i| _mm256_add_ps(t8[i + 4], t8[i]));
            let r = _mm256_add_ps(_mm256_add_ps(t4[0], t4[2]), _mm256_add_ps(t4[1], t4[3]));
            _mm256_storeu_ps(out.as_mut_ptr().add(8 * c), r);
        }
    }

    /// `reduce16`'s horizontal part for eight keys at once: key `e`'s `t8` (its `lo + hi`)
    /// becomes `(t4[0] + t4[2]) + (t4[1] + t4[3])` with `t4 = t8.hi + t8.lo`, the same
    /// additions in the same order, with the keys side by side in the lanes.
    #[inline(always)]
    pub(super) unsafe fn reduce16_x8(t8: [__m256; 8]) -> __m256 {
        // t4 of keys (2i, 2i + 1) in the low and high halves.
        let t4 = |a: __m256, b: __m256| {
            _mm256_add_ps(
                _mm256_permute2f128_ps::<0x31>(a, b),
                _mm256_permute2f128_ps::<0x20>(a, b),
            )
        };
        let (a01, a23, a45, a67) = (
            t4(t8[0], t8[1]),
            t4(t8[2], t8[3]),
            t4(t8[4], t8[5]),
            t4(t8[6], t8[7]),
        );
        // (t4[0] + t4[2], t4[1] + t4[3]) of two keys per half.
        let s = |a: __m256, b: __m256| {
            _mm256_add_ps(
                _mm256_shuffle_ps::<0x44>(a, b),
                _mm256_shuffle_ps::<0xEE>(a, b),
            )
        };
        let (e0, e1) = (s(a01, a23), s(a45, a67));
        // s[0] + s[1]: keys 0, 2, 4, 6 in the low half, 1, 3, 5, 7 in the high one.
        let f = _mm256_add_ps(
            _mm256_shuffle_ps::<0x88>(e0, e1),
            _mm256_shuffle_ps::<0xDD>(e0, e1),
        );
        _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }

    /// `out[d] = sum_p probs[p] * v[p][d]`, summed as `ggml_vec_dot_f16` sums each output:
    /// position `p` goes to lane `p % 64`, each lane in position order, then the lanes
    /// combine as in `scores`. One lane at a time (its positions `l, l + 64, ...`) with
    /// the whole head in registers; the 64 lane sums go through `lanes` (`[64, hd]`).
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn weighted_sum<const NV: usize>(
        probs: &[f32],
        vh: *const f16,
        hd: usize,
        lanes: &mut [f32],
        out: &mut [f32],
    ) {
        let nv = vectors::<NV>(hd);
        let seen = probs.len();
        let lp = lanes.as_mut_ptr();
        for l in 0..64 {
            let mut acc = [_mm256_setzero_ps(); NV];
            let mut p = l;
            while p < seen {
                let w = _mm256_set1_ps(*probs.get_unchecked(p));
                for (c, a) in acc.iter_mut().enumerate().take(nv) {
                    *a = _mm256_fmadd_ps(w, load_f16(vh.add(p * hd + 8 * c)), *a);
                }
                p += 64;
            }
            for (c, a) in acc.iter().enumerate().take(nv) {
                _mm256_storeu_ps(lp.add(l * hd + 8 * c), *a);
            }
        }
        combine_lanes::<NV>(lanes, hd, out);
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod avx2 {
    use half::f16;
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn heads<const NV: usize>(
        _: &[f32],
        _: usize,
        _: usize,
        _: &[f16],
        _: &[f16],
        _: usize,
        _: usize,
        _: &mut super::Scratch,
        _: &mut [f32],
    ) {
        unreachable!("decode attention kernel called without `supported`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu::attention::tests::values;
    use crate::model::ggml_ops;

    /// The cache layout (`[kv, stride, hd]`, f16) from the reference's K transposed
    /// `[kv, hd, total]` and V `[kv, total, hd]`.
    fn cache_layout(
        k_t: &[f32],
        v: &[f32],
        kv: usize,
        total: usize,
        stride: usize,
        hd: usize,
    ) -> (Vec<f16>, Vec<f16>) {
        let mut k = vec![f16::ZERO; kv * stride * hd];
        let mut vv = vec![f16::ZERO; kv * stride * hd];
        for h in 0..kv {
            for j in 0..total {
                for d in 0..hd {
                    k[(h * stride + j) * hd + d] = f16::from_f32(k_t[(h * hd + d) * total + j]);
                    vv[(h * stride + j) * hd + d] = f16::from_f32(v[(h * total + j) * hd + d]);
                }
            }
        }
        (k, vv)
    }

    /// Bit-identical to the reference's one-query path for every row of a verification
    /// batch: head sizes 32/64/128/256, grouped heads, short and long rows (partial lanes
    /// and several positions per lane), a sliding window.
    #[test]
    fn decode_attention_equals_the_ggml_reference_bit_for_bit() {
        for (t, pos, n_head, n_kv_head, hd, r, window) in [
            (1, 0, 2, 1, 64, 2.0, usize::MAX),
            (1, 9, 2, 2, 64, 1.0, usize::MAX),
            (3, 200, 14, 2, 64, 8.0, usize::MAX),
            (2, 70, 4, 2, 128, 30.0, usize::MAX),
            (1, 40, 2, 1, 32, 2.0, usize::MAX),
            (2, 300, 4, 1, 256, 4.0, 128),
        ] {
            if !supported(hd) {
                return;
            }
            let total = pos + t;
            let stride = total + 5;
            let s = AttnShape {
                t,
                pos,
                total,
                n_head,
                n_kv_head,
                head_dim: hd,
                window,
            };
            let q = values(n_head * t * hd, 1, r);
            let k_t = values(n_kv_head * hd * total, 2, r);
            let v = values(n_kv_head * total * hd, 3, 1.0);
            let (k16, v16) = cache_layout(&k_t, &v, n_kv_head, total, stride, hd);
            // Both vector widths where the build has 512-bit kernels.
            let got = attend_on(&q, &k16, &v16, stride, &s, false);
            let wide = attend_on(&q, &k16, &v16, stride, &s, true);
            assert!(got
                .iter()
                .zip(&wide)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
            // The reference, one decode step per row, over the keys that row sees.
            for i in 0..t {
                let seen = pos + i + 1;
                let row_s = AttnShape {
                    t: 1,
                    pos: pos + i,
                    total: seen,
                    ..s
                };
                let qi: Vec<f32> = (0..n_head)
                    .flat_map(|h| q[(h * t + i) * hd..(h * t + i + 1) * hd].to_vec())
                    .collect();
                let kt_i: Vec<f32> = (0..n_kv_head * hd)
                    .flat_map(|r| k_t[r * total..r * total + seen].to_vec())
                    .collect();
                let v_i: Vec<f32> = (0..n_kv_head)
                    .flat_map(|h| v[h * total * hd..(h * total + seen) * hd].to_vec())
                    .collect();
                let want = ggml_ops::attend(&qi, &kt_i, &v_i, &row_s, 1);
                let got_i = &got[i * n_head * hd..(i + 1) * n_head * hd];
                let bad = got_i
                    .iter()
                    .zip(&want)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                assert_eq!(bad, 0, "row {i} pos={pos} hd={hd}: {bad} values differ");
            }
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use crate::model::cpu::attention::tests::values;

    /// Manual: `cargo test --release --lib decode_attention::speed -- --ignored --nocapture`.
    /// Qwen2.5-0.5B's shape: a 15-row verification and one decode row at ~1,700 positions.
    #[test]
    #[ignore]
    fn decode_attention_throughput() {
        let (n_head, n_kv_head, hd, pos) = (14, 2, 64, 1700);
        for t in [1, 15] {
            let total = pos + t;
            let s = AttnShape {
                t,
                pos,
                total,
                n_head,
                n_kv_head,
                head_dim: hd,
                window: usize::MAX,
            };
            let q = values(n_head * t * hd, 1, 2.0);
            let k: Vec<f16> = values(n_kv_head * total * hd, 2, 2.0)
                .into_iter()
                .map(f16::from_f32)
                .collect();
            let v: Vec<f16> = values(n_kv_head * total * hd, 3, 1.0)
                .into_iter()
                .map(f16::from_f32)
                .collect();
            for wide in [false, true, false, true] {
                let reps = 600 / t;
                let start = std::time::Instant::now();
                for _ in 0..reps {
                    std::hint::black_box(attend_on(&q, &k, &v, total, &s, wide));
                }
                let us = start.elapsed().as_secs_f64() / reps as f64 * 1e6;
                eprintln!("t={t} wide={wide}: {us:.0} us per layer");
            }
        }
    }
}
