//! The kernels of this module behind a small public surface, for benches/cpu_kernels.rs:
//! a quantized matmul over a `QTensor` and the prefill attention with its reference.
//! Not a stable API (re-exported `#[doc(hidden)]` as `wick::model::kernels`).

use super::CpuQMatMul;
use crate::model::ggml_ops::{self, AttnShape};
use candle_core::quantized::QTensor;
use candle_core::Tensor;
use std::sync::Arc;

/// `y = x W^T` with wick's kernels; `None` for a weight they do not cover.
pub struct QuantMatMul(CpuQMatMul);

impl QuantMatMul {
    pub fn new(weight: QTensor) -> Option<Self> {
        CpuQMatMul::new(Arc::new(weight)).map(QuantMatMul)
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.0.forward(x)
    }
}

/// Shapes of a prefill attention call (see `ggml_ops::AttnShape`).
#[derive(Clone, Copy, Debug)]
pub struct AttentionShape {
    pub t: usize,
    pub pos: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
}

impl AttentionShape {
    fn ggml(self) -> AttnShape {
        AttnShape {
            t: self.t,
            pos: self.pos,
            total: self.pos + self.t,
            n_head: self.n_head,
            n_kv_head: self.n_kv_head,
            head_dim: self.head_dim,
            window: usize::MAX,
        }
    }
}

/// wick's attention (`q` `[n_head, t, hd]`, `k_t` `[n_kv, hd, total]`, `v` `[n_kv, total,
/// hd]`), on the kernel pool.
pub fn attention(q: &[f32], k_t: &[f32], v: &[f32], s: AttentionShape) -> Vec<f32> {
    let threads = candle_core::utils::get_num_threads();
    super::attention::attend(q, k_t, v, &s.ggml(), threads)
}

/// The one-query-at-a-time reference it reproduces (`ggml_ops::attend`).
pub fn attention_reference(q: &[f32], k_t: &[f32], v: &[f32], s: AttentionShape) -> Vec<f32> {
    let threads = candle_core::utils::get_num_threads();
    ggml_ops::attend(q, k_t, v, &s.ggml(), threads)
}
