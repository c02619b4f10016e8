//! Real Gemma 3 weights (gemma3-270m Q4_K_M, fetched by scripts/fetch-test-models through
//! `wick pull gemma3-270m`) against llama.cpp (tests/reference/gemma3-270m.json, made by
//! scripts/llama-reference.py with `--suite gemma3`): its SentencePiece tokenization (with
//! and without BOS) and its greedy continuations with top-5 logprobs.

mod common;

use anyhow::{ensure, Context, Result};
use candle_core::Device;
use common::greedy::{check_prompt, ids};
use serde_json::Value;
use std::process::Command;
use wick::gguf::Gguf;
use wick::model;
use wick::tokenizer::Tokenizer;

const GEMMA3: &str = "gemma3-270m-q4_k_m.gguf";

/// Max |wick - llama.cpp| over the reference's top-5 logprobs at the kept steps (those
/// where llama.cpp's top-1/top-2 gap is at least 0.3 nats). Measured on this machine over
/// 12 prompts (61 kept steps, every greedy token equal): 0.16-0.80 per prompt, the largest
/// on the 25-step `python_class` continuation. That is more than Qwen2.5's 0.28 and not
/// yet explained: Gemma 3 has 18 layers of Q5_0/Q4_K/Q6_K matmuls whose 8-bit activation
/// rounding llama.cpp and wick sum in different orders (llama.cpp itself moves Qwen's and
/// SmolLM2's logprobs by 0.22-0.26 just by batching the prompt differently,
/// tests/model_reference.rs), but a tensor-by-tensor trace has not been done for it.
const TOL: f64 = 1.0;

fn reference() -> Result<Value> {
    Ok(serde_json::from_slice(&std::fs::read(common::test_data(
        "reference/gemma3-270m.json",
    ))?)?)
}

#[test]
fn gemma3_tokenizes_as_llama_cpp() -> Result<()> {
    let gguf = Gguf::open(&common::test_model(GEMMA3))?;
    let tok = Tokenizer::from_gguf(&gguf)?;
    let data = reference()?;
    let cases = data["tokenizer"].as_array().context("tokenizer")?;
    ensure!(!cases.is_empty());
    for c in cases {
        let text = c["text"].as_str().context("text")?;
        ensure!(
            tok.encode(text, false, true)? == ids(&c["ids"])?,
            "{text:?}: no-special ids differ"
        );
        ensure!(
            tok.encode(text, true, true)? == ids(&c["ids_add_special"])?,
            "{text:?}: ids with BOS differ"
        );
    }
    for p in data["prompts"].as_array().context("prompts")? {
        let text = p["prompt"].as_str().context("prompt")?;
        ensure!(
            tok.encode(text, true, true)? == ids(&p["prompt_ids"])?,
            "prompt {text:?}"
        );
    }
    Ok(())
}

#[test]
fn gemma3_matches_llama_cpp_greedy_continuations() -> Result<()> {
    let mut gguf = Gguf::open(&common::test_model(GEMMA3))?;
    let m = model::load(&mut gguf, &Device::Cpu)?;
    let data = reference()?;
    let mut total = 0;
    for p in data["prompts"].as_array().context("prompts")? {
        let (steps, diff) = check_prompt(m.as_ref(), p, TOL)?;
        total += steps;
        eprintln!(
            "gemma3-270m {}: {steps} greedy steps equal, max top-5 logprob difference {diff:.5}",
            p["name"].as_str().unwrap_or("?")
        );
    }
    ensure!(total >= 40, "only {total} steps compared");
    Ok(())
}

#[test]
fn cli_tokenize_adds_bos_only_with_add_special() -> Result<()> {
    let model = common::test_model(GEMMA3);
    let run = |extra: &[&str]| -> Result<Vec<u32>> {
        let out = Command::new(common::wick_bin())
            .args(["tokenize", "--model"])
            .arg(&model)
            .args(["--text", "Hello world"])
            .args(extra)
            .output()?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout)?;
        ids(&v["ids"])
    };
    let plain = run(&[])?;
    let special = run(&["--add-special"])?;
    ensure!(plain.first() != Some(&2), "no BOS by default: {plain:?}");
    ensure!(
        special[0] == 2 && special[1..] == plain[..],
        "{special:?} vs {plain:?}"
    );
    Ok(())
}
