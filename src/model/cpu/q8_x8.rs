//! Q8_0, Q4_0 and Q5_0 weights repacked at load eight rows at a time, in the same bytes:
//! one 32-byte vector holds four values of each of eight rows, so a vector lane is an
//! output row and a weight row is read as part of one sequential stream. Unpacking, the
//! weight's sign and its scale are shared by the eight rows and by up to four tokens, which
//! leaves about half the instructions per product of the one-row kernels (and decode of
//! these formats is bound by instructions, not memory bandwidth).
//!
//! Exactness: ggml's one-row kernel keeps eight f32 lanes per row, lane `l` summing the
//! products of values `4l..4l + 4` of every block, and adds the lanes in a fixed tree at the
//! end. Here vector `c` of a block holds exactly those four values of each row, so
//! accumulator `c` is lane `c` of every row, updated by the same FMA with the same operands,
//! and the final tree is the same: every output equals the one-row kernel's bit for bit.
//! Input: a `[n, k]` weight in one of the three formats, `n % 8 == 0`; Q8_0 activation rows.

use super::act::QK8_0;
use super::dot::{Q4_0_BYTES, Q5_0_BYTES, Q8_0_BYTES};

/// Rows repacked together: the lanes of one f32 vector.
pub(crate) const ROWS: usize = 8;

/// The formats this layout covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Q8_0,
    Q4_0,
    Q5_0,
}

impl Format {
    fn row_block_bytes(self) -> usize {
        match self {
            Format::Q8_0 => Q8_0_BYTES,
            Format::Q4_0 => Q4_0_BYTES,
            Format::Q5_0 => Q5_0_BYTES,
        }
    }

    /// Bytes of one repacked block (32 columns of eight rows): the same as eight blocks.
    pub(crate) fn block_bytes(self) -> usize {
        ROWS * self.row_block_bytes()
    }
}

/// Offsets in a repacked block: `d[8]` f16 first, then the values.
const VALUES: usize = 16;
/// Q5_0: after the four nibble vectors, one u32 of high bits per vector `c`.
const HIGH_BITS: usize = VALUES + 4 * 32;

/// Repacks `[n, k]` blocks (`n % 8 == 0`, `k % 32 == 0`). Block `i` of row group `G` is at
/// `(G * k / 32 + i) * block_bytes`. Per block:
/// - Q8_0: vector `c` (values `4c..4c + 4`) at `16 + 32c`, row `r`'s four bytes at `4r`;
/// - Q4_0 / Q5_0: vector `g < 4` at `16 + 32g` holds row `r`'s bytes `qs[4g..4g + 4]` at
///   `4r`: low nibbles are values `4g..` (vector `c = g`), high nibbles values `16 + 4g..`
///   (vector `c = g + 4`);
/// - Q5_0 then: at `144 + 4c`, the high bits of vector `c`: bit `r` of byte `e` is row
///   `r`'s bit for value `4c + e` (one broadcast and one AND put each on its lane).
pub(crate) fn repack(format: Format, w: &[u8], n: usize, k: usize) -> Vec<u8> {
    repack_rows::<ROWS>(format, w, n, k)
}

