//! Qwen2 / Qwen2.5 (`general.architecture = "qwen2"`): the llama layout with biases on the
//! Q, K and V projections and NeoX-style rope. Everything else comes from `decoder.rs`.

use super::decoder::{Decoder, DecoderSpec};
use super::layers::{Bias, LoadOptions, RopeStyle};
use super::{Arch, Model, ModelError};
use crate::gguf::Gguf;
use candle_core::Device;

const SPEC: DecoderSpec = DecoderSpec {
    arch: "qwen2",
    rope: RopeStyle::NeoX,
    qkv_bias: Bias::Required,
    default_rope_base: 1_000_000.0,
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
    name: "qwen2",
    load,
};
