//! A slot: one sequence's KV cache and the tokens whose K/V it holds, plus the state of the
//! request decoding in it (if any). A finished slot keeps its tokens and KV so that a later
//! request with the same prefix only prefills the rest.
//! Input: admitted requests. Output: none by itself (the worker drives it).
//! Must not depend on the server or HTTP types.

use super::sampler::Sampler;
use super::stop::{StopIds, StopStrings};
use super::{Constraint, Event, Usage};
use crate::model::KvCache;
use crate::tokenizer::detok::Detokenizer;
use candle_core::Tensor;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// One request being decoded in a slot.
pub(crate) struct Sequence {
    pub tx: UnboundedSender<Event>,
    pub stop_ids: StopIds,
    pub stop_strings: StopStrings,
    pub detok: Detokenizer,
    pub max_tokens: usize,
    pub logprobs: bool,
    pub constraint: Option<Box<dyn Constraint>>,
    pub usage: Usage,
    pub submitted: Instant,
    pub first_token_at: Option<Instant>,
    pub last_token_at: Option<Instant>,
    /// Logits for the next token (from the prefill or the last decode step).
    pub logits: Option<Tensor>,
}

#[derive(Default)]
pub(crate) struct Slot {
    /// Created on first use, so idle slots cost no memory.
    pub cache: Option<KvCache>,
    /// The tokens whose K/V are in `cache`, in order.
    pub tokens: Vec<u32>,
    pub seq: Option<Sequence>,
    /// Kept across requests for its buffers.
    pub sampler: Sampler,
}

impl Slot {
    pub fn is_free(&self) -> bool {
        self.seq.is_none()
    }

    /// Forgets the cached tokens (after a failed forward the KV may be inconsistent).
    pub fn clear_cache(&mut self) {
        self.tokens.clear();
        if let Some(c) = self.cache.as_mut() {
            c.truncate(0);
        }
    }
}

/// Length of the common prefix of two token sequences.
pub(crate) fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The free slot whose cached tokens share the longest prefix with `prompt`, and how many
/// prompt tokens can be reused. At least one prompt token is always left to run, because the
/// logits of the last prompt token are needed. Ties go to the lowest slot index.
pub(crate) fn pick_slot<'a>(
    slots: impl Iterator<Item = (bool, &'a [u32])>,
    prompt: &[u32],
) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    for (i, (free, tokens)) in slots.enumerate() {
        if !free {
            continue;
        }
        let reuse = common_prefix(tokens, prompt).min(prompt.len().saturating_sub(1));
        if best.is_none_or(|(_, r)| reuse > r) {
            best = Some((i, reuse));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_free_slot_with_longest_prefix() {
        let a: &[u32] = &[1, 2, 3, 4];
        let b: &[u32] = &[1, 2, 9];
        let empty: &[u32] = &[];
        type Case<'a> = (&'a [(bool, &'a [u32])], &'a [u32], Option<(usize, usize)>);
        let cases: &[Case] = &[
            (&[(true, empty), (true, a)], &[1, 2, 3, 5], Some((1, 3))),
            (&[(true, b), (false, a)], &[1, 2, 3, 5], Some((0, 2))),
            (&[(false, a)], &[1], None),
            // the whole prompt is cached: still leave the last token to run
            (&[(true, a)], &[1, 2, 3, 4], Some((0, 3))),
            (&[(true, a)], &[1, 2], Some((0, 1))),
            (&[(true, empty), (true, empty)], &[7, 8], Some((0, 0))),
            (&[(true, a), (true, a)], &[1, 2, 3, 4, 5], Some((0, 4))),
        ];
        for (slots, prompt, want) in cases {
            let got = pick_slot(slots.iter().map(|(f, t)| (*f, *t)), prompt);
            assert_eq!(got, *want, "{slots:?} {prompt:?}");
        }
    }
}
