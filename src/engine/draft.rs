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
//! long prompt does not stall the stream. That catch-up is what a draft model costs beyond
//! its drafts (a new prompt, and every token prompt lookup drafted), so the worker only
//! asks for it where drafting pays it back (`SpecCosts::draft_catch_up`); else the draft
//! may start over on the sequence's last few tokens (`offset`), or not draft.

use super::sampler::{argmax, Sampler};
use super::spec_costs::{best_length, CatchUp, Payoff, SpecCosts, CATCH_UP_WINDOW, STEADY_LAG};
use super::SamplingParams;
use crate::model::{KvCache, Model, ModelError};
use candle_core::{DType, Device, Tensor};

/// Draft length bounds; each draft token costs one step of the draft model.
const MIN_DRAFT: usize = 2;
const MAX_DRAFT: usize = 10;
const FIRST_DRAFT: usize = 4;
/// Greedy drafting stops once the draft's own top probability falls below this: an unsure
/// draft is usually wrong, and tokens after it would cost for nothing. The unsure token
/// itself is kept: its forward pass is already paid for, and verifying it costs one row
/// (measured on the 2-CPU host: a verified row ~20 ms, a draft forward ~24 ms).
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
    /// The tokens whose K/V are in `cache`: the sequence's from `offset` on.
    tokens: Vec<u32>,
    offset: usize,
    /// Draws draft tokens for sampled requests (its own generator).
    sampler: Sampler,
    logits: Vec<f32>,
    /// Tokens the cache may hold (the engine's context size).
    ctx: usize,
    /// The last `propose`'s catch-up beyond the steady state: tokens run, seconds taken.
    caught_up: Option<(usize, f64)>,
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
        self.offset = 0;
    }

    /// The tokens of `history` (the sequence including the token about to run) the cache
    /// holds, counted from `offset`; the last token is always run again.
    fn common(&self, history: &[u32]) -> usize {
        let Some(view) = history.get(self.offset..).filter(|v| !v.is_empty()) else {
            return 0;
        };
        self.tokens
            .iter()
            .zip(view)
            .take_while(|(a, b)| a == b)
            .count()
            .min(view.len() - 1)
    }

    /// How many tokens of `history` the draft model must run before it can draft.
    pub fn lag(&self, history: &[u32]) -> usize {
        match self.common(history) {
            0 => history.len(),
            common => history.len() - self.offset - common,
        }
    }

    /// The last `propose`'s catch-up beyond the steady state (tokens, seconds), once.
    pub fn take_catch_up(&mut self) -> Option<(usize, f64)> {
        self.caught_up.take()
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
    /// the one about to run), getting in step with it as `catch_up` says. For a greedy
    /// request `dists` stays empty; else `dists[j]` is the distribution `out[j]` was drawn
    /// from.
    #[allow(clippy::too_many_arguments)]
    pub fn propose(
        &mut self,
        draft: &DraftModel,
        history: &[u32],
        want: usize,
        catch_up: CatchUp,
        greedy: bool,
        out: &mut Vec<u32>,
        dists: &mut Vec<Vec<(u32, f32)>>,
    ) -> Result<Proposal, ModelError> {
        out.clear();
        dists.clear();
        if want == 0 || history.is_empty() || catch_up == CatchUp::Skip {
            return Ok(Proposal::Drafted);
        }
        let model = draft.model.as_ref();
        let ctx = self.ctx;
        let mut common = self.common(history);
        if common == 0 {
            // Nothing shared (a new sequence, or one changed before the window): from the
            // start, or from the window.
            self.offset = 0;
        }
        if catch_up == CatchUp::Window && history.len() - self.offset - common > CATCH_UP_WINDOW {
            self.offset = history.len() - CATCH_UP_WINDOW;
            common = 0;
        }
        let cache = match self.cache.as_mut() {
            Some(c) => c,
            None => self.cache.insert(model.new_cache(ctx)?),
        };
        self.tokens.truncate(common);
        cache.truncate(common);
        let missing = &history[self.offset + common..];
        let started = std::time::Instant::now();
        if missing.len() > CATCH_UP {
            let chunk = &missing[..CATCH_UP];
            model.forward(chunk, cache)?;
            self.tokens.extend_from_slice(chunk);
            self.caught_up = Some((CATCH_UP, started.elapsed().as_secs_f64()));
            return Ok(Proposal::NotReady);
        }
        let mut logits = model.forward(missing, cache)?;
        self.tokens.extend_from_slice(missing);
        if missing.len() > STEADY_LAG {
            self.caught_up = Some((missing.len(), started.elapsed().as_secs_f64()));
        }
        loop {
            to_vec(&logits, &mut self.logits)?;
            let mut unsure = false;
            let id = if greedy {
                let Some(id) = argmax(&self.logits) else {
                    break;
                };
                unsure = softmax_at(&self.logits, id) < MIN_CONFIDENCE;
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
            if unsure || out.len() == want || self.tokens.len() + 1 >= ctx {
                break;
            }
            logits = model.forward(&[id], cache)?;
            self.tokens.push(id);
        }
        Ok(Proposal::Drafted)
    }
}

/// The adaptive draft length: doubles while whole drafts are accepted, falls to just past
/// what was accepted on a rejection. Within that bound, `SpecCosts` decides whether
/// drafting pays at all and how far (see `want`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct DraftLength {
    len: usize,
    /// What model drafts earned; pauses count steps.
    payoff: Payoff,
}

