//! Q6_K weights repacked at load eight rows at a time, for a real GEMM: one 32-byte load
//! holds four quants of each of eight rows, so a vector lane is an output row and each
//! weight load (and its unpacking) serves up to four tokens. Q6_K is in half of the
//! `ffn_down` weights of the Q4_K_M files coders run (Qwen2.5-Coder's among them).
//!
//! Exactness: ggml's one-row kernel (`dot::avx2::q6_k`) keeps eight i32 lanes per
//! super-block, lane `j` summing, for each half `h` and 32-value chunk `k`, the scaled
//! products of values `4j..4j + 4` of that chunk; it subtracts its own per-lane share of the
//! -32 offset (`32 * (bsums[2j] * sc[2j] + bsums[2j + 1] * sc[2j + 1])`), converts, adds
//! `d_w * d_x * lane` into lane `j`'s f32 accumulator, and sums the lanes in a fixed tree at
//! the end. Here accumulator `j` of a token is lane `j` of every row: the same integers
//! (integer sums are exact in any order), the same FMA per super-block, the same tree, so
//! every output equals the one-row kernel's bit for bit.
//! Input: a Q6_K weight `[n, k]` with `n % 8 == 0`; Q8_K activation rows. Output: f32.

use super::act::QK_K;
use super::dot::Q6_K_BYTES;

/// Rows repacked together: the lanes of one f32 vector.
pub(crate) const ROWS: usize = 8;

/// One super-block (256 columns) of eight rows, in the bytes of eight Q6_K blocks:
/// `d[8]` f16; `scales[16 sub-blocks][8 rows]` i8; then the low nibbles, for each half `h`,
/// 32-byte half `kk` of the half's 64 `ql` bytes and group `j` of four of them, 32 bytes
/// holding row `r`'s bytes `ql[64h + 32kk + 4j..][..4]` at `4r` (low nibbles: chunk `kk`,
/// high: chunk `kk + 2`); then the high bits, for each half and group, 32 bytes holding
/// row `r`'s `qh[32h + 4j..][..4]` at `4r` (chunk `k`'s two bits at `2k`).
/// With sixteen rows (`repack_rows::<16>`, the 512-bit tiles) every part is twice as wide.
pub(crate) const BLOCK_BYTES: usize = block_bytes(ROWS);
const SCALES: usize = 2 * ROWS;
const QL: usize = SCALES + 16 * ROWS;
const QH: usize = QL + 128 * ROWS;

/// Bytes of one repacked super-block of `rows` rows: the same as `rows` Q6_K blocks.
pub(crate) const fn block_bytes(rows: usize) -> usize {
    rows * Q6_K_BYTES
}

/// Repacks `[n, k]` Q6_K blocks (`n % 8 == 0`, `k % 256 == 0`); row group `G` is stored as
/// its `k / 256` super-blocks in order, groups one after another.
pub(crate) fn repack(w: &[u8], n: usize, k: usize) -> Vec<u8> {
    repack_rows::<ROWS>(w, n, k)
}

