//! Mixture-of-experts feed-forward (Qwen3-MoE, as llama.cpp's `build_moe_ffn` with softmax
//! gating and normalized weights): router logits `x W_r^T`, softmax over all experts, the
//! top-k experts by probability, their probabilities divided by their sum (clamped at
//! 2^-14), each selected expert's SwiGLU FFN, each output times its weight, and the
//! weighted outputs added in top-k order.
//! Only the selected experts are computed: the 3-D `ffn_*_exps` tensors are split at load
//! into one 2-D weight per expert (wick's own CPU kernels where the format has one), and
//! the rows of a batch (prefill, or batched decode) are grouped by expert so each chosen
//! expert's weights are read once per call for all the rows that chose it.
//! Input: `[t, n_embd]` f32. Output: `[t, n_embd]` f32.

use super::ggml_ops;
use super::layers::{Loader, QLinear};
use super::trace::record;
use super::ModelError;
use candle_core::quantized::{QStorage, QTensor};
use candle_core::Tensor;
use std::borrow::Cow;
use std::sync::Arc;

pub(crate) struct Moe {
    router: QLinear,
    gate: Vec<QLinear>,
    up: Vec<QLinear>,
    down: Vec<QLinear>,
    n_used: usize,
}

impl Moe {
    /// `PREFIX.ffn_gate_inp.weight` and the three `PREFIX.ffn_{gate,up,down}_exps.weight`.
    pub fn load(
        ld: &mut Loader<'_>,
        prefix: &str,
        n_expert: usize,
        n_used: usize,
    ) -> Result<Self, ModelError> {
        let router = ld.linear(
            &format!("{prefix}.ffn_gate_inp"),
            super::layers::Bias::IfPresent,
        )?;
        let mut experts =
            |name: &str| split_experts(ld, &format!("{prefix}.{name}.weight"), n_expert);
        Ok(Moe {
            router,
            gate: experts("ffn_gate_exps")?,
            up: experts("ffn_up_exps")?,
            down: experts("ffn_down_exps")?,
            n_used,
        })
    }

    pub fn forward(&self, x: &Tensor, layer: usize) -> Result<Tensor, ModelError> {
        let (t, n_embd) = x.dims2()?;
        let logits: Vec<f32> = self.router.forward(x)?.flatten_all()?.to_vec1()?;
        let n_expert = self.gate.len();
        let routes: Vec<Vec<(usize, f32)>> = logits
            .chunks(n_expert)
            .map(|row| route(row, self.n_used))
            .collect();
        let xs: Vec<f32> = x.flatten_all()?.to_vec1()?;
        // outs[row][slot]: the expert output of that slot, already times its weight.
        let mut outs = vec![vec![Vec::new(); self.n_used]; t];
        for e in 0..n_expert {
            let users: Vec<(usize, usize, f32)> = routes
                .iter()
                .enumerate()
                .flat_map(|(r, slots)| {
                    slots
                        .iter()
                        .enumerate()
                        .filter(move |(_, (id, _))| *id == e)
                        .map(move |(s, &(_, w))| (r, s, w))
                })
                .collect();
            if users.is_empty() {
                continue;
            }
            let rows: Vec<f32> = users
                .iter()
                .flat_map(|&(r, _, _)| xs[r * n_embd..(r + 1) * n_embd].iter().copied())
                .collect();
            let xe = Tensor::from_vec(rows, (users.len(), n_embd), x.device())?;
            let [g, u] = QLinear::forward_many([&self.gate[e], &self.up[e]], &xe)?;
            let (gv, uv): (Vec<f32>, Vec<f32>) =
                (g.flatten_all()?.to_vec1()?, u.flatten_all()?.to_vec1()?);
            let mut h = vec![0f32; gv.len()];
            ggml_ops::swiglu(&gv, &uv, &mut h);
            let h = Tensor::from_vec(h, g.shape(), g.device())?;
            let y: Vec<f32> = self.down[e].forward(&h)?.flatten_all()?.to_vec1()?;
            for (&(r, s, w), yr) in users.iter().zip(y.chunks(n_embd)) {
                outs[r][s] = yr.iter().map(|&v| v * w).collect();
            }
        }
        let mut out = Vec::with_capacity(t * n_embd);
        for slots in outs {
            let mut acc = slots[0].clone();
            for s in &slots[1..] {
                for (a, &v) in acc.iter_mut().zip(s) {
                    *a += v;
                }
            }
            out.extend_from_slice(&acc);
        }
        let out = Tensor::from_vec(out, (t, n_embd), x.device())?;
        record(|| format!("ffn_moe_out-{layer}"), &out);
        Ok(out)
    }
}

/// The top-`k` experts of one row of router logits with their normalized weights, in
/// descending probability (the order llama.cpp adds their outputs in).
fn route(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut probs = logits.to_vec();
    ggml_ops::softmax(&mut probs, 1.0);
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    order.truncate(k);
    let sum: f64 = order.iter().map(|&e| f64::from(probs[e])).sum();
    let sum = (sum as f32).max(6.103_515_6e-5);
    order.into_iter().map(|e| (e, probs[e] / sum)).collect()
}

/// One 2-D weight per expert out of a 3-D `[n_expert, rows, cols]` GGUF tensor: each
/// expert's blocks are contiguous, so its bytes are a slice of the tensor's.
fn split_experts(
    ld: &mut Loader<'_>,
    name: &str,
    n_expert: usize,
) -> Result<Vec<QLinear>, ModelError> {
    let t = ld.qtensor(name)?;
    let &[n, rows, cols] = t.shape().dims() else {
        return Err(ModelError::BadHyperparameters {
            arch: "moe".into(),
            what: format!("{name} has shape {:?}, expected 3 dimensions", t.shape()),
        });
    };
    if n != n_expert {
        return Err(ModelError::BadHyperparameters {
            arch: "moe".into(),
            what: format!("{name} holds {n} experts, the metadata says {n_expert}"),
        });
    }
    let dtype = t.dtype();
    let data = t.data()?;
    let per = data.len() / n;
    (0..n)
        .map(|e| {
            let bytes = data[e * per..(e + 1) * per].to_vec();
            let storage = QStorage::from_data(Cow::Owned(bytes), ld.device, dtype)?;
            let q = Arc::new(QTensor::new(storage, (rows, cols))?);
            Ok(QLinear::new(ld.to_matmul(q)?, None, ld.options).stored_as(dtype))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_to_the_top_experts_with_weights_summing_to_one() {
        let r = route(&[0.1, 2.0, -1.0, 1.5], 2);
        assert_eq!(r.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 3]);
        assert!((r[0].1 + r[1].1 - 1.0).abs() < 1e-6);
        assert!(r[0].1 > r[1].1);
    }
}
