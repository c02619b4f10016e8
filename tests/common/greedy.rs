//! Greedy decoding against a llama.cpp reference made by scripts/llama-reference.py.
use anyhow::{ensure, Context, Result};
use serde_json::Value;
use wick::model::Model;

pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    logits.iter().map(|&l| l as f64 - lse).collect()
}

pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

pub fn ids(v: &Value) -> Result<Vec<u32>> {
    v.as_array()
        .context("not an array")?
        .iter()
        .map(|x| Ok(x.as_u64().context("not an id")? as u32))
        .collect()
}

/// Checks one prompt's kept steps; returns (steps checked, largest logprob difference).
pub fn check_prompt(model: &dyn Model, p: &Value, tol: f64) -> Result<(usize, f64)> {
    let name = p["name"].as_str().unwrap_or("?");
    let prompt = ids(&p["prompt_ids"])?;
    let expected = ids(&p["generated_ids"])?;
    let kept = p["kept_steps"].as_u64().context("kept_steps")? as usize;
    let top = p["top_logprobs"].as_array().context("top_logprobs")?;
    let mut cache = model.new_cache(prompt.len() + expected.len() + 1)?;
    let mut logits: Vec<f32> = model.forward(&prompt, &mut cache)?.to_vec1()?;
    let mut max_diff = 0f64;
    for (step, &want) in expected.iter().enumerate().take(kept) {
        let lp = log_softmax(&logits);
        for e in top[step].as_array().context("step")? {
            let id = e["id"].as_u64().context("id")? as usize;
            let reference = e["logprob"].as_f64().context("logprob")?;
            let diff = (lp[id] - reference).abs();
            max_diff = max_diff.max(diff);
            ensure!(
                diff <= tol,
                "{name} step {step}: logprob of {id} is {:.5}, llama.cpp {reference:.5}",
                lp[id]
            );
        }
        let got = argmax(&logits);
        ensure!(
            got == want,
            "{name} step {step}: greedy token {got}, llama.cpp {want}"
        );
        logits = model.forward(&[want], &mut cache)?.to_vec1()?;
    }
    Ok((kept, max_diff))
}
