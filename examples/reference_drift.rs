//! Prints, per prompt of a llama.cpp reference file, how far wick's forward pass is from
//! llama.cpp's: how many greedy steps agree (teacher-forced on the reference path, as
//! tests/model_reference.rs does), where and between which candidates it forks, and the
//! largest |logprob difference| over the reference's top-5 entries of each recorded step.
//! For measuring; the test holds the tolerances.
//!
//! cargo run --release --example reference_drift -- MODEL.gguf REFERENCE.json [PROMPT]

use anyhow::{Context, Result};
use candle_core::Device;
use serde_json::Value;
use wick::gguf::Gguf;
use wick::model::{self, Model};

fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max
        + logits
            .iter()
            .map(|&l| (l as f64 - max).exp())
            .sum::<f64>()
            .ln();
    logits.iter().map(|&l| l as f64 - lse).collect()
}

fn argmax(logits: &[f32]) -> usize {
    (0..logits.len()).fold(0, |b, i| if logits[i] > logits[b] { i } else { b })
}

fn ids(v: &Value) -> Result<Vec<u32>> {
    v.as_array()
        .context("not an array")?
        .iter()
        .map(|x| Ok(x.as_u64().context("not an id")? as u32))
        .collect()
}

fn drift(model: &dyn Model, p: &Value) -> Result<f64> {
    let prompt = ids(&p["prompt_ids"])?;
    let generated = ids(&p["generated_ids"])?;
    let stop = p["stop_token_id"].as_u64().map(|s| s as u32);
    let top = p["top_logprobs"].as_array().context("top_logprobs")?;
    let mut cache = model.new_cache(prompt.len() + generated.len() + 1)?;
    let mut logits: Vec<f32> = model.forward(&prompt, &mut cache)?.to_vec1()?;
    let (mut errors, mut agreed, mut fork) = (Vec::new(), 0, String::new());
    for step in 0..generated.len() + usize::from(stop.is_some()) {
        let want = generated.get(step).copied().or(stop).context("step")?;
        let lp = log_softmax(&logits);
        if let Some(Value::Array(entries)) = top.get(step) {
            let err = entries
                .iter()
                .map(|e| {
                    Ok((lp[e["id"].as_u64().context("id")? as usize]
                        - e["logprob"].as_f64().context("logprob")?)
                    .abs())
                })
                .collect::<Result<Vec<f64>>>()?;
            errors.push(err.into_iter().fold(0.0, f64::max));
        }
        let got = argmax(&logits);
        if got as u32 != want {
            fork = format!(
                "  fork at {step}: ours {got} ({:.4}) vs {want} ({:.4})",
                lp[got], lp[want as usize]
            );
            break;
        }
        agreed += 1;
        if step < generated.len() {
            logits = model.forward(&[want], &mut cache)?.to_vec1()?;
        }
    }
    let worst = errors.iter().copied().fold(0.0, f64::max);
    let per_step: Vec<String> = errors.iter().map(|e| format!("{e:.3}")).collect();
    println!(
        "{:18} greedy {agreed:2}/{}  max {worst:.4}  [{}]{fork}",
        p["name"].as_str().unwrap_or("?"),
        generated.len(),
        per_step.join(" ")
    );
    Ok(worst)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model_path, reference, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: reference_drift MODEL.gguf REFERENCE.json [PROMPT]");
    };
    let mut gguf = Gguf::open(std::path::Path::new(model_path))?;
    let model = model::load(&mut gguf, &Device::Cpu)?;
    let data: Value = serde_json::from_slice(&std::fs::read(reference)?)?;
    let mut worst = 0f64;
    for p in data["prompts"].as_array().context("prompts")? {
        if rest.first().is_some_and(|only| p["name"] != only.as_str()) {
            continue;
        }
        worst = worst.max(drift(model.as_ref(), p)?);
    }
    println!("worst {worst:.4}");
    Ok(())
}
