//! The worker thread: owns the model, the active slots and the prefix cache. It takes
//! requests from the bounded queue into free slots and runs steps. One step samples the
//! next token of every decoding slot, then runs those tokens together with a chunk of the
//! prompts still being prefilled, in one batch: a long prompt advances a chunk per step
//! while the other streams keep decoding, instead of stalling them for its whole prefill.
//! Before each step every request whose client is gone is cancelled and its slot freed,
//! whether it is decoding, prefilling or still queued.
//! Input: `Job`s from the queue in `handle::Shared`. Output: `Event`s on each job's channel.
//! Must not depend on axum, minijinja, api or parsers; never blocks on a client (a reader
//! too far behind is cancelled, see `EngineOptions::event_buffer`) and never panics on bad
//! input (a model error fails that request only).

use super::draft::{DraftModel, Proposal};
use super::handle::{Shared, StatCounters};
use super::logprobs;
use super::pacer::Pacer;
use super::prefix_cache::PrefixCache;
use super::sampler::Sampler;
use super::slot::{chunk_len, Sequence, Slot};
use super::spec_costs::{CatchUp, SpecCosts};
use super::speculate::{Method, Speculation, SpeculativeMode, Verdict};
use super::stop::{length_limit, StopIds, StopStrings};
use super::{EngineError, Event, FinishReason, GenerationRequest, Usage};
use crate::model::{KvCache, Model};
use crate::tokenizer::detok::Detokenizer;
use crate::tokenizer::Tokenizer;
use candle_core::{DType, Storage, Tensor};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::mpsc::Sender;

/// A request waiting in the queue.
pub(crate) struct Job {
    pub req: GenerationRequest,
    pub tx: Sender<Event>,
    pub submitted: Instant,
}

pub(crate) fn spawn(
    model: Box<dyn Model>,
    draft: Option<DraftModel>,
    tokenizer: Arc<Tokenizer>,
    shared: Arc<Shared>,
) -> Result<JoinHandle<()>, EngineError> {
    let eog = tokenizer.eog_ids().to_vec();
    let slots = (0..shared.opts.parallel).map(|_| Slot::default()).collect();
    let spec_costs = SpecCosts {
        always: shared.opts.draft_always,
        ..SpecCosts::default()
    };
    let mut w = Worker {
        model,
        draft,
        tokenizer,
        prefix_cache: PrefixCache::new(shared.opts.cache_bytes),
        pacer: Pacer::default(),
        shared,
        slots,
        eog,
        admitted: 0,
        logits_buf: Vec::new(),
        piece: String::new(),
        order: Vec::new(),
        lens: Vec::new(),
        drafts: Vec::new(),
        dists: Vec::new(),
        verify: Vec::new(),
        spec_costs,
    };
    std::thread::Builder::new()
        .name("wick-engine".into())
        .spawn(move || w.run())
        .map_err(|e| EngineError::Inference(format!("cannot start the worker thread: {e}")))
}

struct Worker {
    model: Box<dyn Model>,
    /// The draft model (`--draft-model`), when speculative decoding uses one.
    draft: Option<DraftModel>,
    /// What a plain step, a draft token and a verified row cost here (decides drafting).
    spec_costs: SpecCosts,
    tokenizer: Arc<Tokenizer>,
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    prefix_cache: PrefixCache,
    pacer: Pacer,
    eog: Vec<u32>,
    /// Requests admitted so far (orders the prefill).
    admitted: u64,
    /// Logits copied off a non-CPU device (reused).
    logits_buf: Vec<f32>,
    /// Newly completed UTF-8 text of one token (reused).
    piece: String,
    /// Prefilling slots, shortest prompt left first (reused).
    order: Vec<usize>,
    /// Cache lengths before a step, to undo a failed batch (reused).
    lens: Vec<usize>,
    /// Draft tokens proposed this step, and the tokens verified with them (reused).
    drafts: Vec<u32>,
    /// The distributions a sampled model draft was drawn from (one per draft token).
    dists: Vec<Vec<(u32, f32)>>,
    verify: Vec<u32>,
}

/// Why a request ended without `Done`/`Failed` of its own making.
#[derive(Clone, Copy)]
enum Cancel {
    ClientGone,
    SlowReader,
}

