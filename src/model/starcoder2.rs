//! StarCoder2 (`general.architecture = "starcoder2"`): LayerNorm with weight and bias
//! (`attention.layer_norm_epsilon`) before attention, the FFN and the output; biases on Q,
//! K, V and the output projection; a plain GELU FFN `down(gelu(up(x)))` with biases; NeoX
//! rope.

use super::decoder::{Decoder, DecoderSpec, FfnKind};
use super::layers::{Bias, LoadOptions, RopeStyle};
use super::{Arch, Model, ModelError};
use crate::gguf::Gguf;
use candle_core::Device;

const SPEC: DecoderSpec = DecoderSpec {
    arch: "starcoder2",
    rope: RopeStyle::NeoX,
    qkv_bias: Bias::Required,
    default_rope_base: 10_000.0,
    layer_norm: true,
    ffn: FfnKind::Gelu,
    keys: &["attention.layer_norm_epsilon"],
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
