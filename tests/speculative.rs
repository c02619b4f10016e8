//! Speculative decoding (prompt lookup) changes speed, never output: greedy generations
//! are token for token those of plain decoding on both test models, over the llama.cpp
//! reference prompts and an edit-style prompt that repeats its input; with sampling, the
//! output distribution is unchanged (a chi-square test on a toy Markov model with a
//! four-token vocabulary, against the exact distribution).
//! With a draft model (`--draft-model`): the 0.5B drafting for the 1.5B gives the 1.5B's
//! greedy output token for token; a draft whose tokenizer differs is refused, naming the
//! difference; and rejection sampling against a probabilistic toy draft keeps the toy
//! target's exact distribution.

mod common;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use std::sync::Arc;
use wick::engine::{
    DraftModel, EngineOptions, GenerationRequest, Handle, SamplingParams, SpeculativeMode,
};
use wick::gguf::Gguf;
use wick::model::{KvCache, Model, ModelError, ModelInfo};
use wick::tokenizer::Tokenizer;

fn load(file: &str) -> Result<(Box<dyn Model>, Arc<Tokenizer>)> {
    let mut gguf = Gguf::open(&common::test_model(file))?;
    let tokenizer = Arc::new(Tokenizer::from_gguf(&gguf)?);
    let model = wick::model::load(&mut gguf, &Device::Cpu)?;
    Ok((model, tokenizer))
}

fn options(speculative: SpeculativeMode) -> EngineOptions {
    EngineOptions {
        parallel: 1,
        max_queue: 4,
        ctx_size: 2048,
        speculative,
        // Every proposal verified: these tests check exactness under drafting, wherever
        // drafting would pay on this machine.
        draft_always: true,
        ..EngineOptions::default()
    }
}

fn request(prompt_ids: Vec<u32>, max_tokens: usize, sampling: SamplingParams) -> GenerationRequest {
    GenerationRequest {
        prompt_ids,
        sampling,
        max_tokens,
        stop_strings: Vec::new(),
        stop_ids: Vec::new(),
        logprobs: None,
        constraint: None,
    }
}

/// The reference prompts' ids (from llama.cpp's vectors) plus an edit-style chat prompt.
fn prompts(reference: &str, tokenizer: &Tokenizer) -> Result<Vec<(String, Vec<u32>)>> {
    let text = std::fs::read_to_string(common::test_data(&format!("reference/{reference}.json")))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let mut out = Vec::new();
    for p in v["prompts"].as_array().context("no prompts")? {
        let ids: Vec<u32> = p["prompt_ids"]
            .as_array()
            .context("prompt_ids")?
            .iter()
            .filter_map(|i| i.as_u64().map(|i| i as u32))
            .collect();
        out.push((p["name"].as_str().unwrap_or("?").to_owned(), ids));
    }
    let code = "def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n\n\ndef median(xs):\n    s = sorted(xs)\n    n = len(s)\n    if n % 2:\n        return s[n // 2]\n    return (s[n // 2 - 1] + s[n // 2]) / 2\n";
    let edit = format!(
        "<|im_start|>user\nRepeat this Python file exactly, adding a docstring to each function.\n\n```python\n{code}```<|im_end|>\n<|im_start|>assistant\n```python\n"
    );
    out.push((
        "edit".to_owned(),
        tokenizer
            .encode(&edit, true, true)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    ));
    Ok(out)
}