impl Worker {
    fn run(&mut self) {
        while self.admit_waiting() {
            self.cancel_gone_clients();
            // Sample the next token of every decoding slot; it becomes the slot's input.
            for i in 0..self.slots.len() {
                self.slots[i].input.clear();
                if self.slots[i].is_decoding() {
                    if let Some(id) = self.sample_and_emit(i) {
                        self.slots[i].input.push(id);
                    }
                }
            }
            let decode_rows = self.slots.iter().filter(|s| !s.input.is_empty()).count();
            let prefill = self.plan_prefill(decode_rows > 0);
            let started = Instant::now();
            // A lone decoding sequence may verify draft tokens instead (speculative
            // decoding); with others running, the batch already shares the weight reads.
            let lone = prefill == 0 && decode_rows == 1;
            if !(lone && self.run_speculative()) {
                // The plain step alone: a draft model's catch-up on a new prompt may have
                // run just before it, and must not make plain steps look slow.
                let step = Instant::now();
                self.run_step();
                if lone {
                    self.spec_costs.step.add(step.elapsed().as_secs_f64());
                }
            }
            StatCounters::add(&self.shared.stats.prefill_tokens, prefill as u64);
            self.pacer
                .record(decode_rows, prefill, started.elapsed().as_secs_f64());
            self.publish_memory();
        }
    }

    fn active_count(&self) -> usize {
        self.slots.iter().filter(|s| !s.is_free()).count()
    }

    /// Moves queued jobs into free slots. Blocks while there is nothing to do. Returns false
    /// once shut down with no work left.
    fn admit_waiting(&mut self) -> bool {
        loop {
            let active = self.active_count();
            if active == self.slots.len() {
                if self.shared.queued.load(Ordering::Acquire) > 0 {
                    // Gone clients must not keep their queue places while all slots run.
                    let mut st = self.shared.lock();
                    self.shared.drop_gone_jobs(&mut st);
                }
                return true;
            }
            if active > 0 && self.shared.queued.load(Ordering::Acquire) == 0 {
                return true;
            }
            let job = {
                let mut st = self.shared.lock();
                self.shared.drop_gone_jobs(&mut st);
                loop {
                    if let Some(j) = st.jobs.pop_front() {
                        st.busy += 1;
                        self.shared.queued.store(st.jobs.len(), Ordering::Release);
                        self.shared.active.store(st.busy, Ordering::Release);
                        break Some(j);
                    }
                    if active > 0 {
                        break None;
                    }
                    if st.shutdown {
                        return false;
                    }
                    st = self.shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                    self.shared.drop_gone_jobs(&mut st);
                }
            };
            match job {
                Some(j) => self.admit(j),
                None => return true,
            }
        }
    }

    /// A slot stopped running a request (or never started): let the queue know.
    fn release(&self) {
        let mut st = self.shared.lock();
        st.busy = st.busy.saturating_sub(1);
        self.shared.active.store(st.busy, Ordering::Release);
    }

    /// Puts a job into a free slot with the KV of its longest cached prefix. Its prompt is
    /// prefilled by the following steps.
    fn admit(&mut self, job: Job) {
        if job.tx.is_closed() {
            StatCounters::add(&self.shared.stats.cancelled_queued, 1);
            self.release();
            return;
        }
        let Some(i) = self.slots.iter().position(Slot::is_free) else {
            // Cannot happen: admit_waiting only takes a job when a slot is free.
            let _ = job
                .tx
                .try_send(Event::Failed(EngineError::Inference("no free slot".into())));
            self.release();
            return;
        };
        let prompt = &job.req.prompt_ids;
        let stats = &self.shared.stats;
        StatCounters::add(&stats.prefix_lookups, 1);
        let (cache, reuse) = match self.prefix_cache.lookup(prompt) {
            Ok(Some(hit)) => {
                StatCounters::add(&stats.prefix_hits, 1);
                StatCounters::add(&stats.prefix_tokens_reused, hit.reuse as u64);
                (Ok(hit.cache), hit.reuse)
            }
            Ok(None) => (self.model.new_cache(self.shared.opts.ctx_size), 0),
            Err(e) => (Err(e), 0),
        };
        // The whole prompt's room at once: a long prefill grows the buffers once.
        let cache = cache.and_then(|mut c| c.reserve(prompt.len()).map(|()| c));
        let cache = match cache {
            Ok(c) => c,
            Err(e) => {
                let _ = job
                    .tx
                    .try_send(Event::Failed(EngineError::Inference(e.to_string())));
                self.release();
                return;
            }
        };
        let Job { req, tx, submitted } = job;
        self.admitted += 1;
        let slot = &mut self.slots[i];
        slot.tokens.clear();
        slot.tokens.extend_from_slice(&req.prompt_ids[..reuse]);
        slot.cache = Some(cache);
        slot.draft.clear();
        slot.draft.reset(&req.sampling, self.shared.opts.ctx_size);
        slot.sampler.reset(req.sampling);
        slot.seq = Some(Sequence {
            tx,
            usage: Usage {
                prompt_tokens: req.prompt_ids.len(),
                completion_tokens: 0,
                cached_tokens: reuse,
            },
            prompt: req.prompt_ids,
            stop_ids: StopIds::new(&self.eog, &req.stop_ids),
            stop_strings: StopStrings::new(req.stop_strings),
            detok: Detokenizer::new(),
            max_tokens: req.max_tokens,
            logprobs: req.logprobs,
            aligner: Default::default(),
            constraint: req.constraint,
            submitted,
            admitted: self.admitted,
            first_token_at: None,
            last_token_at: None,
            logits: None,
            spec: Speculation::default(),
        });
    }

