//! Prometheus metrics: counters and histograms kept in memory, rendered as the text format
//! on `GET /metrics`. Updated once per request (never per token), so plain mutexes suffice.
//! Must not depend on axum or the engine.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const TTFT_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
const DECODE_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0];

struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    total: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            total: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.total += 1;
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.total);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.total);
    }
}

/// Gauges read from the engine at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub loaded: bool,
    pub queue_depth: usize,
    pub active: usize,
    /// Counters and gauges the engine keeps (`engine::EngineStats`, copied field by field
    /// so that this module stays independent of the engine).
    pub engine: EngineFigures,
}

/// What `/metrics` shows of the engine's own accounting.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineFigures {
    pub prefix_lookups: u64,
    pub prefix_hits: u64,
    pub prefix_tokens_reused: u64,
    pub prefix_cache_bytes: u64,
    pub active_kv_bytes: u64,
    pub cancelled_queued: u64,
    pub cancelled_prefill: u64,
    pub cancelled_slow_reader: u64,
    pub spec_draft_tokens: u64,
    pub spec_accepted_tokens: u64,
    /// The same for the draft model's drafts (`--draft-model`).
    pub spec_model_draft_tokens: u64,
    pub spec_model_accepted_tokens: u64,
}

impl EngineFigures {
    fn render(&self, out: &mut String) {
        let rows: [(&str, &str, &str, u64); 8] = [
            ("wick_prefix_cache_lookups_total", "counter", "Admitted requests that looked for a cached prompt prefix.", self.prefix_lookups),
            ("wick_prefix_cache_hits_total", "counter", "Admitted requests that reused a cached prompt prefix.", self.prefix_hits),
            ("wick_prefix_cache_tokens_reused_total", "counter", "Prompt tokens whose KV came from the prefix cache instead of a prefill.", self.prefix_tokens_reused),
            ("wick_prefix_cache_bytes", "gauge", "Bytes of KV kept for prefix reuse (bounded by --cache-ram).", self.prefix_cache_bytes),
            ("wick_kv_active_bytes", "gauge", "Bytes of KV held by the running sequences.", self.active_kv_bytes),
            ("wick_engine_cancelled_queued_total", "counter", "Queued requests dropped because their client left before a slot was free.", self.cancelled_queued),
            ("wick_engine_cancelled_prefill_total", "counter", "Requests cancelled during their prefill because their client left.", self.cancelled_prefill),
            ("wick_engine_cancelled_slow_reader_total", "counter", "Streams cancelled because the client read nothing while --stream-buffer events waited.", self.cancelled_slow_reader),
        ];
        for (name, kind, help, v) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        // Speculative decoding, one series per drafting method (`--speculative`).
        let spec = [
            ("wick_speculative_draft_tokens_total", "Draft tokens proposed for verification, by drafting method (lookup: prompt lookup; draft: --draft-model).", [self.spec_draft_tokens, self.spec_model_draft_tokens]),
            ("wick_speculative_accepted_tokens_total", "Draft tokens the model confirmed (each saved one forward pass), by drafting method.", [self.spec_accepted_tokens, self.spec_model_accepted_tokens]),
        ];
        for (name, help, [lookup, draft]) in spec {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{method=\"lookup\"}} {lookup}\n{name}{{method=\"draft\"}} {draft}"
            );
        }
    }
}

pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    prompt_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    tool_calls: AtomicU64,
    tool_parse_failures: AtomicU64,
    cancelled: AtomicU64,
    /// (active parser, parser that would read the calls or `json`) → responses.
    parser_mismatches: Mutex<BTreeMap<(String, String), u64>>,
    parser_fallbacks: AtomicU64,
    /// Responses-API tool types wick does not run (ignored per the documented rule) → count.
    ignored_tools: Mutex<BTreeMap<String, u64>>,
    ttft: Mutex<Histogram>,
    decode: Mutex<Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            prompt_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            tool_calls: AtomicU64::new(0),
            tool_parse_failures: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            parser_mismatches: Mutex::new(BTreeMap::new()),
            parser_fallbacks: AtomicU64::new(0),
            ignored_tools: Mutex::new(BTreeMap::new()),
            ttft: Mutex::new(Histogram::new(TTFT_BUCKETS)),
            decode: Mutex::new(Histogram::new(DECODE_BUCKETS)),
        }
    }
}

impl Metrics {
    pub fn record_request(&self, route: &str, status: u16) {
        // A poisoned lock only means another thread panicked mid-update; the map is still
        // usable, and metrics must never take the server down.
        let mut m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry((route.to_owned(), status)).or_insert(0) += 1;
    }

    pub fn record_generation(&self, prompt: usize, generated: usize, ttft: f64, decode_tps: f64) {
        self.prompt_tokens
            .fetch_add(prompt as u64, Ordering::Relaxed);
        self.generated_tokens
            .fetch_add(generated as u64, Ordering::Relaxed);
        if generated > 0 {
            let mut h = self.ttft.lock().unwrap_or_else(|e| e.into_inner());
            h.observe(ttft);
        }
        if generated > 1 {
            let mut h = self.decode.lock().unwrap_or_else(|e| e.into_inner());
            h.observe(decode_tps);
        }
    }

    /// Tokens of a generation that stopped early (its client left): counted without the
    /// timing histograms, which would be skewed by a partial run.
    pub fn record_partial_generation(&self, prompt: usize, generated: usize) {
        self.prompt_tokens
            .fetch_add(prompt as u64, Ordering::Relaxed);
        self.generated_tokens
            .fetch_add(generated as u64, Ordering::Relaxed);
    }

    pub fn record_tool_calls(&self, parsed: usize, rejected: usize) {
        self.tool_calls.fetch_add(parsed as u64, Ordering::Relaxed);
        self.tool_parse_failures
            .fetch_add(rejected as u64, Ordering::Relaxed);
    }

