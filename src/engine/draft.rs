//! Draft-model drafting (speculative decoding with a small model of the same family): a
//! second, cheaper model proposes the next few tokens one by one, and the worker verifies
//! them in one batched pass of the real model.
//! Input: the sequence's confirmed tokens plus the token about to run. Output: draft
//! tokens and, for sampled requests, the distribution each was drawn from (the
//! rejection rule needs it, see `Sampler::sample_against_draft`).
//! Must not depend on the server. The draft's output never reaches the client unverified:
//! a failing draft model only costs the speed-up, never the request.
//!
//! KV: each slot's draft keeps its own cache and the list of tokens in it. Before each
//! draft the cache is cut back to the longest common prefix with the sequence (this is
//! the rollback after a rejection, and it also resyncs after prefix-cache reuse or steps
//! run without drafting) and the missing tokens are run, at most `CATCH_UP` a step so a
//! long prompt does not stall the stream.

use super::sampler::{argmax, Sampler};
use super::SamplingParams;
use crate::model::{KvCache, Model, ModelError};
use candle_core::{DType, Device, Tensor};

/// Draft length bounds; each draft token costs one step of the draft model.
const MIN_DRAFT: usize = 2;
const MAX_DRAFT: usize = 10;
const FIRST_DRAFT: usize = 4;
/// Greedy drafting stops early once the draft's own top probability falls below this:
/// an unsure draft is usually wrong, and its later tokens then cost for nothing.
const MIN_CONFIDENCE: f32 = 0.4;
/// Tokens the draft catches up on per step (its prefill of a new prompt).
const CATCH_UP: usize = 256;

/// The draft model, shared by all slots (only the worker thread runs it).
pub struct DraftModel {
    pub(crate) model: Box<dyn Model>,
}

impl DraftModel {
    /// A draft model. The caller checks that it tokenizes as the target does
    /// (`tokenizer::compat::check_same_tokenizer`).
    pub fn new(model: Box<dyn Model>) -> Self {
        DraftModel { model }
    }
}

/// One slot's draft state.
#[derive(Default)]
pub(crate) struct DraftState {
    cache: Option<KvCache>,
    /// The tokens whose K/V are in `cache`.
    tokens: Vec<u32>,
    /// Draws draft tokens for sampled requests (its own generator).
    sampler: Sampler,
    logits: Vec<f32>,
    /// Tokens the cache may hold (the engine's context size).
    ctx: usize,
}

/// What one `propose` produced.
pub(crate) enum Proposal {
    /// Still catching up on the sequence: no draft this step.
    NotReady,
    /// Draft tokens in `out` (possibly none).
    Drafted,
}

impl DraftState {
    /// Frees the cache (the slot's request ended).
    pub fn clear(&mut self) {
        self.cache = None;
        self.tokens.clear();
    }

    /// Starts a request: the draft samples with the request's settings and holds at most
    /// `ctx` tokens.
    pub fn reset(&mut self, params: &SamplingParams, ctx: usize) {
        self.ctx = ctx;
        self.sampler.reset(SamplingParams {
            // The draft's q must be what it drew from; penalties would need the history.
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            // Its own random stream: draws correlated with the target sampler's would
            // bias the accepted tokens.
            seed: params.seed.map(|s| s ^ 0xD1B5_4A32_D192_ED03),
            ..params.clone()
        });
    }

    /// Proposes up to `want` tokens to follow `history` (the sequence's tokens including
    /// the one about to run). For a greedy request `dists` stays empty; else `dists[j]` is
    /// the distribution `out[j]` was drawn from.
    pub fn propose(
        &mut self,
        draft: &DraftModel,
        history: &[u32],
        want: usize,
        greedy: bool,
        out: &mut Vec<u32>,
        dists: &mut Vec<Vec<(u32, f32)>>,
    ) -> Result<Proposal, ModelError> {
        out.clear();
        dists.clear();
        if want == 0 || history.is_empty() {
            return Ok(Proposal::Drafted);
        }
        let model = draft.model.as_ref();
        let ctx = self.ctx;
        let cache = match self.cache.as_mut() {
            Some(c) => c,
            None => self.cache.insert(model.new_cache(ctx)?),
        };
        // The last token is always run: its logits give the first draft token.
        let common = self
            .tokens
            .iter()
            .zip(history)
            .take_while(|(a, b)| a == b)
            .count()
            .min(history.len() - 1);
        self.tokens.truncate(common);
        cache.truncate(common);
        let missing = &history[common..];
        if missing.len() > CATCH_UP {
            let chunk = &missing[..CATCH_UP];
            model.forward(chunk, cache)?;
            self.tokens.extend_from_slice(chunk);
            return Ok(Proposal::NotReady);
        }
        let mut logits = model.forward(missing, cache)?;
        self.tokens.extend_from_slice(missing);
        loop {
            to_vec(&logits, &mut self.logits)?;
            let id = if greedy {
                let Some(id) = argmax(&self.logits) else {
                    break;
                };
                if !out.is_empty() && softmax_at(&self.logits, id) < MIN_CONFIDENCE {
                    break;
                }
                id
            } else {
                let mut q = Vec::new();
                self.sampler.distribution(&self.logits, &mut q);
                let Some(id) = self.sampler.draw(&q) else {
                    break;
                };
                dists.push(q);
                id
            };
            out.push(id);
            if out.len() == want || self.tokens.len() + 1 >= ctx {
                break;
            }
            logits = model.forward(&[id], cache)?;
            self.tokens.push(id);
        }
        Ok(Proposal::Drafted)
    }
}

/// The adaptive draft length: doubles while whole drafts are accepted, falls to just past
/// what was accepted on a rejection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DraftLength(usize);

impl Default for DraftLength {
    fn default() -> Self {
        DraftLength(FIRST_DRAFT)
    }
}

impl DraftLength {
    pub fn get(self) -> usize {
        self.0
    }

    pub fn feedback(&mut self, proposed: usize, accepted: usize) {
        self.0 = if accepted == proposed {
            (self.0 * 2).min(MAX_DRAFT)
        } else {
            (accepted + 1).clamp(MIN_DRAFT, MAX_DRAFT)
        };
    }
}

fn to_vec(t: &Tensor, buf: &mut Vec<f32>) -> Result<(), ModelError> {
    *buf = t
        .to_device(&Device::Cpu)?
        .flatten_all()?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    Ok(())
}

/// softmax(logits)[i].
fn softmax_at(logits: &[f32], i: u32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let z: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    (logits[i as usize] - max).exp() / z
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_length_adapts() {
        let mut d = DraftLength::default();
        d.feedback(4, 4);
        assert_eq!(d.get(), 8);
        d.feedback(8, 8);
        assert_eq!(d.get(), MAX_DRAFT);
        d.feedback(10, 3);
        assert_eq!(d.get(), 4);
        d.feedback(4, 0);
        assert_eq!(d.get(), MIN_DRAFT);
    }
}
