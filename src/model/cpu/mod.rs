//! wick's own CPU kernels for quantized matmuls, `y = x W^T` with `W` in a GGUF block
//! format and `x` f32 rows. The activations are quantized per row exactly as ggml does
//! (Q8_0 for Q4_0/Q5_0/Q8_0 weights, Q8_1 for Q4_1, Q8_K for K-quants) and every output is
//! a sum of exact integer block dot products times the block scales: the numbers llama.cpp
//! computes, the same for one token (decode) and many (prefill). Output rows are split over
//! `pool` (`--threads` threads); each weight row is read once per call and dotted
//! with every token while it is in cache.
//! Input: a weight `QTensor` on the CPU, an f32 tensor `[.., k]`. Output: f32 `[.., n]`.
//! Formats without a kernel here return `None` from `CpuQMatMul::new` and stay on candle's
//! path. Must not depend on anything outside candle's CPU storage and std::arch.

mod act;
pub(crate) mod attention;
pub mod bench;
pub(crate) mod decode_attention;
mod dot;
#[cfg(target_arch = "aarch64")]
mod neon;
mod pool;
#[cfg(target_arch = "x86_64")]
mod q4k_x8;
#[cfg(target_arch = "x86_64")]
mod q6k_x8;
#[cfg(vnni512_tiles)]
mod q8_x16;
#[cfg(target_arch = "x86_64")]
mod q8_x8;
mod swiglu;

use act::{BlockQ8K, BlockQ8_0, BlockQ8_0s, BlockQ8_1, QK8_0, QK_K};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Storage, Tensor};
use std::cell::RefCell;
use std::sync::Arc;
pub(crate) use swiglu::swiglu;

type Dot<A> = unsafe fn(&[u8], &[A]) -> f32;
type Dot4<A> = unsafe fn(&[u8], [&[A]; 4]) -> [f32; 4];
/// Eight activation rows `a[j * stride..]`, `j < 8`.
type Dot8<A> = unsafe fn(&[u8], &[A], usize) -> [f32; 8];

/// A one-row kernel and, where written, four- and eight-row ones (prefill). All give a
/// row the same result bit for bit, so batching never changes the numbers.
#[derive(Clone, Copy)]
struct Kernels<A> {
    one: Dot<A>,
    four: Option<Dot4<A>>,
    eight: Option<Dot8<A>>,
}

/// The kernels for one weight format, by the activation type they dot with.
#[derive(Clone, Copy)]
// The repacked kernels are x86-only so far.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Kernel {
    Q8_0(Kernels<BlockQ8_0>),
    Q8_1(Kernels<BlockQ8_1>),
    Q8K(Kernels<BlockQ8K>),
    /// Weights repacked eight rows at a time (`q8_x8`, `q4k_x8`).
    Q8_0x8(Tiles<BlockQ8_0s, 8>),
    Q8Kx8(Tiles<BlockQ8K, 8>),
    /// Sixteen rows at a time for 512-bit tiles (`q8_x16`, `q4k_x8`, `q6k_x8`).
    #[cfg_attr(not(vnni512_tiles), allow(dead_code))]
    Q8_0x16(Tiles<BlockQ8_0s, 16>),
    #[cfg_attr(not(vnni512_tiles), allow(dead_code))]
    Q8Kx16(Tiles<BlockQ8K, 16>),
}

/// A kernel over `nb` blocks of one repacked group of `R` rows and `T` activation rows
/// `stride` blocks apart: `out[t][r]`.
type Tile<A, const T: usize, const R: usize> =
    unsafe fn(&[u8], usize, &[A], usize) -> [[f32; R]; T];

/// The kernels of a repacked format: one to four tokens at a time (a batch's last one to
/// three tokens, a speculative verification's remainder, take one call).
#[derive(Clone, Copy)]
struct Tiles<A, const R: usize> {
    one: Tile<A, 1, R>,
    two: Tile<A, 2, R>,
    three: Tile<A, 3, R>,
    four: Tile<A, 4, R>,
    /// Bytes of one repacked block of `R` rows.
    block_bytes: usize,
}

