//! Gemma 3 (`general.architecture = "gemma3"`): embeddings scaled by sqrt(n_embd), per-head
//! Q/K RMS norms, NeoX rope, post-attention and post-FFN RMS norms, a GELU(tanh)-gated FFN,
//! tied output embeddings, and interleaved sliding-window layers (every
//! `attention.sliding_window_pattern`-th layer, default 6, is global) whose rope uses
//! `rope.freq_base_swa` (default 10,000) and no scaling. Final-logit soft-capping is applied
//! when the file sets it. The 27B model scales queries by 1/sqrt(n_embd/n_head) instead of
//! 1/sqrt(head_dim); wick does not implement that and refuses the file (`load`).

use super::check::unsupported;
use super::decoder::{Decoder, DecoderSpec, FfnKind};
use super::layers::{Bias, LoadOptions, RopeStyle};
use super::{Arch, Model, ModelError};
use crate::gguf::Gguf;
use candle_core::Device;

const SPEC: DecoderSpec = DecoderSpec {
    arch: "gemma3",
    rope: RopeStyle::NeoX,
    qkv_bias: Bias::IfPresent,
    default_rope_base: 10_000.0,
    qk_norm: true,
    post_norms: true,
    ffn: FfnKind::GeGlu,
    embed_scale: true,
    sliding_window: true,
    keys: &[
        "attention.sliding_window",
        "attention.sliding_window_pattern",
        "rope.freq_base_swa",
        "final_logit_softcapping",
    ],
    ..DecoderSpec::LLAMA
};

fn load(
    gguf: &mut Gguf,
    device: &Device,
    options: &LoadOptions,
) -> Result<Box<dyn Model>, ModelError> {
    refuse_27b_attention_scale(gguf)?;
    Ok(Box::new(Decoder::load(gguf, device, options, &SPEC)?))
}

pub(crate) const ARCH: Arch = Arch {
    name: SPEC.arch,
    load,
};

/// llama.cpp scales Gemma 3 27B's queries (62 layers) by 1/sqrt(n_embd / n_head), every
/// other size by 1/sqrt(head_dim); wick's attention always uses the latter.
fn refuse_27b_attention_scale(gguf: &Gguf) -> Result<(), ModelError> {
    let u = |k: &str| gguf.get_u64(&format!("gemma3.{k}")).unwrap_or(0);
    let (layers, n_embd, n_head) = (
        u("block_count"),
        u("embedding_length"),
        u("attention.head_count"),
    );
    let head_dim = gguf
        .get_u64("gemma3.attention.key_length")
        .unwrap_or(n_embd.checked_div(n_head).unwrap_or(0));
    if layers == 62 && n_embd.checked_div(n_head).is_some_and(|d| d != head_dim) {
        return Err(unsupported(
            "gemma3",
            "gemma3.block_count = 62",
            "the 27B model's query scale 1/sqrt(n_embd / n_head)",
        ));
    }
    Ok(())
}