fn greedy_equal(file: &str, reference: &str) -> Result<()> {
    let (plain_model, tokenizer) = load(file)?;
    let (spec_model, _) = load(file)?;
    let plain = Handle::start(
        plain_model,
        tokenizer.clone(),
        options(SpeculativeMode::Off),
    )?;
    let spec = Handle::start(
        spec_model,
        tokenizer.clone(),
        options(SpeculativeMode::Lookup),
    )?;
    for (name, ids) in prompts(reference, &tokenizer)? {
        let a =
            plain.generate_blocking(request(ids.clone(), 96, SamplingParams::default()), |_| {})?;
        let b = spec.generate_blocking(request(ids, 96, SamplingParams::default()), |_| {})?;
        assert_eq!(
            a.ids, b.ids,
            "{file} {name}: drafting changed the greedy output"
        );
        assert_eq!(a.text, b.text, "{file} {name}");
        assert_eq!(a.finish_reason, b.finish_reason, "{file} {name}");
    }
    let c = spec.stats();
    let (proposed, accepted) = (c.spec_draft_tokens, c.spec_accepted_tokens);
    // The edit prompt repeats its input: drafts must have been proposed and used, or this
    // test would prove nothing about verification.
    assert!(
        accepted > 0,
        "{file}: {proposed} proposed, {accepted} accepted"
    );
    assert_eq!(plain.stats().spec_draft_tokens, 0);
    Ok(())
}

#[test]
fn greedy_output_identical_with_drafts_smollm2() -> Result<()> {
    greedy_equal(common::SMOLLM2, "smollm2-135m-instruct")
}

#[test]
fn greedy_output_identical_with_drafts_qwen() -> Result<()> {
    greedy_equal(common::QWEN05, "qwen2.5-coder-0.5b-instruct")
}

/// A first-order Markov model over four ordinary tokens of SmolLM2's vocabulary: the
/// logits depend only on the last token. It keeps no K/V (its cache only counts).
struct Markov {
    info: ModelInfo,
    ids: [u32; 4],
    logits: [[f32; 4]; 4],
}

impl Markov {
    /// A draft for `new`'s model: the same four tokens, different (flatter or sharper)
    /// preferences, so its proposals are sometimes right and sometimes not.
    fn draft(vocab_size: usize) -> Self {
        Markov {
            logits: [
                [0.2, 1.2, 1.0, -0.5],
                [0.0, -1.0, 2.5, 0.6],
                [0.4, 0.0, -0.3, 1.0],
                [2.2, 0.0, 0.5, -0.2],
            ],
            ..Markov::new(vocab_size)
        }
    }

    fn new(vocab_size: usize) -> Self {
        Markov {
            info: ModelInfo {
                architecture: "markov".into(),
                name: None,
                train_ctx: 4096,
                vocab_size,
            },
            ids: [300, 301, 302, 303],
            // Rows: previous token; a strong preference to continue a cycle, so lookup
            // drafts are often right but often wrong too.
            logits: [
                [0.0, 2.0, 0.5, -1.0],
                [0.3, 0.0, 1.8, 0.2],
                [1.0, -0.5, 0.0, 1.6],
                [1.5, 0.4, 0.1, 0.0],
            ],
        }
    }

    fn state(&self, id: u32) -> usize {
        self.ids.iter().position(|&t| t == id).unwrap_or(0)
    }

    /// Exact distribution of the `k`-th generated token (k from 1) after `last`.
    fn exact(&self, last: u32, k: usize) -> [f64; 4] {
        let p: Vec<[f64; 4]> = self
            .logits
            .iter()
            .map(|row| {
                let z: f64 = row.iter().map(|&l| (l as f64).exp()).sum();
                let mut r = [0.0; 4];
                for (o, &l) in r.iter_mut().zip(row) {
                    *o = (l as f64).exp() / z;
                }
                r
            })
            .collect();
        let mut dist = [0.0; 4];
        dist[self.state(last)] = 1.0;
        for _ in 0..k {
            let mut next = [0.0; 4];
            for (a, &pa) in dist.iter().enumerate() {
                for (b, n) in next.iter_mut().enumerate() {
                    *n += pa * p[a][b];
                }
            }
            dist = next;
        }
        dist
    }
}

impl Model for Markov {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn new_cache(&self, capacity: usize) -> Result<KvCache, ModelError> {
        Ok(KvCache::positions_only(capacity))
    }

    fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, ModelError> {
        let last = *tokens.last().ok_or(ModelError::EmptyInput)?;
        cache.advance(tokens.len());
        let mut v = vec![f32::NEG_INFINITY; self.info.vocab_size];
        for (j, &id) in self.ids.iter().enumerate() {
            v[id as usize] = self.logits[self.state(last)][j];
        }
        Ok(Tensor::from_vec(v, self.info.vocab_size, &Device::Cpu)?)
    }

