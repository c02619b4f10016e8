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
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// `ggml_ops::attend` for `s.t` decode-order rows; the caller checked `supported`.
/// `stride` is the cache's allocated positions per head (`>= s.total`).
pub(crate) fn attend(q: &[f32], k: &[f16], v: &[f16], stride: usize, s: &AttnShape) -> Vec<f32> {
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
    let body = |items: std::ops::Range<usize>| {
        SCRATCH.with(|scratch| {
            let sc = &mut *scratch.borrow_mut();
            grow(&mut sc.rows, per * s.total);
            grow(&mut sc.lanes, 64 * hd);
            grow(&mut sc.values, if per > 1 { s.total * hd } else { 0 });
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
        scores::<NV>(q, q_stride, n, hd, keys, seen, rows);
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
        if n == 1 {
            weighted_sum::<false, NV>(
                rows,
                vals.as_ptr(),
                std::ptr::null(),
                hd,
                &mut sc.lanes,
                out,
            );
            return;
        }
        // Every head reads all values: convert them once (exactly; f16 -> f32 is lossless).
        let vf = &mut sc.values[..seen * hd];
        let vp = vals.as_ptr();
        for (c, o) in vf.chunks_exact_mut(8).enumerate() {
            _mm256_storeu_ps(o.as_mut_ptr(), load_f16(vp.add(8 * c)));
        }
        for (row, o) in rows.chunks_exact(seen).zip(out.chunks_exact_mut(hd)) {
            weighted_sum::<true, NV>(row, std::ptr::null(), vf.as_ptr(), hd, &mut sc.lanes, o);
        }
    }

    /// Eight-float vectors per head: `NV` itself (a constant) for the sizes compiled for.
    #[inline(always)]
    fn vectors<const NV: usize>(hd: usize) -> usize {
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
    /// combined as `(l + (32+l)) + ((16+l) + (48+l))`, then `reduce16`. Each key is
    /// converted once for all the heads.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scores<const NV: usize>(
        q: &[f32],
        q_stride: usize,
        n: usize,
        hd: usize,
        keys: &[f16],
        seen: usize,
        out: &mut [f32],
    ) {
        let nv = vectors::<NV>(hd);
        debug_assert!(q.len() >= (n - 1) * q_stride + hd && out.len() >= n * seen);
        let (qp, kp, op) = (q.as_ptr(), keys.as_ptr(), out.as_mut_ptr());
        let mut kv = [_mm256_setzero_ps(); NV];
        for j in 0..seen {
            let kr = kp.add(j * hd);
            for (c, v) in kv.iter_mut().enumerate().take(nv) {
                *v = load_f16(kr.add(8 * c));
            }
            for h in 0..n {
                let qh = qp.add(h * q_stride);
                let zero = _mm256_setzero_ps();
                let mut a = [zero; 8];
                for (c, k) in kv.iter().enumerate().take(nv) {
                    a[c % 8] = _mm256_fmadd_ps(_mm256_loadu_ps(qh.add(8 * c)), *k, a[c % 8]);
                }
                let lo = _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6]));
                let hi = _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7]));
                *op.add(h * seen + j) = tiled::reduce16(lo, hi);
            }
        }
    }

    /// `out[d] = sum_p probs[p] * v[p][d]`, summed as `ggml_vec_dot_f16` sums each output:
    /// position `p` goes to lane `p % 64`, each lane in position order, then the lanes
    /// combine as in `scores`. One lane at a time (its positions `l, l + 64, ...`) with
    /// the whole head in registers; the 64 lane sums go through `lanes` (`[64, hd]`).
    /// The values are read as f32 from `vf` when `F32`, else as f16 from `vh`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn weighted_sum<const F32: bool, const NV: usize>(
        probs: &[f32],
        vh: *const f16,
        vf: *const f32,
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
                    let at = p * hd + 8 * c;
                    let v = if F32 {
                        _mm256_loadu_ps(vf.add(at))
                    } else {
                        load_f16(vh.add(at))
                    };
                    *a = _mm256_fmadd_ps(w, v, *a);
                }
                p += 64;
            }
            for (c, a) in acc.iter().enumerate().take(nv) {
                _mm256_storeu_ps(lp.add(l * hd + 8 * c), *a);
            }
        }
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
            let got = attend(&q, &k16, &v16, stride, &s);
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
