//! Dumps wick's intermediate tensors for one prompt of a reference file, under llama.cpp's
//! tensor names (`attn_norm-3`, `kq_soft_max-3`, ... see `model::trace`), into an `.npz`:
//! the prefill as `p:<name>`, then each teacher-forced decode step as `d<i>:<name>`.
//! `scripts/llama-cpp-trace.py` writes the same for llama.cpp and
//! `scripts/trace-compare.py` lines them up, so a divergence can be found op by op.
//!
//! cargo run --release --example trace_dump -- MODEL.gguf REFERENCE.json PROMPT OUT.npz [STEPS]

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use wick::gguf::Gguf;
use wick::model::{self, trace};

fn ids(v: &Value) -> Result<Vec<u32>> {
    v.as_array()
        .context("not an array")?
        .iter()
        .map(|x| Ok(x.as_u64().context("not an id")? as u32))
        .collect()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model_path, reference, prompt_name, out, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: trace_dump MODEL.gguf REFERENCE.json PROMPT OUT.npz [STEPS]");
    };
    let steps: usize = rest.first().map_or(Ok(0), |s| s.parse())?;
    let mut gguf = Gguf::open(std::path::Path::new(model_path))?;
    let model = model::load(&mut gguf, &Device::Cpu)?;
    let data: Value = serde_json::from_slice(&std::fs::read(reference)?)?;
    let prompt = data["prompts"]
        .as_array()
        .context("prompts")?
        .iter()
        .find(|p| p["name"] == prompt_name.as_str())
        .with_context(|| format!("no prompt named {prompt_name}"))?;
    let prompt_ids = ids(&prompt["prompt_ids"])?;
    let generated = ids(&prompt["generated_ids"])?;
    let mut cache = model.new_cache(prompt_ids.len() + steps + 1)?;

    let mut all: Vec<(String, Tensor)> = Vec::new();
    let mut run = |prefix: String, tokens: &[u32]| -> Result<()> {
        let (logits, got) = trace::capture(|| model.forward(tokens, &mut cache));
        all.push((format!("{prefix}result_output"), logits?));
        all.extend(got.into_iter().map(|(n, t)| (format!("{prefix}{n}"), t)));
        Ok(())
    };
    run("p:".into(), &prompt_ids)?;
    for (i, &id) in generated.iter().take(steps).enumerate() {
        run(format!("d{i}:"), &[id])?;
    }
    let all = all
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_dtype(DType::F32)?.contiguous()?)))
        .collect::<Result<Vec<_>>>()?;
    Tensor::write_npz(&all, out)?;
    Ok(())
}