    fn forward_all(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, ModelError> {
        let rows = tokens
            .iter()
            .map(|t| self.forward(std::slice::from_ref(t), cache))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor::stack(&rows, 0)?)
    }
}

/// Chi-square statistic of `counts` against the probabilities `p`.
fn chi_square(counts: &[usize; 4], p: &[f64; 4]) -> f64 {
    let n: usize = counts.iter().sum();
    counts
        .iter()
        .zip(p)
        .map(|(&c, &pi)| {
            let e = pi * n as f64;
            (c as f64 - e).powi(2) / e
        })
        .sum()
}

/// Samples `RUNS` generations of `STEPS` tokens from the toy target under `mode` (with the
/// toy draft model when the mode uses one) and checks each step's tokens against the
/// exact distribution. Returns the engine's counters.
fn chi_square_run(
    tokenizer: &Arc<Tokenizer>,
    mode: SpeculativeMode,
) -> Result<wick::engine::EngineStats> {
    const RUNS: u64 = 3000;
    const STEPS: usize = 6;
    // 3 degrees of freedom: 16.27 is the 0.1% critical value. The seeds are fixed, so the
    // test is deterministic; a broken acceptance rule shifts these far beyond it.
    const CRITICAL: f64 = 16.27;
    let model = Markov::new(tokenizer.vocab_size());
    let exact: Vec<[f64; 4]> = (1..=STEPS).map(|k| model.exact(301, k)).collect();
    let ids = model.ids;
    let draft = mode
        .uses_draft_model()
        .then(|| DraftModel::new(Box::new(Markov::draft(tokenizer.vocab_size()))));
    let engine =
        Handle::start_with_draft(Box::new(model), tokenizer.clone(), options(mode), draft)?;
    let mut counts = [[0usize; 4]; STEPS];
    for seed in 0..RUNS {
        let sampling = SamplingParams {
            temperature: 1.0,
            seed: Some(seed),
            ..SamplingParams::default()
        };
        // A prompt that repeats itself, so lookup always has something to propose.
        let prompt = vec![300, 301, 302, 303, 300, 301];
        let g = engine.generate_blocking(request(prompt, STEPS, sampling), |_| {})?;
        assert_eq!(g.ids.len(), STEPS);
        for (k, id) in g.ids.iter().enumerate() {
            let j = ids
                .iter()
                .position(|t| t == id)
                .context("a token outside the toy vocabulary")?;
            counts[k][j] += 1;
        }
    }
    for k in 0..STEPS {
        let x = chi_square(&counts[k], &exact[k]);
        assert!(
            x < CRITICAL,
            "{mode:?} step {}: counts {:?} vs exact {:?} (chi2 {x:.1})",
            k + 1,
            counts[k],
            exact[k]
        );
    }
    Ok(engine.stats())
}

#[test]
fn sampling_distribution_unchanged_by_drafts() -> Result<()> {
    let (_, tokenizer) = load(common::SMOLLM2)?;
    let off = chi_square_run(&tokenizer, SpeculativeMode::Off)?;
    assert_eq!(off.spec_draft_tokens + off.spec_model_draft_tokens, 0);
    let c = chi_square_run(&tokenizer, SpeculativeMode::Lookup)?;
    let (proposed, accepted) = (c.spec_draft_tokens, c.spec_accepted_tokens);
    assert!(
        proposed > 1000 && accepted > 100 && accepted < proposed,
        "drafts were not exercised: {proposed} proposed, {accepted} accepted"
    );
    Ok(())
}