    /// Cancels every running request whose client has gone (checked once a step, so a
    /// prompt being prefilled gives up its slot after at most one chunk).
    fn cancel_gone_clients(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].seq.as_ref().is_some_and(|s| s.tx.is_closed()) {
                self.cancel(i, Cancel::ClientGone);
            }
        }
    }

    /// Fills `input` of the prefilling slots with their next prompt chunk: the step's
    /// budget goes to the shortest prompts first (a short chat is not held behind a long
    /// prompt), and is paced while other slots decode so their next token is delayed by a
    /// bounded factor (`pacer`). Returns the prompt tokens planned.
    fn plan_prefill(&mut self, decoding: bool) -> usize {
        let opts = &self.shared.opts;
        let mut budget = if decoding {
            self.pacer.budget(opts.prefill_chunk_decoding)
        } else {
            opts.prefill_chunk
        };
        let mut planned = 0;
        self.order.clear();
        self.order.extend(
            (0..self.slots.len())
                .filter(|&i| !self.slots[i].is_free() && self.slots[i].prompt_left() > 0),
        );
        let slots = &self.slots;
        self.order.sort_by_key(|&i| {
            let admitted = slots[i].seq.as_ref().map_or(0, |s| s.admitted);
            (slots[i].prompt_left(), admitted)
        });
        for &i in &self.order {
            let slot = &mut self.slots[i];
            let n = chunk_len(slot.prompt_left(), budget);
            if n == 0 {
                break;
            }
            budget = budget.saturating_sub(n);
            let Some(seq) = slot.seq.as_ref() else {
                continue;
            };
            let at = slot.tokens.len();
            slot.input.extend_from_slice(&seq.prompt[at..at + n]);
            planned += n;
        }
        planned
    }

    /// Runs every slot's `input` in one batch; on failure, undoes it and runs each slot
    /// alone so only the request that fails is failed.
    fn run_step(&mut self) {
        let parts = self.slots.iter().filter(|s| !s.input.is_empty()).count();
        if parts == 0 {
            return;
        }
        self.lens.clear();
        self.lens.extend(
            self.slots
                .iter()
                .map(|s| s.cache.as_ref().map_or(0, KvCache::len)),
        );
        let result = {
            let mut tokens: Vec<&[u32]> = Vec::with_capacity(parts);
            let mut caches: Vec<&mut KvCache> = Vec::with_capacity(parts);
            for s in self.slots.iter_mut().filter(|s| !s.input.is_empty()) {
                if let Some(c) = s.cache.as_mut() {
                    tokens.push(&s.input);
                    caches.push(c);
                }
            }
            if caches.len() == parts {
                forward_seqs(self.model.as_ref(), &tokens, &mut caches)
            } else {
                Err(EngineError::Inference("slot has no KV cache".into()))
            }
        };
        match result {
            Ok(logits) => {
                let mut k = 0;
                for i in 0..self.slots.len() {
                    if !self.slots[i].input.is_empty() {
                        let row = logits
                            .get(k)
                            .map_err(|e| EngineError::Inference(e.to_string()));
                        self.after_step(i, row);
                        k += 1;
                    }
                }
            }
            Err(_) if parts > 1 => {
                for i in 0..self.slots.len() {
                    if let Some(c) = self.slots[i].cache.as_mut() {
                        c.truncate(self.lens[i]);
                    }
                }
                for i in 0..self.slots.len() {
                    if self.slots[i].input.is_empty() {
                        continue;
                    }
                    let slot = &mut self.slots[i];
                    let row = match slot.cache.as_mut() {
                        Some(c) => forward_seqs(self.model.as_ref(), &[&slot.input], &mut [c])
                            .and_then(|l| {
                                l.get(0).map_err(|e| EngineError::Inference(e.to_string()))
                            }),
                        None => Err(EngineError::Inference("slot has no KV cache".into())),
                    };
                    self.after_step(i, row);
                }
            }
            Err(e) => {
                if let Some(i) = self.slots.iter().position(|s| !s.input.is_empty()) {
                    self.fail(i, e);
                }
            }
        }
    }

    /// The one decoding slot's next token (its `input`) and draft tokens to follow it, run
    /// in one verification pass whose rows equal one-token steps bit for bit. Returns
    /// false when there is no draft (the caller then runs the usual step).
    fn run_speculative(&mut self) -> bool {
        let mode = self.shared.opts.speculative;
        if mode == SpeculativeMode::Off {
            return false;
        }
        let Some(i) = self.slots.iter().position(|s| s.input.len() == 1) else {
            return false;
        };
        let ctx = self.shared.opts.ctx_size;
        let slot = &mut self.slots[i];
        let (Some(cache), Some(seq)) = (slot.cache.as_mut(), slot.seq.as_mut()) else {
            return false;
        };
        // Drafts past max_tokens or the context could never be used.
        let room = seq
            .max_tokens
            .saturating_sub(seq.usage.completion_tokens)
            .min(ctx.saturating_sub(slot.tokens.len() + 1));
        slot.tokens.push(slot.input[0]);
        self.drafts.clear();
        self.dists.clear();
        let started = Instant::now();
        let mut catch_up_secs = 0.0;
        let mut method = Method::Lookup;
        if mode.uses_lookup() {
            seq.spec
                .drafter
                .propose(&slot.tokens, room, &self.spec_costs, &mut self.drafts);
        }
        if self.drafts.is_empty() && mode.uses_draft_model() {
            if let Some(draft) = self.draft.as_ref() {
                method = Method::Draft;
                let want = seq.spec.draft_len.want(&self.spec_costs, room);
                let greedy = slot.sampler.is_greedy() || seq.constraint.is_some();
                let state = &mut slot.draft;
                let (tokens, drafts, dists) = (&slot.tokens, &mut self.drafts, &mut self.dists);
                let catch_up = if want == 0 {
                    CatchUp::Skip
                } else {
                    self.spec_costs.draft_catch_up(state.lag(tokens), room)
                };
                let t0 = Instant::now();
                // `want == 0` (drafting does not pay now) or `Skip` (catching up would not)
                // proposes nothing and runs nothing.
                let proposed = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    state.propose(draft, tokens, want, catch_up, greedy, drafts, dists)
                }));
                tracing::trace!(want, ?catch_up, drafted = drafts.len(), "model draft");
                if let Some((n, secs)) = state.take_catch_up() {
                    tracing::trace!(tokens = n, ms = secs * 1e3, "draft model caught up");
                    // A catch-up is not drafting: it is timed on its own, and left out of
                    // what this draft yields.
                    if n >= 8 {
                        self.spec_costs.sync.add(secs / n as f64);
                    }
                    catch_up_secs = secs;
                }
                match proposed {
                    // A draft made right after a catch-up does not time drafting.
                    Ok(Ok(Proposal::Drafted)) if !drafts.is_empty() && catch_up_secs == 0.0 => {
                        let per_token = t0.elapsed().as_secs_f64() / drafts.len() as f64;
                        self.spec_costs.draft.add(per_token);
                    }
                    Ok(Ok(Proposal::Drafted)) => {}
                    // Catching up, or the draft model failed: this step goes without a
                    // draft (and a failed draft cache starts over).
                    Ok(Ok(Proposal::NotReady)) => self.drafts.clear(),
                    Ok(Err(_)) | Err(_) => {
                        slot.draft.clear();
                        self.drafts.clear();
                    }
                }
            }
        }
        slot.tokens.pop();
        if self.drafts.is_empty() {
            return false;
        }
        self.verify.clear();
        self.verify.push(slot.input[0]);
        self.verify.extend_from_slice(&self.drafts);
        let model = self.model.as_ref();
        let tokens = &self.verify;
        let t0 = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            model
                .forward_verify(tokens, cache)
                .and_then(|l| Ok(l.to_device(&candle_core::Device::Cpu)?))
        }));
        // The cost of each row beyond the first, against a plain step.
        let took = t0.elapsed().as_secs_f64();
        if let Some(step) = self.spec_costs.step.get() {
            let extra = took - step;
            self.spec_costs
                .row
                .add(extra.max(0.0) / (tokens.len() - 1) as f64);
        }
        tracing::trace!(
            rows = tokens.len(),
            took_ms = took * 1e3,
            step_ms = self.spec_costs.step.get().map(|s| s * 1e3),
            row_ms = self.spec_costs.row.get().map(|s| s * 1e3),
            "verified a draft"
        );
        let rows = match result {
            Ok(Ok(l)) => (0..tokens.len())
                .map(|r| l.get(r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| EngineError::Inference(e.to_string())),
            Ok(Err(e)) => Err(EngineError::Inference(e.to_string())),
            Err(_) => Err(EngineError::Inference("the model panicked".into())),
        };
        match rows {
            Ok(mut rows) => {
                slot.tokens.extend_from_slice(&self.verify);
                slot.input.clear();
                let after = rows.split_off(1);
                seq.logits = rows.pop();
                let dists = std::mem::take(&mut self.dists);
                let spent = started.elapsed().as_secs_f64() - catch_up_secs;
                seq.spec.start(method, &self.drafts, after, dists, spent);
            }
            Err(e) => self.fail(i, e),
        }
        true
    }

    /// Takes `n` unconfirmed draft tokens back out of slot `i`'s cache and token list.
    fn drop_unconfirmed(&mut self, i: usize, n: usize) {
        if n == 0 {
            return;
        }
        let slot = &mut self.slots[i];
        let keep = slot.tokens.len().saturating_sub(n);
        slot.tokens.truncate(keep);
        if let Some(c) = slot.cache.as_mut() {
            c.truncate(keep);
        }
    }

    /// Books slot `i`'s step: its input is now cached; `row` is the logits of its last
    /// token, kept once the prompt is done.
    fn after_step(&mut self, i: usize, row: Result<Tensor, EngineError>) {
        let row = match row {
            Ok(r) => r,
            Err(e) => return self.fail(i, e),
        };
        let slot = &mut self.slots[i];
        slot.tokens.extend_from_slice(&slot.input);
        slot.input.clear();
        if slot.prompt_left() > 0 {
            return;
        }
        let Some(seq) = slot.seq.as_mut() else {
            return;
        };
        seq.logits = Some(row);
        // max_tokens == 0: nothing to generate, but the prompt is now cached.
        if seq.max_tokens == 0 {
            self.finish(i, FinishReason::Length, String::new());
        }
    }

    /// One decode step of slot `i`: samples and emits tokens while they confirm draft
    /// tokens already in the cache, then returns the token to run next when the request
    /// goes on.
    fn sample_and_emit(&mut self, i: usize) -> Option<u32> {
        loop {
            let id = self.sample_one(i)?;
            let seq = self.slots[i].seq.as_mut()?;
            let verdict = seq.spec.check(id, &mut seq.logits, &self.shared.stats);
            if let Some(y) = seq.spec.take_yield() {
                self.spec_costs.draft_yield.add(y);
            }
            match verdict {
                Verdict::Accepted => continue,
                Verdict::NoDraft => return Some(id),
                Verdict::Rejected { discard } => {
                    self.drop_unconfirmed(i, discard);
                    return Some(id);
                }
            }
        }
    }

    /// Samples one token of slot `i` from its logits, emits it and checks the stop rules.
    /// Returns the token when the request goes on.
    fn sample_one(&mut self, i: usize) -> Option<u32> {
        let ctx = self.shared.opts.ctx_size;
        let Worker {
            slots,
            tokenizer,
            logits_buf,
            piece,
            ..
        } = self;
        let slot = &mut slots[i];
        let seq = slot.seq.as_mut()?;
        // One place is kept for the final event; a token needs one more.
        if seq.tx.capacity() < 2 {
            self.cancel(i, Cancel::SlowReader);
            return None;
        }
        let Some(logits) = seq.logits.take() else {
            self.fail(
                i,
                EngineError::Inference("no logits for the next token".into()),
            );
            return None;
        };
        let sampler: &mut Sampler = &mut slot.sampler;
        let top_k = seq.logprobs;
        let constraint = seq.constraint.as_deref_mut();
        // A token the draft model sampled is checked by rejection sampling against the
        // distribution it came from (constrained requests draft greedily instead).
        let sampled_draft = seq.spec.next_sampled_draft();
        let sampled = with_logits(&logits, logits_buf, |l| {
            let s = match (sampled_draft, constraint) {
                (Some((draft, q)), None) => sampler.sample_against_draft(l, draft, q, false),
                (_, constraint) => sampler.sample(l, false, constraint, tokenizer.as_ref()),
            }?;
            let lp = top_k.map(|k| logprobs::compute(l, s.id, k, tokenizer.as_ref()));
            Some((s.id, lp))
        });
        drop(logits);
        let sampled = match sampled {
            Ok(Some(s)) => s,
            // The constraint allows no token: the output cannot continue.
            Ok(None) => {
                self.finish_flushed(i, FinishReason::Stop);
                return None;
            }
            Err(e) => {
                self.fail(i, e);
                return None;
            }
        };
        let (id, logprob) = sampled;
        if seq.stop_ids.contains(id) {
            self.finish_flushed(i, FinishReason::Stop);
            return None;
        }
        let now = Instant::now();
        seq.first_token_at.get_or_insert(now);
        seq.last_token_at = Some(now);
        seq.usage.completion_tokens += 1;
        slot.sampler.accept(id);
        let bytes = tokenizer.token_bytes(id);
        if let Some(c) = seq.constraint.as_mut() {
            c.advance(bytes);
        }
        piece.clear();
        // Control tokens (e.g. <|im_start|>) give no text.
        seq.detok.push_piece(bytes, tokenizer.is_control(id), piece);
        // The event owns its text; this is the one allocation per token, and only when
        // there is text to send.
        let mut text = String::new();
        let stopped = seq.stop_strings.push(piece, &mut text);
        let finish = if stopped || seq.constraint.as_ref().is_some_and(|c| c.is_complete()) {
            Some(FinishReason::Stop)
        } else {
            length_limit(
                seq.usage.completion_tokens,
                seq.max_tokens,
                slot.tokens.len() - seq.spec.pending_len(),
                ctx,
            )
        };
        if finish.is_some() && !stopped {
            // Ends for another reason: held-back text is real output.
            seq.detok.finish_into(&mut text);
            seq.stop_strings.flush(&mut text);
        }
        let mut logprobs = match logprob {
            Some(lp) => seq.aligner.push(lp, piece.len(), text.len()),
            None => Vec::new(),
        };
        if stopped {
            logprobs.extend(seq.aligner.stop());
        } else if finish.is_some() {
            logprobs.extend(seq.aligner.finish());
        }
        // Cannot be full (checked above); a closed channel is seen before the next step.
        let _ = seq.tx.try_send(Event::Token { id, text, logprobs });
        if let Some(reason) = finish {
            self.finish(i, reason, String::new());
            return None;
        }
        Some(id)
    }

    /// Ends slot `i` on a stop id: the text held back so far goes out with `Done`.
    fn finish_flushed(&mut self, i: usize, reason: FinishReason) {
        let mut tail = String::new();
        if let Some(seq) = self.slots[i].seq.as_mut() {
            seq.detok.finish_into(&mut tail);
            seq.stop_strings.flush(&mut tail);
        }
        self.finish(i, reason, tail);
    }

    /// Ends the request in slot `i` without `Done`: counts why, tells a slow reader (in the
    /// place kept for it), and frees the slot.
    fn cancel(&mut self, i: usize, why: Cancel) {
        let stats = &self.shared.stats;
        let Some(seq) = self.slots[i].seq.as_ref() else {
            return;
        };
        match why {
            Cancel::SlowReader => {
                StatCounters::add(&stats.cancelled_slow_reader, 1);
                let buffered = self.shared.opts.event_buffer;
                let _ = seq
                    .tx
                    .try_send(Event::Failed(EngineError::SlowReader { buffered }));
            }
            Cancel::ClientGone if seq.logits.is_none() => {
                StatCounters::add(&stats.cancelled_prefill, 1)
            }
            Cancel::ClientGone => StatCounters::add(&stats.cancelled_decode, 1),
        }
        self.finish(i, FinishReason::Cancelled, String::new());
    }

    /// Frees slot `i`, moving its KV (what was run so far, even of a cancelled prompt) to
    /// the prefix cache, and sends `Done` unless cancelled.
    fn finish(&mut self, i: usize, reason: FinishReason, tail: String) {
        // Unconfirmed draft tokens must not reach the prefix cache.
        let unconfirmed = match self.slots[i].seq.as_mut() {
            Some(seq) => seq.spec.discard(&self.shared.stats),
            None => return,
        };
        self.drop_unconfirmed(i, unconfirmed);
        let slot = &mut self.slots[i];
        let Some(mut seq) = slot.seq.take() else {
            return;
        };
        slot.input.clear();
        slot.draft.clear();
        if let Some(cache) = slot.cache.take() {
            self.prefix_cache
                .insert(std::mem::take(&mut slot.tokens), cache);
        }
        slot.tokens.clear();
        // Release before `Done`: whoever receives it must already see the slot free.
        self.release();
        if reason != FinishReason::Cancelled {
            let ttft = seq
                .first_token_at
                .map(|t| t.duration_since(seq.submitted).as_secs_f64())
                .unwrap_or(0.0);
            let decode_tps = match (seq.first_token_at, seq.last_token_at) {
                (Some(a), Some(b)) if b > a && seq.usage.completion_tokens > 1 => {
                    (seq.usage.completion_tokens - 1) as f64 / b.duration_since(a).as_secs_f64()
                }
                _ => 0.0,
            };
            // The place kept for the final event is free: this cannot be full.
            let _ = seq.tx.try_send(Event::Done {
                finish_reason: reason,
                usage: seq.usage,
                time_to_first_token: ttft,
                decode_tokens_per_second: decode_tps,
                text: tail,
                logprobs: seq.aligner.finish(),
            });
        }
    }

    /// Fails the request in slot `i`; its KV may be inconsistent, so it is dropped.
    fn fail(&mut self, i: usize, e: EngineError) {
        let slot = &mut self.slots[i];
        slot.cache = None;
        slot.tokens.clear();
        slot.input.clear();
        slot.draft.clear();
        if let Some(mut seq) = slot.seq.take() {
            seq.spec.discard(&self.shared.stats);
            self.release();
            let _ = seq.tx.try_send(Event::Failed(e));
        }
    }

    /// KV memory gauges for `/metrics` (once a step: a few additions).
    fn publish_memory(&self) {
        let active: usize = self
            .slots
            .iter()
            .filter_map(|s| s.cache.as_ref().map(KvCache::bytes))
            .sum();
        let stats = &self.shared.stats;
        stats
            .active_kv_bytes
            .store(active as u64, Ordering::Relaxed);
        stats
            .prefix_cache_bytes
            .store(self.prefix_cache.bytes() as u64, Ordering::Relaxed);
    }
}

