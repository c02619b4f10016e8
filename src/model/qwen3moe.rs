//! Qwen3-MoE (`general.architecture = "qwen3moe"`, Qwen3-Coder-30B-A3B): Qwen3 attention
//! (per-head Q/K norms, NeoX rope) with a mixture-of-experts FFN in every block: softmax
//! router, top-`expert_used_count` experts with weights renormalized to sum to 1 (llama.cpp
//! always normalizes for this architecture), SwiGLU experts (`moe.rs`).

use super::decoder::{Decoder, DecoderSpec, FfnKind};
use super::layers::{Bias, LoadOptions, RopeStyle};
use super::{Arch, Model, ModelError};
use crate::gguf::Gguf;
use candle_core::Device;

const SPEC: DecoderSpec = DecoderSpec {
    arch: "qwen3moe",
    rope: RopeStyle::NeoX,
    qkv_bias: Bias::IfPresent,
    default_rope_base: 10_000.0,
    qk_norm: true,
    ffn: FfnKind::Moe,
    // The expert size is read from the tensors; llama.cpp ignores the gating function and
    // the normalization flag for qwen3moe (softmax, normalized), and so does wick.
    keys: &[
        "expert_count",
        "expert_used_count",
        "expert_feed_forward_length",
        "expert_weights_norm",
        "expert_gating_func",
    ],
    ..DecoderSpec::LLAMA
};

fn load(
    gguf: &mut Gguf,
    device: &Device,
    options: &LoadOptions,
) -> Result<Box<dyn Model>, ModelError> {
    Ok(Box::new(Decoder::load(gguf, device, options, &SPEC)?))
}

pub(crate) const ARCH: Arch = Arch {
    name: SPEC.arch,
    load,
};