/// The general rejection rule (accept with min(1, p/q), else resample from
/// norm(max(0, p - q))) with a draft model that samples from its own distribution q.
#[test]
fn sampling_distribution_unchanged_by_a_probabilistic_draft() -> Result<()> {
    let (_, tokenizer) = load(common::SMOLLM2)?;
    let c = chi_square_run(&tokenizer, SpeculativeMode::Draft)?;
    let (proposed, accepted) = (c.spec_model_draft_tokens, c.spec_model_accepted_tokens);
    assert!(
        proposed > 1000 && accepted > 100 && accepted < proposed,
        "model drafts were not exercised: {proposed} proposed, {accepted} accepted"
    );
    assert_eq!(c.spec_draft_tokens, 0, "draft mode must not use lookup");
    Ok(())
}

/// Greedy output of the 1.5B with the 0.5B drafting is the 1.5B's own, token for token
/// (short generations: CI has two cores).
#[test]
fn greedy_output_identical_with_a_draft_model_qwen() -> Result<()> {
    let (plain_model, tokenizer) = load(common::QWEN15)?;
    let (spec_model, _) = load(common::QWEN15)?;
    let (draft_model, _) = load(common::QWEN05)?;
    let plain = Handle::start(
        plain_model,
        tokenizer.clone(),
        options(SpeculativeMode::Off),
    )?;
    let spec = Handle::start_with_draft(
        spec_model,
        tokenizer.clone(),
        options(SpeculativeMode::Draft),
        Some(DraftModel::new(draft_model)),
    )?;
    let all = prompts("qwen2.5-coder-0.5b-instruct", &tokenizer)?;
    // The edit prompt, and the first reference prompt (free-form text).
    let picked = [all.last(), all.first()];
    for (name, ids) in picked.into_iter().flatten() {
        let a =
            plain.generate_blocking(request(ids.clone(), 40, SamplingParams::default()), |_| {})?;
        let b =
            spec.generate_blocking(request(ids.clone(), 40, SamplingParams::default()), |_| {})?;
        assert_eq!(
            a.ids, b.ids,
            "{name}: the draft model changed the greedy output"
        );
        assert_eq!(a.text, b.text, "{name}");
        assert_eq!(a.finish_reason, b.finish_reason, "{name}");
    }
    let c = spec.stats();
    let (proposed, accepted) = (c.spec_model_draft_tokens, c.spec_model_accepted_tokens);
    assert!(accepted > 0, "{proposed} proposed, {accepted} accepted");
    // The same request again: the draft's KV was freed with the slot and rebuilt, while
    // the model reuses its cached prefix; the output must not change.
    let (name, ids) = all.last().context("no prompts")?;
    let a = plain.generate_blocking(request(ids.clone(), 24, SamplingParams::default()), |_| {})?;
    let b = spec.generate_blocking(request(ids.clone(), 24, SamplingParams::default()), |_| {})?;
    assert_eq!(a.ids, b.ids, "{name} (prefix reuse)");
    Ok(())
}

/// A draft whose tokenizer differs is refused at load, naming the difference: by the
/// check itself and by `wick serve` (before it binds a port).
#[test]
fn draft_with_another_tokenizer_is_refused() -> Result<()> {
    let qwen = Gguf::open(&common::test_model(common::QWEN15))?;
    let smol = Gguf::open(&common::test_model(common::SMOLLM2))?;
    let why = wick::tokenizer::compat::check_same_tokenizer(&qwen, &smol)
        .expect_err("SmolLM2 must not draft for Qwen");
    assert!(why.contains("vocabulary size"), "{why}");
    let same = Gguf::open(&common::test_model(common::QWEN05))?;
    wick::tokenizer::compat::check_same_tokenizer(&qwen, &same)
        .map_err(|e| anyhow::anyhow!("Qwen 0.5B must be accepted as a draft for 1.5B: {e}"))?;
    let out = std::process::Command::new(common::wick_bin())
        .arg("serve")
        .arg("--model")
        .arg(common::test_model(common::QWEN15))
        .arg("--draft-model")
        .arg(common::test_model(common::SMOLLM2))
        .args(["--port", "0"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve started: {stderr}");
    assert!(
        stderr.contains("error:")
            && stderr.contains("tokenizer differs")
            && stderr.contains("vocabulary size"),
        "{stderr}"
    );
    Ok(())
}
