//! Q8_0, Q4_0 and Q5_0 weights repacked sixteen rows at a time for 512-bit VNNI tiles: the
//! `q8_x8` layout and tiles with one 64-byte vector holding four values of each of sixteen
//! rows. CPUs that run 512-bit operations at the rate of 256-bit ones (AMD Zen 5, Intel's
//! server cores) do twice the products per instruction; the tiles are bound by the
//! `vpdpbusd` + FMA pipes, so that is up to twice the speed where the weights come from
//! cache (prefill, speculative verification).
//!
//! Exactness: lane `r` of accumulator `c` is row `r`'s lane `c` of ggml's one-row kernel,
//! updated by the same operations as in `q8_x8` (which see), and the final tree is the
//! same: every output equals the one-row kernel's bit for bit.
//! Input: a `[n, k]` weight, `n % 16 == 0`; Q8_0 activation rows with their lane sums.

use super::q8_x8::Format;

/// Rows repacked together: the lanes of one 512-bit f32 vector.
pub(crate) const ROWS: usize = 16;

/// Bytes of one repacked block (32 columns of sixteen rows): the same as sixteen blocks.
pub(crate) fn block_bytes(format: Format) -> usize {
    2 * format.block_bytes()
}

/// Offsets in a repacked block: `d[16]` f16 first, then the values.
const VALUES: usize = 32;
/// Q5_0: after the four nibble vectors, one u64 of high bits per vector `c`.
const HIGH_BITS: usize = VALUES + 4 * 64;

/// Repacks `[n, k]` blocks (`n % 16 == 0`, `k % 32 == 0`): `q8_x8::repack_rows::<16>`.
/// Per block `d[16]` f16, then vector `c` (or nibble vector `g`) at `32 + 64c` with row
/// `r`'s four bytes at `4r`; Q5_0's high bits of vector `c` at `288 + 8c`, one quadword
/// for a 64-bit broadcast: lane byte `4r + e` tests bit `r / 2` of byte `4(r % 2) + e`.
pub(crate) fn repack(format: Format, w: &[u8], n: usize, k: usize) -> Vec<u8> {
    super::q8_x8::repack_rows::<ROWS>(format, w, n, k)
}

/// The tiles: `q8_x8::vnni`'s operations on 512-bit vectors. Per lane and token one
/// `vpdpbusd` (from `-128 * sum(x)`, on the weights shifted to unsigned), one convert, one
/// FMA, now for sixteen rows.
#[cfg(vnni512_tiles)]
pub(crate) mod vnni512 {
    use super::super::act::BlockQ8_0s;
    use super::{Format, HIGH_BITS, ROWS, VALUES};
    use std::arch::x86_64::*;

