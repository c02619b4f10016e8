//! Prefill attention on the CPU: the numbers of `ggml_ops::attend` (llama.cpp's non-flash
//! attention with tinyBLAS's 16-lane f16 dot products, ggml's softmax and exp), bit for
//! bit, computed in tiles with AVX2 and split over the kernel pool by (query head, block
//! of queries). The reference walks one query at a time through buffers of 16 × keys
//! floats and one `expf` call per score; here each key tile's 16 lane sums stay in
//! registers, eight keys at a time, and softmax runs eight scores at a time. Memory is
//! linear in the prompt: one score row per query in flight, per thread.
//! Input and output as `ggml_ops::attend`. Decode (one query), head sizes that are not a
//! multiple of 16 and CPUs without AVX2/FMA/F16C stay on `ggml_ops::attend`.

#[cfg(target_arch = "x86_64")]
use super::pool;
use crate::model::ggml_ops::{self, AttnShape};
use std::cell::RefCell;

/// Keys per block of the scores' lane pass: the block's 16 lane partials of two queries
/// (32 KiB) stay in L1 while they are reduced.
#[cfg(target_arch = "x86_64")]
const KEY_BLOCK: usize = 256;

/// Per-thread scratch beyond the block's score rows: two queries' lane partials of one key
/// block, and the 16 lane sums of every output row of the block (head sizes up to 256).
#[cfg(target_arch = "x86_64")]
const SCRATCH: usize = 2 * 16 * KEY_BLOCK + QUERY_BLOCK * 16 * 256;

/// Positions per block of the weighted sums: the block's V rows (32 KiB at head size 64)
/// are read from L1/L2 by every query of the block instead of from L3 by each.
#[cfg(target_arch = "x86_64")]
const VALUE_BLOCK: usize = 128;

#[cfg(target_arch = "x86_64")]
/// Queries of one head per work item: enough to amortize a thread's K/V reads, few enough
/// that the causal triangle still splits evenly over the threads.
const QUERY_BLOCK: usize = 16;

/// `ggml_ops::attend`'s result, faster where this CPU has the instructions for it.
pub(crate) fn attend(q: &[f32], k_t: &[f32], v: &[f32], s: &AttnShape, threads: usize) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    {
        // A sliding window that masks keys (Gemma 3's local layers) stays on the reference.
        let windowed = s.window < s.total;
        if s.t > 1
            && !windowed
            && s.head_dim > 0
            && s.head_dim.is_multiple_of(16)
            && s.head_dim <= 256
            && super::dot::avx2::available()
        {
            return tiled(q, k_t, v, s, super::wide_vectors());
        }
    }
    ggml_ops::attend(q, k_t, v, s, threads)
}

/// An output buffer written by several threads at disjoint rows.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every work item writes only its own (query, head) rows of the output, which
// outlives the parallel section.
#[cfg(target_arch = "x86_64")]
unsafe impl Sync for SharedOut {}
// SAFETY: as for `Sync`: the pointer is only written at rows its work item owns.
#[cfg(target_arch = "x86_64")]
unsafe impl Send for SharedOut {}

