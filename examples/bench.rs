//! Times wick's forward pass on one GGUF: prefill of a prompt (default: 256 tokens) and
//! greedy decode of N tokens, then prints one JSON line
//! `{"prefill_tps","decode_tps","peak_rss_mb",...}`. `scripts/bench` runs it beside
//! llama.cpp on the same prompt ids.
//!
//! cargo run --release --example bench -- MODEL.gguf [--prompt-ids FILE.json]
//!     [--prompt-tokens 256] [--decode 64] [--requant] [--candle-kernels] [--threads N]
//!     [--streams N]   (N sequences decoded together: aggregate decode tok/s)

use anyhow::{bail, Context, Result};
use candle_core::quantized::GgmlDType;
use candle_core::Device;
use std::time::Instant;
use wick::gguf::Gguf;
use wick::model::{self, LoadOptions};

struct Args {
    model: String,
    prompt_ids: Option<String>,
    prompt_tokens: usize,
    decode: usize,
    requant: bool,
    candle_kernels: bool,
    streams: usize,
    threads: Option<usize>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        model: String::new(),
        prompt_ids: None,
        prompt_tokens: 256,
        decode: 64,
        requant: false,
        candle_kernels: false,
        streams: 1,
        threads: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--prompt-ids" => a.prompt_ids = Some(it.next().context("--prompt-ids FILE")?),
            "--prompt-tokens" => a.prompt_tokens = it.next().context("N")?.parse()?,
            "--decode" => a.decode = it.next().context("N")?.parse()?,
            "--requant" => a.requant = true,
            "--candle-kernels" => a.candle_kernels = true,
            "--streams" => a.streams = it.next().context("--streams N")?.parse()?,
            "--threads" => a.threads = Some(it.next().context("--threads N")?.parse()?),
            s if s.starts_with("--") => bail!("unknown flag {s}"),
            s => a.model = s.to_owned(),
        }
    }
    if a.model.is_empty() {
        bail!("usage: bench MODEL.gguf [--prompt-ids FILE] [--prompt-tokens N] [--decode N]");
    }
    Ok(a)
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`; 0 elsewhere).
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn main() -> Result<()> {
    let args = parse_args()?;
    // Before any candle op, so both of candle's pools are built with this size.
    wick::engine::threads::configure(args.threads);
    let mut gguf = Gguf::open(std::path::Path::new(&args.model))?;
    let mut options = LoadOptions {
        cpu_kernels: !args.candle_kernels,
        ..LoadOptions::default()
    };
    if args.requant {
        options.requantize_to_q8_0 = vec![GgmlDType::Q4_0, GgmlDType::Q5_0];
    }
    let t_load = Instant::now();
    let model = model::load_with(&mut gguf, &Device::Cpu, &options)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let vocab = model.info().vocab_size as u32;
    let prompt: Vec<u32> = match &args.prompt_ids {
        Some(f) => serde_json::from_slice(&std::fs::read(f)?)?,
        // A deterministic spread of ordinary ids when no tokenized prompt is given.
        None => (0..args.prompt_tokens as u32)
            .map(|i| 1000 + (i * 7919) % (vocab.min(30_000) - 1000))
            .collect(),
    };
    let mut cache = model.new_cache(prompt.len() + args.decode + 1)?;

    // Warm-up outside the timings: first-touch page faults and thread-pool start.
    let mut warm = model.new_cache(8)?;
    model.forward(&prompt[..prompt.len().min(4)], &mut warm)?;
    drop(warm);

    let t = Instant::now();
    let mut next = argmax(&model.forward(&prompt, &mut cache)?.to_vec1::<f32>()?);
    let prefill_s = t.elapsed().as_secs_f64();
    let decode_s = if args.streams <= 1 {
        let t = Instant::now();
        for _ in 0..args.decode {
            next = argmax(&model.forward(&[next], &mut cache)?.to_vec1::<f32>()?);
        }
        t.elapsed().as_secs_f64()
    } else {
        // Every stream starts from the prefilled prompt; one step decodes all of them.
        let mut caches = Vec::with_capacity(args.streams);
        for _ in 0..args.streams {
            let mut c = model.new_cache(prompt.len() + args.decode + 1)?;
            model.forward(&prompt, &mut c)?;
            caches.push(c);
        }
        let mut tokens: Vec<u32> = (0..args.streams as u32).map(|i| next + i).collect();
        let t = Instant::now();
        for _ in 0..args.decode {
            let mut refs: Vec<&mut model::KvCache> = caches.iter_mut().collect();
            let rows: Vec<Vec<f32>> = model.forward_batch(&tokens, &mut refs)?.to_vec2()?;
            tokens = rows.iter().map(|r| argmax(r)).collect();
        }
        next = tokens[0];
        t.elapsed().as_secs_f64() / args.streams as f64
    };
    println!(
        "{}",
        serde_json::json!({
            "engine": "wick",
            "prompt_tokens": prompt.len(),
            "decode_tokens": args.decode,
            "prefill_tps": prompt.len() as f64 / prefill_s,
            "decode_tps": args.decode as f64 / decode_s,
            "peak_rss_mb": peak_rss_mb(),
            "load_s": load_s,
            "last_id": next,
            "threads": wick::engine::threads::current(),
            "streams": args.streams,
        })
    );
    Ok(())
}
