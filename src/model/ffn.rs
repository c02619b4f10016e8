//! The feed-forward half of a block, by architecture: SwiGLU (llama, Qwen), GELU-gated
//! (Gemma 3: `down(gelu(gate(x)) * up(x))`), plain GELU (StarCoder2: `down(gelu(up(x)))`,
//! with biases) and mixture-of-experts (`moe.rs`). GELU is ggml's: with `GGML_GELU_FP16`
//! (the CPU backend's default) the input is rounded to f16 and looked up in a table of
//! `0.5x(1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2)))` rounded to f16; |x| >= 10 is cut off.
//! Input: `[t, n_embd]` f32. Output: `[t, n_embd]` f32.

use super::layers::{Mlp, QLinear};
use super::moe::Moe;
use super::trace::record;
use super::ModelError;
use candle_core::Tensor;
use half::f16;
use std::sync::OnceLock;

pub(crate) enum Ffn {
    SwiGlu(Mlp),
    GeGlu(Mlp),
    Gelu { up: QLinear, down: QLinear },
    Moe(Moe),
}

impl Ffn {
    pub fn forward(&self, x: &Tensor, layer: usize) -> Result<Tensor, ModelError> {
        match self {
            Ffn::SwiGlu(mlp) => mlp.forward(x, layer),
            Ffn::GeGlu(mlp) => {
                let [g, u] = QLinear::forward_many([&mlp.gate, &mlp.up], x)?;
                let (gv, uv) = (host(&g)?, host(&u)?);
                let out: Vec<f32> = gv.iter().zip(&uv).map(|(&a, &b)| gelu(a) * b).collect();
                let h = Tensor::from_vec(out, g.shape(), g.device())?;
                record(|| format!("ffn_geglu-{layer}"), &h);
                mlp.down.forward(&h)
            }
            Ffn::Gelu { up, down } => {
                let u = up.forward(x)?;
                let out: Vec<f32> = host(&u)?.into_iter().map(gelu).collect();
                let h = Tensor::from_vec(out, u.shape(), u.device())?;
                record(|| format!("ffn_gelu-{layer}"), &h);
                down.forward(&h)
            }
            Ffn::Moe(moe) => moe.forward(x, layer),
        }
    }
}

fn host(t: &Tensor) -> Result<Vec<f32>, ModelError> {
    Ok(t.flatten_all()?.to_vec1()?)
}

/// ggml's `ggml_vec_gelu_f32` with `GGML_GELU_FP16`.
pub(crate) fn gelu(x: f32) -> f32 {
    if x <= -10.0 {
        return 0.0;
    }
    if x >= 10.0 {
        return x;
    }
    gelu_table()[f16::from_f32(x).to_bits() as usize].to_f32()
}

/// `ggml_table_gelu_f16`, built once (128 KiB).
fn gelu_table() -> &'static [f16] {
    static TABLE: OnceLock<Vec<f16>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| f16::from_f32(gelu_f32(f16::from_bits(bits).to_f32())))
            .collect()
    })
}

/// `ggml_gelu_f32` (GCC contracts `1 + a*x*x` into an FMA).
fn gelu_f32(x: f32) -> f32 {
    const GELU_COEF_A: f32 = 0.044715;
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let inner = (GELU_COEF_A * x).mul_add(x, 1.0);
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * inner).tanh())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_the_formula_to_f16_precision() {
        for i in -120..120 {
            let x = i as f32 * 0.1;
            let exact = 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044715 * x * x * x)).tanh());
            let got = gelu(x);
            assert!(
                (got - exact).abs() <= 2e-3 * exact.abs().max(1.0),
                "{x}: {got} vs {exact}"
            );
        }
        assert_eq!(gelu(-11.0), 0.0);
        assert_eq!(gelu(12.5), 12.5);
    }
}
