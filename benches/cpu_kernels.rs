//! Throughput of wick's CPU kernels (`src/model/cpu`) on Qwen2.5-Coder-0.5B's shapes:
//! quantized matmuls `[t, k] x [n, k]^T` for one token (decode) and a 256-token prefill
//! batch, and the prefill attention against its one-query-at-a-time reference.
//! Elements = multiply-adds, so criterion's "Melem/s" is MMAC/s.
//!
//!   cargo bench --bench cpu_kernels [-- FILTER]
//!
//! llama.cpp's kernels on the same machine for comparison: see docs/kernels.md (from
//! `test-backend-ops perf -o MUL_MAT`, same types and shapes, 2 threads).

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use wick::model::kernels::{attention, attention_reference, AttentionShape, QuantMatMul};

fn matmuls(c: &mut Criterion) {
    let mut g = c.benchmark_group("matmul");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    // (n, k): attention Q/O, MLP gate/up, MLP down.
    for (name, n, k) in [("qo", 896, 896), ("up", 4864, 896), ("down", 896, 4864)] {
        for dt in [
            GgmlDType::Q5_0,
            GgmlDType::Q8_0,
            GgmlDType::Q4_1,
            GgmlDType::Q6K,
        ] {
            if k % dt.block_size() != 0 {
                continue;
            }
            let w = Tensor::randn(0f32, 1.0, (n, k), &Device::Cpu).unwrap();
            let m = QuantMatMul::new(QTensor::quantize(&w, dt).unwrap()).unwrap();
            for t in [1usize, 256] {
                let x = Tensor::randn(0f32, 1.0, (t, k), &Device::Cpu).unwrap();
                g.throughput(Throughput::Elements((n * k * t) as u64));
                g.bench_function(format!("{dt:?}/{name}_{n}x{k}/t{t}"), |b| {
                    b.iter(|| black_box(m.forward(&x).unwrap()))
                });
            }
        }
    }
    g.finish();
}

/// f16-representable pseudo-random values in [-r, r].
fn values(n: usize, seed: u32, r: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(3);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            half::f16::from_f32(((s % 20001) as f32 / 10000.0 - 1.0) * r).to_f32()
        })
        .collect()
}

fn attentions(c: &mut Criterion) {
    let mut g = c.benchmark_group("attention");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for t in [256usize, 1024] {
        let s = AttentionShape {
            t,
            pos: 0,
            n_head: 14,
            n_kv_head: 2,
            head_dim: 64,
        };
        let q = values(s.n_head * t * 64, 1, 4.0);
        let k_t = values(s.n_kv_head * 64 * t, 2, 4.0);
        let v = values(s.n_kv_head * t * 64, 3, 1.0);
        // Causal: QK^T and PV each take t(t+1)/2 * head_dim multiply-adds per head.
        g.throughput(Throughput::Elements((s.n_head * t * (t + 1) * 64) as u64));
        g.bench_function(format!("tiled/t{t}"), |b| {
            b.iter(|| black_box(attention(&q, &k_t, &v, s)))
        });
        g.bench_function(format!("reference/t{t}"), |b| {
            b.iter(|| black_box(attention_reference(&q, &k_t, &v, s)))
        });
    }
    g.finish();
}

criterion_group!(benches, matmuls, attentions);
criterion_main!(benches);
