//! Picks the next token from a logits vector: greedy, or temperature sampling restricted by
//! top-k, top-p and min-p, after repetition / presence / frequency penalties over the tokens
//! generated so far, optionally restricted by a `Constraint` on the token bytes.
//! Input: logits `&[f32]` (one per vocabulary id). Output: the chosen id and, on request, its
//! logprob (log-softmax of the raw logits, as OpenAI and llama.cpp report it).
//! Must not depend on the model, tensors or the tokenizer type (token bytes come through the
//! small `TokenBytes` trait so tests can use a toy vocabulary).
//!
//! Semantics (fixed, so the same seed gives the same output across releases):
//! - penalties apply to the raw logits of every token generated so far in this request:
//!   repetition divides positive logits and multiplies negative ones by the penalty;
//!   presence subtracts once, frequency subtracts once per occurrence (OpenAI's definition);
//! - then logits are divided by the temperature; `temperature <= 0` is greedy (argmax, ties
//!   to the lower id);
//! - the candidate set is the intersection of three prefixes of the tokens sorted by
//!   probability: the `top_k` best, the smallest set whose mass over the whole distribution
//!   reaches `top_p`, and those with at least `min_p` times the best token's probability;
//! - one uniform draw from a SplitMix64 generator (seeded by `seed`, else by the clock)
//!   picks among the candidates in proportion to their probability.
//!
//! Hot path: all buffers are reused across tokens and requests; only the candidates that
//! can matter are sorted (partial selection, growing geometrically when top-p needs more).

use super::{Constraint, SamplingParams};

/// The raw bytes each token stands for (may be part of a UTF-8 character).
pub trait TokenBytes {
    fn token_bytes(&self, id: u32) -> &[u8];
}

impl TokenBytes for crate::tokenizer::Tokenizer {
    fn token_bytes(&self, id: u32) -> &[u8] {
        crate::tokenizer::Tokenizer::token_bytes(self, id)
    }
}

/// The chosen token and, when asked for, its logprob under the model's raw distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampled {
    pub id: u32,
    pub logprob: Option<f32>,
}

/// A seeded SplitMix64: tiny, fast, and stable across dependency versions.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| {
            use std::time::{SystemTime, UNIX_EPOCH};
            // Clock nanoseconds mixed with a per-process counter: distinct per request.
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            t ^ COUNTER
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        });
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// How many disallowed picks are masked one by one before the sampler checks every
/// remaining candidate against the constraint at once (bounded work either way).
const CONSTRAINT_RETRIES: usize = 16;
/// First partial-selection size when top-p has to find its prefix without top-k.
const TOP_P_FIRST_CHUNK: usize = 64;