/// The longest pause in model drafting (steps).
const MAX_PAUSE: usize = 128;

impl Default for DraftLength {
    fn default() -> Self {
        DraftLength {
            len: FIRST_DRAFT,
            payoff: Payoff::new(0.0, 0.0, MAX_PAUSE),
        }
    }
}

impl DraftLength {
    /// How many tokens to draft now (0: step without the draft model), at most `room`.
    /// With measured costs, the length that maximizes expected tokens per second, and 0
    /// when even that is slower than plain decoding (on a small CPU a draft model costs a
    /// large share of a target step, and free-form text is guessed too rarely to pay).
    pub fn want(&mut self, costs: &SpecCosts, room: usize) -> usize {
        if self.payoff.skip_paused() {
            return 0;
        }
        let cap = self.len.min(room);
        if costs.always {
            return cap;
        }
        if self.payoff.take_probe() {
            return cap.min(MIN_DRAFT);
        }
        // The first step of a sequence runs without a draft when no plain step has been
        // timed yet: every other cost is measured against it.
        let Some(step) = costs.step.get() else {
            return 0;
        };
        // Drafting has been yielding tokens more slowly than plain steps: whatever the
        // estimate says, pause (the probe after the pause measures again).
        if costs.draft_yield.get().is_some_and(|y| y > step) {
            self.payoff.pause();
            return 0;
        }
        let (Some(draft), Some(row)) = (costs.draft.get(), costs.row.get()) else {
            return cap;
        };
        if self.payoff.seen() < 4.0 {
            return cap;
        }
        let best = best_length(self.payoff.acceptance(), step, draft, row, cap);
        self.payoff.settle(best)
    }

