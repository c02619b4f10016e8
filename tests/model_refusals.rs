//! "Never a silently wrong model": a GGUF carrying a metadata key or tensor that changes the
//! architecture's math, and that wick does not implement, is refused at load with an error
//! naming it. Each case writes a tiny llama GGUF (1 block, F32 weights) that loads and runs
//! as is, adds one such key or tensor, and expects the refusal by name. Keys at their
//! neutral values, and the rope scaling wick implements, still load — and the implemented
//! ones must change the logits (they are applied, not ignored).

use anyhow::{ensure, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use wick::gguf::Gguf;
use wick::model;

const N_EMBD: usize = 32;
const N_FF: usize = 64;
const HEAD_DIM: usize = 16;
const VOCAB: usize = 16;

fn metadata() -> Vec<(String, Value)> {
    let u = |v: u32| Value::U32(v);
    vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("llama.block_count".into(), u(1)),
        ("llama.context_length".into(), u(64)),
        ("llama.embedding_length".into(), u(N_EMBD as u32)),
        ("llama.feed_forward_length".into(), u(N_FF as u32)),
        ("llama.attention.head_count".into(), u(2)),
        ("llama.attention.head_count_kv".into(), u(1)),
        ("llama.rope.dimension_count".into(), u(HEAD_DIM as u32)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-5),
        ),
    ]
}

/// Deterministic pseudo-random weights.
fn weight(rows: usize, cols: usize, seed: usize) -> Result<QTensor> {
    let v: Vec<f32> = (0..rows * cols)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 1000.0 - 0.5) * 0.5)
        .collect();
    let t = if rows == 1 {
        Tensor::from_vec(v, cols, &Device::Cpu)?
    } else {
        Tensor::from_vec(v, (rows, cols), &Device::Cpu)?
    };
    Ok(QTensor::quantize(&t, GgmlDType::F32)?)
}

fn tensors() -> Result<Vec<(String, QTensor)>> {
    let mut t = vec![
        ("token_embd.weight".to_owned(), weight(VOCAB, N_EMBD, 1)?),
        ("output_norm.weight".to_owned(), weight(1, N_EMBD, 2)?),
        ("blk.0.attn_norm.weight".to_owned(), weight(1, N_EMBD, 3)?),
        (
            "blk.0.attn_q.weight".to_owned(),
            weight(2 * HEAD_DIM, N_EMBD, 4)?,
        ),
        (
            "blk.0.attn_k.weight".to_owned(),
            weight(HEAD_DIM, N_EMBD, 5)?,
        ),
        (
            "blk.0.attn_v.weight".to_owned(),
            weight(HEAD_DIM, N_EMBD, 6)?,
        ),
        (
            "blk.0.attn_output.weight".to_owned(),
            weight(N_EMBD, 2 * HEAD_DIM, 7)?,
        ),
        ("blk.0.ffn_norm.weight".to_owned(), weight(1, N_EMBD, 8)?),
        ("blk.0.ffn_gate.weight".to_owned(), weight(N_FF, N_EMBD, 9)?),
        ("blk.0.ffn_up.weight".to_owned(), weight(N_FF, N_EMBD, 10)?),
        (
            "blk.0.ffn_down.weight".to_owned(),
            weight(N_EMBD, N_FF, 11)?,
        ),
    ];
    t.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(t)
}

/// The baseline file with `key` set (added or replaced) and `tensor` added.
fn write(
    dir: &std::path::Path,
    key: Option<(&str, Value)>,
    tensor: Option<(&str, QTensor)>,
) -> Result<std::path::PathBuf> {
    let mut md = metadata();
    if let Some((k, v)) = key {
        md.retain(|(name, _)| name != k);
        md.push((k.to_owned(), v));
    }
    let mut ts = tensors()?;
    if let Some((name, t)) = tensor {
        ts.push((name.to_owned(), t));
    }
    let path = dir.join(format!("case-{}.gguf", md.len() * 100 + ts.len()));
    let mut f = std::fs::File::create(&path)?;
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts_refs: Vec<(&str, &QTensor)> = ts.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut f, &md_refs, &ts_refs)?;
    Ok(path)
}

/// Loads the file and returns the logits of a short prompt, or the load error's message.
fn run(path: &std::path::Path) -> Result<Result<Vec<f32>, String>> {
    let mut gguf = Gguf::open(path)?;
    let m = match model::load(&mut gguf, &Device::Cpu) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut cache = m.new_cache(16)?;
    Ok(Ok(m.forward(&[1, 5, 9, 3, 7, 2], &mut cache)?.to_vec1()?))
}

