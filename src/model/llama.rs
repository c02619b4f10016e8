//! Llama-family models (`general.architecture = "llama"`): SmolLM2, CodeLlama, DeepSeek-Coder
//! v1 and Mistral-style GGUFs. Normal (pairwise) rope, because the GGUF converter permutes
//! the Q/K rows for it; biases only where the file has them; tied embeddings when
//! `output.weight` is missing (handled in `decoder.rs`).

use super::decoder::{Decoder, DecoderSpec};
use super::layers::{Bias, LoadOptions, RopeStyle};
use super::{Arch, Model, ModelError};
use crate::gguf::Gguf;
use candle_core::Device;

const SPEC: DecoderSpec = DecoderSpec {
    arch: "llama",
    rope: RopeStyle::Normal,
    qkv_bias: Bias::IfPresent,
    default_rope_base: 10_000.0,
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
    name: "llama",
    load,
};
