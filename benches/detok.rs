//! Tokenizer benchmarks on the Qwen2.5-Coder 0.5B vocabulary (151,936 tokens):
//! - `detok/push_into`: the streaming detokenizer, one token at a time (the engine's per-token
//!   path), throughput in tokens/s;
//! - `tokenizer/encode_code`: encoding a long code prompt, throughput in bytes/s (tokens/s is
//!   printed once at start);
//! - `tokenizer/load`: building the tokenizer from already-parsed GGUF metadata (the time
//!   to open the file as well is printed once at start).
//!
//! Run: `cargo bench --bench detok`. Needs the test models (scripts/fetch-test-models).

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use wick::gguf::Gguf;
use wick::tokenizer::{Detokenizer, Tokenizer};

/// About 100 KB of real code (this crate's tokenizer sources, repeated), with a little CJK
/// and emoji so the detokenizer also holds partial characters.
fn long_code_prompt() -> String {
    let sources = [
        include_str!("../src/tokenizer/mod.rs"),
        include_str!("../src/tokenizer/vocab.rs"),
        include_str!("../src/tokenizer/detok.rs"),
        include_str!("../src/tokenizer/pretok.rs"),
        "// 注释：你好，世界 👍🏽 — ünïcödé\n",
    ];
    let one: String = sources.concat();
    let mut text = String::new();
    while text.len() < 100_000 {
        text.push_str(&one);
    }
    text
}

fn open_qwen() -> Gguf {
    match Gguf::open(&common::test_model(common::QWEN05)) {
        Ok(g) => g,
        Err(e) => panic!("cannot open the Qwen test model: {e}"),
    }
}

fn benches(c: &mut Criterion) {
    // What a user waits for: opening the file (metadata parse) plus building the tokenizer.
    let start = std::time::Instant::now();
    let loaded = Tokenizer::from_gguf(&open_qwen()).map(|t| t.vocab_size());
    println!(
        "open GGUF + build tokenizer: {:.0} ms ({loaded:?} tokens)",
        start.elapsed().as_secs_f64() * 1e3
    );
    let gguf = open_qwen();
    let tokenizer = match Tokenizer::from_gguf(&gguf) {
        Ok(t) => t,
        Err(e) => panic!("cannot build the tokenizer: {e}"),
    };
    let text = long_code_prompt();
    let ids = match tokenizer.encode(&text, false, true) {
        Ok(ids) => ids,
        Err(e) => panic!("encode failed: {e}"),
    };
    let start = std::time::Instant::now();
    let _ = tokenizer.encode(&text, false, true);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "encode: {} bytes -> {} tokens in {:.1} ms ({:.0} tokens/s)",
        text.len(),
        ids.len(),
        secs * 1e3,
        ids.len() as f64 / secs
    );

    let mut g = c.benchmark_group("detok");
    g.throughput(Throughput::Elements(ids.len() as u64));
    let mut d = Detokenizer::new();
    let mut out = String::with_capacity(text.len() * 2);
    g.bench_function("push_into", |b| {
        b.iter(|| {
            out.clear();
            d.reset();
            for &id in &ids {
                d.push_into(&tokenizer, black_box(id), &mut out);
            }
            d.finish_into(&mut out);
            black_box(out.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("tokenizer");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(10);
    g.bench_function("encode_code", |b| {
        b.iter(|| {
            tokenizer
                .encode(black_box(&text), false, true)
                .map(|v| v.len())
        })
    });
    g.throughput(Throughput::Elements(tokenizer.vocab_size() as u64));
    g.bench_function("load", |b| {
        b.iter(|| Tokenizer::from_gguf(black_box(&gguf)).map(|t| t.vocab_size()))
    });
    g.finish();
}

criterion_group!(tokenizer_benches, benches);
criterion_main!(tokenizer_benches);
