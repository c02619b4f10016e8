//! The building blocks every architecture file assembles: quantized linear layers (optional
//! bias, requantize-at-load), RMSNorm, rotary embeddings (NeoX and normal), GQA attention
//! over a `KvCache`, the SwiGLU MLP and the quantized embedding lookup.
//! Input: GGUF tensors through `Loader`. Output: candle tensors. No architecture-specific
//! names or metadata keys live here; no tokenizer, engine or server types.

use super::cpu::CpuQMatMul;
use super::ggml_ops::{self, AttnShape};
use super::kv_cache::KvCache;
use super::requant;
use super::rope_scaling::{self, RopeFreqs};
use super::trace::record;
use super::ModelError;
use crate::gguf::Gguf;
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{DType, Device, Module, Tensor};
use std::borrow::Cow;
use std::sync::Arc;

/// How weights are prepared at load. `requantize_to_q8_0` lists stored types converted to
/// Q8_0 (Q4_0 and Q5_0 convert losslessly, `requant.rs`; others are rounded again, which
/// moved SmolLM2's logprobs by up to 0.3 nats). Empty by default: with wick's own CPU
/// kernels, keeping Q5_0 as stored measured faster decode (47.6 vs 45.0 tok/s, 0.5B, 2
/// threads, best of 3) and 100 MiB less RSS than converting it; only prefill was a little
/// faster with Q8_0 (125 vs 117 tok/s).
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub requantize_to_q8_0: Vec<GgmlDType>,
    /// Use wick's own CPU matmul kernels (`model::cpu`) for the formats they cover; off
    /// means candle's quantized matmul everywhere (kept for comparison in benchmarks).
    pub cpu_kernels: bool,
    /// How a GPU multiplies a batch of rows (prefill) by a quantized weight.
    pub gpu_matmul: GpuMatmul,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            requantize_to_q8_0: vec![],
            cpu_kernels: true,
            gpu_matmul: GpuMatmul::default(),
        }
    }
}

/// The GPU route for a quantized matmul with more rows than the matrix-vector kernels take
/// (`GPU_VEC_MAX_ROWS`); decode always takes the matrix-vector kernels. Weights stay
/// quantized on the device either way, and nothing goes through the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuMatmul {
    /// candle's quantized kernels: llama.cpp's MMQ (activations quantized to Q8_1 on the
    /// device, int8 tensor-core tiles). The default because llama.cpp made MMQ its default
    /// over cuBLAS for quantized weights on int8-MMA GPUs (Turing and later) after
    /// measuring it faster for prompt processing, and it needs no f16 copy of the weight.
    #[default]
    Quantized,
    /// Dequantize the weight to f16 on the device, then one cuBLAS f16 GEMM (llama.cpp's
    /// older route, and its choice for very large batches on some GPUs).
    DequantizeF16,
}

/// candle's CUDA quantized matmul uses its matrix-vector kernels (MMVQ) up to this many rows.
const GPU_VEC_MAX_ROWS: usize = 8;

/// Reads tensors by name from a GGUF onto a device, applying `LoadOptions`.
pub(crate) struct Loader<'a> {
    pub gguf: &'a mut Gguf,
    pub device: &'a Device,
    pub options: &'a LoadOptions,
}

/// Whether a linear layer's bias must be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bias {
    Required,
    IfPresent,
}

