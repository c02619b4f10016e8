//! A slot: one active sequence, its KV cache and the tokens whose K/V it holds, and the
//! state of the request in it: first prefilling its prompt chunk by chunk, then decoding.
//! When the request ends, its KV goes to the prefix cache and the slot is empty again.
//! Input: admitted requests. Output: none by itself (the worker drives it).
//! Must not depend on the server or HTTP types.

use super::draft::DraftState;
use super::logprobs::Aligner;
use super::sampler::Sampler;
use super::speculate::Speculation;
use super::stop::{StopIds, StopStrings};
use super::{Constraint, Event, Usage};
use crate::model::KvCache;
use crate::tokenizer::detok::Detokenizer;
use candle_core::Tensor;
use std::time::Instant;
use tokio::sync::mpsc::Sender;

/// One request in a slot.
pub(crate) struct Sequence {
    pub tx: Sender<Event>,
    pub prompt: Vec<u32>,
    pub stop_ids: StopIds,
    pub stop_strings: StopStrings,
    pub detok: Detokenizer,
    pub max_tokens: usize,
    /// Alternatives per token when logprobs were asked for.
    pub logprobs: Option<usize>,
    /// Holds logprobs back with their text.
    pub aligner: Aligner,
    pub constraint: Option<Box<dyn Constraint>>,
    pub usage: Usage,
    pub submitted: Instant,
    /// Admission order: prefill goes to the shortest remaining prompt, ties to the oldest.
    pub admitted: u64,
    pub first_token_at: Option<Instant>,
    pub last_token_at: Option<Instant>,
    /// Logits for the next token (once the prompt is prefilled, then after each step).
    pub logits: Option<Tensor>,
    /// Draft tokens being verified (speculative decoding).
    pub spec: Speculation,
}

#[derive(Default)]
pub(crate) struct Slot {
    /// Present while a request runs here.
    pub cache: Option<KvCache>,
    /// The tokens whose K/V are in `cache`, in order.
    pub tokens: Vec<u32>,
    pub seq: Option<Sequence>,
    /// The tokens this step runs for the slot: a decode token or a prompt chunk (reused).
    pub input: Vec<u32>,
    /// Kept across requests for its buffers.
    pub sampler: Sampler,
    /// The draft model's KV for this sequence (speculative decoding); freed with the
    /// request.
    pub draft: DraftState,
}

impl Slot {
    pub fn is_free(&self) -> bool {
        self.seq.is_none()
    }

    /// Prompt tokens not yet run (0 once decoding).
    pub fn prompt_left(&self) -> usize {
        self.seq
            .as_ref()
            .map_or(0, |s| s.prompt.len().saturating_sub(self.tokens.len()))
    }

    /// Decoding: the prompt is in the cache and there are logits to sample from.
    pub fn is_decoding(&self) -> bool {
        self.seq.as_ref().is_some_and(|s| s.logits.is_some())
    }
}

/// How many prompt tokens of a slot to run this step, given `budget` tokens left in the
/// step. A prompt is never left with exactly one token to run while more were allowed:
/// a one-token step uses the decode step's summation order, so a chunked prefill would
/// not equal a whole one.
pub(crate) fn chunk_len(left: usize, budget: usize) -> usize {
    let n = left.min(budget);
    match left - n {
        1 if n > 1 => n - 1,
        1 => left,
        _ => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_never_leave_a_single_prompt_token() {
        // (left, budget) -> chunk
        let cases = [
            ((10, 4), 4),
            ((5, 4), 3),
            ((2, 1), 2),
            ((1, 4), 1),
            ((4, 4), 4),
            ((600, 512), 512),
            ((513, 512), 511),
            ((3, 0), 0),
        ];
        for ((left, budget), want) in cases {
            assert_eq!(chunk_len(left, budget), want, "{left} {budget}");
        }
    }
}