/// Per-request sampling state plus scratch buffers that are reused across requests.
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    /// Penalised, temperature-scaled logits (vocab-sized, reused).
    work: Vec<f32>,
    /// Candidate ids (reused).
    cand: Vec<u32>,
    /// Occurrences of each id among the generated tokens (vocab-sized, reused) ...
    counts: Vec<u32>,
    /// ... and the ids with a non-zero count, so a reset touches only those.
    seen: Vec<u32>,
    /// The target distribution while checking a draft token (reused).
    dist: Vec<(u32, f32)>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new(SamplingParams::default())
    }
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = Rng::new(params.seed);
        Sampler {
            params,
            rng,
            work: Vec::new(),
            cand: Vec::new(),
            counts: Vec::new(),
            seen: Vec::new(),
            dist: Vec::new(),
        }
    }

    /// Starts a new request, keeping the buffers.
    pub fn reset(&mut self, params: SamplingParams) {
        self.rng = Rng::new(params.seed);
        self.params = params;
        for &id in &self.seen {
            if let Some(c) = self.counts.get_mut(id as usize) {
                *c = 0;
            }
        }
        self.seen.clear();
    }

    /// Records a generated token for the penalties.
    pub fn accept(&mut self, id: u32) {
        let i = id as usize;
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        if self.counts[i] == 0 {
            self.seen.push(id);
        }
        self.counts[i] += 1;
    }

    fn penalised(&self) -> bool {
        let p = &self.params;
        p.repetition_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0
    }

    /// Whether a greedy pick can read the logits as they are (no penalty or temperature
    /// changes them): then it needs no copy of the vocabulary (`prepare`).
    fn plain_greedy(&self) -> bool {
        let t = self.params.temperature;
        self.greedy() && !self.penalised() && (t <= 0.0 || t == 1.0)
    }

    /// Chooses the next token. Returns `None` only when a constraint allows no token at all.
    pub fn sample(
        &mut self,
        logits: &[f32],
        want_logprob: bool,
        mut constraint: Option<&mut (dyn Constraint + '_)>,
        vocab: &dyn TokenBytes,
    ) -> Option<Sampled> {
        if constraint.is_none() && self.plain_greedy() {
            let id = argmax(logits)?;
            let logprob = want_logprob.then(|| log_softmax_at(logits, id as usize));
            return Some(Sampled { id, logprob });
        }
        self.prepare(logits);
        let mut rejected = 0usize;
        let id = loop {
            let id = self.pick()?;
            let Some(c) = constraint.as_deref_mut() else {
                break id;
            };
            if c.allows(vocab.token_bytes(id)) {
                break id;
            }
            self.work[id as usize] = f32::NEG_INFINITY;
            rejected += 1;
            if rejected == CONSTRAINT_RETRIES {
                // Many misses: mask every disallowed token in one pass instead.
                for (i, l) in self.work.iter_mut().enumerate() {
                    if l.is_finite() && !c.allows(vocab.token_bytes(i as u32)) {
                        *l = f32::NEG_INFINITY;
                    }
                }
            }
        };
        let logprob = want_logprob.then(|| log_softmax_at(logits, id as usize));
        Some(Sampled { id, logprob })
    }

    /// The distribution `sample` draws from without a constraint (penalties, temperature,
    /// top-k, top-p, min-p applied), as `(id, probability)` pairs sorted by id and summing
    /// to 1; greedy gives the argmax with probability 1. Empty when no token is possible.
    pub fn distribution(&mut self, logits: &[f32], out: &mut Vec<(u32, f32)>) {
        out.clear();
        if self.plain_greedy() {
            out.extend(argmax(logits).map(|id| (id, 1.0)));
            return;
        }
        self.prepare(logits);
        if self.greedy() {
            out.extend(argmax(&self.work).map(|id| (id, 1.0)));
            return;
        }
        let max = self.work.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            return;
        }
        self.collect_candidates(max);
        self.apply_top_k();
        self.apply_top_p(max);
        let work = &self.work;
        let total: f64 = self
            .cand
            .iter()
            .map(|&i| (work[i as usize] - max).exp() as f64)
            .sum();
        out.extend(
            self.cand
                .iter()
                .map(|&i| (i, ((work[i as usize] - max).exp() as f64 / total) as f32)),
        );
        out.sort_unstable_by_key(|&(id, _)| id);
    }

    /// One draw from `dist` (pairs as `distribution` gives them) with this sampler's
    /// generator.
    pub fn draw(&mut self, dist: &[(u32, f32)]) -> Option<u32> {
        let total: f64 = dist.iter().map(|&(_, p)| p as f64).sum();
        let mut u = self.rng.next_f64() * total;
        for &(id, p) in dist {
            u -= p as f64;
            if u < 0.0 {
                return Some(id);
            }
        }
        dist.last().map(|&(id, _)| id)
    }

    /// Speculative rejection sampling against a probabilistic draft: the draft drew
    /// `draft` from `q` (pairs sorted by id). With `p` the distribution `sample` draws
    /// from, keeps `draft` with probability min(1, p/q), else draws from
    /// norm(max(0, p - q)); the result is then distributed exactly as `p` (the standard
    /// rule of Leviathan et al. and Chen et al., 2023). Constraints are not applied: the
    /// worker uses `sample` for constrained requests.
    pub fn sample_against_draft(
        &mut self,
        logits: &[f32],
        draft: u32,
        q: &[(u32, f32)],
        want_logprob: bool,
    ) -> Option<Sampled> {
        let mut p = std::mem::take(&mut self.dist);
        self.distribution(logits, &mut p);
        let prob = |d: &[(u32, f32)], id: u32| {
            d.binary_search_by_key(&id, |&(i, _)| i)
                .map_or(0.0, |k| d[k].1 as f64)
        };
        let (px, qx) = (prob(&p, draft), prob(q, draft));
        let id = if qx > 0.0 && self.rng.next_f64() * qx < px {
            Some(draft)
        } else {
            let before = p.len();
            for e in p.iter_mut() {
                e.1 = (e.1 as f64 - prob(q, e.0)).max(0.0) as f32;
            }
            p.retain(|&(_, r)| r > 0.0);
            if p.is_empty() && before > 0 {
                // p and q agree to rounding: p itself is the residual.
                self.distribution(logits, &mut p);
            }
            self.draw(&p)
        };
        self.dist = p;
        let id = id?;
        let logprob = want_logprob.then(|| log_softmax_at(logits, id as usize));
        Some(Sampled { id, logprob })
    }

    /// Copies the logits into `work`, applying penalties and temperature.
    fn prepare(&mut self, logits: &[f32]) {
        self.work.clear();
        self.work.extend_from_slice(logits);
        // NaN logits would poison comparisons; treat them as impossible tokens.
        for l in self.work.iter_mut() {
            if l.is_nan() {
                *l = f32::NEG_INFINITY;
            }
        }
        if self.penalised() {
            let p = &self.params;
            for &id in &self.seen {
                let (Some(l), Some(&n)) =
                    (self.work.get_mut(id as usize), self.counts.get(id as usize))
                else {
                    continue;
                };
                if p.repetition_penalty != 1.0 && p.repetition_penalty > 0.0 {
                    *l = if *l > 0.0 {
                        *l / p.repetition_penalty
                    } else {
                        *l * p.repetition_penalty
                    };
                }
                *l -= p.presence_penalty + p.frequency_penalty * n as f32;
            }
        }
        let t = self.params.temperature;
        if t > 0.0 && t != 1.0 {
            let inv = 1.0 / t;
            for l in self.work.iter_mut() {
                *l *= inv;
            }
        }
    }

    /// Whether this request decodes greedily (then every draw is the argmax).
    pub fn is_greedy(&self) -> bool {
        self.greedy()
    }

    fn greedy(&self) -> bool {
        self.params.temperature <= 0.0 || self.params.top_k == Some(1)
    }

    /// One pick from `work` (which may have had tokens masked since `prepare`).
    fn pick(&mut self) -> Option<u32> {
        if self.greedy() {
            return argmax(&self.work);
        }
        let max = self.work.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            return None;
        }
        self.collect_candidates(max);
        if self.cand.is_empty() {
            return None;
        }
        self.apply_top_k();
        self.apply_top_p(max);
        let total: f64 = self
            .cand
            .iter()
            .map(|&i| (self.work[i as usize] - max).exp() as f64)
            .sum();
        let mut u = self.rng.next_f64() * total;
        for &i in &self.cand {
            u -= (self.work[i as usize] - max).exp() as f64;
            if u < 0.0 {
                return Some(i);
            }
        }
        // Rounding left a sliver of mass: the last candidate takes it.
        self.cand.last().copied()
    }

    /// Every finite token at or above the min-p threshold.
    fn collect_candidates(&mut self, max: f32) {
        let threshold = if self.params.min_p > 0.0 {
            max + self.params.min_p.min(1.0).ln()
        } else {
            f32::NEG_INFINITY
        };
        self.cand.clear();
        for (i, &l) in self.work.iter().enumerate() {
            if l > f32::NEG_INFINITY && l >= threshold {
                self.cand.push(i as u32);
            }
        }
    }

    fn apply_top_k(&mut self) {
        let Some(k) = self.params.top_k.filter(|&k| k > 0) else {
            return;
        };
        if k < self.cand.len() {
            let work = &self.work;
            self.cand
                .select_nth_unstable_by(k - 1, |&a, &b| by_logit_desc(work, a, b));
            self.cand.truncate(k);
        }
    }

    /// Keeps the smallest most-likely prefix whose mass (over the whole distribution)
    /// reaches top_p. Sorts only a growing prefix of the candidates.
    fn apply_top_p(&mut self, max: f32) {
        let p = self.params.top_p as f64;
        if p >= 1.0 || p <= 0.0 {
            // top_p <= 0 would keep nothing: treat it as "best token only".
            if p <= 0.0 {
                let work = &self.work;
                if let Some(best) = self
                    .cand
                    .iter()
                    .copied()
                    .min_by(|&a, &b| by_logit_desc(work, a, b))
                {
                    self.cand.clear();
                    self.cand.push(best);
                }
            }
            return;
        }
        let work = &self.work;
        let z: f64 = work
            .iter()
            .map(|&l| (l - max).exp() as f64)
            .sum::<f64>()
            .max(f64::MIN_POSITIVE);
        let n = self.cand.len();
        let mut chunk = TOP_P_FIRST_CHUNK.min(n);
        loop {
            if chunk < n {
                self.cand
                    .select_nth_unstable_by(chunk - 1, |&a, &b| by_logit_desc(work, a, b));
            }
            self.cand[..chunk].sort_unstable_by(|&a, &b| by_logit_desc(work, a, b));
            let mut mass = 0.0;
            for (j, &i) in self.cand[..chunk].iter().enumerate() {
                mass += (work[i as usize] - max).exp() as f64 / z;
                if mass >= p {
                    self.cand.truncate(j + 1);
                    return;
                }
            }
            if chunk == n {
                return;
            }
            chunk = (chunk * 8).min(n);
        }
    }
}