impl Loader<'_> {
    pub fn has(&self, name: &str) -> bool {
        self.gguf.has_tensor(name)
    }

    /// A tensor as stored (no requantization): for embedding tables.
    pub fn qtensor(&mut self, name: &str) -> Result<Arc<QTensor>, ModelError> {
        Ok(Arc::new(self.gguf.tensor(name, self.device)?))
    }

    /// A dense f32 tensor (norm weights, biases).
    pub fn f32(&mut self, name: &str) -> Result<Tensor, ModelError> {
        let t = self.gguf.tensor(name, self.device)?;
        Ok(t.dequantize(self.device)?.to_dtype(DType::F32)?)
    }

    /// The weight as a matmul operand, requantized when the options ask for it.
    pub fn matmul_weight(&mut self, name: &str) -> Result<QMatMul, ModelError> {
        let t = self.qtensor(name)?;
        self.to_matmul(t)
    }

    pub fn to_matmul(&self, t: Arc<QTensor>) -> Result<QMatMul, ModelError> {
        let dtype = t.dtype();
        if !self.options.requantize_to_q8_0.contains(&dtype) {
            return Ok(QMatMul::from_arc(t)?);
        }
        if let Some(bytes) = requant::convert_to_q8_0(dtype, &t.data()?) {
            let storage = QStorage::from_data(Cow::Owned(bytes), self.device, GgmlDType::Q8_0)?;
            return Ok(QMatMul::from_qtensor(QTensor::new(
                storage,
                t.shape().clone(),
            )?)?);
        }
        let dense = t.dequantize(&Device::Cpu)?;
        let q = QTensor::quantize_onto(&dense, GgmlDType::Q8_0, self.device)?;
        Ok(QMatMul::from_qtensor(q)?)
    }

    pub fn linear(&mut self, prefix: &str, bias: Bias) -> Result<QLinear, ModelError> {
        let weight_name = format!("{prefix}.weight");
        let stored = self
            .gguf
            .content
            .tensor_infos
            .get(&weight_name)
            .map(|t| t.ggml_dtype);
        let w = self.matmul_weight(&weight_name)?;
        let bias_name = format!("{prefix}.bias");
        let b = if bias == Bias::Required || self.has(&bias_name) {
            Some(self.f32(&bias_name)?)
        } else {
            None
        };
        let linear = QLinear::new(w, b, self.options);
        Ok(match stored {
            Some(dtype) => linear.stored_as(dtype),
            None => linear,
        })
    }

    pub fn rms_norm(&mut self, name: &str, eps: f64) -> Result<RmsNorm, ModelError> {
        let w = self.f32(name)?;
        Ok(RmsNorm {
            // Only the CPU path reads a host copy.
            w_host: if w.device().is_cpu() {
                w.flatten_all()?.to_vec1()?
            } else {
                Vec::new()
            },
            w,
            eps: eps as f32,
        })
    }
}

/// From this many input rows on, `QLinear` dequantizes the weight and runs a dense GEMM
/// instead of the quantized matvec path (measured on Qwen2.5-Coder-0.5B, 128-token prompt:
/// prefill 1.5x faster on 1 thread, 2x on 2; decode is one row and never takes it).
const DENSE_MIN_ROWS: usize = 16;

/// `y = x W^T (+ b)` with a quantized `W`.
pub(crate) struct QLinear {
    /// The loaded weight; `None` once `cpu` holds its own repacked copy (memory is not
    /// doubled), which happens only on the CPU, where `cpu` serves every call.
    w: Option<QMatMul>,
    /// The weight was stored as F16: ggml rounds the input to f16 for its dot products
    /// (`vec_dot_type`), and candle's dense path would not.
    f16_input: bool,
    /// Our own kernel for `w` when it is on the CPU in a format `model::cpu` covers.
    cpu: Option<CpuQMatMul>,
    b: Option<Tensor>,
    gpu_matmul: GpuMatmul,
}

impl QLinear {
    pub fn new(w: QMatMul, b: Option<Tensor>, options: &LoadOptions) -> Self {
        let cpu = match &w {
            QMatMul::QTensor(q) if options.cpu_kernels => CpuQMatMul::new(q.clone()),
            _ => None,
        };
        let w = match &cpu {
            Some(c) if c.owns_weight() => None,
            _ => Some(w),
        };
        QLinear {
            w,
            cpu,
            b,
            gpu_matmul: options.gpu_matmul,
            f16_input: false,
        }
    }

    /// Records the weight's stored type: an F16 weight rounds its input to f16 as ggml does.
    pub fn stored_as(mut self, dtype: GgmlDType) -> Self {
        self.f16_input = dtype == GgmlDType::F16;
        self
    }