impl Kernel {
    fn for_dtype(dtype: GgmlDType) -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        if dot::avx2::available() {
            use dot::avx2;
            let k = |one, four, eight| Kernels {
                one,
                four: Some(four),
                eight: Some(eight),
            };
            return Some(match dtype {
                GgmlDType::Q8_0 => Kernel::Q8_0(k(avx2::q8_0, avx2::q8_0_x4, avx2::q8_0_x8)),
                GgmlDType::Q4_0 => Kernel::Q8_0(k(avx2::q4_0, avx2::q4_0_x4, avx2::q4_0_x8)),
                GgmlDType::Q5_0 => Kernel::Q8_0(k(avx2::q5_0, avx2::q5_0_x4, avx2::q5_0_x8)),
                GgmlDType::Q4_1 => Kernel::Q8_1(Kernels {
                    one: avx2::q4_1,
                    four: Some(avx2::q4_1_x4),
                    eight: Some(avx2::q4_1_x8),
                }),
                GgmlDType::Q4K => Kernel::Q8K(Kernels {
                    one: avx2::q4_k,
                    four: Some(avx2::q4_k_x4),
                    eight: Some(avx2::q4_k_x8),
                }),
                GgmlDType::Q6K => Kernel::Q8K(Kernels {
                    one: avx2::q6_k,
                    four: Some(avx2::q6_k_x4),
                    eight: Some(avx2::q6_k_x8),
                }),
                _ => return None,
            });
        }
        #[cfg(target_arch = "aarch64")]
        if let Some(k) = neon::kernel(dtype) {
            return Some(k);
        }
        fn one<A>(one: Dot<A>) -> Kernels<A> {
            Kernels {
                one,
                four: None,
                eight: None,
            }
        }
        Some(match dtype {
            GgmlDType::Q8_0 => Kernel::Q8_0(one(dot::q8_0_scalar)),
            GgmlDType::Q4_0 => Kernel::Q8_0(one(dot::q4_0_scalar)),
            GgmlDType::Q5_0 => Kernel::Q8_0(one(dot::q5_0_scalar)),
            GgmlDType::Q4_1 => Kernel::Q8_1(one(dot::q4_1_scalar)),
            GgmlDType::Q4K => Kernel::Q8K(one(dot::q4_k_scalar)),
            GgmlDType::Q6K => Kernel::Q8K(one(dot::q6_k_scalar)),
            _ => return None,
        })
    }

    fn block_len(self) -> usize {
        match self {
            Kernel::Q8_0(_) | Kernel::Q8_1(_) | Kernel::Q8_0x8(_) | Kernel::Q8_0x16(_) => QK8_0,
            Kernel::Q8K(_) | Kernel::Q8Kx8(_) | Kernel::Q8Kx16(_) => QK_K,
        }
    }

    /// Output rows one unit of work covers: a repacked group is computed whole.
    fn unit_rows(self) -> usize {
        match self {
            Kernel::Q8_0x8(_) | Kernel::Q8Kx8(_) => 8,
            Kernel::Q8_0x16(_) | Kernel::Q8Kx16(_) => 16,
            _ => 1,
        }
    }
}

/// The weight bytes the kernels read: the GGUF blocks as loaded, or our repacked copy
/// (then the loaded tensor is dropped, so memory does not double).
enum Weights {
    Blocks(Arc<QTensor>),
    Repacked(Vec<u8>),
}

/// A quantized weight `[n, k]` with a kernel of ours.
pub(crate) struct CpuQMatMul {
    weight: Weights,
    kernel: Kernel,
    n: usize,
    k: usize,
}