/// `repack` with `R` rows a group (8, or 16 for the 512-bit tiles of `q8_x16`): every part
/// `R / 8` times as wide. Q5_0's high bits of vector `c` then take `R / 2` bytes at
/// `VALUES + 16R + (R / 2)c`, laid out for one broadcast of that size: lane byte `4r + e`
/// sits at byte `4(r % (R / 8)) + e` of its broadcast unit, so row `r`'s bit for value
/// `4c + e` is bit `r / (R / 8)` of that byte.
pub(crate) fn repack_rows<const R: usize>(format: Format, w: &[u8], n: usize, k: usize) -> Vec<u8> {
    let nb = k / QK8_0;
    let rb = format.row_block_bytes();
    let gb = R * rb;
    // Rows a lane byte's broadcast unit covers with one byte each.
    let per = R / ROWS;
    let (values, high_bits) = (2 * R, 2 * R + 16 * R);
    assert!(
        R.is_multiple_of(ROWS)
            && n.is_multiple_of(R)
            && k.is_multiple_of(QK8_0)
            && w.len() == n * nb * rb,
        "weight shape"
    );
    let mut out = vec![0u8; n / R * nb * gb];
    for (g, group) in out.chunks_exact_mut(nb * gb).enumerate() {
        for (i, dst) in group.chunks_exact_mut(gb).enumerate() {
            for r in 0..R {
                let src = &w[((g * R + r) * nb + i) * rb..][..rb];
                dst[2 * r..2 * r + 2].copy_from_slice(&src[0..2]);
                match format {
                    Format::Q8_0 => {
                        for c in 0..8 {
                            let at = values + 4 * R * c + 4 * r;
                            dst[at..at + 4].copy_from_slice(&src[2 + 4 * c..][..4]);
                        }
                    }
                    Format::Q4_0 | Format::Q5_0 => {
                        let qs = if format == Format::Q4_0 { 2 } else { 6 };
                        for v in 0..4 {
                            let at = values + 4 * R * v + 4 * r;
                            dst[at..at + 4].copy_from_slice(&src[qs + 4 * v..][..4]);
                        }
                    }
                }
                if format == Format::Q5_0 {
                    let qh = u32::from_le_bytes([src[2], src[3], src[4], src[5]]);
                    for c in 0..8 {
                        for e in 0..4 {
                            let bit = ((qh >> (4 * c + e)) & 1) as u8;
                            dst[high_bits + 4 * per * c + 4 * (r % per) + e] |= bit << (r / per);
                        }
                    }
                }
            }
        }
    }
    out
}

/// What both tile paths (and `q6k_x8`) share.
#[cfg(target_arch = "x86_64")]
pub(crate) mod simd {
    use super::ROWS;
    use std::arch::x86_64::*;

    // SAFETY (callers): `p` points to 4 readable bytes and the CPU has AVX2.
    #[inline(always)]
    pub(crate) unsafe fn bcast4(p: *const u8) -> __m256i {
        _mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32))
    }

    /// Q5_0's high bits as repacked: lane `4r + e` reads byte `e` of a broadcast, and its
    /// bit is `r`.
    // SAFETY (callers): the CPU has AVX2.
    #[inline(always)]
    pub(crate) unsafe fn lane_bits() -> __m256i {
        _mm256_setr_epi8(
            1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4, 8, 8, 8, 8, 16, 16, 16, 16, 32, 32, 32, 32, 64, 64,
            64, 64, -128, -128, -128, -128,
        )
    }

    /// `out[t][r]` from the eight lane accumulators of every row (`lanes[c][t]`), added in
    /// `hsum_f32`'s tree: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
    // SAFETY (callers): the CPU has AVX2.
    #[inline(always)]
    pub(crate) unsafe fn rows_out<const T: usize>(lanes: &[[__m256; T]; 8]) -> [[f32; ROWS]; T] {
        let mut out = [[0f32; ROWS]; T];
        for t in 0..T {
            let s = |x: usize, y: usize| _mm256_add_ps(lanes[x][t], lanes[y][t]);
            let v = _mm256_add_ps(
                _mm256_add_ps(s(0, 4), s(2, 6)),
                _mm256_add_ps(s(1, 5), s(3, 7)),
            );
            _mm256_storeu_ps(out[t].as_mut_ptr(), v);
        }
        out
    }
}

/// The public tiles of a path, one per format, over its `tile`.
#[cfg(target_arch = "x86_64")]
macro_rules! tiles {
    ($name:ident, $format:expr) => {
        // SAFETY (callers): the CPU has the path's features (AVX2, FMA and F16C; the VNNI
        // ones compiled in for `vnni`); `w` holds `nb` repacked blocks, `a` `T` rows of `nb`
        // blocks `stride` apart.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(crate) unsafe fn $name<const T: usize>(
            w: &[u8],
            nb: usize,
            a: &[BlockQ8_0s],
            stride: usize,
        ) -> [[f32; ROWS]; T] {
            tile::<T>($format, w, nb, a, stride)
        }
    };
}