    /// Several layers applied to the same input. On the CPU with our kernels for all of
    /// them, this is one parallel section instead of one per layer (the threads meet at
    /// a barrier once, which matters at one token per step).
    pub fn forward_many<const N: usize>(
        layers: [&QLinear; N],
        x: &Tensor,
    ) -> Result<[Tensor; N], ModelError> {
        let cpu: Option<Vec<&CpuQMatMul>> = layers.iter().map(|l| l.cpu.as_ref()).collect();
        let mut out = Vec::with_capacity(N);
        match cpu {
            Some(mats) if x.device().is_cpu() => {
                for (l, y) in layers.iter().zip(CpuQMatMul::forward_many(&mats, x)?) {
                    out.push(l.add_bias(y)?);
                }
            }
            _ => {
                for l in layers {
                    out.push(l.forward(x)?);
                }
            }
        }
        out.try_into()
            .map_err(|_| ModelError::Candle("fused matmul returned the wrong count".into()))
    }

    fn add_bias(&self, y: Tensor) -> Result<Tensor, ModelError> {
        Ok(match &self.b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let rounded;
        let x = if self.f16_input {
            rounded = round_f16(x)?;
            &rounded
        } else {
            x
        };
        if !x.device().is_cpu() {
            let y = self.forward_gpu(x)?;
            return self.add_bias(y);
        }
        let y = match (&self.cpu, &self.w) {
            (Some(cpu), _) => cpu.forward(x)?,
            // Prefill: candle's quantized matmul redoes a full vec_dot per (token, row) and
            // reuses nothing across tokens; for a batch, dequantizing the weight once and
            // running a dense f32 GEMM is several times faster (see DENSE_MIN_ROWS).
            (_, Some(QMatMul::QTensor(q))) if x.rank() == 2 && x.dim(0)? >= DENSE_MIN_ROWS => {
                match activation_dtype(q.dtype()) {
                    Some(dt) if x.dim(1)? % dt.block_size() == 0 => {
                        // The quantized path (like llama.cpp) rounds the activations to the
                        // weight type's dot-product partner first; round-trip them the same
                        // way so the dense products equal it up to f32 summation order
                        // (measured: skipping this moves logprobs by 0.5 nats).
                        let xq = QTensor::quantize(&x.contiguous()?, dt)?.dequantize(x.device())?;
                        xq.matmul(&q.dequantize(x.device())?.t()?)?
                    }
                    _ => self.loaded()?.forward(x)?,
                }
            }
            (None, _) => self.loaded()?.forward(x)?,
        };
        self.add_bias(y)
    }

    /// On a GPU the weight and the activations stay on the device: candle's quantized
    /// kernels, or for prefill with `GpuMatmul::DequantizeF16` an f16 GEMM. (The CPU's dense
    /// prefill route above would quantize the activations through the host.)
    fn forward_gpu(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?.max(1);
        Ok(match self.gpu_matmul {
            GpuMatmul::DequantizeF16 if rows > GPU_VEC_MAX_ROWS => {
                self.loaded()?.forward_via_f16(x)?
            }
            _ => self.loaded()?.forward(x)?,
        })
    }

    /// The loaded weight, present whenever our CPU kernel does not serve the call.
    fn loaded(&self) -> Result<&QMatMul, ModelError> {
        self.w
            .as_ref()
            .ok_or_else(|| ModelError::Candle("weight repacked for the CPU kernels only".into()))
    }
}

/// The type ggml quantizes activations to before a dot product with weights of `w`
/// (`vec_dot_type`), for the types whose round trip was checked against llama.cpp's
/// reference; `None` keeps the quantized matvec path (Q4_1/Q5_1 with Q8_1 drifted 0.5 nats).
fn activation_dtype(w: GgmlDType) -> Option<GgmlDType> {
    use GgmlDType::*;
    match w {
        Q4_0 | Q5_0 | Q8_0 => Some(Q8_0),
        Q2K | Q3K | Q4K | Q5K | Q6K | Q8K => Some(Q8K),
        _ => None,
    }
}

pub(crate) struct RmsNorm {
    w: Tensor,
    /// `w` on the host, for the CPU path.
    w_host: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    /// On the CPU, ggml's exact arithmetic (`ggml_ops::rms_norm`); elsewhere candle's.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        if !x.device().is_cpu() {
            return Ok(candle_nn::ops::rms_norm(x, &self.w, self.eps)?);
        }
        let w = &self.w_host;
        let data = x.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; data.len()];
        for (o, row) in out.chunks_mut(w.len()).zip(data.chunks(w.len())) {
            ggml_ops::rms_norm(row, w, self.eps, o);
        }
        Ok(Tensor::from_vec(out, x.shape(), x.device())?)
    }
}

