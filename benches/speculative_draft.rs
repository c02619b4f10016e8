//! Speculative decoding A/B, interleaved in one run: the target model with each
//! `--speculative` mode (off, lookup, draft, lookup+draft) on an edit-style prompt (the
//! one in tests/speculative.rs) and a free-form one. Prints decode tok/s (median over
//! rounds) and the draft acceptance rate per mode.
//! Run: `cargo bench --bench speculative_draft` (env WICK_BENCH_TARGET / WICK_BENCH_DRAFT:
//! model files, default the 1.5B and the 0.5B test models; WICK_BENCH_ROUNDS,
//! WICK_BENCH_TOKENS).

use candle_core::Device;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wick::engine::{
    DraftModel, EngineOptions, GenerationRequest, Handle, SamplingParams, SpeculativeMode,
};
use wick::gguf::Gguf;
use wick::model::Model;
use wick::tokenizer::Tokenizer;

fn model_path(var: &str, file: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        home.join(".cache/wick/models").join(file)
    })
}

fn load(path: &Path) -> (Box<dyn Model>, Arc<Tokenizer>) {
    let mut gguf = Gguf::open(path).expect("open model");
    let tokenizer = Arc::new(Tokenizer::from_gguf(&gguf).expect("tokenizer"));
    let model = wick::model::load(&mut gguf, &Device::Cpu).expect("load");
    (model, tokenizer)
}

fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let target = model_path("WICK_BENCH_TARGET", "qwen2.5-coder-1.5b-instruct.gguf");
    let draft = model_path("WICK_BENCH_DRAFT", "qwen2.5-coder-0.5b-instruct.gguf");
    let rounds = env_usize("WICK_BENCH_ROUNDS", 3);
    let tokens = env_usize("WICK_BENCH_TOKENS", 128);
    let modes = [
        SpeculativeMode::Off,
        SpeculativeMode::Lookup,
        SpeculativeMode::Draft,
        SpeculativeMode::LookupDraft,
    ];
    let mut engines = Vec::new();
    let mut tokenizer = None;
    for mode in modes {
        let (model, tok) = load(&target);
        let d = mode
            .uses_draft_model()
            .then(|| DraftModel::new(load(&draft).0));
        let opts = EngineOptions {
            parallel: 1,
            ctx_size: 4096,
            // No prefix reuse: every round runs the same prompt from scratch.
            cache_bytes: 0,
            speculative: mode,
            ..EngineOptions::default()
        };
        engines.push(Handle::start_with_draft(model, tok.clone(), opts, d).expect("engine"));
        tokenizer = Some(tok);
    }
    let tokenizer = tokenizer.expect("a tokenizer");
    let code = "def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total / len(xs)\n\n\ndef median(xs):\n    s = sorted(xs)\n    n = len(s)\n    if n % 2:\n        return s[n // 2]\n    return (s[n // 2 - 1] + s[n // 2]) / 2\n";
    let prompts = [
        ("edit", format!("<|im_start|>user\nRepeat this Python file exactly, adding a docstring to each function.\n\n```python\n{code}```<|im_end|>\n<|im_start|>assistant\n```python\n")),
        ("chat", "<|im_start|>user\nExplain in a few paragraphs how a hash map handles collisions, and when you would pick open addressing over chaining.<|im_end|>\n<|im_start|>assistant\n".to_owned()),
    ];
    println!(
        "target {} draft {}; {rounds} rounds x {tokens} tokens, greedy",
        target.display(),
        draft.display()
    );
    println!(
        "| prompt | mode | decode tok/s (median) | tokens | drafted | accepted | acceptance |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, text) in &prompts {
        let ids = tokenizer.encode(text, true, true).expect("encode");
        let mut tps: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
        let before: Vec<_> = engines.iter().map(|e| e.stats()).collect();
        let mut produced = vec![0usize; modes.len()];
        for _ in 0..rounds {
            for (k, e) in engines.iter().enumerate() {
                let req = GenerationRequest {
                    prompt_ids: ids.clone(),
                    sampling: SamplingParams::default(),
                    max_tokens: tokens,
                    stop_strings: Vec::new(),
                    stop_ids: Vec::new(),
                    logprobs: None,
                    constraint: None,
                };
                let g = e.generate_blocking(req, |_| {}).expect("generate");
                tps[k].push(g.decode_tokens_per_second);
                produced[k] = g.ids.len();
            }
        }
        for (k, mode) in modes.iter().enumerate() {
            let (a, b) = (before[k], engines[k].stats());
            let drafted = b.spec_draft_tokens + b.spec_model_draft_tokens
                - a.spec_draft_tokens
                - a.spec_model_draft_tokens;
            let accepted = b.spec_accepted_tokens + b.spec_model_accepted_tokens
                - a.spec_accepted_tokens
                - a.spec_model_accepted_tokens;
            let mut v = tps[k].clone();
            v.sort_by(f64::total_cmp);
            let median = v[v.len() / 2];
            let rate = if drafted > 0 {
                format!("{:.0}%", 100.0 * accepted as f64 / drafted as f64)
            } else {
                "-".into()
            };
            println!(
                "| {name} | {mode:?} | {median:.2} | {} | {drafted} | {accepted} | {rate} |",
                produced[k]
            );
        }
    }
}