#[cfg(target_arch = "x86_64")]
// Where the build has VNNI the `vnni` tiles run instead (these stay for the test).
#[cfg_attr(vnni_tiles, allow(dead_code))]
pub(crate) mod avx2 {
    use super::super::act::BlockQ8_0s;
    use super::super::dot::avx2::dot_us8;
    use super::simd::{bcast4, lane_bits, rows_out};
    use super::{Format, HIGH_BITS, ROWS, VALUES};
    use std::arch::x86_64::*;

    /// The signed weights of vectors `g` and `g + 4` of the block at `p`.
    // SAFETY (callers): `p` points to a whole repacked block of `format` and the CPU has AVX2.
    #[inline(always)]
    unsafe fn vectors(format: Format, p: *const u8, g: usize) -> [__m256i; 2] {
        let at = |v: usize| _mm256_loadu_si256(p.add(VALUES + 32 * v) as *const __m256i);
        let low = _mm256_set1_epi8(0x0F);
        match format {
            Format::Q8_0 => [at(g), at(g + 4)],
            Format::Q4_0 => {
                let v = at(g);
                let eight = _mm256_set1_epi8(8);
                [
                    _mm256_sub_epi8(_mm256_and_si256(v, low), eight),
                    _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(v, 4), low), eight),
                ]
            }
            Format::Q5_0 => {
                let v = at(g);
                // Lane 4r + e reads byte e of the broadcast; its bit is r.
                let lane_bits = lane_bits();
                // A clear high bit means value - 16 < 0: OR in 0xF0 there (two's complement).
                let high = |c: usize| {
                    let set = _mm256_and_si256(bcast4(p.add(HIGH_BITS + 4 * c)), lane_bits);
                    let clear = _mm256_cmpeq_epi8(set, _mm256_setzero_si256());
                    _mm256_and_si256(clear, _mm256_set1_epi8(0xF0u8 as i8))
                };
                [
                    _mm256_or_si256(_mm256_and_si256(v, low), high(g)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), low), high(g + 4)),
                ]
            }
        }
    }

    /// `T` activation rows (`a[t * stride..]`, `nb` blocks each) against one repacked group
    /// of eight rows (`w`, `nb` blocks): `out[t][r]` for row `r`.
    // SAFETY (callers): the CPU has AVX2, FMA and F16C (asserted by the kernel choice).
    #[inline(always)]
    unsafe fn tile<const T: usize>(
        format: Format,
        w: &[u8],
        nb: usize,
        a: &[BlockQ8_0s],
        stride: usize,
    ) -> [[f32; ROWS]; T] {
        let bytes = format.block_bytes();
        assert!(w.len() >= nb * bytes && a.len() >= (T - 1) * stride + nb);
        let mut acc = [[_mm256_setzero_ps(); T]; 8];
        for i in 0..nb {
            let p = w.as_ptr().add(i * bytes);
            let d = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
            let y: [&BlockQ8_0s; T] = std::array::from_fn(|t| &a[t * stride + i]);
            // `d_w * d_x` per row: the one-row kernel's scalar product, lane by lane.
            let dy: [__m256; T] = std::array::from_fn(|t| _mm256_mul_ps(d, _mm256_set1_ps(y[t].d)));
            for g in 0..4 {
                for (c, wv) in [g, g + 4].into_iter().zip(vectors(format, p, g)) {
                    let aw = _mm256_sign_epi8(wv, wv);
                    for t in 0..T {
                        let yv = bcast4(y[t].qs.as_ptr().add(4 * c) as *const u8);
                        let q = _mm256_cvtepi32_ps(dot_us8(aw, _mm256_sign_epi8(yv, wv)));
                        acc[c][t] = _mm256_fmadd_ps(dy[t], q, acc[c][t]);
                    }
                }
            }
        }
        rows_out(&acc)
    }

    tiles!(q8_0, Format::Q8_0);
    tiles!(q4_0, Format::Q4_0);
    tiles!(q5_0, Format::Q5_0);
}

