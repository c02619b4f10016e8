//! One transformer block of the shared decoder, in every variant wick's architectures use:
//! norm → attention (optional per-head Q/K norms, optional sliding window) → optional
//! post-attention norm → residual; norm → FFN (SwiGLU, GELU-gated, GELU, MoE) → optional
//! post-FFN norm → residual. What a block holds is decided by the `DecoderSpec` and the
//! hyperparameters; the tensors are read by llama.cpp's names (`blk.N.*`).
//! Must not depend on tokenizers, the engine or the server.

use super::decoder::{DecoderSpec, FfnKind, HParams};
use super::ffn::Ffn;
use super::kv_cache::KvCache;
use super::layers::{Attention, Bias, Loader, Mlp, RmsNorm, Rope};
use super::moe::Moe;
use super::norm::Norm;
use super::trace::record;
use super::ModelError;
use candle_core::Tensor;

pub(crate) struct Block {
    attn_norm: Norm,
    attn: Attention,
    post_attn_norm: Option<RmsNorm>,
    ffn_norm: Norm,
    ffn: Ffn,
    post_ffn_norm: Option<RmsNorm>,
    /// Which of the decoder's rope tables this layer uses (0 global, 1 sliding-window).
    pub rope: usize,
}

impl Block {
    /// `x` (`[t, n_embd]`, positions `cache.len()..`) through the block; `as_decode` as
    /// in `Attention::forward`.
    pub fn forward(
        &self,
        x: Tensor,
        i: usize,
        rope: &Rope,
        cache: &KvCache,
        mask: Option<&Tensor>,
        as_decode: bool,
    ) -> Result<Tensor, ModelError> {
        let h = self.attn_norm.forward(&x)?;
        record(|| format!("attn_norm-{i}"), &h);
        let h = self.attn.forward(&h, i, rope, cache, mask, as_decode)?;
        record(|| format!("attn_out-{i}"), &h);
        self.finish(x, h, i)
    }

    /// Several sequences' new tokens as the rows of one batch: the next `lens[j]` rows of
    /// `x` go to `caches[j]` (decode rows ride along with a prefill chunk).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_segments(
        &self,
        x: Tensor,
        i: usize,
        rope: &Rope,
        caches: &[&mut KvCache],
        lens: &[usize],
        masks: &[Option<Tensor>],
    ) -> Result<Tensor, ModelError> {
        let h = self.attn_norm.forward(&x)?;
        let h = self
            .attn
            .forward_segments(&h, i, rope, caches, lens, masks)?;
        self.finish(x, h, i)
    }

    /// Everything after attention: post-norm, residual, the FFN half.
    fn finish(&self, x: Tensor, h: Tensor, i: usize) -> Result<Tensor, ModelError> {
        let h = post(self.post_attn_norm.as_ref(), h)?;
        let x = (x + h)?;
        record(|| format!("ffn_inp-{i}"), &x);
        let h = self.ffn_norm.forward(&x)?;
        record(|| format!("ffn_norm-{i}"), &h);
        let h = self.ffn.forward(&h, i)?;
        record(|| format!("ffn_out-{i}"), &h);
        let h = post(self.post_ffn_norm.as_ref(), h)?;
        let x = (x + h)?;
        record(|| format!("l_out-{i}"), &x);
        Ok(x)
    }
}

fn post(norm: Option<&RmsNorm>, h: Tensor) -> Result<Tensor, ModelError> {
    match norm {
        Some(n) => n.forward(&h),
        None => Ok(h),
    }
}

pub(crate) fn load_block(
    ld: &mut Loader<'_>,
    hp: &HParams,
    spec: &DecoderSpec,
    i: usize,
) -> Result<Block, ModelError> {
    let p = format!("blk.{i}");
    let rms =
        |ld: &mut Loader<'_>, name: &str| ld.rms_norm(&format!("{p}.{name}.weight"), hp.rms_eps);
    let swa = hp.swa_layers.get(i).copied().unwrap_or(false);
    let attn = Attention {
        q: ld.linear(&format!("{p}.attn_q"), spec.qkv_bias)?,
        k: ld.linear(&format!("{p}.attn_k"), spec.qkv_bias)?,
        v: ld.linear(&format!("{p}.attn_v"), spec.qkv_bias)?,
        o: ld.linear(&format!("{p}.attn_output"), Bias::IfPresent)?,
        n_head: hp.n_head,
        n_kv_head: hp.n_kv_head,
        head_dim: hp.head_dim,
        q_norm: spec.qk_norm.then(|| rms(ld, "attn_q_norm")).transpose()?,
        k_norm: spec.qk_norm.then(|| rms(ld, "attn_k_norm")).transpose()?,
        window: if swa { hp.sliding_window } else { None },
    };
    let mlp = |ld: &mut Loader<'_>| -> Result<Mlp, ModelError> {
        Ok(Mlp {
            gate: ld.linear(&format!("{p}.ffn_gate"), Bias::IfPresent)?,
            up: ld.linear(&format!("{p}.ffn_up"), Bias::IfPresent)?,
            down: ld.linear(&format!("{p}.ffn_down"), Bias::IfPresent)?,
        })
    };
    let ffn = match spec.ffn {
        FfnKind::SwiGlu => Ffn::SwiGlu(mlp(ld)?),
        FfnKind::GeGlu => Ffn::GeGlu(mlp(ld)?),
        FfnKind::Gelu => Ffn::Gelu {
            up: ld.linear(&format!("{p}.ffn_up"), Bias::IfPresent)?,
            down: ld.linear(&format!("{p}.ffn_down"), Bias::IfPresent)?,
        },
        FfnKind::Moe => Ffn::Moe(Moe::load(ld, &p, hp.n_expert, hp.n_expert_used)?),
    };
    Ok(Block {
        attn_norm: hp.norm.load(ld, &format!("{p}.attn_norm"))?,
        attn,
        post_attn_norm: spec
            .post_norms
            .then(|| rms(ld, "post_attention_norm"))
            .transpose()?,
        ffn_norm: hp.norm.load(ld, &format!("{p}.ffn_norm"))?,
        ffn,
        post_ffn_norm: spec
            .post_norms
            .then(|| rms(ld, "post_ffw_norm"))
            .transpose()?,
        rope: usize::from(swa),
    })
}
