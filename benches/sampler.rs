//! Sampler throughput on a Qwen-sized vocabulary (151,936 logits): greedy, top-k, top-p,
//! and everything at once with penalties. Time per call is time per generated token.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use wick::engine::sampler::{Sampler, TokenBytes};
use wick::engine::SamplingParams;

const VOCAB: usize = 151_936;

struct NoBytes;
impl TokenBytes for NoBytes {
    fn token_bytes(&self, _id: u32) -> &[u8] {
        b""
    }
}

/// Deterministic, roughly model-like logits: a few large values over a broad low floor.
fn logits() -> Vec<f32> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..VOCAB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 40) as f32 / (1u64 << 24) as f32;
            -8.0 + 12.0 * u * u * u * u
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let logits = logits();
    let cases: [(&str, SamplingParams); 5] = [
        ("greedy", SamplingParams::default()),
        (
            "temperature",
            SamplingParams {
                temperature: 0.8,
                seed: Some(1),
                ..Default::default()
            },
        ),
        (
            "top_k_40",
            SamplingParams {
                temperature: 0.8,
                top_k: Some(40),
                seed: Some(1),
                ..Default::default()
            },
        ),
        (
            "top_p_0.95",
            SamplingParams {
                temperature: 0.8,
                top_p: 0.95,
                seed: Some(1),
                ..Default::default()
            },
        ),
        (
            "all_with_penalties",
            SamplingParams {
                temperature: 0.8,
                top_k: Some(40),
                top_p: 0.95,
                min_p: 0.05,
                seed: Some(1),
                repetition_penalty: 1.1,
                presence_penalty: 0.5,
                frequency_penalty: 0.5,
            },
        ),
    ];
    let mut g = c.benchmark_group("sampler");
    for (name, params) in cases {
        let mut s = Sampler::new(params);
        for id in 0..256u32 {
            s.accept(id * 97);
        }
        g.bench_function(name, |b| {
            b.iter(|| s.sample(black_box(&logits), true, None, &NoBytes))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