/// `repack` with `R` rows per group (`n % R == 0`).
pub(crate) fn repack_rows<const R: usize>(w: &[u8], n: usize, k: usize) -> Vec<u8> {
    let nb = k / QK_K;
    let bytes = block_bytes(R);
    let (scales, ql, qh) = (2 * R, 18 * R, 146 * R);
    assert!(
        n.is_multiple_of(R) && k.is_multiple_of(QK_K) && w.len() == n * nb * Q6_K_BYTES,
        "Q6_K weight shape"
    );
    let mut out = vec![0u8; n / R * nb * bytes];
    for (g, group) in out.chunks_exact_mut(nb * bytes).enumerate() {
        for (i, dst) in group.chunks_exact_mut(bytes).enumerate() {
            for r in 0..R {
                // A Q6_K block: ql[128], qh[64], scales[16] (i8), d (f16).
                let src = &w[((g * R + r) * nb + i) * Q6_K_BYTES..][..Q6_K_BYTES];
                dst[2 * r..2 * r + 2].copy_from_slice(&src[208..210]);
                for sb in 0..16 {
                    dst[scales + R * sb + r] = src[192 + sb];
                }
                for h in 0..2 {
                    for kk in 0..2 {
                        for j in 0..8 {
                            let at = ql + ((h * 2 + kk) * 8 + j) * 4 * R + 4 * r;
                            dst[at..at + 4].copy_from_slice(&src[64 * h + 32 * kk + 4 * j..][..4]);
                        }
                    }
                    for j in 0..8 {
                        let at = qh + (h * 8 + j) * 4 * R + 4 * r;
                        dst[at..at + 4].copy_from_slice(&src[128 + 32 * h + 4 * j..][..4]);
                    }
                }
            }
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::super::act::BlockQ8K;
    use super::super::q8_x8::simd::{bcast4, rows_out};
    use super::{BLOCK_BYTES, QH, QL, ROWS, SCALES};
    use std::arch::x86_64::*;

    /// `acc + (lanes 2r, 2r + 1 of a) * (lanes 2r, 2r + 1 of b)` per row: `vpdpwssd` where
    /// the build has VNNI, AVX-512's or AVX-VNNI (it does not saturate), else `madd` and `add` (the same exact
    /// integers: the products here are far below i32 overflow).
    #[inline(always)]
    unsafe fn dot_i16(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
        #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
        {
            _mm256_dpwssd_epi32(acc, a, b)
        }
        #[cfg(all(
            target_feature = "avxvnni",
            not(all(target_feature = "avx512vnni", target_feature = "avx512vl"))
        ))]
        {
            _mm256_dpwssd_avx_epi32(acc, a, b)
        }
        #[cfg(not(any(
            target_feature = "avxvnni",
            all(target_feature = "avx512vnni", target_feature = "avx512vl")
        )))]
        {
            _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
        }
    }

    /// The i8 at `p[r]` (one per row) as the i16 pair of lane `r`.
    // SAFETY (callers): `p` points to 8 readable bytes.
    #[inline(always)]
    unsafe fn row_scales(p: *const u8) -> __m256i {
        let s = _mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i));
        let dup = _mm256_setr_epi8(
            0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13, 0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9,
            12, 13, 12, 13,
        );
        _mm256_shuffle_epi8(s, dup)
    }

    /// Row `r`'s `(a[r], b[r])` (i8 each) as the i16 pair of lane `r`.
    // SAFETY (callers): `a` and `b` point to 8 readable bytes.
    #[inline(always)]
    unsafe fn row_pairs(a: *const u8, b: *const u8) -> __m256i {
        let a = _mm_cvtepi8_epi16(_mm_loadl_epi64(a as *const __m128i));
        let b = _mm_cvtepi8_epi16(_mm_loadl_epi64(b as *const __m128i));
        _mm256_set_m128i(_mm_unpackhi_epi16(a, b), _mm_unpacklo_epi16(a, b))
    }

    /// The unsigned 6-bit quants of chunk `k` (0..4) of half `h`, group `j`, of eight rows.
    // SAFETY (callers): `p` points to a whole repacked block.
    #[inline(always)]
    unsafe fn quants(p: *const u8, h: usize, k: usize, j: usize) -> __m256i {
        let ql = _mm256_loadu_si256(p.add(QL + ((h * 2 + k % 2) * 8 + j) * 32) as *const __m256i);
        let qh = _mm256_loadu_si256(p.add(QH + (h * 8 + j) * 32) as *const __m256i);
        let low = if k < 2 {
            ql
        } else {
            _mm256_srli_epi16::<4>(ql)
        };
        // Bits 2k, 2k + 1 of qh moved to bits 4, 5.
        let high = match k {
            0 => _mm256_slli_epi16::<4>(qh),
            1 => _mm256_slli_epi16::<2>(qh),
            2 => qh,
            _ => _mm256_srli_epi16::<2>(qh),
        };
        _mm256_or_si256(
            _mm256_and_si256(low, _mm256_set1_epi8(0x0F)),
            _mm256_and_si256(high, _mm256_set1_epi8(0x30)),
        )
    }

    /// `T` activation rows (`a[t * stride..]`, `nb` super-blocks each) against one repacked
    /// group of eight rows (`w`, `nb` blocks): `out[t][r]` for row `r`.
    // SAFETY (callers): the CPU has AVX2, FMA and F16C; `w` holds `nb` repacked blocks and
    // `a` holds `(T - 1) * stride + nb` blocks (asserted).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn tile<const T: usize>(
        w: &[u8],
        nb: usize,
        a: &[BlockQ8K],
        stride: usize,
    ) -> [[f32; ROWS]; T] {
        assert!(w.len() >= nb * BLOCK_BYTES && a.len() >= (T - 1) * stride + nb);
        // acc[j][t]: lane j of every row for token t.
        let mut acc = [[_mm256_setzero_ps(); T]; 8];
        for i in 0..nb {
            let p = w.as_ptr().add(i * BLOCK_BYTES);
            let y: [&BlockQ8K; T] = std::array::from_fn(|t| &a[t * stride + i]);
            let d = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
            // `y.d * d_w` per row: the one-row kernel's scalar product, lane by lane.
            let dy: [__m256; T] = std::array::from_fn(|t| _mm256_mul_ps(_mm256_set1_ps(y[t].d), d));
            for half in 0..2 {
                // Lanes 0..4 take the first sub-block of each chunk, lanes 4..8 the second.
                let scales: [__m256i; 8] = std::array::from_fn(|c| {
                    let (h, k) = (c / 4, c % 4);
                    row_scales(p.add(SCALES + 8 * (8 * h + 2 * k + half)))
                });
                for (j, lane) in acc.iter_mut().enumerate().skip(4 * half).take(4) {
                    let mut sumi = [_mm256_setzero_si256(); T];
                    for (c, sc) in scales.iter().enumerate() {
                        let (h, k) = (c / 4, c % 4);
                        let q = quants(p, h, k, j);
                        for t in 0..T {
                            let x =
                                bcast4(y[t].qs.as_ptr().add(128 * h + 32 * k + 4 * j) as *const u8);
                            // i16 pair sums: at most 2 × 63 × 127, no saturation.
                            sumi[t] = dot_i16(sumi[t], _mm256_maddubs_epi16(q, x), *sc);
                        }
                    }
                    let pair =
                        row_pairs(p.add(SCALES + 8 * (2 * j)), p.add(SCALES + 8 * (2 * j + 1)));
                    for t in 0..T {
                        // The lane's share of the -32 offset, as the one-row kernel takes it.
                        let b = bcast4(y[t].bsums.as_ptr().add(2 * j) as *const u8);
                        let offset =
                            _mm256_slli_epi32::<5>(dot_i16(_mm256_setzero_si256(), b, pair));
                        let lanes = _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi[t], offset));
                        lane[t] = _mm256_fmadd_ps(dy[t], lanes, lane[t]);
                    }
                }
            }
        }
        rows_out(&acc)
    }
}