/// The tiles with AVX-512 VNNI (plus BW and VL, for byte masks on 256-bit vectors): the
/// same products and the same sums as `avx2`, with fewer instructions. `vpdpbusd`
/// multiplies unsigned by signed bytes; instead of moving each weight's sign onto every
/// token's activations (`vpsignb` per lane and token), the tile feeds it the weights
/// shifted to unsigned, `w + 128`, and starts every lane from `-128 * sum(x)` of its four
/// activations (`BlockQ8_0s::neg_sums`, computed once per activation block). The lane's
/// integer is then exactly `sum(w * x)` (VNNI does not saturate), converted and accumulated
/// as before, so every output is still the one-row kernel's bit for bit. Four tokens run
/// in two passes over a group's blocks (which stay in L1), each with half the lanes, so
/// that the 16 accumulators of a pass stay in registers. CPUs with AVX-VNNI but no
/// AVX-512 (Intel's laptop and desktop cores since Alder Lake) run the same tiles with the
/// VEX `vpdpbusd` and Q5_0's high bits added with AVX2 compares.
#[cfg(vnni_tiles)]
pub(crate) mod vnni {
    use super::super::act::BlockQ8_0s;
    use super::simd::{bcast4, lane_bits, rows_out};
    use super::{Format, HIGH_BITS, ROWS, VALUES};
    use std::arch::x86_64::*;

    /// `acc + ` the sums of four adjacent products of unsigned `u` and signed `s` bytes.
    #[inline(always)]
    unsafe fn dpbusd(acc: __m256i, u: __m256i, s: __m256i) -> __m256i {
        #[cfg(all(target_feature = "avx512vnni", target_feature = "avx512vl"))]
        {
            _mm256_dpbusd_epi32(acc, u, s)
        }
        #[cfg(not(all(target_feature = "avx512vnni", target_feature = "avx512vl")))]
        {
            _mm256_dpbusd_avx_epi32(acc, u, s)
        }
    }

    /// Vectors `g` and `g + 4` of the block at `p` as unsigned bytes `w + 128`.
    // SAFETY (callers): `p` points to a whole repacked block of `format`.
    #[inline(always)]
    unsafe fn unsigned(format: Format, p: *const u8, g: usize) -> [__m256i; 2] {
        let at = |v: usize| _mm256_loadu_si256(p.add(VALUES + 32 * v) as *const __m256i);
        let low = _mm256_set1_epi8(0x0F);
        match format {
            Format::Q8_0 => {
                let flip = _mm256_set1_epi8(-128);
                [
                    _mm256_xor_si256(at(g), flip),
                    _mm256_xor_si256(at(g + 4), flip),
                ]
            }
            Format::Q4_0 => {
                // w = nibble - 8, so w + 128 = nibble + 0x78.
                let v = at(g);
                let off = _mm256_set1_epi8(0x78);
                [
                    _mm256_add_epi8(_mm256_and_si256(v, low), off),
                    _mm256_add_epi8(_mm256_and_si256(_mm256_srli_epi16(v, 4), low), off),
                ]
            }
            Format::Q5_0 => {
                // w = (nibble | high << 4) - 16, so w + 128 = (nibble | 0x70), plus 16 where
                // the high bit is set. Lane 4r + e reads byte e of the broadcast; its bit is r.
                let v = at(g);
                let lane_bits = lane_bits();
                let (fill, sixteen) = (_mm256_set1_epi8(0x70), _mm256_set1_epi8(16));
                let one = |nibbles: __m256i, c: usize| {
                    let bits = bcast4(p.add(HIGH_BITS + 4 * c));
                    #[cfg(all(target_feature = "avx512vl", target_feature = "avx512bw"))]
                    {
                        // (A & B) | C: 0xF0 & 0xCC | 0xAA.
                        let base = _mm256_ternarylogic_epi32::<0xEA>(nibbles, low, fill);
                        let set = _mm256_test_epi8_mask(bits, lane_bits);
                        _mm256_mask_add_epi8(base, set, base, sixteen)
                    }
                    #[cfg(not(all(target_feature = "avx512vl", target_feature = "avx512bw")))]
                    {
                        let base = _mm256_or_si256(_mm256_and_si256(nibbles, low), fill);
                        let set = _mm256_cmpeq_epi8(_mm256_and_si256(bits, lane_bits), lane_bits);
                        _mm256_add_epi8(base, _mm256_and_si256(set, sixteen))
                    }
                };
                [one(v, g), one(_mm256_srli_epi16(v, 4), g + 4)]
            }
        }
    }