/// Per-thread activation buffers, reused across calls (no allocation per token).
#[derive(Default)]
struct Scratch {
    q8_0: Vec<BlockQ8_0>,
    q8_0s: Vec<BlockQ8_0s>,
    q8_1: Vec<BlockQ8_1>,
    q8k: Vec<BlockQ8K>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// An output buffer written by several threads at disjoint indices.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every thread writes a disjoint set of rows (see `run_many`), and the buffers
// outlive the parallel section.
unsafe impl Sync for SharedOut {}
// SAFETY: as for `Sync`: the pointer is only written through at disjoint rows.
unsafe impl Send for SharedOut {}

/// One weight of a (possibly fused) call, with everything a worker thread needs.
struct Job<'a> {
    w: &'a [u8],
    kernel: Kernel,
    n: usize,
    per_row: usize,
    out: SharedOut,
}

/// The quantized activations of one call, one buffer per activation type in use.
struct Acts<'a> {
    q8_0: &'a [BlockQ8_0],
    q8_0s: &'a [BlockQ8_0s],
    q8_1: &'a [BlockQ8_1],
    q8k: &'a [BlockQ8K],
}

impl CpuQMatMul {
    /// `None` when the weight is not on the CPU, not 2-D, or in a format without a kernel.
    pub fn new(weight: Arc<QTensor>) -> Option<Self> {
        if !matches!(weight.device(), Device::Cpu) {
            return None;
        }
        let &[n, k] = weight.shape().dims() else {
            return None;
        };
        let kernel = Kernel::for_dtype(weight.dtype())?;
        if k % kernel.block_len() != 0 || k % weight.dtype().block_size() != 0 {
            return None;
        }
        let (kernel, weight) = match repacked(&weight, n, k) {
            Some((tiles, bytes)) => (tiles, Weights::Repacked(bytes)),
            None => (kernel, Weights::Blocks(weight)),
        };
        Some(CpuQMatMul {
            weight,
            kernel,
            n,
            k,
        })
    }

    /// Whether the kernels read their own copy of the weight: the caller may drop the
    /// loaded tensor.
    pub fn owns_weight(&self) -> bool {
        matches!(self.weight, Weights::Repacked(_))
    }