/// The tile on 512-bit vectors over sixteen rows (`repack_rows::<16>`): `avx2::tile`'s
/// operations lane by lane (the VNNI `vpdpwssd`), so the same integers, the same FMA per
/// super-block and the same final tree per row.
#[cfg(vnni512_tiles)]
pub(crate) mod avx512 {
    use super::super::act::BlockQ8K;
    use super::super::q8_x16::vnni512::rows_out;
    use std::arch::x86_64::*;

    const ROWS: usize = 16;
    const BLOCK_BYTES: usize = super::block_bytes(ROWS);
    const SCALES: usize = 2 * ROWS;
    const QL: usize = SCALES + 16 * ROWS;
    const QH: usize = QL + 128 * ROWS;

    // SAFETY (callers): `p` points to 4 readable bytes.
    #[inline(always)]
    unsafe fn bcast4(p: *const u8) -> __m512i {
        _mm512_set1_epi32(std::ptr::read_unaligned(p as *const i32))
    }

    /// The i8 at `p[r]` (one per row) as the i16 pair of lane `r`.
    // SAFETY (callers): `p` points to 16 readable bytes.
    #[inline(always)]
    unsafe fn row_scales(p: *const u8) -> __m512i {
        let s = _mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i));
        _mm512_or_si512(
            _mm512_and_si512(s, _mm512_set1_epi32(0xFFFF)),
            _mm512_slli_epi32::<16>(s),
        )
    }

    /// Row `r`'s `(a[r], b[r])` (i8 each) as the i16 pair of lane `r`.
    // SAFETY (callers): `a` and `b` point to 16 readable bytes.
    #[inline(always)]
    unsafe fn row_pairs(a: *const u8, b: *const u8) -> __m512i {
        let a = _mm512_cvtepi8_epi32(_mm_loadu_si128(a as *const __m128i));
        let b = _mm512_cvtepi8_epi32(_mm_loadu_si128(b as *const __m128i));
        _mm512_or_si512(
            _mm512_and_si512(a, _mm512_set1_epi32(0xFFFF)),
            _mm512_slli_epi32::<16>(b),
        )
    }

    /// The unsigned 6-bit quants of chunk `k` (0..4) of half `h`, group `j`, of 16 rows.
    // SAFETY (callers): `p` points to a whole repacked block.
    #[inline(always)]
    unsafe fn quants(p: *const u8, h: usize, k: usize, j: usize) -> __m512i {
        let ql = _mm512_loadu_si512(p.add(QL + ((h * 2 + k % 2) * 8 + j) * 64) as *const _);
        let qh = _mm512_loadu_si512(p.add(QH + (h * 8 + j) * 64) as *const _);
        let low = if k < 2 {
            ql
        } else {
            _mm512_srli_epi16::<4>(ql)
        };
        // Bits 2k, 2k + 1 of qh moved to bits 4, 5.
        let high = match k {
            0 => _mm512_slli_epi16::<4>(qh),
            1 => _mm512_slli_epi16::<2>(qh),
            2 => qh,
            _ => _mm512_srli_epi16::<2>(qh),
        };
        // (high & 0x30) | (low & 0x0F); 0xEA is (A & B) | C.
        let low = _mm512_and_si512(low, _mm512_set1_epi8(0x0F));
        _mm512_ternarylogic_epi32::<0xEA>(high, _mm512_set1_epi8(0x30), low)
    }

    /// `T` activation rows (`a[t * stride..]`, `nb` super-blocks each) against one repacked
    /// group of sixteen rows (`w`, `nb` blocks): `out[t][r]` for row `r`.
    // SAFETY (callers): the build has the module's features (`vnni512_tiles`); `w` holds
    // `nb` repacked blocks and `a` holds `(T - 1) * stride + nb` blocks (asserted).
    pub(crate) unsafe fn tile<const T: usize>(
        w: &[u8],
        nb: usize,
        a: &[BlockQ8K],
        stride: usize,
    ) -> [[f32; ROWS]; T] {
        assert!(w.len() >= nb * BLOCK_BYTES && a.len() >= (T - 1) * stride + nb);
        // acc[j][t]: lane j of every row for token t.
        let mut acc = [[_mm512_setzero_ps(); T]; 8];
        for i in 0..nb {
            let p = w.as_ptr().add(i * BLOCK_BYTES);
            let y: [&BlockQ8K; T] = std::array::from_fn(|t| a.get_unchecked(t * stride + i));
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
            // `y.d * d_w` per row: the one-row kernel's scalar product, lane by lane.
            let dy: [__m512; T] = std::array::from_fn(|t| _mm512_mul_ps(_mm512_set1_ps(y[t].d), d));
            for half in 0..2 {
                // Lanes 0..4 take the first sub-block of each chunk, lanes 4..8 the second.
                let scales: [__m512i; 8] = std::array::from_fn(|c| {
                    let (h, k) = (c / 4, c % 4);
                    row_scales(p.add(SCALES + ROWS * (8 * h + 2 * k + half)))
                });
                for (j, lane) in acc.iter_mut().enumerate().skip(4 * half).take(4) {
                    let mut sumi = [_mm512_setzero_si512(); T];
                    for (c, sc) in scales.iter().enumerate() {
                        let (h, k) = (c / 4, c % 4);
                        let q = quants(p, h, k, j);
                        for t in 0..T {
                            let x =
                                bcast4(y[t].qs.as_ptr().add(128 * h + 32 * k + 4 * j) as *const u8);
                            // i16 pair sums: at most 2 × 63 × 127, no saturation.
                            sumi[t] = _mm512_dpwssd_epi32(sumi[t], _mm512_maddubs_epi16(q, x), *sc);
                        }
                    }
                    let pair = row_pairs(
                        p.add(SCALES + ROWS * (2 * j)),
                        p.add(SCALES + ROWS * (2 * j + 1)),
                    );
                    for t in 0..T {
                        // The lane's share of the -32 offset, as the one-row kernel takes it.
                        let b = bcast4(y[t].bsums.as_ptr().add(2 * j) as *const u8);
                        let offset = _mm512_slli_epi32::<5>(_mm512_dpwssd_epi32(
                            _mm512_setzero_si512(),
                            b,
                            pair,
                        ));
                        let lanes = _mm512_cvtepi32_ps(_mm512_sub_epi32(sumi[t], offset));
                        lane[t] = _mm512_fmadd_ps(dy[t], lanes, lane[t]);
                    }
                }
            }
        }
        rows_out(&acc)
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::super::dot;
    use super::super::q4k_x8::tests::{check, Case};
    use super::*;
    use candle_core::quantized::GgmlDType;

    /// Every (token, row) of every tile size equals the one-row kernel exactly.
    #[test]
    fn repacked_tiles_equal_the_one_row_kernel_exactly() {
        check(
            Case {
                dtype: GgmlDType::Q6K,
                repack,
                block_bytes: BLOCK_BYTES,
                tiles: (
                    avx2::tile::<1>,
                    avx2::tile::<2>,
                    avx2::tile::<3>,
                    avx2::tile::<4>,
                ),
                one_row: dot::avx2::q6_k,
            },
            10,
        );
        #[cfg(vnni512_tiles)]
        check(
            Case {
                dtype: GgmlDType::Q6K,
                repack: repack_rows::<16>,
                block_bytes: block_bytes(16),
                tiles: (
                    avx512::tile::<1>,
                    avx512::tile::<2>,
                    avx512::tile::<3>,
                    avx512::tile::<4>,
                ),
                one_row: dot::avx2::q6_k,
            },
            13,
        );
    }
}
