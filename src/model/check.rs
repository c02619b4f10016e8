//! "Never a silently wrong model": before an architecture computes anything, every
//! `<arch>.*` metadata key in the file must be one its loader implements (or one that cannot
//! change the math), and after loading, every tensor in the file must have been read. A key
//! or tensor wick does not implement (yarn rope scaling, logit soft-capping, an expert count
//! on a dense architecture, an unexpected bias, ...) is refused by name at load, because
//! ignoring it would produce plausible text from a different model.
//! Input: an opened `Gguf` and the architecture's list of implemented keys. Output: `Ok` or
//! `ModelError::Unsupported` naming the first offending key or tensor.

use super::ModelError;
use crate::gguf::Gguf;
use candle_core::quantized::gguf_file::Value;

/// Keys every decoder in wick reads and implements, as `<arch>.` suffixes. Keys whose value
/// must be checked against what the decoder does (`rope.dimension_count`,
/// `attention.value_length`) are checked where they are read (`decoder.rs`).
pub(crate) const COMMON_KEYS: &[&str] = &[
    "context_length",
    "embedding_length",
    "block_count",
    "feed_forward_length",
    "vocab_size",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "attention.layer_norm_rms_epsilon",
    "rope.dimension_count",
    "rope.freq_base",
    // Rope scaling: `none` and `linear` are implemented (`rope_scaling.rs`); any other type
    // is refused there. The original context length and `finetuned` flag only feed yarn.
    "rope.scaling.type",
    "rope.scaling.factor",
    "rope.scale_linear",
    "rope.scaling.original_context_length",
    "rope.scaling.finetuned",
];

/// Keys that are harmless at one value: present with that value they change nothing, with
/// any other they change the math and are refused unless the architecture implements them.
fn neutral(suffix: &str, value: &Value) -> bool {
    let num = || match value {
        Value::F32(v) => Some(f64::from(*v)),
        Value::F64(v) => Some(*v),
        Value::U8(v) => Some(f64::from(*v)),
        Value::U16(v) => Some(f64::from(*v)),
        Value::U32(v) => Some(f64::from(*v)),
        Value::U64(v) => Some(*v as f64),
        Value::I32(v) => Some(f64::from(*v)),
        Value::I64(v) => Some(*v as f64),
        _ => None,
    };
    match suffix {
        "attention.causal" => matches!(value, Value::Bool(true)),
        "expert_count" | "expert_used_count" | "expert_shared_count" => num() == Some(0.0),
        "attn_logit_softcapping" | "final_logit_softcapping" | "router_logit_softcapping" => {
            num() == Some(0.0)
        }
        "rope.scaling.attn_factor" | "logit_scale" | "embedding_scale" | "residual_scale" => {
            num() == Some(1.0)
        }
        "attention.clamp_kqv" | "attention.max_alibi_bias" => num() == Some(0.0),
        // llama.cpp skips the scaling at 0 and 1.
        "expert_weights_scale" => matches!(num(), Some(v) if v == 0.0 || v == 1.0),
        "use_parallel_residual" => matches!(value, Value::Bool(false)),
        // Used only by pooling (embedding models); generation never pools.
        "pooling_type" => true,
        _ => false,
    }
}

/// Refuses the first `<arch>.*` key that is neither implemented by the architecture
/// (`COMMON_KEYS` or `extra`) nor neutral at its value.
pub(crate) fn metadata(gguf: &Gguf, arch: &str, extra: &[&str]) -> Result<(), ModelError> {
    let prefix = format!("{arch}.");
    let mut keys: Vec<&String> = gguf.content.metadata.keys().collect();
    keys.sort();
    for key in keys {
        let Some(suffix) = key.strip_prefix(&prefix) else {
            continue;
        };
        if COMMON_KEYS.contains(&suffix) || extra.contains(&suffix) {
            continue;
        }
        let value = &gguf.content.metadata[key];
        if !neutral(suffix, value) {
            return Err(unsupported(
                arch,
                key,
                &format!("metadata key = {}", show(value)),
            ));
        }
    }
    Ok(())
}

/// Refuses the first tensor of the file that loading did not read: a tensor the
/// architecture does not know (a bias, rope factors, an extra norm) would be ignored.
pub(crate) fn all_tensors_read(gguf: &Gguf, arch: &str) -> Result<(), ModelError> {
    let mut unread: Vec<&String> = gguf
        .content
        .tensor_infos
        .keys()
        .filter(|name| !gguf.was_read(name))
        .collect();
    unread.sort();
    match unread.first() {
        Some(name) => Err(unsupported(
            arch,
            name,
            "tensor that this architecture does not use",
        )),
        None => Ok(()),
    }
}

pub(crate) fn unsupported(arch: &str, name: &str, what: &str) -> ModelError {
    ModelError::Unsupported {
        arch: arch.to_owned(),
        name: name.to_owned(),
        what: what.to_owned(),
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!("[{} values]", a.len()),
        Value::Bool(b) => b.to_string(),
        Value::F32(v) => v.to_string(),
        Value::F64(v) => v.to_string(),
        other => other
            .to_u64()
            .map(|v| v.to_string())
            .unwrap_or_else(|_| format!("{other:?}")),
    }
}