    /// `x` is `[.., k]` (any float dtype); returns `[.., n]` f32.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut out = Self::forward_many(&[self], x)?;
        out.pop()
            .ok_or_else(|| candle_core::Error::Msg("quantized matmul: no output".into()))
    }

    /// Several weights with the same input (Q/K/V, gate/up) in one parallel section: the
    /// activations are quantized once per type and the threads synchronize once.
    pub fn forward_many(mats: &[&CpuQMatMul], x: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let dims = x.dims();
        let Some((&k, lead)) = dims.split_last() else {
            candle_core::bail!("quantized matmul of a scalar");
        };
        if let Some(m) = mats.iter().find(|m| m.k != k) {
            candle_core::bail!("quantized matmul: input has {k} columns, weight {}", m.k);
        }
        let t: usize = lead.iter().product();
        let x = x.to_dtype(DType::F32)?.contiguous()?;
        let mut outs: Vec<Vec<f32>> = mats.iter().map(|m| vec![0f32; t * m.n]).collect();
        {
            let (storage, layout) = x.storage_and_layout();
            let Storage::Cpu(cpu) = &*storage else {
                candle_core::bail!("quantized matmul: input is not on the CPU");
            };
            let xs = &cpu.as_slice::<f32>()?[layout.start_offset()..][..t * k];
            let bytes = mats
                .iter()
                .map(|m| match &m.weight {
                    Weights::Blocks(q) => q.data(),
                    Weights::Repacked(v) => Ok(std::borrow::Cow::Borrowed(v.as_slice())),
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            let jobs: Vec<Job> = mats
                .iter()
                .zip(&bytes)
                .zip(outs.iter_mut())
                .map(|((m, w), out)| Job {
                    w,
                    kernel: m.kernel,
                    n: m.n,
                    per_row: m.k / m.kernel.block_len(),
                    out: SharedOut(out.as_mut_ptr()),
                })
                .collect();
            SCRATCH.with(|s| {
                let s = &mut *s.borrow_mut();
                let uses = |f: fn(&Kernel) -> bool| jobs.iter().any(|j| f(&j.kernel));
                let n8_0 = if uses(|k| matches!(k, Kernel::Q8_0(_))) {
                    quantize_rows(xs, &mut s.q8_0, QK8_0, act::quantize_q8_0)
                } else {
                    0
                };
                let n8_0s = if uses(|k| matches!(k, Kernel::Q8_0x8(_) | Kernel::Q8_0x16(_))) {
                    quantize_rows(xs, &mut s.q8_0s, QK8_0, act::quantize_q8_0s)
                } else {
                    0
                };
                let n8_1 = if uses(|k| matches!(k, Kernel::Q8_1(_))) {
                    quantize_rows(xs, &mut s.q8_1, QK8_0, act::quantize_q8_1)
                } else {
                    0
                };
                let n8k =
                    if uses(|k| matches!(k, Kernel::Q8K(_) | Kernel::Q8Kx8(_) | Kernel::Q8Kx16(_)))
                    {
                        quantize_rows(xs, &mut s.q8k, QK_K, act::quantize_q8_k)
                    } else {
                        0
                    };
                let acts = Acts {
                    q8_0: &s.q8_0[..n8_0],
                    q8_0s: &s.q8_0s[..n8_0s],
                    q8_1: &s.q8_1[..n8_1],
                    q8k: &s.q8k[..n8k],
                };
                run_many(&jobs, &acts, t);
            });
        }
        mats.iter()
            .zip(outs)
            .map(|(m, out)| {
                let mut shape = lead.to_vec();
                shape.push(m.n);
                Tensor::from_vec(out, shape, &Device::Cpu)
            })
            .collect()
    }
}

/// The weight repacked eight rows at a time with its kernels, where the CPU and format
/// have them (AVX2; Q8_0, Q4_0, Q5_0, Q4_K, Q6_K; `n % 8 == 0`). `WICK_CPU_REPACK=0` keeps the
/// loaded layout (for comparisons).
fn repacked(w: &QTensor, n: usize, k: usize) -> Option<(Kernel, Vec<u8>)> {
    if !n.is_multiple_of(8) || std::env::var("WICK_CPU_REPACK").is_ok_and(|v| v == "0") {
        return None;
    }
    #[cfg(target_arch = "x86_64")]
    if dot::avx2::available() {
        use q8_x8::{avx2, fast, Format};
        // A format's tiles: `$one` for one token, `$rest` for two to four.
        macro_rules! tiles {
            ($($one:ident)::+, $($rest:ident)::+, $bytes:expr) => {
                Tiles {
                    one: $($one)::+::<1>,
                    two: $($rest)::+::<2>,
                    three: $($rest)::+::<3>,
                    four: $($rest)::+::<4>,
                    block_bytes: $bytes,
                }
            };
        }
        let q8 = |format: Format, tiles| {
            Some((
                Kernel::Q8_0x8(tiles),
                q8_x8::repack(format, &w.data().ok()?, n, k),
            ))
        };
        let (q8_0, q4_0, q5_0) = (Format::Q8_0, Format::Q4_0, Format::Q5_0);
        // Sixteen rows for the 512-bit tiles where the build has them.
        #[cfg(vnni512_tiles)]
        if n.is_multiple_of(16) && wide_vectors() {
            use q8_x16::vnni512;
            let data = || w.data().ok();
            let q8_16 = |format: Format, tiles| {
                let bytes = q8_x16::repack(format, &data()?, n, k);
                Some((Kernel::Q8_0x16(tiles), bytes))
            };
            let bytes = q8_x16::block_bytes;
            match w.dtype() {
                GgmlDType::Q8_0 => {
                    return q8_16(q8_0, tiles!(vnni512::q8_0, vnni512::q8_0, bytes(q8_0)))
                }
                GgmlDType::Q4_0 => {
                    return q8_16(q4_0, tiles!(vnni512::q4_0, vnni512::q4_0, bytes(q4_0)))
                }
                GgmlDType::Q5_0 => {
                    return q8_16(q5_0, tiles!(vnni512::q5_0, vnni512::q5_0, bytes(q5_0)))
                }
                GgmlDType::Q4K => {
                    use q4k_x8::avx512::tile;
                    let tiles = tiles!(tile, tile, q4k_x8::block_bytes(16));
                    let bytes = q4k_x8::repack_rows::<16>(&data()?, n, k);
                    return Some((Kernel::Q8Kx16(tiles), bytes));
                }
                GgmlDType::Q6K => {
                    use q6k_x8::avx512::tile;
                    let tiles = tiles!(tile, tile, q6k_x8::block_bytes(16));
                    let bytes = q6k_x8::repack_rows::<16>(&data()?, n, k);
                    return Some((Kernel::Q8Kx16(tiles), bytes));
                }
                _ => {}
            }
        }
        return match w.dtype() {
            // Q8_0's one-token tile stays AVX2: decode streams its weights from memory, and
            // the VNNI tile's extra load per lane made it ~10% slower there (no nibbles to
            // unpack, no ALU work to save).
            GgmlDType::Q8_0 => q8(q8_0, tiles!(avx2::q8_0, fast::q8_0, q8_0.block_bytes())),
            GgmlDType::Q4_0 => q8(q4_0, tiles!(fast::q4_0, fast::q4_0, q4_0.block_bytes())),
            GgmlDType::Q5_0 => q8(q5_0, tiles!(fast::q5_0, fast::q5_0, q5_0.block_bytes())),
            GgmlDType::Q4K => {
                let tiles = tiles!(q4k_x8::avx2::tile, q4k_x8::avx2::tile, q4k_x8::BLOCK_BYTES);
                Some((Kernel::Q8Kx8(tiles), q4k_x8::repack(&w.data().ok()?, n, k)))
            }
            GgmlDType::Q6K => {
                let tiles = tiles!(q6k_x8::avx2::tile, q6k_x8::avx2::tile, q6k_x8::BLOCK_BYTES);
                Some((Kernel::Q8Kx8(tiles), q6k_x8::repack(&w.data().ok()?, n, k)))
            }
            _ => None,
        };
    }
    let _ = (w, k);
    None
}

/// Whether the 512-bit kernels (the 16-row tiles, the attention's 512-bit forms) run where
/// the build has them: `WICK_CPU_X16=0` keeps the 256-bit ones (same numbers), for comparisons
/// and for CPUs that split 512-bit operations in two.
#[cfg_attr(not(target_feature = "avx512f"), allow(dead_code))]
pub(crate) fn wide_vectors() -> bool {
    static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WIDE.get_or_init(|| !std::env::var("WICK_CPU_X16").is_ok_and(|v| v == "0"))
}

/// Splits the work units (rows, or repacked row groups) of all jobs over the thread pool
/// as one index space.
fn run_many(jobs: &[Job], acts: &Acts, t: usize) {
    let units = |j: &Job| j.n / j.kernel.unit_rows();
    let total: usize = jobs.iter().map(units).sum();
    let body = |range: std::ops::Range<usize>| {
        let (mut start, mut base) = (range.start, 0);
        for job in jobs {
            let (lo, hi) = (start.max(base), range.end.min(base + units(job)));
            if lo < hi {
                let r = lo - base..hi - base;
                match job.kernel {
                    Kernel::Q8_0(k) => rows(job, k, acts.q8_0, r, t),
                    Kernel::Q8_1(k) => rows(job, k, acts.q8_1, r, t),
                    Kernel::Q8K(k) => rows(job, k, acts.q8k, r, t),
                    Kernel::Q8_0x8(k) => groups(job, k, acts.q8_0s, r, t),
                    Kernel::Q8_0x16(k) => groups(job, k, acts.q8_0s, r, t),
                    Kernel::Q8Kx16(k) => groups(job, k, acts.q8k, r, t),
                    Kernel::Q8Kx8(k) => groups(job, k, acts.q8k, r, t),
                }
                start = hi;
            }
            base += units(job);
        }
    };
    pool::pool().run(total, &body);
}

/// Repacked row groups `range` against all `t` activation rows: tokens in chunks that fit
/// in L2 as in `rows`, four at a time, then the last one to three in one call.
fn groups<A, const ROWS: usize>(
    job: &Job,
    k: Tiles<A, ROWS>,
    acts: &[A],
    range: std::ops::Range<usize>,
    t: usize,
) {
    let nb = job.per_row;
    let group_bytes = nb * k.block_bytes;
    let chunk = (ACT_CHUNK_BYTES / (nb * std::mem::size_of::<A>()).max(1)).max(4) / 4 * 4;
    let put = |i: usize, g: usize, v: &[[f32; ROWS]]| {
        for (j, v) in v.iter().enumerate() {
            // SAFETY: the group's rows belong to this thread only and
            // `(i + v.len()) * n <= t * n`; each write is one token's `ROWS` outputs.
            unsafe {
                let dst = job.out.0.add((i + j) * job.n + g * ROWS);
                std::ptr::copy_nonoverlapping(v.as_ptr(), dst, ROWS)
            }
        }
    };
    let mut t0 = 0;
    while t0 < t {
        let t1 = (t0 + chunk).min(t);
        for g in range.clone() {
            let w = &job.w[g * group_bytes..(g + 1) * group_bytes];
            let mut i = t0;
            while i + 4 <= t1 {
                // SAFETY: the kernels were chosen on a CPU that has their features; `w`
                // holds `nb` blocks and `acts` four rows of `nb` from `i`.
                let v = unsafe { (k.four)(w, nb, &acts[i * nb..], nb) };
                put(i, g, &v);
                i += 4;
            }
            // The last one to three rows in one call.
            let a = &acts[i * nb..];
            match t1 - i {
                // SAFETY: as above, three rows of `nb` in `a`.
                3 => put(i, g, &unsafe { (k.three)(w, nb, a, nb) }),
                // SAFETY: as above, two rows.
                2 => put(i, g, &unsafe { (k.two)(w, nb, a, nb) }),
                // SAFETY: as above, one row.
                1 => put(i, g, &unsafe { (k.one)(w, nb, a, nb) }),
                _ => {}
            }
        }
        t0 = t1;
    }
}

/// Bytes of activations one pass over a thread's weight rows works on: they stay in L2
/// while every weight row of the range is dotted with them (reading all `t` rows per weight
/// row streamed them from L3 or memory once per row).
const ACT_CHUNK_BYTES: usize = 192 * 1024;

/// Rows `range` of one job against all `t` activation rows: the tokens in chunks that fit
/// in L2, each chunk eight (then four) tokens at a time where such kernels exist.
fn rows<A>(job: &Job, k: Kernels<A>, acts: &[A], range: std::ops::Range<usize>, t: usize) {
    let row_bytes = job.w.len() / job.n;
    let pr = job.per_row;
    let act = |i: usize| &acts[i * pr..(i + 1) * pr];
    let chunk = (ACT_CHUNK_BYTES / (pr * std::mem::size_of::<A>()).max(1)).max(8) / 8 * 8;
    let mut t0 = 0;
    while t0 < t {
        let t1 = (t0 + chunk).min(t);
        for r in range.clone() {
            let w = &job.w[r * row_bytes..(r + 1) * row_bytes];
            let mut i = t0;
            // SAFETY (all kernel calls): the kernels were chosen for this weight type on a
            // CPU that supports them, `w` and each activation row hold `pr` blocks. SAFETY
            // (writes): row `r` belongs to this thread only, and `i * n + r < t * n`.
            // SAFETY: see above (writes).
            let put = |i: usize, v: f32| unsafe { *job.out.0.add(i * job.n + r) = v };
            if let Some(eight) = k.eight {
                while i + 8 <= t1 {
                    // SAFETY: see above (kernel call).
                    let v = unsafe { eight(w, &acts[i * pr..(i + 8) * pr], pr) };
                    for (j, v) in v.into_iter().enumerate() {
                        put(i + j, v);
                    }
                    i += 8;
                }
            }
            if let Some(four) = k.four {
                while i + 4 <= t1 {
                    // SAFETY: see above (kernel call).
                    let v = unsafe { four(w, [act(i), act(i + 1), act(i + 2), act(i + 3)]) };
                    for (j, v) in v.into_iter().enumerate() {
                        put(i + j, v);
                    }
                    i += 4;
                }
            }
            while i < t1 {
                // SAFETY: see above (kernel call).
                put(i, unsafe { (k.one)(w, act(i)) });
                i += 1;
            }
        }
        t0 = t1;
    }
}

/// Quantizes all rows into `buf` (grown as needed, never shrunk); returns the block count.
fn quantize_rows<A: Default + Clone>(
    xs: &[f32],
    buf: &mut Vec<A>,
    block: usize,
    quantize: fn(&[f32], &mut [A]),
) -> usize {
    let blocks = xs.len() / block;
    if buf.len() < blocks {
        buf.resize(blocks, A::default());
    }
    quantize(xs, &mut buf[..blocks]);
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(rows: usize, cols: usize, seed: u32) -> Tensor {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(7);
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    /// Every row of a batch gets the same result as that row alone (prefill in one call
    /// or in chunks gives the same logits), and fused calls equal separate ones.
    #[test]
    fn rows_are_independent_of_batching_and_fusion() {
        for dt in [
            GgmlDType::Q4_1,
            GgmlDType::Q5_0,
            GgmlDType::Q8_0,
            GgmlDType::Q6K,
            GgmlDType::Q4K,
        ] {
            let w = Arc::new(QTensor::quantize(&tensor(40, 512, 1), dt).unwrap());
            let w2 = Arc::new(QTensor::quantize(&tensor(24, 512, 2), dt).unwrap());
            let m = CpuQMatMul::new(w).unwrap();
            let m2 = CpuQMatMul::new(w2).unwrap();
            let x = tensor(10, 512, 3);
            let all: Vec<Vec<f32>> = m.forward(&x).unwrap().to_vec2().unwrap();
            for (i, row) in all.iter().enumerate() {
                let one: Vec<Vec<f32>> = m
                    .forward(&x.narrow(0, i, 1).unwrap())
                    .unwrap()
                    .to_vec2()
                    .unwrap();
                assert_eq!(&one[0], row, "{dt:?} row {i}");
            }
            let fused = CpuQMatMul::forward_many(&[&m, &m2], &x).unwrap();
            let sep2: Vec<Vec<f32>> = m2.forward(&x).unwrap().to_vec2().unwrap();
            assert_eq!(
                fused[0].to_vec2::<f32>().unwrap(),
                all,
                "{dt:?} fused first"
            );
            assert_eq!(
                fused[1].to_vec2::<f32>().unwrap(),
                sep2,
                "{dt:?} fused second"
            );
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// Manual: `cargo test --release --lib cpu::speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn kernel_throughput() {
        for dt in [
            GgmlDType::Q5_0,
            GgmlDType::Q8_0,
            GgmlDType::Q6K,
            GgmlDType::Q4K,
        ] {
            let (n, k) = (4864, 1024);
            let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
            let m = CpuQMatMul::new(Arc::new(QTensor::quantize(&w, dt).unwrap())).unwrap();
            // Decode, a 15-row speculative verification, prefill.
            for t in [1usize, 15, 128] {
                let x = Tensor::randn(0f32, 1.0, (t, k), &Device::Cpu).unwrap();
                m.forward(&x).unwrap();
                let reps = if t == 1 { 200 } else { 3000 / t };
                let start = std::time::Instant::now();
                for _ in 0..reps {
                    m.forward(&x).unwrap();
                }
                let s = start.elapsed().as_secs_f64() / reps as f64;
                let gmacs = (n * k * t) as f64 / s / 1e9;
                eprintln!("{dt:?} t={t}: {:.3} ms, {gmacs:.1} GMAC/s", s * 1e3);
            }
        }
    }
}
