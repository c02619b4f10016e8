//! The normalizations a block may use: RMSNorm (`layers::RmsNorm`, the llama family) or
//! LayerNorm with weight and bias (StarCoder2). LayerNorm follows ggml's
//! `ggml_compute_forward_norm_f32` then the weight `ggml_mul` and the bias `ggml_add`:
//! the mean summed in f64, the centered squares summed 8 lanes at a time (ggml's AVX2
//! `ggml_vec_cvar_f32`) and added in f64, then `x * (1/sqrt(var + eps))`, `* w`, `+ b` in
//! f32. Input and output: f32 tensors `[.., n]`.

use super::layers::{Loader, RmsNorm};
use super::ModelError;
use candle_core::Tensor;

pub(crate) struct LayerNorm {
    w: Vec<f32>,
    b: Vec<f32>,
    eps: f32,
}

/// The norm in front of attention, the FFN or the output.
pub(crate) enum Norm {
    Rms(RmsNorm),
    Layer(LayerNorm),
}

impl Norm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        match self {
            Norm::Rms(n) => n.forward(x),
            Norm::Layer(n) => n.forward(x),
        }
    }
}

/// Which norm an architecture uses, and its epsilon.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NormKind {
    Rms(f64),
    Layer(f64),
}

impl NormKind {
    /// `PREFIX.weight` (and `PREFIX.bias` for LayerNorm).
    pub fn load(self, ld: &mut Loader<'_>, prefix: &str) -> Result<Norm, ModelError> {
        Ok(match self {
            NormKind::Rms(eps) => Norm::Rms(ld.rms_norm(&format!("{prefix}.weight"), eps)?),
            NormKind::Layer(eps) => Norm::Layer(LayerNorm {
                w: host(&ld.f32(&format!("{prefix}.weight"))?)?,
                b: host(&ld.f32(&format!("{prefix}.bias"))?)?,
                eps: eps as f32,
            }),
        })
    }
}

fn host(t: &Tensor) -> Result<Vec<f32>, ModelError> {
    Ok(t.flatten_all()?.to_vec1()?)
}

impl LayerNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let data = x.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; data.len()];
        for (o, row) in out.chunks_mut(self.w.len()).zip(data.chunks(self.w.len())) {
            layer_norm(row, &self.w, &self.b, self.eps, o);
        }
        Ok(Tensor::from_vec(out, x.shape(), x.device())?)
    }
}

/// One row, in ggml's order (see the module comment).
pub(crate) fn layer_norm(x: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let n = x.len();
    let sum: f64 = x.iter().map(|&v| f64::from(v)).sum();
    let mean = (sum as f32) / n as f32;
    let mut var = 0f64;
    let mut chunks = x.chunks_exact(8);
    let mut i = 0;
    for c in &mut chunks {
        let mut sq = [0f32; 8];
        for (l, &v) in c.iter().enumerate() {
            let d = v - mean;
            out[i + l] = d;
            sq[l] = d * d;
        }
        // _mm256 halves, then movehl, then movehdup: ((0+4)+(2+6)) + ((1+5)+(3+7)).
        let t: [f32; 4] = std::array::from_fn(|k| sq[k + 4] + sq[k]);
        var += f64::from((t[0] + t[2]) + (t[1] + t[3]));
        i += 8;
    }
    for &v in chunks.remainder() {
        let d = v - mean;
        out[i] = d;
        var += f64::from(d * d);
        i += 1;
    }
    let variance = (var / n as f64) as f32;
    let scale = 1.0 / (variance + eps).sqrt();
    for ((o, &g), &bias) in out.iter_mut().zip(w).zip(b) {
        *o = (*o * scale) * g + bias;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_centers_scales_and_shifts() {
        let x: Vec<f32> = (0..19).map(|i| i as f32 * 0.5 - 3.0).collect();
        let w = vec![2.0f32; 19];
        let b = vec![1.0f32; 19];
        let mut out = vec![0f32; 19];
        layer_norm(&x, &w, &b, 1e-5, &mut out);
        let mean: f32 = out.iter().map(|v| (v - 1.0) / 2.0).sum::<f32>() / 19.0;
        let var: f32 = out.iter().map(|v| ((v - 1.0) / 2.0).powi(2)).sum::<f32>() / 19.0;
        assert!(mean.abs() < 1e-5, "{mean}");
        assert!((var - 1.0).abs() < 1e-3, "{var}");
    }
}
