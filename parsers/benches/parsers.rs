//! Throughput of every `PARSERS` entry, one-shot and streamed one character at a time,
//! in bytes/s. Input per parser: that parser's conformance-corpus outputs concatenated
//! (text, calls, malformed and truncated calls), repeated to about 64 KiB; plus a 1 MiB
//! run of the same text in 1-character chunks for `auto` (the "1 MB" figure).
//!
//! cargo bench -p wick-parsers --bench parsers

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::Value;
use std::time::Duration;
use wick_parsers::{Event, ToolSpec, PARSERS};

const CORPUS: &str = include_str!("../tests/cases.jsonl");

fn cases() -> Vec<Value> {
    CORPUS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn tools(cases: &[Value]) -> Vec<ToolSpec> {
    let mut all: Vec<ToolSpec> = Vec::new();
    for c in cases {
        if let Some(t) = c.get("tools").and_then(|t| ToolSpec::from_openai(t).ok()) {
            for spec in t {
                if !all.iter().any(|s| s.name == spec.name) {
                    all.push(spec);
                }
            }
        }
    }
    all
}

fn input_for(name: &str, cases: &[Value], size: usize) -> String {
    let mut one = String::new();
    for c in cases {
        let p = c["parser"].as_str().unwrap_or_default();
        if p == name || name == "auto" {
            one.push_str(c["input"].as_str().unwrap_or_default());
            one.push_str("\n\n");
        }
    }
    let mut s = String::with_capacity(size + one.len());
    while s.len() < size {
        s.push_str(&one);
    }
    s
}

fn run(name: &str, input: &str, tools: &[ToolSpec], one_char: bool) -> usize {
    let spec = wick_parsers::by_name(name).expect("registered parser");
    let mut parser = (spec.new)(tools);
    let mut events: Vec<Event> = Vec::new();
    let mut calls = 0;
    if one_char {
        let mut buf = [0u8; 4];
        for ch in input.chars() {
            parser.push(ch.encode_utf8(&mut buf), &mut events);
            calls += events
                .iter()
                .filter(|e| matches!(e, Event::CallEnd { .. }))
                .count();
            events.clear();
        }
    } else {
        parser.push(input, &mut events);
    }
    parser.finish(&mut events);
    calls
        + events
            .iter()
            .filter(|e| matches!(e, Event::CallEnd { .. }))
            .count()
}

fn bench(c: &mut Criterion) {
    let cases = cases();
    let tools = tools(&cases);
    let mut group = c.benchmark_group("parsers");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(2));
    group.warm_up_time(Duration::from_millis(300));
    for spec in PARSERS {
        let input = input_for(spec.name, &cases, 64 * 1024);
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_with_input(BenchmarkId::new(spec.name, "one-shot"), &input, |b, i| {
            b.iter(|| run(spec.name, i, &tools, false))
        });
        group.bench_with_input(BenchmarkId::new(spec.name, "1-char"), &input, |b, i| {
            b.iter(|| run(spec.name, i, &tools, true))
        });
    }
    let mb = input_for("auto", &cases, 1 << 20);
    group.throughput(Throughput::Bytes(mb.len() as u64));
    group.bench_with_input(BenchmarkId::new("auto", "1MiB-1-char"), &mb, |b, i| {
        b.iter(|| run("auto", i, &tools, true))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