/// How rotary embedding pairs dimensions: NeoX rotates `(i, i + d/2)` (Qwen2, GPT-NeoX);
/// normal rotates `(2i, 2i + 1)` (llama.cpp's LLAMA_ROPE_TYPE_NORM, used by llama GGUFs
/// whose Q/K rows were permuted at conversion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RopeStyle {
    NeoX,
    Normal,
}

/// Precomputed cos/sin for positions `0..max_pos`, computed as ggml does (see
/// `ggml_ops::rope_row`), on the host for the CPU path and as tensors for other devices.
pub(crate) struct Rope {
    cos: Tensor,
    sin: Tensor,
    cos_host: Vec<f32>,
    sin_host: Vec<f32>,
    half: usize,
    style: RopeStyle,
    max_pos: usize,
}

impl Rope {
    pub fn new(
        head_dim: usize,
        base: f64,
        max_pos: usize,
        style: RopeStyle,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let freqs = RopeFreqs::plain(base as f32);
        Self::scaled(head_dim, &freqs, max_pos, style, device)
    }

    /// A table with rope scaling (linear factor, per-pair frequency factors).
    pub fn scaled(
        head_dim: usize,
        freqs: &RopeFreqs,
        max_pos: usize,
        style: RopeStyle,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let half = head_dim / 2;
        let theta_scale = ggml_ops::rope_theta_scale(freqs.base, head_dim);
        let mut cos = vec![0f32; max_pos * half];
        let mut sin = vec![0f32; max_pos * half];
        for (p, (c, s)) in cos.chunks_mut(half).zip(sin.chunks_mut(half)).enumerate() {
            rope_scaling::rope_row(p, theta_scale, freqs, c, s);
        }
        let (cos_t, sin_t) = if device.is_cpu() {
            // The CPU path reads the host tables; keep no second copy.
            (
                Tensor::zeros(1, DType::F32, device)?,
                Tensor::zeros(1, DType::F32, device)?,
            )
        } else {
            (
                Tensor::from_slice(&cos, (max_pos, half), device)?,
                Tensor::from_slice(&sin, (max_pos, half), device)?,
            )
        };
        Ok(Rope {
            cos: cos_t,
            sin: sin_t,
            cos_host: cos,
            sin_host: sin,
            half,
            style,
            max_pos,
        })
    }

    pub fn max_pos(&self) -> usize {
        self.max_pos
    }

    /// Rotates `x` (`[1, heads, t, head_dim]`, contiguous) for positions `pos..pos+t`.
    pub fn apply(&self, x: &Tensor, pos: usize) -> Result<Tensor, ModelError> {
        let t = x.dim(2)?;
        if !x.device().is_cpu() {
            let cos = self.cos.narrow(0, pos, t)?;
            let sin = self.sin.narrow(0, pos, t)?;
            return Ok(match self.style {
                RopeStyle::NeoX => candle_nn::rotary_emb::rope(x, &cos, &sin)?,
                RopeStyle::Normal => candle_nn::rotary_emb::rope_i(x, &cos, &sin)?,
            });
        }
        let half = self.half;
        let mut data = x.flatten_all()?.to_vec1::<f32>()?;
        for (r, row) in data.chunks_mut(2 * half).enumerate() {
            let p = pos + r % t;
            let cos = &self.cos_host[p * half..(p + 1) * half];
            let sin = &self.sin_host[p * half..(p + 1) * half];
            for i in 0..half {
                // NeoX pairs (i, i + d/2); normal pairs (2i, 2i + 1).
                let (a, b) = match self.style {
                    RopeStyle::NeoX => (i, i + half),
                    RopeStyle::Normal => (2 * i, 2 * i + 1),
                };
                (row[a], row[b]) = ggml_ops::rotate(row[a], row[b], cos[i], sin[i]);
            }
        }
        Ok(Tensor::from_vec(data, x.shape(), x.device())?)
    }
}