    /// Vectors `g0..g0 + G` of every block (lanes `g` and `g + 4` each) for `T` tokens:
    /// `acc[2h][t]` is lane `g0 + h`, `acc[2h + 1][t]` lane `g0 + h + 4`.
    // SAFETY (callers): as `tile`.
    #[inline(always)]
    unsafe fn pass<const T: usize, const G: usize, const L: usize>(
        format: Format,
        w: &[u8],
        nb: usize,
        a: &[BlockQ8_0s],
        stride: usize,
        g0: usize,
    ) -> [[__m256; T]; L] {
        let bytes = format.block_bytes();
        let mut acc = [[_mm256_setzero_ps(); T]; L];
        for i in 0..nb {
            let p = w.as_ptr().add(i * bytes);
            let d = _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i));
            let y: [&BlockQ8_0s; T] = std::array::from_fn(|t| a.get_unchecked(t * stride + i));
            // `d_w * d_x` per row: the one-row kernel's scalar product, lane by lane.
            let dy: [__m256; T] = std::array::from_fn(|t| _mm256_mul_ps(d, _mm256_set1_ps(y[t].d)));
            for h in 0..G {
                let g = g0 + h;
                let wv = unsigned(format, p, g);
                for (j, c) in [g, g + 4].into_iter().enumerate() {
                    for t in 0..T {
                        let start = _mm256_set1_epi32(*y[t].neg_sums.get_unchecked(c));
                        let x = bcast4(y[t].qs.as_ptr().add(4 * c) as *const u8);
                        let q = _mm256_cvtepi32_ps(dpbusd(start, wv[j], x));
                        acc[2 * h + j][t] = _mm256_fmadd_ps(dy[t], q, acc[2 * h + j][t]);
                    }
                }
            }
        }
        acc
    }

    /// `out[t][r]` for `T` activation rows (`a[t * stride..]`, `nb` blocks each) against
    /// one repacked group of eight rows (`w`, `nb` blocks).
    // SAFETY (callers): the CPU has the module's features (compiled in) and F16C.
    #[inline(always)]
    unsafe fn tile<const T: usize>(
        format: Format,
        w: &[u8],
        nb: usize,
        a: &[BlockQ8_0s],
        stride: usize,
    ) -> [[f32; ROWS]; T] {
        assert!(w.len() >= nb * format.block_bytes() && a.len() >= (T - 1) * stride + nb);
        // lanes[c][t], lane c of every row for token t.
        let mut lanes = [[_mm256_setzero_ps(); T]; 8];
        if T <= 2 {
            let acc = pass::<T, 4, 8>(format, w, nb, a, stride, 0);
            for h in 0..4 {
                lanes[h] = acc[2 * h];
                lanes[h + 4] = acc[2 * h + 1];
            }
        } else {
            for g0 in [0, 2] {
                let acc = pass::<T, 2, 4>(format, w, nb, a, stride, g0);
                for h in 0..2 {
                    lanes[g0 + h] = acc[2 * h];
                    lanes[g0 + h + 4] = acc[2 * h + 1];
                }
            }
        }
        rows_out(&lanes)
    }

    tiles!(q8_0, Format::Q8_0);
    tiles!(q4_0, Format::Q4_0);
    tiles!(q5_0, Format::Q5_0);
}

#[cfg(all(target_arch = "x86_64", not(vnni_tiles)))]
pub(crate) use avx2 as fast;
/// The tiles this build runs: the VNNI ones where it targets AVX-512 VNNI or AVX-VNNI
/// (`vnni_tiles`, set by build.rs), else the AVX2 ones (the same numbers either way).
#[cfg(vnni_tiles)]
pub(crate) use vnni as fast;

