//! Q4_K weights repacked at load eight rows at a time (as llama.cpp's `q4_K_8x8` is), for a
//! real GEMM: one 32-byte load holds four quants of each of eight rows, so a vector lane is
//! an output row. Nothing is summed across lanes, a sub-block's scale is applied once per
//! token instead of once per 32 products, and each weight load serves up to four tokens.
//! Every output equals the one-row `q4_k` kernel's bit for bit: the same exact integer sums
//! and, per lane, the same two f32 FMA chains (`q4k_accumulate`).
//! Input: a Q4_K weight `[n, k]` with `n % 8 == 0`; Q8_K activation rows. Output: f32.

use super::act::{BlockQ8K, QK_K};
use super::dot::{q4k_scales_mins, Q4_K_BYTES};

/// Rows repacked together: the lanes of one f32 vector.
pub(crate) const ROWS: usize = 8;

/// One super-block (256 columns) of eight rows:
/// `d[8]` f16, `dmin[8]` f16, `scales[8 sub-blocks][8 rows]` u8, `mins[8][8]` u8, then for
/// each pair of sub-blocks `q` and each group `g` of four columns, 32 bytes holding row
/// `r`'s bytes `qs[32q + 4g .. +4]` at `4r` (low nibbles: sub-block `2q`, high: `2q + 1`).
/// With sixteen rows (`repack_rows::<16>`, the 512-bit tiles) every part is twice as wide.
pub(crate) const BLOCK_BYTES: usize = block_bytes(ROWS);
const SCALES: usize = 4 * ROWS;
const MINS: usize = 12 * ROWS;
const QUANTS: usize = 20 * ROWS;

/// Bytes of one repacked super-block of `rows` rows.
pub(crate) const fn block_bytes(rows: usize) -> usize {
    148 * rows
}

/// Repacks `[n, k]` Q4_K blocks (`n % 8 == 0`, `k % 256 == 0`); row group `G` is stored as
/// its `k / 256` super-blocks in order, groups one after another.
pub(crate) fn repack(w: &[u8], n: usize, k: usize) -> Vec<u8> {
    repack_rows::<ROWS>(w, n, k)
}

/// `repack` with `R` rows per group (`n % R == 0`).
pub(crate) fn repack_rows<const R: usize>(w: &[u8], n: usize, k: usize) -> Vec<u8> {
    let nb = k / QK_K;
    let bytes = block_bytes(R);
    let (scales, mins, quants) = (4 * R, 12 * R, 20 * R);
    assert!(
        n.is_multiple_of(R) && w.len() == n * nb * Q4_K_BYTES,
        "Q4_K weight shape"
    );
    let mut out = vec![0u8; n / R * nb * bytes];
    for (g, group) in out.chunks_exact_mut(nb * bytes).enumerate() {
        for (i, dst) in group.chunks_exact_mut(bytes).enumerate() {
            for r in 0..R {
                let src = &w[((g * R + r) * nb + i) * Q4_K_BYTES..][..Q4_K_BYTES];
                dst[2 * r..2 * r + 2].copy_from_slice(&src[0..2]);
                dst[2 * R + 2 * r..2 * R + 2 * r + 2].copy_from_slice(&src[2..4]);
                let (sc, mn) = q4k_scales_mins(&src[4..16]);
                for j in 0..8 {
                    dst[scales + R * j + r] = sc[j];
                    dst[mins + R * j + r] = mn[j];
                }
                for q in 0..4 {
                    for c in 0..8 {
                        let at = quants + (q * 8 + c) * 4 * R + 4 * r;
                        dst[at..at + 4].copy_from_slice(&src[16 + 32 * q + 4 * c..][..4]);
                    }
                }
            }
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use super::{BlockQ8K, BLOCK_BYTES, MINS, QUANTS, ROWS, SCALES};
    use std::arch::x86_64::*;

    /// Eight u8 (one per row) → sixteen i16 lanes, each row's value in lanes `2r, 2r + 1`
    /// (the pair `maddubs` leaves per row).
    // SAFETY (callers): `p` points to 8 readable bytes and the CPU has AVX2.
    #[inline(always)]
    unsafe fn row_pairs(p: *const u8) -> __m256i {
        let s = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i));
        _mm256_or_si256(s, _mm256_slli_epi32(s, 16))
    }

    // SAFETY (callers): `p` points to 4 readable bytes and the CPU has AVX2.
    #[inline(always)]
    unsafe fn bcast4(p: *const i8) -> __m256i {
        _mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32))
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
        let low = _mm256_set1_epi8(0x0F);
        let mut acc = [_mm256_setzero_ps(); T];
        let mut mins = [_mm256_setzero_ps(); T];
        for i in 0..nb {
            let p = w.as_ptr().add(i * BLOCK_BYTES);
            let y: [&BlockQ8K; T] = std::array::from_fn(|t| &a[t * stride + i]);
            let mut sumi = [_mm256_setzero_si256(); T];
            for q in 0..4 {
                // Per token, the sub-block pair's products in i16: at most 8 × 2 × 15 × 128
                // in magnitude, so the sums are exact.
                let mut lo16 = [_mm256_setzero_si256(); T];
                let mut hi16 = [_mm256_setzero_si256(); T];
                for c in 0..8 {
                    let v = _mm256_loadu_si256(p.add(QUANTS + (q * 8 + c) * 32) as *const __m256i);
                    let lo = _mm256_and_si256(v, low);
                    let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
                    for t in 0..T {
                        let x = y[t].qs.as_ptr().add(64 * q + 4 * c);
                        lo16[t] = _mm256_add_epi16(lo16[t], _mm256_maddubs_epi16(lo, bcast4(x)));
                        hi16[t] =
                            _mm256_add_epi16(hi16[t], _mm256_maddubs_epi16(hi, bcast4(x.add(32))));
                    }
                }
                let sl = row_pairs(p.add(SCALES + 8 * (2 * q)));
                let sh = row_pairs(p.add(SCALES + 8 * (2 * q + 1)));
                for t in 0..T {
                    let s = _mm256_add_epi32(
                        _mm256_madd_epi16(lo16[t], sl),
                        _mm256_madd_epi16(hi16[t], sh),
                    );
                    sumi[t] = _mm256_add_epi32(sumi[t], s);
                }
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(p.add(16) as *const __m128i));
            for t in 0..T {
                // Σ_j min_j × (bsums[2j] + bsums[2j + 1]), per row.
                let mut summ = _mm256_setzero_si256();
                for j in 0..8 {
                    let m = row_pairs(p.add(MINS + 8 * j));
                    let b = bcast4(y[t].bsums.as_ptr().add(2 * j) as *const i8);
                    summ = _mm256_add_epi32(summ, _mm256_madd_epi16(m, b));
                }
                let yd = _mm256_set1_ps(y[t].d);
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi[t]), _mm256_mul_ps(d, yd), acc[t]);
                mins[t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(summ), _mm256_mul_ps(dmin, yd), mins[t]);
            }
        }
        let mut out = [[0f32; ROWS]; T];
        for t in 0..T {
            _mm256_storeu_ps(out[t].as_mut_ptr(), _mm256_sub_ps(acc[t], mins[t]));
        }
        out
    }
}