/// Grouped-query attention: `n_head` query heads share `n_kv_head` K/V heads.
pub(crate) struct Attention {
    pub q: QLinear,
    pub k: QLinear,
    pub v: QLinear,
    pub o: QLinear,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Per-head RMS norms of Q and K before rope (Qwen3, Gemma 3): `[head_dim]` weights.
    pub q_norm: Option<RmsNorm>,
    pub k_norm: Option<RmsNorm>,
    /// Sliding-window layers: a query sees only the last `window` positions, itself
    /// included (llama.cpp's `LLAMA_SWA_TYPE_STANDARD`).
    pub window: Option<usize>,
}

impl Attention {
    /// `x` is `[t, hidden]` for positions `cache.len()..`; returns `[t, hidden]`.
    /// `as_decode`: each row's attention is summed exactly as a one-token decode step at
    /// that position sums it, so speculative verification reproduces plain decoding bit
    /// for bit (the matmul kernels are already row-independent).
    pub fn forward(
        &self,
        x: &Tensor,
        layer: usize,
        rope: &Rope,
        cache: &KvCache,
        mask: Option<&Tensor>,
        as_decode: bool,
    ) -> Result<Tensor, ModelError> {
        let [q, k, v] = QLinear::forward_many([&self.q, &self.k, &self.v], x)?;
        let out = self.attend(q, k, v, layer, rope, cache, mask, as_decode)?;
        self.o.forward(&out)
    }

    /// Several sequences in one batch: rows `lens[..i].sum()..` of `x` (`[sum(lens),
    /// hidden]`) are the `lens[i]` new tokens of the sequence in `caches[i]`, with
    /// `masks[i]` its causal mask where the device needs one. The projections run once for
    /// all rows (each weight is read once per step, not once per sequence); attention runs
    /// per sequence against its own cache.
    pub fn forward_segments(
        &self,
        x: &Tensor,
        layer: usize,
        rope: &Rope,
        caches: &[&mut KvCache],
        lens: &[usize],
        masks: &[Option<Tensor>],
    ) -> Result<Tensor, ModelError> {
        let [q, k, v] = QLinear::forward_many([&self.q, &self.k, &self.v], x)?;
        let mut outs = Vec::with_capacity(caches.len());
        let mut at = 0;
        for ((cache, &n), mask) in caches.iter().zip(lens).zip(masks) {
            let seg = |y: &Tensor| y.narrow(0, at, n);
            outs.push(self.attend(
                seg(&q)?,
                seg(&k)?,
                seg(&v)?,
                layer,
                rope,
                cache,
                mask.as_ref(),
                false,
            )?);
            at += n;
        }
        self.o.forward(&Tensor::cat(&outs, 0)?)
    }