thread_local! {
    /// Per-thread score rows (two queries), reused across calls.
    static ROWS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

#[cfg(target_arch = "x86_64")]
/// The tiles, on 512-bit vectors where `wide` and the build has AVX-512 (same numbers).
fn tiled(q: &[f32], k_t: &[f32], v: &[f32], s: &AttnShape, wide: bool) -> Vec<f32> {
    let hd = s.head_dim;
    let mut out = vec![0f32; s.t * s.n_head * hd];
    let blocks = s.t.div_ceil(QUERY_BLOCK);
    let dst = SharedOut(out.as_mut_ptr());
    let body = |items: std::ops::Range<usize>| {
        ROWS.with(|rows| {
            let rows = &mut *rows.borrow_mut();
            let need = QUERY_BLOCK * s.total + SCRATCH;
            if rows.len() < need {
                rows.resize(need, 0.0);
            }
            for item in items {
                let (h, b) = (item / blocks, item % blocks);
                let queries = b * QUERY_BLOCK..((b + 1) * QUERY_BLOCK).min(s.t);
                // SAFETY: AVX2/FMA/F16C were checked in `attend`; the slices have the
                // shapes `s` describes (checked by the caller's construction), and this
                // item owns output rows (queries, h).
                unsafe { avx2::head_block(h, queries, q, k_t, v, s, rows, dst, wide) };
            }
        })
    };
    pool::pool().run(s.n_head * blocks, &body);
    out
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use super::{AttnShape, SharedOut, KEY_BLOCK, QUERY_BLOCK, VALUE_BLOCK};
    use crate::model::ggml_ops;
    use std::arch::x86_64::*;

    /// Queries `queries` (at most `QUERY_BLOCK`) of head `h`: scores two queries at a time,
    /// softmax, f16-rounded probabilities, weighted sum of V, written to the output rows.
    /// Keys and values are walked in blocks with every query of the block inside, so each
    /// block is read from memory once per query block rather than once per query; every
    /// sum still runs in the reference's order, so the bits do not change.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn head_block(
        h: usize,
        queries: std::ops::Range<usize>,
        q: &[f32],
        k_t: &[f32],
        v: &[f32],
        s: &AttnShape,
        rows: &mut [f32],
        out: SharedOut,
        wide: bool,
    ) {
        let (hd, total) = (s.head_dim, s.total);
        let kvh = h / (s.n_head / s.n_kv_head);
        let keys_t = &k_t[kvh * hd * total..(kvh + 1) * hd * total];
        let vals = &v[kvh * total * hd..(kvh + 1) * total * hd];
        let scale = 1.0 / (hd as f32).sqrt();
        let nq = queries.len();
        debug_assert!(nq <= QUERY_BLOCK);
        let (score_rows, scratch) = rows.split_at_mut(QUERY_BLOCK * total);
        let (part, lanes) = scratch.split_at_mut(2 * 16 * KEY_BLOCK);
        let query = |n: usize| {
            let i = queries.start + n;
            &q[(h * s.t + i) * hd..(h * s.t + i + 1) * hd]
        };
        // Keys query `n` sees (causal).
        let seen = |n: usize| s.pos + queries.start + n + 1;
        let rows_ptr = score_rows.as_mut_ptr();
        // Query `n`'s score row; the rows are disjoint.
        let row = |n: usize| rows_ptr.add(n * total);
        // Scores: key blocks outside, query pairs inside. A pair scores the keys its second
        // query sees; the first's extra score is never read.
        let pairs = nq.div_ceil(2);
        let pair_seen = |p: usize| seen((2 * p + 1).min(nq - 1));
        let full_max = pair_seen(pairs - 1) / 8 * 8;
        let mut jb = 0;
        while jb < full_max {
            for p in 0..pairs {
                let full = pair_seen(p) / 8 * 8;
                if jb >= full {
                    continue;
                }
                let jn = (full - jb).min(KEY_BLOCK);
                let n1 = (2 * p + 1).min(nq - 1);
                let (r0, r1) = (
                    std::slice::from_raw_parts_mut(row(2 * p), total),
                    std::slice::from_raw_parts_mut(row(n1), total),
                );
                let (q0, q1) = (query(2 * p), query(n1));
                scores_pair(q0, q1, keys_t, total, jb, jn, r0, r1, part, wide);
            }
            jb += KEY_BLOCK;
        }
        for p in 0..pairs {
            let n1 = (2 * p + 1).min(nq - 1);
            for j in pair_seen(p) / 8 * 8..pair_seen(p) {
                *row(2 * p).add(j) = score_one(query(2 * p), keys_t, total, j);
                *row(n1).add(j) = score_one(query(n1), keys_t, total, j);
            }
        }
        for n in 0..nq {
            softmax_f16_on(std::slice::from_raw_parts_mut(row(n), seen(n)), scale, wide);
        }
        // Weighted sums: value blocks outside, queries inside.
        let lane_len = 16 * hd;
        lanes[..nq * lane_len].fill(0.0);
        let mut pb = 0;
        while pb < seen(nq - 1) {
            let mut n = 0;
            while n < nq {
                let pe = (pb + VALUE_BLOCK).min(seen(n));
                // 512-bit: two queries share each value load (each keeps its own sums).
                #[cfg(target_feature = "avx512f")]
                if wide && n + 1 < nq && pb < pe {
                    let pe1 = (pb + VALUE_BLOCK).min(seen(n + 1));
                    let probs = std::slice::from_raw_parts(row(n), pe);
                    let probs1 = std::slice::from_raw_parts(row(n + 1), pe1);
                    let (acc, acc1) =
                        lanes[n * lane_len..(n + 2) * lane_len].split_at_mut(lane_len);
                    weighted_sum_pair(probs, probs1, pb, vals, hd, acc, acc1);
                    n += 2;
                    continue;
                }
                if pb < pe {
                    let probs = std::slice::from_raw_parts(row(n), pe);
                    let acc = &mut lanes[n * lane_len..(n + 1) * lane_len];
                    weighted_sum_block(probs, pb, vals, hd, acc, wide);
                }
                n += 1;
            }
            pb += VALUE_BLOCK;
        }
        for n in 0..nq {
            let o = out.0.add(((queries.start + n) * s.n_head + h) * hd);
            let acc = &lanes[n * lane_len..(n + 1) * lane_len];
            reduce_lanes(acc, hd, std::slice::from_raw_parts_mut(o, hd));
        }
    }

    /// `row0[j] = q0 . k_j` and `row1[j] = q1 . k_j` for `j < seen`, each summed as tinyBLAS
    /// does (`ggml_ops::scores`, tiled): lane `l` sums dimensions `l, l+16, ...` in order
    /// from zero, then the lanes reduce as `_mm512_reduce_add_ps`. Eight keys per vector.
    /// Lane-major within a block of keys: lane `l`'s query values stay in registers while
    /// it runs over the block (one K load per two FMAs), its partials go to `part`, and
    /// the block's 16 lanes are reduced afterwards.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scores_pair(
        q0: &[f32],
        q1: &[f32],
        keys_t: &[f32],
        total: usize,
        jb: usize,
        jn: usize,
        row0: &mut [f32],
        row1: &mut [f32],
        part: &mut [f32],
        wide: bool,
    ) {
        let f = match q0.len() / 16 {
            2 => scores_pair_m::<2>,
            4 => scores_pair_m::<4>,
            8 => scores_pair_m::<8>,
            _ => scores_pair_m::<16>,
        };
        f(q0, q1, keys_t, total, jb, jn, row0, row1, part, wide)
    }

    /// `scores_pair` for `M = head_dim / 16` dimensions per lane (`M <= 16`; a smaller
    /// head than `16 * M` is not passed here except through the `16` arm, which reads
    /// only `head_dim / 16` of them).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scores_pair_m<const M: usize>(
        q0: &[f32],
        q1: &[f32],
        keys_t: &[f32],
        total: usize,
        jb: usize,
        jn: usize,
        row0: &mut [f32],
        row1: &mut [f32],
        part: &mut [f32],
        wide: bool,
    ) {
        let m = (q0.len() / 16).min(M);
        // Keys `..step` on 512-bit vectors where `wide` (every key is a lane, so its products
        // and sums are the same either way), the rest eight at a time.
        let step = if wide && cfg!(target_feature = "avx512f") {
            jn / 16 * 16
        } else {
            0
        };
        let kp = keys_t.as_ptr();
        let (p0, p1) = part.split_at_mut(16 * KEY_BLOCK);
        let (pp0, pp1) = (p0.as_mut_ptr(), p1.as_mut_ptr());
        debug_assert!(jn <= KEY_BLOCK && jn.is_multiple_of(8) && jb + jn <= total);
        // 512-bit: sixteen keys of both queries at once with the lane sums in registers,
        // half the lanes at a time (lanes i, i + 4, i + 8, i + 12 for two values of i),
        // each half combined into its `t4` at once: no partials through memory.
        #[cfg(target_feature = "avx512f")]
        {
            let (qp0, qp1) = (q0.as_ptr(), q1.as_ptr());
            let mut j = 0;
            while j < step {
                let mut t4 = [[_mm512_setzero_ps(); 4]; 2];
                for half in 0..2 {
                    let lane = |x: usize| 2 * half + x / 4 + 4 * (x % 4);
                    let mut acc = [[_mm512_setzero_ps(); 8]; 2];
                    for r in 0..m {
                        let [a0, a1] = &mut acc;
                        for (x, (a0, a1)) in a0.iter_mut().zip(a1.iter_mut()).enumerate() {
                            let e = lane(x) + 16 * r;
                            let k = _mm512_loadu_ps(kp.add(e * total + jb + j));
                            *a0 = _mm512_fmadd_ps(_mm512_set1_ps(*qp0.add(e)), k, *a0);
                            *a1 = _mm512_fmadd_ps(_mm512_set1_ps(*qp1.add(e)), k, *a1);
                        }
                    }
                    for (n, a) in acc.iter().enumerate() {
                        for ii in 0..2 {
                            // (v[i + 12] + v[i + 4]) + (v[i + 8] + v[i]), as below.
                            let v = |quarter: usize| a[4 * ii + quarter];
                            t4[n][2 * half + ii] =
                                _mm512_add_ps(_mm512_add_ps(v(3), v(1)), _mm512_add_ps(v(2), v(0)));
                        }
                    }
                }
                for (n, row) in [&mut *row0, &mut *row1].into_iter().enumerate() {
                    let t = &t4[n];
                    let r = _mm512_add_ps(_mm512_add_ps(t[0], t[2]), _mm512_add_ps(t[1], t[3]));
                    _mm512_storeu_ps(row.as_mut_ptr().add(jb + j), r);
                }
                j += 16;
            }
        }
        if step < jn {
            for l in 0..16 {
                let mut b0 = [_mm256_setzero_ps(); M];
                let mut b1 = [_mm256_setzero_ps(); M];
                for r in 0..m {
                    b0[r] = _mm256_set1_ps(q0[l + 16 * r]);
                    b1[r] = _mm256_set1_ps(q1[l + 16 * r]);
                }
                let mut j = step;
                while j < jn {
                    let mut a0 = _mm256_setzero_ps();
                    let mut a1 = _mm256_setzero_ps();
                    for r in 0..m {
                        let k = _mm256_loadu_ps(kp.add((l + 16 * r) * total + jb + j));
                        a0 = _mm256_fmadd_ps(b0[r], k, a0);
                        a1 = _mm256_fmadd_ps(b1[r], k, a1);
                    }
                    _mm256_storeu_ps(pp0.add(l * KEY_BLOCK + j), a0);
                    _mm256_storeu_ps(pp1.add(l * KEY_BLOCK + j), a1);
                    j += 8;
                }
            }
            // reduce16: t4[i] = (v[i+12] + v[i+4]) + (v[i+8] + v[i]),
            // result = (t4[0] + t4[2]) + (t4[1] + t4[3]).
            for (pp, row) in [(pp0, &mut *row0), (pp1, &mut *row1)] {
                let v = |l: usize, j: usize| _mm256_loadu_ps(pp.add(l * KEY_BLOCK + j));
                let mut j = step;
                while j < jn {
                    let t4: [__m256; 4] = std::array::from_fn(|i| {
                        _mm256_add_ps(
                            _mm256_add_ps(v(i + 12, j), v(i + 4, j)),
                            _mm256_add_ps(v(i + 8, j), v(i, j)),
                        )
                    });
                    let r = _mm256_add_ps(_mm256_add_ps(t4[0], t4[2]), _mm256_add_ps(t4[1], t4[3]));
                    _mm256_storeu_ps(row.as_mut_ptr().add(jb + j), r);
                    j += 8;
                }
            }
        }
    }

    /// One key's score in the same order, for the last keys of a row.
    fn score_one(q: &[f32], keys_t: &[f32], total: usize, j: usize) -> f32 {
        let mut lanes = [0f32; 16];
        for (e, &qe) in q.iter().enumerate() {
            lanes[e % 16] += qe * keys_t[e * total + j];
        }
        ggml_ops::reduce16(&lanes)
    }

    /// `ggml_ops::softmax` then rounding to f16, eight scores at a time (sixteen where the
    /// 512-bit kernels run).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn softmax_f16(row: &mut [f32], scale: f32) {
        softmax_f16_on(row, scale, super::super::wide_vectors())
    }

    /// `softmax_f16` on 512-bit vectors where `wide` and the build has AVX-512: each score
    /// is a lane and the sums run in the same blocks of 16, so the same numbers.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn softmax_f16_on(row: &mut [f32], scale: f32, wide: bool) {
        #[cfg(target_feature = "avx512f")]
        if wide {
            return softmax_f16_512(row, scale);
        }
        let _ = wide;
        let n = row.len();
        let p = row.as_mut_ptr();
        let vs = _mm256_set1_ps(scale);
        let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut j = 0;
        while j + 8 <= n {
            let x = _mm256_mul_ps(_mm256_loadu_ps(p.add(j)), vs);
            _mm256_storeu_ps(p.add(j), x);
            vmax = _mm256_max_ps(vmax, x);
            j += 8;
        }
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), vmax);
        let mut max = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for x in &mut row[j..] {
            *x *= scale;
            max = max.max(*x);
        }
        // Blocks of 16: exp, then the block's `reduce16` sum added in f64.
        let vm = _mm256_set1_ps(max);
        let mut sum = 0f64;
        let mut j = 0;
        while j + 16 <= n {
            let e0 = expf8(_mm256_sub_ps(_mm256_loadu_ps(p.add(j)), vm));
            let e1 = expf8(_mm256_sub_ps(_mm256_loadu_ps(p.add(j + 8)), vm));
            _mm256_storeu_ps(p.add(j), e0);
            _mm256_storeu_ps(p.add(j + 8), e1);
            sum += f64::from(reduce16(e0, e1));
            j += 16;
        }
        if j < n {
            let mut lanes = [0f32; 16];
            for (l, x) in row[j..].iter_mut().enumerate() {
                *x = ggml_ops::expf(*x - max);
                lanes[l] = *x;
            }
            sum += f64::from(ggml_ops::reduce16(&lanes));
        }
        let inv = _mm256_set1_ps((1.0 / sum) as f32);
        let mut j = 0;
        while j + 8 <= n {
            let x = _mm256_mul_ps(_mm256_loadu_ps(p.add(j)), inv);
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x);
            _mm256_storeu_ps(p.add(j), _mm256_cvtph_ps(h));
            j += 8;
        }
        let inv = (1.0 / sum) as f32;
        for x in &mut row[j..] {
            *x = half::f16::from_f32(*x * inv).to_f32();
        }
    }

    /// `softmax_f16` sixteen scores at a time.
    #[cfg(target_feature = "avx512f")]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    unsafe fn softmax_f16_512(row: &mut [f32], scale: f32) {
        let n = row.len();
        let p = row.as_mut_ptr();
        let vs = _mm512_set1_ps(scale);
        let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut j = 0;
        while j + 16 <= n {
            let x = _mm512_mul_ps(_mm512_loadu_ps(p.add(j)), vs);
            _mm512_storeu_ps(p.add(j), x);
            vmax = _mm512_max_ps(vmax, x);
            j += 16;
        }
        // The maximum is the same in any order.
        let mut max = _mm512_reduce_max_ps(vmax);
        for x in &mut row[j..] {
            *x *= scale;
            max = max.max(*x);
        }
        // Blocks of 16: exp, then the block's `reduce16` sum added in f64.
        let vm = _mm512_set1_ps(max);
        let mut sum = 0f64;
        let mut j = 0;
        while j + 16 <= n {
            let e = expf16(_mm512_sub_ps(_mm512_loadu_ps(p.add(j)), vm));
            _mm512_storeu_ps(p.add(j), e);
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(e)));
            sum += f64::from(reduce16(_mm512_castps512_ps256(e), hi));
            j += 16;
        }
        if j < n {
            let mut lanes = [0f32; 16];
            for (l, x) in row[j..].iter_mut().enumerate() {
                *x = ggml_ops::expf(*x - max);
                lanes[l] = *x;
            }
            sum += f64::from(ggml_ops::reduce16(&lanes));
        }
        let inv = _mm512_set1_ps((1.0 / sum) as f32);
        let mut j = 0;
        while j + 16 <= n {
            let x = _mm512_mul_ps(_mm512_loadu_ps(p.add(j)), inv);
            let h = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x);
            _mm512_storeu_ps(p.add(j), _mm512_cvtph_ps(h));
            j += 16;
        }
        let inv = (1.0 / sum) as f32;
        for x in &mut row[j..] {
            *x = half::f16::from_f32(*x * inv).to_f32();
        }
    }

    /// `expf8` on sixteen values, bit for bit.
    #[cfg(target_feature = "avx512f")]
    #[inline(always)]
    pub(crate) unsafe fn expf16(x: __m512) -> __m512 {
        let c = |bits: u32| _mm512_set1_ps(f32::from_bits(bits));
        let r = c(0x4b40_0000);
        let z = _mm512_fmadd_ps(x, c(0x3fb8_aa3b), r);
        let n = _mm512_sub_ps(z, r);
        let b = _mm512_fnmadd_ps(n, c(0x35bf_be8e), _mm512_fnmadd_ps(n, c(0x3f31_7200), x));
        let u = _mm512_mul_ps(b, b);
        let j = _mm512_fmadd_ps(
            _mm512_fmadd_ps(
                _mm512_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
                u,
                _mm512_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
            ),
            u,
            _mm512_fmadd_ps(c(0x3f7f_fff6), b, _mm512_set1_ps(1.0)),
        );
        let in_range = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(n, _mm512_set1_ps(-126.0))
            & _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_set1_ps(127.0));
        if in_range == 0xFFFF {
            let e = _mm512_slli_epi32::<23>(_mm512_add_epi32(
                _mm512_cvtps_epi32(n),
                _mm512_set1_epi32(127),
            ));
            return _mm512_mul_ps(j, _mm512_castsi512_ps(e));
        }
        let mut v = [0f32; 16];
        _mm512_storeu_ps(v.as_mut_ptr(), x);
        for x in &mut v {
            *x = ggml_ops::expf(*x);
        }
        _mm512_loadu_ps(v.as_ptr())
    }

    /// `ggml_ops::reduce16` of the 16 lanes `lo ++ hi`.
    #[inline(always)]
    pub(crate) unsafe fn reduce16(lo: __m256, hi: __m256) -> f32 {
        let t8 = _mm256_add_ps(hi, lo);
        let t4 = _mm_add_ps(_mm256_extractf128_ps(t8, 1), _mm256_castps256_ps128(t8));
        // (t4[0] + t4[2]) + (t4[1] + t4[3])
        let s = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// `ggml_ops::expf` on eight values, bit for bit. Lanes whose `2^n` is not a normal
    /// f32 (results below ~1e-38 or above 1e38) take the scalar function, which scales in
    /// f64 as `_mm512_scalef_ps` does.
    #[inline(always)]
    pub(crate) unsafe fn expf8(x: __m256) -> __m256 {
        let c = |bits: u32| _mm256_set1_ps(f32::from_bits(bits));
        let r = c(0x4b40_0000);
        let z = _mm256_fmadd_ps(x, c(0x3fb8_aa3b), r);
        let n = _mm256_sub_ps(z, r);
        let b = _mm256_fnmadd_ps(n, c(0x35bf_be8e), _mm256_fnmadd_ps(n, c(0x3f31_7200), x));
        let u = _mm256_mul_ps(b, b);
        let j = _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                _mm256_fmadd_ps(c(0x3c07_2010), b, c(0x3d2b_9f17)),
                u,
                _mm256_fmadd_ps(c(0x3e2a_af33), b, c(0x3eff_fedb)),
            ),
            u,
            _mm256_fmadd_ps(c(0x3f7f_fff6), b, _mm256_set1_ps(1.0)),
        );
        // 2^n is a normal f32 for -126 <= n <= 127; then j * 2^n rounds once, like scalef.
        let in_range = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_GE_OQ>(n, _mm256_set1_ps(-126.0)),
            _mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_set1_ps(127.0)),
        );
        if _mm256_movemask_ps(in_range) == 0xFF {
            let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
                _mm256_cvtps_epi32(n),
                _mm256_set1_epi32(127),
            ));
            return _mm256_mul_ps(j, _mm256_castsi256_ps(e));
        }
        let mut v = [0f32; 8];
        _mm256_storeu_ps(v.as_mut_ptr(), x);
        for x in &mut v {
            *x = ggml_ops::expf(*x);
        }
        _mm256_loadu_ps(v.as_ptr())
    }

    /// `out[d] = sum_p probs[p] * v[p][d]` as `ggml_ops::weighted_sum` (tiled) sums it: lane
    /// `p % 16` per output, from zero in position order, then `reduce16`. This adds
    /// positions `pb..probs.len()` to the 16 lane sums `acc` (`[16, hd]`): one lane at a
    /// time (positions `l, l + 16, ...`) with the head's outputs in registers (one broadcast
    /// per eight V loads). Called for consecutive blocks, it performs the same additions in
    /// the same order as one pass over all positions.
    /// Where `wide` and the build has AVX-512, the outputs go sixteen at a time (the head
    /// size is a multiple of 16 here): each output is a lane, the same sums either way.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn weighted_sum_block(
        probs: &[f32],
        pb: usize,
        v: &[f32],
        hd: usize,
        acc: &mut [f32],
        wide: bool,
    ) {
        #[cfg(target_feature = "avx512f")]
        if wide {
            return match hd / 16 {
                2 => weighted_sum_512::<2>(probs, pb, v, hd, acc),
                4 => weighted_sum_512::<4>(probs, pb, v, hd, acc),
                8 => weighted_sum_512::<8>(probs, pb, v, hd, acc),
                _ => weighted_sum_512::<16>(probs, pb, v, hd, acc),
            };
        }
        let _ = wide;
        match hd / 8 {
            4 => weighted_sum_n::<4>(probs, pb, v, hd, acc),
            8 => weighted_sum_n::<8>(probs, pb, v, hd, acc),
            16 => weighted_sum_n::<16>(probs, pb, v, hd, acc),
            _ => weighted_sum_n::<32>(probs, pb, v, hd, acc),
        }
    }

    /// `weighted_sum_block` for up to `N` eight-float vectors per row (`hd <= 8 * N`).
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn weighted_sum_n<const N: usize>(
        probs: &[f32],
        pb: usize,
        v: &[f32],
        hd: usize,
        lanes: &mut [f32],
    ) {
        let nv = (hd / 8).min(N);
        let seen = probs.len();
        assert!(v.len() >= seen * hd && lanes.len() >= 16 * hd);
        let (pp, vp, lp) = (probs.as_ptr(), v.as_ptr(), lanes.as_mut_ptr());
        for l in 0..16 {
            let mut acc = [_mm256_setzero_ps(); N];
            for (c, a) in acc.iter_mut().enumerate().take(nv) {
                *a = _mm256_loadu_ps(lp.add(l * hd + 8 * c));
            }
            // The first position of lane `l` at or after `pb`.
            let mut p = pb + (l + 16 - pb % 16) % 16;
            while p < seen {
                let w = _mm256_broadcast_ss(&*pp.add(p));
                for (c, a) in acc.iter_mut().enumerate().take(nv) {
                    *a = _mm256_fmadd_ps(w, _mm256_loadu_ps(vp.add(p * hd + 8 * c)), *a);
                }
                p += 16;
            }
            for (c, a) in acc.iter().enumerate().take(nv) {
                _mm256_storeu_ps(lp.add(l * hd + 8 * c), *a);
            }
        }
    }

    /// `weighted_sum_n` with sixteen-float vectors (`hd <= 16 * N`, `hd % 16 == 0`). At
    /// head size 64 a lane's four accumulators would wait on the FMA latency, so lanes go
    /// two at a time (`L = 2`; each still sums its own positions in order).
    #[cfg(target_feature = "avx512f")]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    unsafe fn weighted_sum_512<const N: usize>(
        probs: &[f32],
        pb: usize,
        v: &[f32],
        hd: usize,
        lanes: &mut [f32],
    ) {
        if N >= 8 {
            lanes_512::<N, 1>(probs, pb, v, hd, lanes)
        } else {
            lanes_512::<N, 2>(probs, pb, v, hd, lanes)
        }
    }

    /// `weighted_sum_block` for two queries over the same values (`probs1` at least as
    /// long as `probs`, as causal rows are): each value vector loaded once for both, each
    /// query's lane sums in its own order.
    #[cfg(target_feature = "avx512f")]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    unsafe fn weighted_sum_pair(
        probs: &[f32],
        probs1: &[f32],
        pb: usize,
        v: &[f32],
        hd: usize,
        lanes: &mut [f32],
        lanes1: &mut [f32],
    ) {
        match hd / 16 {
            2 => pair_512::<2>(probs, probs1, pb, v, hd, lanes, lanes1),
            4 => pair_512::<4>(probs, probs1, pb, v, hd, lanes, lanes1),
            8 => pair_512::<8>(probs, probs1, pb, v, hd, lanes, lanes1),
            _ => pair_512::<16>(probs, probs1, pb, v, hd, lanes, lanes1),
        }
    }

    /// `weighted_sum_pair` for up to `N` sixteen-float vectors per row.
    #[cfg(target_feature = "avx512f")]
    #[inline(always)]
    unsafe fn pair_512<const N: usize>(
        probs: &[f32],
        probs1: &[f32],
        pb: usize,
        v: &[f32],
        hd: usize,
        lanes: &mut [f32],
        lanes1: &mut [f32],
    ) {
        let nv = (hd / 16).min(N);
        let (seen, seen1) = (probs.len(), probs1.len());
        assert!(seen <= seen1 && v.len() >= seen1 * hd);
        assert!(lanes.len() >= 16 * hd && lanes1.len() >= 16 * hd);
        let (pp, pp1, vp) = (probs.as_ptr(), probs1.as_ptr(), v.as_ptr());
        let (lp, lp1) = (lanes.as_mut_ptr(), lanes1.as_mut_ptr());
        for l in 0..16 {
            let mut acc = [_mm512_setzero_ps(); N];
            let mut acc1 = [_mm512_setzero_ps(); N];
            for c in 0..nv {
                acc[c] = _mm512_loadu_ps(lp.add(l * hd + 16 * c));
                acc1[c] = _mm512_loadu_ps(lp1.add(l * hd + 16 * c));
            }
            // The first position of lane `l` at or after `pb`.
            let mut p = pb + (l + 16 - pb % 16) % 16;
            while p < seen {
                let (w, w1) = (_mm512_set1_ps(*pp.add(p)), _mm512_set1_ps(*pp1.add(p)));
                for c in 0..nv {
                    let x = _mm512_loadu_ps(vp.add(p * hd + 16 * c));
                    acc[c] = _mm512_fmadd_ps(w, x, acc[c]);
                    acc1[c] = _mm512_fmadd_ps(w1, x, acc1[c]);
                }
                p += 16;
            }
            while p < seen1 {
                let w1 = _mm512_set1_ps(*pp1.add(p));
                for (c, a) in acc1.iter_mut().enumerate().take(nv) {
                    *a = _mm512_fmadd_ps(w1, _mm512_loadu_ps(vp.add(p * hd + 16 * c)), *a);
                }
                p += 16;
            }
            for c in 0..nv {
                _mm512_storeu_ps(lp.add(l * hd + 16 * c), acc[c]);
                _mm512_storeu_ps(lp1.add(l * hd + 16 * c), acc1[c]);
            }
        }
    }

    /// `weighted_sum_512`, `L` lanes at a time.
    #[cfg(target_feature = "avx512f")]
    #[inline(always)]
    unsafe fn lanes_512<const N: usize, const L: usize>(
        probs: &[f32],
        pb: usize,
        v: &[f32],
        hd: usize,
        lanes: &mut [f32],
    ) {
        let nv = (hd / 16).min(N);
        let seen = probs.len();
        assert!(v.len() >= seen * hd && lanes.len() >= 16 * hd);
        let (pp, vp, lp) = (probs.as_ptr(), v.as_ptr(), lanes.as_mut_ptr());
        for l0 in (0..16).step_by(L) {
            let mut acc = [[_mm512_setzero_ps(); N]; L];
            // The first position of each lane at or after `pb`.
            let mut p: [usize; L] = std::array::from_fn(|i| pb + (l0 + i + 16 - pb % 16) % 16);
            for (i, a) in acc.iter_mut().enumerate() {
                for (c, a) in a.iter_mut().enumerate().take(nv) {
                    *a = _mm512_loadu_ps(lp.add((l0 + i) * hd + 16 * c));
                }
            }
            // Side by side while every lane has a position, then each alone.
            while p.iter().all(|&p| p < seen) {
                for i in 0..L {
                    let w = _mm512_set1_ps(*pp.add(p[i]));
                    for (c, a) in acc[i].iter_mut().enumerate().take(nv) {
                        *a = _mm512_fmadd_ps(w, _mm512_loadu_ps(vp.add(p[i] * hd + 16 * c)), *a);
                    }
                    p[i] += 16;
                }
            }
            for i in 0..L {
                while p[i] < seen {
                    let w = _mm512_set1_ps(*pp.add(p[i]));
                    for (c, a) in acc[i].iter_mut().enumerate().take(nv) {
                        *a = _mm512_fmadd_ps(w, _mm512_loadu_ps(vp.add(p[i] * hd + 16 * c)), *a);
                    }
                    p[i] += 16;
                }
                for (c, a) in acc[i].iter().enumerate().take(nv) {
                    _mm512_storeu_ps(lp.add((l0 + i) * hd + 16 * c), *a);
                }
            }
        }
    }

    /// The 16 lane sums `lanes` (`[16, hd]`) reduced as `reduce16` into `out`.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn reduce_lanes(lanes: &[f32], hd: usize, out: &mut [f32]) {
        assert!(lanes.len() >= 16 * hd && out.len() >= hd);
        let lp = lanes.as_ptr();
        let lane = |l: usize, c: usize| _mm256_loadu_ps(lp.add(l * hd + 8 * c));
        for c in 0..hd / 8 {
            let t8: [__m256; 8] =
                std::array::from_fn(|i| _mm256_add_ps(lane(i + 8, c), lane(i, c)));
            let t4: [__m256; 4] = std::array::from_fn(|i| _mm256_add_ps(t8[i + 4], t8[i]));
            let r = _mm256_add_ps(_mm256_add_ps(t4[0], t4[2]), _mm256_add_ps(t4[1], t4[3]));
            _mm256_storeu_ps(out.as_mut_ptr().add(8 * c), r);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// f16-representable pseudo-random values in [-r, r] (the decode kernel's tests too).
    pub(in crate::model::cpu) fn values(n: usize, seed: u32, r: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(3);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let v = ((s % 20001) as f32 / 10000.0 - 1.0) * r;
                half::f16::from_f32(v).to_f32()
            })
            .collect()
    }

    /// Bit-identical to the reference for prompts with and without cached positions, odd
    /// lengths (partial key tiles, odd query counts) and grouped heads.
    #[test]
    fn tiled_attention_equals_the_ggml_reference_bit_for_bit() {
        for (t, pos, n_head, n_kv_head, hd, r) in [
            (37, 0, 4, 2, 64, 2.0),
            (16, 5, 3, 1, 32, 8.0),
            (1, 9, 2, 2, 64, 1.0),
            (50, 21, 2, 1, 128, 30.0),
            // Several key blocks (KEY_BLOCK) and a partial one; the largest head.
            (19, 600, 2, 1, 64, 4.0),
            (9, 270, 2, 2, 256, 2.0),
        ] {
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
            let q = values(n_head * t * hd, 1, r);
            let k_t = values(n_kv_head * hd * total, 2, r);
            let v = values(n_kv_head * total * hd, 3, 1.0);
            let want = ggml_ops::attend(&q, &k_t, &v, &s, 1);
            let got = attend(&q, &k_t, &v, &s, 2);
            // Both vector widths where the build has 512-bit kernels.
            #[cfg(target_arch = "x86_64")]
            if t > 1 && super::super::dot::avx2::available() {
                for wide in [false, true] {
                    let other = tiled(&q, &k_t, &v, &s, wide);
                    assert!(other
                        .iter()
                        .zip(&got)
                        .all(|(a, b)| a.to_bits() == b.to_bits()));
                }
            }
            let bad = got
                .iter()
                .zip(&want)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(bad, 0, "t={t} pos={pos} hd={hd}: {bad} values differ");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_exp_equals_scalar_exp() {
        if !super::super::dot::avx2::available() {
            return;
        }
        let xs: Vec<f32> = (0..4000).map(|i| -100.0 + i as f32 * 0.0271).collect();
        let mut row = xs.clone();
        // softmax_f16 with scale 1 over a row whose max is 0 exercises expf8 directly.
        row.push(0.0);
        let mut want = row.clone();
        ggml_ops::softmax(&mut want, 1.0);
        for w in &mut want {
            *w = half::f16::from_f32(*w).to_f32();
        }
        for wide in [false, true] {
            let mut row = row.clone();
            // SAFETY: AVX2/FMA/F16C checked above.
            unsafe { avx2::softmax_f16_on(&mut row, 1.0, wide) };
            assert!(row
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        let xs: Vec<f32> = (0..20000).map(|i| -110.0 + i as f32 * 0.01013).collect();
        for x in xs.chunks_exact(8) {
            let mut got = [0f32; 8];
            // SAFETY: AVX2/FMA/F16C checked above; `x` holds eight floats.
            unsafe {
                use std::arch::x86_64::*;
                let e = avx2::expf8(_mm256_loadu_ps(x.as_ptr()));
                _mm256_storeu_ps(got.as_mut_ptr(), e);
            }
            for (g, &x) in got.iter().zip(x) {
                assert_eq!(g.to_bits(), ggml_ops::expf(x).to_bits(), "exp({x})");
            }
        }
        #[cfg(target_feature = "avx512f")]
        for x in xs.chunks_exact(16) {
            let mut got = [0f32; 16];
            // SAFETY: the build has AVX-512; `x` holds sixteen floats.
            unsafe {
                use std::arch::x86_64::*;
                let e = avx2::expf16(_mm512_loadu_ps(x.as_ptr()));
                _mm512_storeu_ps(got.as_mut_ptr(), e);
            }
            for (g, &x) in got.iter().zip(x) {
                assert_eq!(g.to_bits(), ggml_ops::expf(x).to_bits(), "exp({x})");
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod speed {
    use super::tests::values;
    use super::*;

    /// Manual: `cargo test --release --lib cpu::attention::speed -- --ignored --nocapture`.
    /// Qwen2.5-0.5B's shape: the last 512-token chunk of a ~4,000-token prefill.
    #[test]
    #[ignore]
    fn prefill_attention_throughput() {
        let (t, pos, n_head, n_kv_head, hd) = (512, 3500, 14, 2, 64);
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
        let k_t = values(n_kv_head * hd * total, 2, 2.0);
        let v = values(n_kv_head * total * hd, 3, 1.0);
        for wide in [false, true, false, true] {
            let start = std::time::Instant::now();
            std::hint::black_box(tiled(&q, &k_t, &v, &s, wide));
            let ms = start.elapsed().as_secs_f64() * 1e3;
            let gfma = (t * n_head * hd * 2) as f64 * (pos as f64 + t as f64 / 2.0) / ms / 1e6;
            eprintln!("wide={wide}: {ms:.1} ms per layer, {gfma:.1} GFMA/s");
        }
    }
}