/// The tile on 512-bit vectors over sixteen rows (`repack_rows::<16>`): `avx2::tile`'s
/// operations lane by lane, so the same integers and the same two FMA chains per row.
#[cfg(vnni512_tiles)]
pub(crate) mod avx512 {
    use super::{block_bytes, BlockQ8K};
    use std::arch::x86_64::*;

    const ROWS: usize = 16;
    const SCALES: usize = 4 * ROWS;
    const MINS: usize = 12 * ROWS;
    const QUANTS: usize = 20 * ROWS;

    /// Sixteen u8 (one per row) → 32 i16 lanes, each row's value in lanes `2r, 2r + 1`.
    // SAFETY (callers): `p` points to 16 readable bytes.
    #[inline(always)]
    unsafe fn row_pairs(p: *const u8) -> __m512i {
        let s = _mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i));
        _mm512_or_si512(s, _mm512_slli_epi32::<16>(s))
    }

    // SAFETY (callers): `p` points to 4 readable bytes.
    #[inline(always)]
    unsafe fn bcast4(p: *const i8) -> __m512i {
        _mm512_set1_epi32(std::ptr::read_unaligned(p as *const i32))
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
        let bytes = block_bytes(ROWS);
        assert!(w.len() >= nb * bytes && a.len() >= (T - 1) * stride + nb);
        let low = _mm512_set1_epi8(0x0F);
        let mut acc = [_mm512_setzero_ps(); T];
        let mut mins = [_mm512_setzero_ps(); T];
        for i in 0..nb {
            let p = w.as_ptr().add(i * bytes);
            let y: [&BlockQ8K; T] = std::array::from_fn(|t| a.get_unchecked(t * stride + i));
            let mut sumi = [_mm512_setzero_si512(); T];
            for q in 0..4 {
                // As in `avx2::tile`: i16 sums of at most 8 × 2 × 15 × 128, exact.
                let mut lo16 = [_mm512_setzero_si512(); T];
                let mut hi16 = [_mm512_setzero_si512(); T];
                for c in 0..8 {
                    let v = _mm512_loadu_si512(p.add(QUANTS + (q * 8 + c) * 64) as *const _);
                    let lo = _mm512_and_si512(v, low);
                    let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(v), low);
                    for t in 0..T {
                        let x = y[t].qs.as_ptr().add(64 * q + 4 * c);
                        lo16[t] = _mm512_add_epi16(lo16[t], _mm512_maddubs_epi16(lo, bcast4(x)));
                        hi16[t] =
                            _mm512_add_epi16(hi16[t], _mm512_maddubs_epi16(hi, bcast4(x.add(32))));
                    }
                }
                let sl = row_pairs(p.add(SCALES + ROWS * (2 * q)));
                let sh = row_pairs(p.add(SCALES + ROWS * (2 * q + 1)));
                for t in 0..T {
                    let s = _mm512_add_epi32(
                        _mm512_madd_epi16(lo16[t], sl),
                        _mm512_madd_epi16(hi16[t], sh),
                    );
                    sumi[t] = _mm512_add_epi32(sumi[t], s);
                }
            }
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
            let dmin = _mm512_cvtph_ps(_mm256_loadu_si256(p.add(2 * ROWS) as *const __m256i));
            for t in 0..T {
                // Σ_j min_j × (bsums[2j] + bsums[2j + 1]), per row.
                let mut summ = _mm512_setzero_si512();
                for j in 0..8 {
                    let m = row_pairs(p.add(MINS + ROWS * j));
                    let b = bcast4(y[t].bsums.as_ptr().add(2 * j) as *const i8);
                    summ = _mm512_add_epi32(summ, _mm512_madd_epi16(m, b));
                }
                let yd = _mm512_set1_ps(y[t].d);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[t]), _mm512_mul_ps(d, yd), acc[t]);
                mins[t] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(summ), _mm512_mul_ps(dmin, yd), mins[t]);
            }
        }
        let mut out = [[0f32; ROWS]; T];
        for t in 0..T {
            _mm512_storeu_ps(out[t].as_mut_ptr(), _mm512_sub_ps(acc[t], mins[t]));
        }
        out
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) mod tests {
    use super::super::act::quantize_q8_k;
    use super::super::dot;
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    type Tile<const T: usize, const R: usize> =
        unsafe fn(&[u8], usize, &[BlockQ8K], usize) -> [[f32; R]; T];

    /// A K-quant format's repacking and tiles (`R` rows a group), and the one-row kernel
    /// they must equal.
    pub(crate) struct Case<const R: usize> {
        pub dtype: GgmlDType,
        pub repack: fn(&[u8], usize, usize) -> Vec<u8>,
        /// Bytes of one repacked super-block of `R` rows.
        pub block_bytes: usize,
        pub tiles: (Tile<1, R>, Tile<2, R>, Tile<3, R>, Tile<4, R>),
        pub one_row: unsafe fn(&[u8], &[BlockQ8K]) -> f32,
    }

    /// Every (token, row) of every tile size equals the one-row kernel exactly.
    pub(crate) fn check<const R: usize>(case: Case<R>, seed: u32) {
        if !dot::avx2::available() {
            return;
        }
        let (n, k, t) = (32, 768, 5);
        let mut seed = seed;
        let mut v = |len: usize| {
            seed += 1;
            dot::tests::values(len, seed)
        };
        let wt = Tensor::from_vec(v(n * k), (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&wt, case.dtype).unwrap();
        let bytes = q.data().unwrap().into_owned();
        let packed = (case.repack)(&bytes, n, k);
        let nb = k / QK_K;
        let mut a = vec![BlockQ8K::default(); t * nb];
        quantize_q8_k(&v(t * k), &mut a);
        let row_bytes = bytes.len() / n;
        let (one, two, three, four) = case.tiles;
        for g in 0..n / R {
            let w = &packed[g * nb * case.block_bytes..][..nb * case.block_bytes];
            // SAFETY: AVX2 checked above (the 512-bit tiles are compiled only where the
            // build has their features); `w` holds `nb` blocks, `a` `t * nb`.
            let got: Vec<[f32; R]> = unsafe {
                let mut got = four(w, nb, &a, nb).to_vec();
                got.extend(one(w, nb, &a[4 * nb..], nb));
                got.extend(two(w, nb, &a[3 * nb..], nb));
                got.extend(three(w, nb, &a[2 * nb..], nb));
                got
            };
            // Token of each result: 0..4 (four), 4 (one), 3, 4 (two), 2, 3, 4 (three).
            let token = [0, 1, 2, 3, 4, 3, 4, 2, 3, 4];
            for r in 0..R {
                let row = &bytes[(g * R + r) * row_bytes..][..row_bytes];
                for (res, &tok) in got.iter().zip(&token) {
                    // SAFETY: as above.
                    let want = unsafe { (case.one_row)(row, &a[tok * nb..(tok + 1) * nb]) };
                    assert_eq!(
                        res[r].to_bits(),
                        want.to_bits(),
                        "{:?} group {g} row {r} token {tok}",
                        case.dtype
                    );
                }
            }
        }
    }

    #[test]
    fn repacked_tiles_equal_the_one_row_kernel_exactly() {
        check(
            Case {
                dtype: GgmlDType::Q4K,
                repack,
                block_bytes: BLOCK_BYTES,
                tiles: (
                    avx2::tile::<1>,
                    avx2::tile::<2>,
                    avx2::tile::<3>,
                    avx2::tile::<4>,
                ),
                one_row: dot::avx2::q4_k,
            },
            0,
        );
        #[cfg(vnni512_tiles)]
        check(
            Case {
                dtype: GgmlDType::Q4K,
                repack: repack_rows::<16>,
                block_bytes: block_bytes(16),
                tiles: (
                    avx512::tile::<1>,
                    avx512::tile::<2>,
                    avx512::tile::<3>,
                    avx512::tile::<4>,
                ),
                one_row: dot::avx2::q4_k,
            },
            3,
        );
    }
}