    /// Attention of `t` new tokens (`q`, `k`, `v` projected, `[t, heads * head_dim]`) at
    /// positions `cache.len()..`, before the output projection: `[t, n_head * head_dim]`.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        layer: usize,
        rope: &Rope,
        cache: &KvCache,
        mask: Option<&Tensor>,
        as_decode: bool,
    ) -> Result<Tensor, ModelError> {
        let (t, _) = q.dims2()?;
        let (nh, nkv, hd) = (self.n_head, self.n_kv_head, self.head_dim);
        let pos = cache.len();
        let heads = |y: Tensor, n: usize| -> Result<Tensor, ModelError> {
            Ok(y.reshape((1, t, n, hd))?.transpose(1, 2)?.contiguous()?)
        };
        record(|| format!("Qcur-{layer}"), &q);
        record(|| format!("Kcur-{layer}"), &k);
        record(|| format!("Vcur-{layer}"), &v);
        let q = per_head_norm(self.q_norm.as_ref(), q, nh, hd)?;
        let k = per_head_norm(self.k_norm.as_ref(), k, nkv, hd)?;
        let q = rope.apply(&heads(q, nh)?, pos)?;
        record(|| format!("Qrope-{layer}"), &q);
        let k = rope.apply(&heads(k, nkv)?, pos)?;
        record(|| format!("Krope-{layer}"), &k);
        let v = heads(v, nkv)?;
        let (k_all, v_all) = cache.append(layer, &k.squeeze(0)?, &v.squeeze(0)?)?;
        let total = k_all.dim(1)?;

        // Query heads of one group are consecutive, so [nh, t, hd] is [nkv, g*t, hd]: one
        // batched matmul per K/V head, without repeating K/V.
        // K/V are cached in f16 (half the memory). Q and the probabilities are rounded to
        // f16 too before their matmuls, as llama.cpp does: Qwen2's K bias makes K large,
        // and rounding only one side of the product moves logits measurably.
        if q.device().is_cpu() {
            let shape = AttnShape {
                t,
                pos,
                total,
                n_head: nh,
                n_kv_head: nkv,
                head_dim: hd,
                window: self.window.unwrap_or(usize::MAX),
            };
            let threads = candle_core::utils::get_num_threads();
            let q_host = round_f16(&q)?.flatten_all()?.to_vec1::<f32>()?;
            // Decode rows read the f16 cache in place (no per-step copy of the cache).
            if (t == 1 || as_decode) && super::cpu::decode_attention::supported(hd) {
                let out = cache.with_host_f16(layer, |k, v, stride| {
                    super::cpu::decode_attention::attend(&q_host, k, v, stride, &shape)
                })?;
                if let Some(out) = out {
                    let out = Tensor::from_vec(out, (t, nh * hd), q.device())?;
                    record(|| format!("kqv_out-{layer}"), &out);
                    return Ok(out);
                }
            }
            let out = KV_HOST.with(|buf| -> Result<Vec<f32>, ModelError> {
                let (k_t, v_host) = &mut *buf.borrow_mut();
                cache.host_f32(layer, total, k_t, v_host)?;
                let q = q_host;
                if !as_decode || t == 1 {
                    return Ok(super::cpu::attention::attend(
                        &q, k_t, v_host, &shape, threads,
                    ));
                }
                // One decode-shaped call per row: query row `i` at position `pos + i`
                // sees the keys up to itself (`total` stays the K/V row stride).
                let mut out = Vec::with_capacity(t * nh * hd);
                let mut qi = vec![0f32; nh * hd];
                for i in 0..t {
                    for h in 0..nh {
                        let src = (h * t + i) * hd;
                        qi[h * hd..(h + 1) * hd].copy_from_slice(&q[src..src + hd]);
                    }
                    let row = AttnShape {
                        t: 1,
                        pos: pos + i,
                        ..shape
                    };
                    out.extend(super::cpu::attention::attend(
                        &qi, k_t, v_host, &row, threads,
                    ));
                }
                Ok(out)
            })?;
            let out = Tensor::from_vec(out, (t, nh * hd), q.device())?;
            record(|| format!("kqv_out-{layer}"), &out);
            return Ok(out);
        }
        if self.window.is_some_and(|w| total > w) {
            return Err(ModelError::Candle(
                "sliding-window attention past the window runs on the CPU only".into(),
            ));
        }
        let g = nh / nkv;
        let q = round_f16(&q.reshape((nkv, g * t, hd))?)?;
        let k_all = k_all.to_dtype(DType::F32)?;
        let v_all = v_all.to_dtype(DType::F32)?;
        let mut scores = (q.matmul(&k_all.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        if let Some(mask) = mask {
            scores = scores
                .reshape((nkv, g, t, total))?
                .broadcast_add(mask)?
                .reshape((nkv, g * t, total))?;
        }
        record(|| format!("kq_scaled-{layer}"), &scores);
        let probs = round_f16(&candle_nn::ops::softmax_last_dim(&scores)?)?;
        record(|| format!("kq_soft_max-{layer}"), &probs);
        let out = probs.matmul(&v_all)?; // [nkv, g*t, hd] = [nh, t, hd]
        let out = out
            .reshape((nh, t, hd))?
            .transpose(0, 1)?
            .contiguous()?
            .reshape((t, nh * hd))?;
        record(|| format!("kqv_out-{layer}"), &out);
        Ok(out)
    }
}

thread_local! {
    /// The CPU attention's host copies of one layer's K and V, reused across layers and
    /// steps (the inference worker is one thread).
    static KV_HOST: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// RMS-normalizes each head of `y` (`[t, n * head_dim]`) with a `[head_dim]` weight.
fn per_head_norm(
    norm: Option<&RmsNorm>,
    y: Tensor,
    n: usize,
    hd: usize,
) -> Result<Tensor, ModelError> {
    let Some(norm) = norm else {
        return Ok(y);
    };
    let (t, _) = y.dims2()?;
    Ok(norm
        .forward(&y.reshape((t * n, hd))?)?
        .reshape((t, n * hd))?)
}

pub(crate) fn round_f16(x: &Tensor) -> Result<Tensor, ModelError> {
    Ok(x.to_dtype(DType::F16)?.to_dtype(DType::F32)?)
}

/// The causal mask for `t` new tokens after `offset` cached ones: `[t, offset + t]`,
/// `-inf` where a token would see a later one. `None` for one token (it sees everything).
pub(crate) fn causal_mask(
    t: usize,
    offset: usize,
    device: &Device,
) -> Result<Option<Tensor>, ModelError> {
    if t <= 1 {
        return Ok(None);
    }
    let total = offset + t;
    let data: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > offset + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Ok(Some(Tensor::from_vec(data, (t, total), device)?))
}

/// SwiGLU: `down(silu(gate(x)) * up(x))`.
pub(crate) struct Mlp {
    pub gate: QLinear,
    pub up: QLinear,
    pub down: QLinear,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor, layer: usize) -> Result<Tensor, ModelError> {
        let [g, u] = QLinear::forward_many([&self.gate, &self.up], x)?;
        record(|| format!("ffn_gate-{layer}"), &g);
        record(|| format!("ffn_up-{layer}"), &u);
        let gu = if g.device().is_cpu() {
            crate::model::cpu::swiglu(&g, &u)?
        } else {
            (candle_nn::ops::silu(&g)? * u)?
        };
        record(|| format!("ffn_swiglu-{layer}"), &gu);
        self.down.forward(&gu)
    }
}

/// The token embedding table, kept quantized: a lookup dequantizes only the rows asked
/// for, so there is never an f32 copy of the whole table in memory.
pub(crate) struct Embedding {
    table: Arc<QTensor>,
}

impl Embedding {
    pub fn new(table: Arc<QTensor>) -> Self {
        Embedding { table }
    }

    /// `[t]` ids → `[t, hidden]` f32.
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor, ModelError> {
        let ids = Tensor::new(ids, &self.table.device())?;
        Ok(self.table.embedding(&ids)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causal_mask_hides_only_later_tokens() {
        let m = causal_mask(2, 1, &Device::Cpu).unwrap().unwrap();
        let v: Vec<Vec<f32>> = m.to_vec2().unwrap();
        assert_eq!(v[0], vec![0.0, 0.0, f32::NEG_INFINITY]);
        assert_eq!(v[1], vec![0.0, 0.0, 0.0]);
        assert!(causal_mask(1, 5, &Device::Cpu).unwrap().is_none());
    }

    #[test]
    fn rope_styles_rotate_different_pairs() {
        // head_dim 4, position 1, base 1: the first frequency is 1 rad.
        let x = Tensor::new(&[[[[1f32, 0., 0., 0.]]]], &Device::Cpu).unwrap();
        let neox = Rope::new(4, 1.0, 2, RopeStyle::NeoX, &Device::Cpu).unwrap();
        let normal = Rope::new(4, 1.0, 2, RopeStyle::Normal, &Device::Cpu).unwrap();
        let a: Vec<f32> = neox
            .apply(&x, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = normal
            .apply(&x, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let (c, s) = (1f32.cos(), 1f32.sin());
        assert!((a[0] - c).abs() < 1e-6 && (a[2] - s).abs() < 1e-6 && a[1] == 0.0);
        assert!((b[0] - c).abs() < 1e-6 && (b[1] - s).abs() < 1e-6 && b[2] == 0.0);
    }
}