    pub fn feedback(&mut self, proposed: usize, accepted: usize) {
        self.len = if accepted == proposed {
            (self.len * 2).min(MAX_DRAFT)
        } else {
            (accepted + 1).clamp(MIN_DRAFT, MAX_DRAFT)
        };
        self.payoff.feedback(proposed, accepted);
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
    use crate::engine::spec_costs::{Ema, FIRST_PAUSE};
    use crate::model::ModelInfo;

    /// Predicts `last + 1` with certainty, and keeps no K/V (its cache only counts).
    struct Counter(ModelInfo);

    impl Model for Counter {
        fn info(&self) -> &ModelInfo {
            &self.0
        }

        fn new_cache(&self, capacity: usize) -> Result<KvCache, ModelError> {
            Ok(KvCache::positions_only(capacity))
        }

        fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, ModelError> {
            let last = *tokens.last().ok_or(ModelError::EmptyInput)?;
            cache.advance(tokens.len());
            let mut v = vec![0f32; self.0.vocab_size];
            v[(last as usize + 1) % self.0.vocab_size] = 50.0;
            Ok(Tensor::from_vec(v, self.0.vocab_size, &Device::Cpu)?)
        }

        fn forward_all(&self, _: &[u32], _: &mut KvCache) -> Result<Tensor, ModelError> {
            unreachable!("drafting runs one row at a time")
        }
    }

    fn counter() -> DraftModel {
        DraftModel::new(Box::new(Counter(ModelInfo {
            architecture: "counter".into(),
            name: None,
            train_ctx: 4096,
            vocab_size: 4096,
        })))
    }

    /// The cache holds `history[offset..]` position for position (then the draft tokens
    /// run after it, if any).
    fn in_step(state: &DraftState, history: &[u32]) {
        let n = state.tokens.len();
        let known = n.min(history.len() - state.offset);
        assert_eq!(state.tokens[..known], history[state.offset..][..known]);
        assert_eq!(state.cache.as_ref().map(KvCache::len), Some(n));
    }

    #[test]
    fn catch_ups_window_restarts_and_skips_keep_the_cache_in_step() {
        let model = counter();
        let mut state = DraftState::default();
        state.reset(&SamplingParams::default(), 4096);
        let (mut out, mut dists) = (Vec::new(), Vec::new());
        let mut propose = |state: &mut DraftState, history: &[u32], catch_up| {
            state
                .propose(&model, history, 3, catch_up, true, &mut out, &mut dists)
                .map(|p| (matches!(p, Proposal::Drafted), out.clone()))
                .unwrap()
        };
        let history: Vec<u32> = (0..1000).collect();
        assert_eq!(state.lag(&history), 1000);
        // Skip runs nothing.
        assert_eq!(propose(&mut state, &history, CatchUp::Skip), (true, vec![]));
        assert!(state.cache.is_none() && state.take_catch_up().is_none());
        // A window restart runs only the last tokens, and drafts from them.
        let drafted = propose(&mut state, &history, CatchUp::Window);
        assert_eq!(drafted, (true, vec![1000, 1001, 1002]));
        assert_eq!(state.offset, 1000 - CATCH_UP_WINDOW);
        assert_eq!(state.take_catch_up().map(|c| c.0), Some(CATCH_UP_WINDOW));
        in_step(&state, &history);
        // Two drafts accepted, then another token (the draft's 1002 refuted): only that
        // token runs, no restart.
        let mut history: Vec<u32> = (0..1003).collect();
        history[1002] = 7;
        assert_eq!(state.lag(&history), 1);
        assert_eq!(
            propose(&mut state, &history, CatchUp::Full),
            (true, vec![8, 9, 10])
        );
        assert_eq!(state.offset, 1000 - CATCH_UP_WINDOW);
        assert!(state.take_catch_up().is_none());
        in_step(&state, &history);
        // Prompt lookup ran 100 tokens without the draft model: a full catch-up runs them.
        history.extend(11..111);
        assert_eq!(state.lag(&history), 100);
        propose(&mut state, &history, CatchUp::Full);
        assert_eq!(state.take_catch_up().map(|c| c.0), Some(100));
        in_step(&state, &history);
        // Another sequence: nothing in common, so a full catch-up starts from its first
        // token, CATCH_UP tokens a step.
        let other: Vec<u32> = (2000..2600).collect();
        assert_eq!(state.lag(&other), 600);
        assert_eq!(propose(&mut state, &other, CatchUp::Full), (false, vec![]));
        assert_eq!(state.offset, 0);
        in_step(&state, &other);
        assert_eq!(propose(&mut state, &other, CatchUp::Full), (false, vec![]));
        assert_eq!(
            propose(&mut state, &other, CatchUp::Full),
            (true, vec![2600, 2601, 2602])
        );
        in_step(&state, &other);
    }

    #[test]
    fn draft_length_adapts() {
        let mut d = DraftLength::default();
        d.feedback(4, 4);
        assert_eq!(d.len, 8);
        d.feedback(8, 8);
        assert_eq!(d.len, MAX_DRAFT);
        d.feedback(10, 3);
        assert_eq!(d.len, 4);
        d.feedback(4, 0);
        assert_eq!(d.len, MIN_DRAFT);
    }

    fn costs(step: f64, draft: f64, row: f64) -> SpecCosts {
        let mut c = SpecCosts::default();
        c.step.add(step);
        c.draft.add(draft);
        c.row.add(row);
        c
    }

    /// Measured on the 2-CPU host (1.5B target, 0.5B draft): a draft token costs ~0.4 of
    /// a target step. At the edit prompt's acceptance (~89%) a few tokens pay; at free
    /// text's (~65%) none does, and drafting pauses, doubling the pause.
    #[test]
    fn drafting_follows_the_measured_costs() {
        let slow_cpu = costs(0.065, 0.026, 0.008);
        let mut edit = DraftLength::default();
        for _ in 0..10 {
            edit.feedback(8, 7); // 7 of 8: p = 7/8
        }
        let k = edit.want(&slow_cpu, 100);
        assert!((2..=MAX_DRAFT).contains(&k), "edit drafts {k}");
        let mut chat = DraftLength::default();
        for _ in 0..10 {
            chat.feedback(3, 1); // p = 1/2
        }
        assert_eq!(chat.want(&slow_cpu, 100), 0);
        assert_eq!(chat.payoff.paused, FIRST_PAUSE);
        for _ in 0..FIRST_PAUSE {
            assert_eq!(chat.want(&slow_cpu, 100), 0);
        }
        assert_eq!(
            chat.want(&slow_cpu, 100),
            MIN_DRAFT,
            "one probe after the pause"
        );
        assert_eq!(chat.want(&slow_cpu, 100), 0, "still does not pay");
        assert_eq!(chat.payoff.paused, 2 * FIRST_PAUSE);
        // A cheap draft (a GPU, a much smaller draft model) pays even at p = 1/2.
        let mut cheap = chat;
        cheap.payoff.paused = 0;
        assert!(cheap.want(&costs(0.065, 0.002, 0.001), 100) > 0);
        // No plain step timed yet: one runs first. Then, until drafts are timed too, the
        // adaptive length as before.
        assert_eq!(DraftLength::default().want(&SpecCosts::default(), 100), 0);
        let mut step_only = SpecCosts::default();
        step_only.step.add(0.065);
        assert_eq!(DraftLength::default().want(&step_only, 100), FIRST_DRAFT);
        // The estimate says drafting pays, but drafting has been yielding a token per
        // 80 ms against 65 ms for a plain step: pause.
        let mut slow_yield = costs(0.065, 0.010, 0.005);
        slow_yield.draft_yield.add(0.080);
        let mut d = edit;
        d.payoff.paused = 0;
        d.payoff.probe = false;
        assert_eq!(d.want(&slow_yield, 100), 0);
        assert_eq!(d.payoff.paused, FIRST_PAUSE);
        slow_yield.draft_yield = Ema::default();
        slow_yield.draft_yield.add(0.030);
        d.payoff.paused = 0;
        d.payoff.probe = false;
        assert!(
            d.want(&slow_yield, 100) > 0,
            "a draft that yields fast goes on"
        );
    }
}
