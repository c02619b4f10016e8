//! Qwen3 (`general.architecture = "qwen3"`): the Qwen2 layout without Q/K/V biases and
//! with per-head RMS norms of Q and K (`attn_q_norm`, `attn_k_norm`) before NeoX rope. The
//! head size comes from `attention.key_length` and need not be `n_embd / n_head`.

use super::decoder::{Decoder, DecoderSpec, FfnKind};
use super::layers::{Bias, LoadOptions, RopeStyle};
use super::{Arch, Model, ModelError};
use crate::gguf::Gguf;
use candle_core::Device;

const SPEC: DecoderSpec = DecoderSpec {
    arch: "qwen3",
    rope: RopeStyle::NeoX,
    qkv_bias: Bias::IfPresent,
    default_rope_base: 10_000.0,
    qk_norm: true,
    ffn: FfnKind::SwiGlu,
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