/// Runs the model, turning errors and panics (e.g. a shape assert in a kernel) into a
/// failure of this step rather than of the worker.
fn forward_seqs(
    model: &dyn Model,
    tokens: &[&[u32]],
    caches: &mut [&mut KvCache],
) -> Result<Tensor, EngineError> {
    // Off a GPU in one copy for the whole step (per row, it would sync once each); on the
    // CPU this is a clone of the handle.
    let run = || {
        model
            .forward_seqs(tokens, caches)
            .and_then(|l| Ok(l.to_device(&candle_core::Device::Cpu)?))
    };
    match std::panic::catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(EngineError::Inference(e.to_string())),
        Err(_) => Err(EngineError::Inference("the model panicked".into())),
    }
}

/// Calls `f` with the logits as a slice: borrowed straight from CPU memory when possible,
/// else copied into `buf` (reused).
fn with_logits<R>(
    t: &Tensor,
    buf: &mut Vec<f32>,
    f: impl FnOnce(&[f32]) -> R,
) -> Result<R, EngineError> {
    let err = |e: candle_core::Error| EngineError::Inference(e.to_string());
    if t.dtype() == DType::F32 && t.device().is_cpu() {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            let all = cpu.as_slice::<f32>().map_err(err)?;
            if let Some(s) = all.get(start..end) {
                return Ok(f(s));
            }
        }
    }
    let v = t
        .flatten_all()
        .and_then(|t| t.to_dtype(DType::F32))
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(err)?;
    *buf = v;
    Ok(f(buf))
}
