//! Per-token logprobs: the chosen token's log-probability and the `k` most likely tokens
//! at that step, under the model's own distribution (log-softmax of the raw logits, before
//! penalties, temperature, top-k/p, min-p or a constraint: what OpenAI, vLLM's default
//! `raw_logprobs` and llama.cpp report), and the alignment that hands a token's logprobs
//! out with the text that carries it.
//! Input: logits `&[f32]`, the chosen id, token bytes. Output: `TokenLogprob`s.
//! Must not depend on the server or HTTP types.

use super::sampler::TokenBytes;
use std::collections::VecDeque;

/// The most alternatives a request may ask for (OpenAI's `top_logprobs` limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// One generated token: its id, raw bytes (may be part of a UTF-8 character) and logprob,
/// and the most likely tokens at its step, best first (ties to the lower id, as greedy
/// picks).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub id: u32,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    pub top: Vec<TopLogprob>,
}

/// One alternative at a step.
#[derive(Debug, Clone, PartialEq)]
pub struct TopLogprob {
    pub id: u32,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// The logprob of `chosen` and the `k` (at most `MAX_TOP_LOGPROBS`) best tokens of
/// `logits`. Two passes over the vocabulary (max and sum of exponentials in f64, then
/// the best `k` by insertion into a short sorted list); NaN logits are skipped.
pub fn compute(logits: &[f32], chosen: u32, k: usize, vocab: &dyn TokenBytes) -> TokenLogprob {
    let k = k.min(MAX_TOP_LOGPROBS);
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
    let log_z = z.ln();
    let lp = |l: f32| ((l - max) as f64 - log_z) as f32;
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if l.is_nan() || (best.len() == k && l <= best[k - 1].1) {
                continue;
            }
            // Strictly greater than the entries before it: equal logits keep id order.
            let at = best.partition_point(|&(_, b)| b >= l);
            best.insert(at, (i as u32, l));
            best.truncate(k);
        }
    }
    let chosen_logit = logits
        .get(chosen as usize)
        .copied()
        .unwrap_or(f32::NEG_INFINITY);
    TokenLogprob {
        id: chosen,
        bytes: vocab.token_bytes(chosen).to_vec(),
        logprob: lp(chosen_logit),
        top: best
            .into_iter()
            .map(|(id, l)| TopLogprob {
                id,
                bytes: vocab.token_bytes(id).to_vec(),
                logprob: lp(l),
            })
            .collect(),
    }
}

/// Holds a token's logprobs back while its text is: a token is handed out once all of its
/// text was emitted, so each event carries the logprobs of the text it carries. Lengths are
/// bytes of the detokenized text before stop-string matching (a control token has none).
#[derive(Debug, Default)]
pub(crate) struct Aligner {
    /// Tokens not handed out, with the offsets where their text starts and ends.
    pending: VecDeque<(TokenLogprob, usize, usize)>,
    /// Detokenized bytes so far, and those emitted as output.
    seen: usize,
    emitted: usize,
}

impl Aligner {
    /// Adds a token whose detokenized text is `text_len` bytes, after `emitted` more bytes
    /// of output went out with it; returns the tokens now fully emitted, in order.
    pub fn push(
        &mut self,
        entry: TokenLogprob,
        text_len: usize,
        emitted: usize,
    ) -> Vec<TokenLogprob> {
        let start = self.seen;
        self.seen += text_len;
        self.pending.push_back((entry, start, self.seen));
        self.emitted += emitted;
        let mut out = Vec::new();
        while let Some((_, _, end)) = self.pending.front() {
            if *end > self.emitted {
                break;
            }
            out.extend(self.pending.pop_front().map(|(e, ..)| e));
        }
        out
    }

    /// A stop string matched: a token that began before it (part of its text is output)
    /// is kept; tokens wholly inside the stop string are dropped, like their text.
    pub fn stop(&mut self) -> Vec<TokenLogprob> {
        let emitted = self.emitted;
        std::mem::take(&mut self.pending)
            .into_iter()
            .filter(|(_, start, _)| *start < emitted)
            .map(|(e, ..)| e)
            .collect()
    }

    /// The generation ended otherwise: held-back text is output, so are its tokens.
    pub fn finish(&mut self) -> Vec<TokenLogprob> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(e, ..)| e)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Toy;
    impl TokenBytes for Toy {
        fn token_bytes(&self, id: u32) -> &[u8] {
            const NAMES: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];
            NAMES[id as usize % 4]
        }
    }

    #[test]
    fn top_is_sorted_normalised_and_ties_go_to_lower_id() {
        let logits = [1.0, 3.0, 3.0, f32::NAN, -2.0];
        let t = compute(&logits, 2, 3, &Toy);
        let ids: Vec<u32> = t.top.iter().map(|x| x.id).collect();
        assert_eq!(ids, vec![1, 2, 0]);
        assert_eq!(t.logprob, t.top[1].logprob);
        let z: f64 = [1.0f64, 3.0, 3.0, -2.0].iter().map(|l| l.exp()).sum();
        assert!((t.top[0].logprob as f64 - (3.0 - z.ln())).abs() < 1e-6);
        assert_eq!(t.top[0].bytes, b"b");
        assert!(compute(&logits, 0, 0, &Toy).top.is_empty());
        assert_eq!(compute(&logits, 0, 99, &Toy).top.len(), 4);
    }

    fn entry(id: u32) -> TokenLogprob {
        TokenLogprob {
            id,
            bytes: vec![],
            logprob: 0.0,
            top: vec![],
        }
    }

    fn ids(v: Vec<TokenLogprob>) -> Vec<u32> {
        v.into_iter().map(|e| e.id).collect()
    }

    #[test]
    fn held_back_tokens_follow_their_text_and_stop_string_tokens_drop() {
        let mut a = Aligner::default();
        assert_eq!(ids(a.push(entry(0), 3, 3)), vec![0]);
        // "x\n" held back (a possible stop "\n\n"), then released with the next token.
        assert_eq!(ids(a.push(entry(1), 2, 0)), Vec::<u32>::new());
        assert_eq!(ids(a.push(entry(2), 2, 4)), vec![1, 2]);
        // "y" emitted later than "y\n": the token that starts the stop string is kept only
        // when part of it is output.
        assert_eq!(ids(a.push(entry(3), 2, 1)), Vec::<u32>::new());
        assert_eq!(ids(a.push(entry(4), 1, 0)), Vec::<u32>::new());
        assert_eq!(ids(a.stop()), vec![3]);
        let mut b = Aligner::default();
        b.push(entry(7), 2, 0);
        assert_eq!(ids(b.finish()), vec![7]);
    }
}