    pub fn record_cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    /// A response whose calls the active parser missed; `would_parse_with` is the parser
    /// that reads them, or `json` for bare JSON naming a declared tool.
    pub fn record_parser_mismatch(&self, parser: &str, would_parse_with: &str) {
        let mut m = self
            .parser_mismatches
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *m.entry((parser.to_owned(), would_parse_with.to_owned()))
            .or_insert(0) += 1;
    }

    /// A response answered with the calls of the fallback parser (`--tool-parser-fallback`).
    pub fn record_parser_fallback(&self) {
        self.parser_fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// A `/v1/responses` tool of a type other than `function`, ignored.
    pub fn record_ignored_tool(&self, kind: &str) {
        let mut m = self.ignored_tools.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(kind.to_owned()).or_insert(0) += 1;
    }

    /// Prometheus text exposition format.
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::with_capacity(2048);
        out.push_str("# HELP wick_requests_total HTTP requests by route and status.\n# TYPE wick_requests_total counter\n");
        {
            let m = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            for ((route, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "wick_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let v = v.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "wick_model_loaded",
            "1 once the model is loaded.",
            u64::from(gauges.loaded),
        );
        gauge(
            &mut out,
            "wick_queue_depth",
            "Requests waiting for a slot.",
            gauges.queue_depth as u64,
        );
        gauge(
            &mut out,
            "wick_active_sequences",
            "Sequences generating now.",
            gauges.active as u64,
        );
        counter(
            &mut out,
            "wick_prompt_tokens_total",
            "Prompt tokens processed.",
            &self.prompt_tokens,
        );
        counter(
            &mut out,
            "wick_tokens_generated_total",
            "Completion tokens generated.",
            &self.generated_tokens,
        );
        counter(
            &mut out,
            "wick_tool_calls_total",
            "Tool calls parsed from model output.",
            &self.tool_calls,
        );
        counter(
            &mut out,
            "wick_tool_parse_failures_total",
            "Call-like output that no parser could read (kept as content).",
            &self.tool_parse_failures,
        );
        counter(
            &mut out,
            "wick_requests_cancelled_total",
            "Generations stopped because the client went away.",
            &self.cancelled,
        );
        out.push_str("# HELP wick_tool_parser_mismatch_total Responses with tools whose calls the active parser missed but another parser (or bare JSON naming a declared tool) reads.\n# TYPE wick_tool_parser_mismatch_total counter\n");
        {
            let m = self
                .parser_mismatches
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for ((parser, other), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "wick_tool_parser_mismatch_total{{parser=\"{parser}\",would_parse_with=\"{other}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP wick_responses_ignored_tools_total Tools of a type other than function sent to /v1/responses, ignored.\n# TYPE wick_responses_ignored_tools_total counter\n");
        {
            let m = self.ignored_tools.lock().unwrap_or_else(|e| e.into_inner());
            for (kind, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "wick_responses_ignored_tools_total{{type=\"{kind}\"}} {n}"
                );
            }
        }
        counter(
            &mut out,
            "wick_tool_parser_fallback_total",
            "Responses answered with the calls another parser read (--tool-parser-fallback).",
            &self.parser_fallbacks,
        );
        gauges.engine.render(&mut out);
        self.ttft.lock().unwrap_or_else(|e| e.into_inner()).render(
            "wick_time_to_first_token_seconds",
            "Time from admission to the first token.",
            &mut out,
        );
        self.decode
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .render(
                "wick_decode_tokens_per_second",
                "Decode speed per request.",
                &mut out,
            );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.record_request("/v1/chat/completions", 200);
        m.record_request("/v1/chat/completions", 200);
        m.record_request("/v1/models", 401);
        m.record_generation(10, 5, 0.2, 30.0);
        m.record_tool_calls(1, 2);
        m.record_parser_mismatch("mistral", "qwen");
        m.record_parser_mismatch("mistral", "qwen");
        m.record_parser_mismatch("hermes", "json");
        m.record_parser_fallback();
        let text = m.render(Gauges {
            loaded: true,
            queue_depth: 3,
            active: 1,
            engine: EngineFigures {
                prefix_hits: 2,
                prefix_tokens_reused: 700,
                spec_accepted_tokens: 7,
                ..EngineFigures::default()
            },
        });
        for line in [
            "wick_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2",
            "wick_requests_total{route=\"/v1/models\",status=\"401\"} 1",
            "wick_queue_depth 3",
            "wick_prefix_cache_hits_total 2",
            "wick_prefix_cache_tokens_reused_total 700",
            "wick_speculative_accepted_tokens_total{method=\"lookup\"} 7",
            "wick_speculative_draft_tokens_total{method=\"draft\"} 0",
            "# TYPE wick_prefix_cache_bytes gauge",
            "wick_prompt_tokens_total 10",
            "wick_tokens_generated_total 5",
            "wick_tool_calls_total 1",
            "wick_tool_parse_failures_total 2",
            "wick_tool_parser_mismatch_total{parser=\"mistral\",would_parse_with=\"qwen\"} 2",
            "wick_tool_parser_mismatch_total{parser=\"hermes\",would_parse_with=\"json\"} 1",
            "# TYPE wick_tool_parser_mismatch_total counter",
            "wick_tool_parser_fallback_total 1",
            "wick_time_to_first_token_seconds_bucket{le=\"0.1\"} 0",
            "wick_time_to_first_token_seconds_bucket{le=\"0.25\"} 1",
            "wick_time_to_first_token_seconds_bucket{le=\"+Inf\"} 1",
            "wick_decode_tokens_per_second_bucket{le=\"20\"} 0",
            "wick_decode_tokens_per_second_bucket{le=\"40\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