    /// Vectors `g` and `g + 4` of the block at `p` as unsigned bytes `w + 128`.
    // SAFETY (callers): `p` points to a whole repacked block of `format`.
    #[inline(always)]
    unsafe fn unsigned(format: Format, p: *const u8, g: usize) -> [__m512i; 2] {
        let at = |v: usize| _mm512_loadu_si512(p.add(VALUES + 64 * v) as *const _);
        let low = _mm512_set1_epi8(0x0F);
        match format {
            Format::Q8_0 => {
                let flip = _mm512_set1_epi8(-128);
                [
                    _mm512_xor_si512(at(g), flip),
                    _mm512_xor_si512(at(g + 4), flip),
                ]
            }
            Format::Q4_0 => {
                // w = nibble - 8, so w + 128 = nibble + 0x78.
                let v = at(g);
                let off = _mm512_set1_epi8(0x78);
                [
                    _mm512_add_epi8(_mm512_and_si512(v, low), off),
                    _mm512_add_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), low), off),
                ]
            }
            Format::Q5_0 => {
                // w = (nibble | high << 4) - 16, so w + 128 = (nibble | 0x70), plus 16 where
                // the high bit is set. Lane byte j = 4r + e tests bit r / 2 = j / 8 of byte
                // j % 8 of the broadcast quadword (see `repack`).
                let v = at(g);
                let lane_bits = _mm512_set_epi64(
                    0x8080808080808080u64 as i64,
                    0x4040404040404040,
                    0x2020202020202020,
                    0x1010101010101010,
                    0x0808080808080808,
                    0x0404040404040404,
                    0x0202020202020202,
                    0x0101010101010101,
                );
                let (fill, sixteen) = (_mm512_set1_epi8(0x70), _mm512_set1_epi8(16));
                let one = |nibbles: __m512i, c: usize| {
                    let q = std::ptr::read_unaligned(p.add(HIGH_BITS + 8 * c) as *const i64);
                    // (A & B) | C: 0xF0 & 0xCC | 0xAA.
                    let base = _mm512_ternarylogic_epi32::<0xEA>(nibbles, low, fill);
                    let set = _mm512_test_epi8_mask(_mm512_set1_epi64(q), lane_bits);
                    _mm512_mask_add_epi8(base, set, base, sixteen)
                };
                [one(v, g), one(_mm512_srli_epi16(v, 4), g + 4)]
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
    ) -> [[__m512; T]; L] {
        let bytes = super::block_bytes(format);
        let mut acc = [[_mm512_setzero_ps(); T]; L];
        for i in 0..nb {
            let p = w.as_ptr().add(i * bytes);
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i));
            let y: [&BlockQ8_0s; T] = std::array::from_fn(|t| a.get_unchecked(t * stride + i));
            // `d_w * d_x` per row: the one-row kernel's scalar product, lane by lane.
            let dy: [__m512; T] = std::array::from_fn(|t| _mm512_mul_ps(d, _mm512_set1_ps(y[t].d)));
            for h in 0..G {
                let g = g0 + h;
                let wv = unsigned(format, p, g);
                for (j, c) in [g, g + 4].into_iter().enumerate() {
                    for t in 0..T {
                        let start = _mm512_set1_epi32(*y[t].neg_sums.get_unchecked(c));
                        let x = std::ptr::read_unaligned(y[t].qs.as_ptr().add(4 * c) as *const i32);
                        let q = _mm512_dpbusd_epi32(start, wv[j], _mm512_set1_epi32(x));
                        let q = _mm512_cvtepi32_ps(q);
                        acc[2 * h + j][t] = _mm512_fmadd_ps(dy[t], q, acc[2 * h + j][t]);
                    }
                }
            }
        }
        acc
    }

    /// `out[t][r]` for `T` activation rows (`a[t * stride..]`, `nb` blocks each) against
    /// one repacked group of sixteen rows (`w`, `nb` blocks).
    // SAFETY (callers): the CPU has the module's features (compiled in).
    #[inline(always)]
    unsafe fn tile<const T: usize>(
        format: Format,
        w: &[u8],
        nb: usize,
        a: &[BlockQ8_0s],
        stride: usize,
    ) -> [[f32; ROWS]; T] {
        assert!(w.len() >= nb * super::block_bytes(format) && a.len() >= (T - 1) * stride + nb);
        // lanes[c][t], lane c of every row for token t.
        let mut lanes = [[_mm512_setzero_ps(); T]; 8];
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

    /// `out[t][r]` from the eight lane accumulators of every row (`lanes[c][t]`), added in
    /// `hsum_f32`'s tree: ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
    #[inline(always)]
    pub(crate) unsafe fn rows_out<const T: usize>(lanes: &[[__m512; T]; 8]) -> [[f32; ROWS]; T] {
        let mut out = [[0f32; ROWS]; T];
        for t in 0..T {
            let s = |x: usize, y: usize| _mm512_add_ps(lanes[x][t], lanes[y][t]);
            let v = _mm512_add_ps(
                _mm512_add_ps(s(0, 4), s(2, 6)),
                _mm512_add_ps(s(1, 5), s(3, 7)),
            );
            _mm512_storeu_ps(out[t].as_mut_ptr(), v);
        }
        out
    }

    macro_rules! tiles {
        ($name:ident, $format:expr) => {
            // SAFETY (callers): the build targets the module's features (`vnni512_tiles`);
            // `w` holds `nb` repacked blocks, `a` `T` rows of `nb` blocks `stride` apart.
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

    tiles!(q8_0, Format::Q8_0);
    tiles!(q4_0, Format::Q4_0);
    tiles!(q5_0, Format::Q5_0);
}

#[cfg(test)]
mod tests {
    use super::super::q8_x8::tests::{check, Tiles};
    use super::vnni512::{q4_0, q5_0, q8_0};
    use super::Format;

    /// Every (token, row) of every tile size equals the one-row kernel exactly.
    #[test]
    fn sixteen_row_tiles_equal_the_one_row_kernels_exactly() {
        let tiles: [Tiles<16>; 3] = [
            (Format::Q8_0, q8_0::<1>, q8_0::<2>, q8_0::<3>, q8_0::<4>),
            (Format::Q4_0, q4_0::<1>, q4_0::<2>, q4_0::<3>, q4_0::<4>),
            (Format::Q5_0, q5_0::<1>, q5_0::<2>, q5_0::<3>, q5_0::<4>),
        ];
        check(&tiles, 100);
    }
}