/// Higher logit first; equal logits: lower id first (deterministic).
fn by_logit_desc(work: &[f32], a: u32, b: u32) -> std::cmp::Ordering {
    work[b as usize]
        .total_cmp(&work[a as usize])
        .then(a.cmp(&b))
}

/// Index of the largest finite value; ties go to the lower index.
pub fn argmax(xs: &[f32]) -> Option<u32> {
    // Two passes the compiler vectorizes (a scan with a branch per element cost ~1 ns a
    // logit, 150k of them per row): the largest value (`f32::max` skips NaN), then its first
    // position. The same id as a strict `>` scan: ties go to the lower id, and NaN or -inf
    // is never picked.
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = m.max(x);
        }
    }
    let max = rest
        .iter()
        .chain(&lanes)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return None;
    }
    xs.iter().position(|&x| x == max).map(|i| i as u32)
}

/// log softmax(logits)[i], computed stably (f32 exponentials summed in f64).
pub fn log_softmax_at(logits: &[f32], i: usize) -> f32 {
    let max = logits
        .iter()
        .copied()
        .filter(|l| !l.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);
    let z: f64 = logits
        .iter()
        .filter(|l| !l.is_nan())
        .map(|&l| (l - max).exp() as f64)
        .sum();
    let li = logits.get(i).copied().unwrap_or(f32::NEG_INFINITY);
    ((li - max) as f64 - z.ln()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Toy(Vec<Vec<u8>>);
    impl TokenBytes for Toy {
        fn token_bytes(&self, id: u32) -> &[u8] {
            &self.0[id as usize]
        }
    }
    fn toy(n: usize) -> Toy {
        Toy((0..n).map(|i| format!("t{i}").into_bytes()).collect())
    }

    fn params(t: f32) -> SamplingParams {
        SamplingParams {
            temperature: t,
            seed: Some(7),
            ..SamplingParams::default()
        }
    }

    fn draw(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<u32> {
        let v = toy(logits.len());
        (0..n)
            .map(|_| {
                s.sample(logits, false, None, &v)
                    .map(|x| x.id)
                    .unwrap_or(u32::MAX)
            })
            .collect()
    }

    #[test]
    fn argmax_equals_a_strict_scan_over_long_rows() {
        // The old scalar scan: the first strictly largest value, NaN and -inf skipped.
        fn scan(xs: &[f32]) -> Option<u32> {
            let mut best: Option<(usize, f32)> = None;
            for (i, &x) in xs.iter().enumerate() {
                if x != f32::NEG_INFINITY && !x.is_nan() && best.is_none_or(|(_, b)| x > b) {
                    best = Some((i, x));
                }
            }
            best.map(|(i, _)| i as u32)
        }
        let mut seed = 7u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in [0, 1, 15, 16, 17, 100, 1000, 151_936] {
            for round in 0..6 {
                let mut xs: Vec<f32> = (0..len).map(|_| (next() % 64) as f32 - 40.0).collect();
                for _ in 0..len / 10 {
                    if len > 0 {
                        let i = (next() as usize) % len;
                        xs[i] = match round {
                            0 => f32::NAN,
                            1 => f32::NEG_INFINITY,
                            2 => f32::INFINITY,
                            3 => -0.0,
                            _ => xs[i],
                        };
                    }
                }
                if round == 5 {
                    xs.iter_mut().for_each(|x| *x = f32::NAN);
                }
                assert_eq!(argmax(&xs), scan(&xs), "len {len} round {round}");
            }
        }
    }

    #[test]
    fn greedy_takes_argmax_and_ties_to_lower_id() {
        let cases: &[(&[f32], u32)] = &[
            (&[0.0, 3.0, 1.0], 1),
            (&[2.0, 5.0, 5.0, 1.0], 1),
            (&[f32::NAN, -1.0, -1.0], 1),
            (&[-f32::INFINITY, -7.0], 1),
        ];
        for (logits, want) in cases {
            let mut s = Sampler::new(params(0.0));
            assert_eq!(draw(&mut s, logits, 1), vec![*want], "{logits:?}");
        }
    }

    #[test]
    fn same_seed_gives_same_draws_and_other_seed_differs() {
        let logits: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 / 20.0).collect();
        let mut a = Sampler::new(params(1.0));
        let mut b = Sampler::new(params(1.0));
        let da = draw(&mut a, &logits, 50);
        assert_eq!(da, draw(&mut b, &logits, 50));
        let mut c = Sampler::new(SamplingParams {
            seed: Some(8),
            ..params(1.0)
        });
        assert_ne!(da, draw(&mut c, &logits, 50));
        // reset restarts the sequence
        a.reset(params(1.0));
        assert_eq!(da, draw(&mut a, &logits, 50));
    }

    #[test]
    fn masks_keep_only_allowed_candidates() {
        // probabilities ~ exp(logit): ids 0..5 sorted best first
        let logits = [5.0f32, 4.0, 3.0, 2.0, 1.0, 0.0];
        struct Case {
            name: &'static str,
            top_k: Option<usize>,
            top_p: f32,
            min_p: f32,
            allowed: &'static [u32],
        }
        let cases = [
            Case {
                name: "top_k 2",
                top_k: Some(2),
                top_p: 1.0,
                min_p: 0.0,
                allowed: &[0, 1],
            },
            // mass of id 0 is 0.636, of ids 0+1 is 0.87
            Case {
                name: "top_p 0.8",
                top_k: None,
                top_p: 0.8,
                min_p: 0.0,
                allowed: &[0, 1],
            },
            Case {
                name: "top_p 0.5",
                top_k: None,
                top_p: 0.5,
                min_p: 0.0,
                allowed: &[0],
            },
            // exp(-2) = 0.135: ids within a factor 0.1 of the best are 0, 1, 2
            Case {
                name: "min_p 0.1",
                top_k: None,
                top_p: 1.0,
                min_p: 0.1,
                allowed: &[0, 1, 2],
            },
            Case {
                name: "all three",
                top_k: Some(3),
                top_p: 0.95,
                min_p: 0.01,
                allowed: &[0, 1, 2],
            },
        ];
        for c in cases {
            let mut s = Sampler::new(SamplingParams {
                top_k: c.top_k,
                top_p: c.top_p,
                min_p: c.min_p,
                ..params(1.0)
            });
            let got = draw(&mut s, &logits, 400);
            for id in &got {
                assert!(c.allowed.contains(id), "{}: drew {id}", c.name);
            }
            for id in c.allowed {
                assert!(got.contains(id), "{}: never drew {id}", c.name);
            }
        }
    }

    #[test]
    fn top_p_grows_past_first_chunk_on_flat_distribution() {
        // 1000 equal logits: top_p 0.5 must keep 500 of them, beyond the first chunk of 64.
        let logits = vec![0.0f32; 1000];
        let mut s = Sampler::new(SamplingParams {
            top_p: 0.5,
            ..params(1.0)
        });
        let got = draw(&mut s, &logits, 2000);
        assert!(got.iter().all(|&i| i < 500), "ties keep the lower ids");
        assert!(got.iter().any(|&i| i >= 64));
    }

    #[test]
    fn penalties_lower_repeated_tokens() {
        let logits = [2.0f32, 1.9, -1.0];
        type Case = (&'static str, f32, f32, f32, u32);
        let cases: &[Case] = &[
            ("none", 1.0, 0.0, 0.0, 0),
            ("repetition", 1.2, 0.0, 0.0, 1),
            ("presence", 1.0, 0.5, 0.0, 1),
            ("frequency x1", 1.0, 0.0, 0.2, 1),
        ];
        for &(name, rep, pres, freq, want) in cases {
            let mut s = Sampler::new(SamplingParams {
                repetition_penalty: rep,
                presence_penalty: pres,
                frequency_penalty: freq,
                ..params(0.0)
            });
            s.accept(0);
            assert_eq!(draw(&mut s, &logits, 1), vec![want], "{name}");
        }
        // frequency counts occurrences: 1 occurrence is not enough at 0.04, 3 are.
        let mut s = Sampler::new(SamplingParams {
            frequency_penalty: 0.04,
            ..params(0.0)
        });
        s.accept(0);
        assert_eq!(draw(&mut s, &logits, 1), vec![0]);
        s.accept(0);
        s.accept(0);
        assert_eq!(draw(&mut s, &logits, 1), vec![1]);
        // negative logits get multiplied by the repetition penalty (pushed further down)
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 2.0,
            ..params(0.0)
        });
        s.accept(0);
        s.accept(1);
        assert_eq!(draw(&mut s, &[-1.0, -1.5, -1.9], 1), vec![2]);
        // reset forgets the history
        s.reset(params(0.0));
        assert_eq!(draw(&mut s, &[-1.0, -1.5, -1.9], 1), vec![0]);
    }

    #[test]
    fn logprob_is_log_softmax_of_raw_logits() {
        let logits = [1.0f32, 2.0, 3.0];
        let mut s = Sampler::new(params(0.0));
        let got = s
            .sample(&logits, true, None, &toy(3))
            .and_then(|x| x.logprob);
        let z = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        let want = (3.0 - z) as f32;
        assert!(
            got.is_some_and(|g| (g - want).abs() < 1e-6),
            "{got:?} vs {want}"
        );
    }

    /// Allows only tokens whose text starts with `t1` (t1, t10..t19, t100..).
    struct OnlyT1 {
        advanced: usize,
    }
    impl Constraint for OnlyT1 {
        fn allows(&self, piece: &[u8]) -> bool {
            piece.starts_with(b"t1")
        }
        fn advance(&mut self, _piece: &[u8]) {
            self.advanced += 1;
        }
        fn is_complete(&self) -> bool {
            false
        }
    }

    #[test]
    fn constraint_skips_disallowed_tokens() {
        let logits: Vec<f32> = (0..200).map(|i| -(i as f32) / 50.0).collect();
        let v = toy(200);
        for t in [0.0, 1.0] {
            let mut s = Sampler::new(params(t));
            let mut c = OnlyT1 { advanced: 0 };
            for _ in 0..50 {
                let id = s
                    .sample(&logits, false, Some(&mut c), &v)
                    .map(|x| x.id)
                    .unwrap_or(u32::MAX);
                assert!(v.0[id as usize].starts_with(b"t1"), "t={t}: drew {id}");
            }
            if t == 0.0 {
                let first = s.sample(&logits, false, Some(&mut c), &v).map(|x| x.id);
                assert_eq!(first, Some(1));
            }
        }
        struct Nothing;
        impl Constraint for Nothing {
            fn allows(&self, _: &[u8]) -> bool {
                false
            }
            fn advance(&mut self, _: &[u8]) {}
            fn is_complete(&self) -> bool {
                false
            }
        }
        let mut s = Sampler::new(params(1.0));
        assert_eq!(s.sample(&logits, false, Some(&mut Nothing), &v), None);
    }
}