#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) mod tests {
    use super::super::act::{quantize_q8_0, quantize_q8_0s, BlockQ8_0, BlockQ8_0s};
    use super::super::dot;
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    type Tile<const T: usize, const R: usize> =
        unsafe fn(&[u8], usize, &[BlockQ8_0s], usize) -> [[f32; R]; T];
    /// A format's one- to four-token tiles over groups of `R` rows.
    pub(crate) type Tiles<const R: usize> =
        (Format, Tile<1, R>, Tile<2, R>, Tile<3, R>, Tile<4, R>);

    /// Every (token, row) of every tile size equals the one-row kernel exactly.
    #[test]
    fn repacked_tiles_equal_the_one_row_kernels_exactly() {
        if !dot::avx2::available() {
            return;
        }
        // A path's tiles for the three formats, one to four tokens.
        macro_rules! path {
            ($m:ident) => {
                [
                    (
                        Format::Q8_0,
                        $m::q8_0::<1>,
                        $m::q8_0::<2>,
                        $m::q8_0::<3>,
                        $m::q8_0::<4>,
                    ),
                    (
                        Format::Q4_0,
                        $m::q4_0::<1>,
                        $m::q4_0::<2>,
                        $m::q4_0::<3>,
                        $m::q4_0::<4>,
                    ),
                    (
                        Format::Q5_0,
                        $m::q5_0::<1>,
                        $m::q5_0::<2>,
                        $m::q5_0::<3>,
                        $m::q5_0::<4>,
                    ),
                ]
            };
        }
        let avx2: [Tiles<8>; 3] = path!(avx2);
        check(&avx2, 0);
        #[cfg(vnni_tiles)]
        {
            let vnni: [Tiles<8>; 3] = path!(vnni);
            check(&vnni, 0);
        }
    }

    /// Every (token, row) of every tile size over `repack_rows::<R>` equals the one-row
    /// kernel exactly (two groups of `R` rows, five tokens).
    pub(crate) fn check<const R: usize>(tiles: &[Tiles<R>], seed: u32) {
        let (n, k, t) = (2 * R, 320, 5);
        let mut seed = seed;
        let mut v = |len: usize| {
            seed += 1;
            dot::tests::values(len, seed)
        };
        let x = v(t * k);
        let nb = k / QK8_0;
        let mut a = vec![BlockQ8_0::default(); t * nb];
        quantize_q8_0(&x, &mut a);
        let mut a_s = vec![BlockQ8_0s::default(); t * nb];
        quantize_q8_0s(&x, &mut a_s);
        type One = unsafe fn(&[u8], &[BlockQ8_0]) -> f32;
        for &(format, tile1, tile2, tile3, tile4) in tiles {
            let (dtype, one_row): (GgmlDType, One) = match format {
                Format::Q8_0 => (GgmlDType::Q8_0, dot::avx2::q8_0),
                Format::Q4_0 => (GgmlDType::Q4_0, dot::avx2::q4_0),
                Format::Q5_0 => (GgmlDType::Q5_0, dot::avx2::q5_0),
            };
            let wt = Tensor::from_vec(v(n * k), (n, k), &Device::Cpu).unwrap();
            let mut bytes = QTensor::quantize(&wt, dtype)
                .unwrap()
                .data()
                .unwrap()
                .into_owned();
            if format == Format::Q8_0 {
                // The extreme weight ggml's quantizer never writes but a GGUF may hold.
                bytes[2] = 0x80;
            }
            let packed = repack_rows::<R>(format, &bytes, n, k);
            let (gb, rb) = (nb * R * format.row_block_bytes(), bytes.len() / n);
            for g in 0..n / R {
                let w = &packed[g * gb..][..gb];
                // SAFETY: AVX2 checked by the callers (the VNNI tiles are compiled only where
                // the target has it); `w` holds `nb` blocks, `a_s` `t * nb`.
                let got: Vec<[f32; R]> = unsafe {
                    let mut got = tile4(w, nb, &a_s, nb).to_vec();
                    got.extend(tile1(w, nb, &a_s[4 * nb..], nb));
                    got.extend(tile2(w, nb, &a_s[3 * nb..], nb));
                    got.extend(tile3(w, nb, &a_s[2 * nb..], nb));
                    got
                };
                // Token of each result: 0..4 (four), 4 (one), 3, 4 (two), 2, 3, 4 (three).
                let token = [0, 1, 2, 3, 4, 3, 4, 2, 3, 4];
                for r in 0..R {
                    let row = &bytes[(g * R + r) * rb..][..rb];
                    for (res, &tok) in got.iter().zip(&token) {
                        // SAFETY: as above.
                        let want = unsafe { one_row(row, &a[tok * nb..(tok + 1) * nb]) };
                        let got = res[r];
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{format:?} group {g} row {r} token {tok}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