#[test]
fn refuses_each_unimplemented_key_and_tensor_by_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let keys: Vec<(&str, Value)> = vec![
        ("llama.rope.scaling.type", Value::String("yarn".into())),
        ("llama.rope.scaling.type", Value::String("longrope".into())),
        ("llama.attention.sliding_window", Value::U32(8)),
        ("llama.final_logit_softcapping", Value::F32(30.0)),
        ("llama.attn_logit_softcapping", Value::F32(50.0)),
        ("llama.attention.scale", Value::F32(0.125)),
        ("llama.expert_count", Value::U32(8)),
        ("llama.expert_used_count", Value::U32(2)),
        ("llama.rope.dimension_count", Value::U32(8)),
        ("llama.attention.value_length", Value::U32(32)),
        ("llama.embedding_scale", Value::F32(12.0)),
        ("llama.residual_scale", Value::F32(0.5)),
        ("llama.logit_scale", Value::F32(0.25)),
        ("llama.rope.scaling.attn_factor", Value::F32(2.0)),
        ("llama.attention.causal", Value::Bool(false)),
        ("llama.use_parallel_residual", Value::Bool(true)),
        (
            "llama.rope.dimension_sections",
            Value::Array(vec![Value::I32(4); 4]),
        ),
    ];
    for (key, value) in keys {
        let shown = format!("{value:?}");
        let path = write(dir.path(), Some((key, value)), None)?;
        let err = run(&path)?.err();
        ensure!(
            err.as_deref().is_some_and(|e| e.contains(key)),
            "{key} = {shown}: expected a refusal naming it, got {err:?}"
        );
    }
    let tensors = [
        ("blk.0.attn_q_norm.weight", weight(1, HEAD_DIM, 20)?),
        ("blk.0.ffn_norm.bias", weight(1, N_EMBD, 21)?),
        ("blk.0.post_attention_norm.weight", weight(1, N_EMBD, 22)?),
        ("blk.0.ffn_gate_inp.weight", weight(4, N_EMBD, 23)?),
        ("rope_freqs.weight", weight(1, 5, 24)?),
    ];
    for (name, t) in tensors {
        let path = write(dir.path(), None, Some((name, t)))?;
        let err = run(&path)?.err();
        ensure!(
            err.as_deref().is_some_and(|e| e.contains(name)),
            "tensor {name}: expected a refusal naming it, got {err:?}"
        );
    }
    Ok(())
}

#[test]
fn neutral_values_load_and_implemented_scaling_is_applied() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let base = run(&write(dir.path(), None, None)?)?.map_err(anyhow::Error::msg)?;
    for (key, value) in [
        ("llama.rope.scaling.type", Value::String("none".into())),
        ("llama.attention.causal", Value::Bool(true)),
        ("llama.expert_count", Value::U32(0)),
        ("llama.final_logit_softcapping", Value::F32(0.0)),
        ("llama.rope.scaling.original_context_length", Value::U32(32)),
    ] {
        let got = run(&write(dir.path(), Some((key, value)), None)?)?
            .map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
        ensure!(got == base, "{key} at its neutral value changed the logits");
    }
    // Implemented: linear rope scaling and Llama-3 rope factors (one divisor per rotated
    // pair). A factor of 4 on every pair divides each angle by 4 exactly as a linear
    // factor of 4 multiplies it by 0.25 (both exact in f32), so the logits must be equal,
    // and different from the unscaled model's.
    let linear = run(&write(
        dir.path(),
        Some(("llama.rope.scaling.factor", Value::F32(4.0))),
        None,
    )?)?
    .map_err(anyhow::Error::msg)?;
    let factors = Tensor::new(&[4f32; HEAD_DIM / 2], &Device::Cpu)?;
    let factors = QTensor::quantize(&factors, GgmlDType::F32)?;
    let llama3 = run(&write(
        dir.path(),
        None,
        Some(("rope_freqs.weight", factors)),
    )?)?
    .map_err(anyhow::Error::msg)?;
    let moved = linear
        .iter()
        .zip(&base)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    ensure!(
        moved > 1e-4,
        "linear scaling did not change the logits ({moved})"
    );
    ensure!(
        llama3 == linear,
        "rope factors of 4 differ from linear scaling by 4"
    );
    Ok(())
}
