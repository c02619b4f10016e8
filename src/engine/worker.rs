//! The worker thread: owns the model and every slot's KV cache, takes requests from the
//! bounded queue into free slots (reusing the longest cached prefix), and decodes all active
//! slots together, one token per slot per step, round-robin. Each step it checks whether a
//! request's receiver is gone and frees that slot within one token.
//! Input: `Job`s from the queue in `handle::Shared`. Output: `Event`s on each job's channel.
//! Must not depend on axum, minijinja, api or parsers; never blocks on a client (channels
//! are unbounded) and never panics on bad input (a model error fails that request only).

use super::handle::Shared;
use super::sampler::Sampler;
use super::slot::{pick_slot, Sequence, Slot};
use super::stop::{length_limit, StopIds, StopStrings};
use super::{EngineError, Event, FinishReason, GenerationRequest, Usage};
use crate::model::{KvCache, Model};
use crate::tokenizer::detok::Detokenizer;
use crate::tokenizer::Tokenizer;
use candle_core::{DType, Device, Storage, Tensor};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// A request waiting in the queue.
pub(crate) struct Job {
    pub req: GenerationRequest,
    pub tx: UnboundedSender<Event>,
    pub submitted: Instant,
}

pub(crate) fn spawn(
    model: Box<dyn Model>,
    tokenizer: Arc<Tokenizer>,
    shared: Arc<Shared>,
) -> Result<JoinHandle<()>, EngineError> {
    let eog = tokenizer.eog_ids().to_vec();
    let slots = (0..shared.opts.parallel).map(|_| Slot::default()).collect();
    let mut w = Worker {
        model,
        tokenizer,
        shared,
        slots,
        eog,
        logits_buf: Vec::new(),
        piece: String::new(),
        next: Vec::new(),
        batch_tokens: Vec::new(),
    };
    std::thread::Builder::new()
        .name("wick-engine".into())
        .spawn(move || w.run())
        .map_err(|e| EngineError::Inference(format!("cannot start the worker thread: {e}")))
}

struct Worker {
    model: Box<dyn Model>,
    tokenizer: Arc<Tokenizer>,
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    eog: Vec<u32>,
    /// Logits copied off a non-CPU device (reused).
    logits_buf: Vec<f32>,
    /// Newly completed UTF-8 text of one token (reused).
    piece: String,
    /// (slot, token) pairs to run at the end of this step, in slot order (reused).
    next: Vec<(usize, u32)>,
    /// The tokens of `next` (reused).
    batch_tokens: Vec<u32>,
}

impl Worker {
    fn run(&mut self) {
        while self.admit_waiting() {
            // Sample one token for every active slot, then run all the new tokens.
            self.next.clear();
            for i in 0..self.slots.len() {
                if self.slots[i].seq.is_some() {
                    if let Some(id) = self.sample_and_emit(i) {
                        self.next.push((i, id));
                    }
                }
            }
            self.run_next();
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
            if active == self.slots.len()
                || (active > 0 && self.shared.queued.load(Ordering::Acquire) == 0)
            {
                return true;
            }
            let job = {
                let mut st = self.shared.lock();
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
                }
            };
            match job {
                Some(j) => self.admit(j),
                None => return true,
            }
        }
    }

    /// A slot stopped decoding (or never started): let the queue know.
    fn release(&self) {
        let mut st = self.shared.lock();
        st.busy = st.busy.saturating_sub(1);
        self.shared.active.store(st.busy, Ordering::Release);
    }

    /// Puts a job into the best free slot and prefills the part of its prompt not cached.
    fn admit(&mut self, job: Job) {
        if job.tx.is_closed() {
            self.release();
            return;
        }
        let prompt = &job.req.prompt_ids;
        let picked = pick_slot(
            self.slots
                .iter()
                .map(|s| (s.is_free(), s.tokens.as_slice())),
            prompt,
        );
        let Some((i, reuse)) = picked else {
            // Cannot happen: admit_waiting only takes a job when a slot is free.
            let _ = job
                .tx
                .send(Event::Failed(EngineError::Inference("no free slot".into())));
            self.release();
            return;
        };
        let ctx = self.shared.opts.ctx_size;
        let slot = &mut self.slots[i];
        let cache = match slot.cache.take() {
            Some(c) => Ok(c),
            None => self.model.new_cache(ctx),
        };
        let mut cache = match cache {
            Ok(c) => c,
            Err(e) => {
                let _ = job
                    .tx
                    .send(Event::Failed(EngineError::Inference(e.to_string())));
                self.release();
                return;
            }
        };
        // The cache and the token list must agree; if they ever do not, start over.
        let reuse = if cache.len() == slot.tokens.len() {
            reuse
        } else {
            0
        };
        cache.truncate(reuse);
        slot.tokens.truncate(reuse);
        let result = forward(self.model.as_ref(), &prompt[reuse..], &mut cache);
        slot.cache = Some(cache);
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                slot.clear_cache();
                let _ = job.tx.send(Event::Failed(e));
                self.release();
                return;
            }
        };
        slot.tokens.extend_from_slice(&prompt[reuse..]);
        let Job { req, tx, submitted } = job;
        slot.sampler.reset(req.sampling);
        slot.seq = Some(Sequence {
            tx,
            stop_ids: StopIds::new(&self.eog, &req.stop_ids),
            stop_strings: StopStrings::new(req.stop_strings),
            detok: Detokenizer::new(),
            max_tokens: req.max_tokens,
            logprobs: req.logprobs,
            constraint: req.constraint,
            usage: Usage {
                prompt_tokens: req.prompt_ids.len(),
                completion_tokens: 0,
                cached_tokens: reuse,
            },
            submitted,
            first_token_at: None,
            last_token_at: None,
            logits: Some(logits),
        });
        // max_tokens == 0: nothing to generate, but the prompt is now cached.
        if req.max_tokens == 0 {
            self.finish(i, FinishReason::Length, String::new());
        }
    }

    /// Runs the tokens sampled this step: one batched call when several slots decode (the
    /// model may run them together), else one call per slot.
    fn run_next(&mut self) {
        if self.next.len() > 1 && self.run_batch() {
            return;
        }
        for k in 0..self.next.len() {
            let (i, id) = self.next[k];
            let slot = &mut self.slots[i];
            let (Some(cache), Some(seq)) = (slot.cache.as_mut(), slot.seq.as_mut()) else {
                self.fail(i, EngineError::Inference("slot has no KV cache".into()));
                continue;
            };
            match forward(self.model.as_ref(), &[id], cache) {
                Ok(l) => {
                    slot.tokens.push(id);
                    seq.logits = Some(l);
                }
                Err(e) => self.fail(i, e),
            }
        }
    }

    /// `forward_batch` over the slots in `next`. On failure every cache is put back as it
    /// was and false is returned, so the per-slot path can tell which request failed.
    fn run_batch(&mut self) -> bool {
        self.batch_tokens.clear();
        self.batch_tokens
            .extend(self.next.iter().map(|&(_, id)| id));
        // `next` is in slot order: walk the slots once to borrow each cache mutably.
        let mut caches: Vec<&mut KvCache> = Vec::with_capacity(self.next.len());
        let mut want = self.next.iter().map(|&(i, _)| i).peekable();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if want.peek() == Some(&i) {
                want.next();
                match slot.cache.as_mut() {
                    Some(c) => caches.push(c),
                    None => return false,
                }
            }
        }
        let lens: Vec<usize> = caches.iter().map(|c| c.len()).collect();
        let model = self.model.as_ref();
        let tokens = &self.batch_tokens;
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            // Off a GPU in one copy for the whole step (per row, it would sync once each);
            // on the CPU this is a clone of the handle.
            model
                .forward_batch(tokens, &mut caches)
                .and_then(|l| Ok(l.to_device(&Device::Cpu)?))
        }));
        let logits = match result {
            Ok(Ok(l)) => l,
            _ => {
                for (c, &len) in caches.iter_mut().zip(&lens) {
                    c.truncate(len);
                }
                return false;
            }
        };
        drop(caches);
        for (k, &(i, id)) in self.next.iter().enumerate() {
            let slot = &mut self.slots[i];
            let row = logits.get(k);
            match (row, slot.seq.as_mut()) {
                (Ok(row), Some(seq)) => {
                    slot.tokens.push(id);
                    seq.logits = Some(row);
                }
                // Cannot happen for a [n, vocab] result; drop the slot's cache to be safe.
                _ => slot.clear_cache(),
            }
        }
        true
    }

    /// One decode step of slot `i`: sample, emit, check the stop rules. Returns the token to
    /// run next when the request goes on.
    fn sample_and_emit(&mut self, i: usize) -> Option<u32> {
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
        if seq.tx.is_closed() {
            self.finish(i, FinishReason::Cancelled, String::new());
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
        let want_logprob = seq.logprobs;
        let constraint = seq.constraint.as_deref_mut();
        let sampled = with_logits(&logits, logits_buf, |l| {
            sampler.sample(l, want_logprob, constraint, tokenizer.as_ref())
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
        let id = sampled.id;
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
        let mut text = String::with_capacity(piece.len());
        let stopped = seq.stop_strings.push(piece, &mut text);
        let finish = if stopped || seq.constraint.as_ref().is_some_and(|c| c.is_complete()) {
            Some(FinishReason::Stop)
        } else {
            length_limit(
                seq.usage.completion_tokens,
                seq.max_tokens,
                slot.tokens.len(),
                ctx,
            )
        };
        if finish.is_some() && !stopped {
            // Ends for another reason: held-back text is real output.
            seq.detok.finish_into(&mut text);
            seq.stop_strings.flush(&mut text);
        }
        let _ = seq.tx.send(Event::Token {
            id,
            text,
            logprob: sampled.logprob,
        });
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

    /// Frees slot `i` (keeping its tokens and KV) and sends `Done` unless cancelled.
    fn finish(&mut self, i: usize, reason: FinishReason, tail: String) {
        let Some(seq) = self.slots[i].seq.take() else {
            return;
        };
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
            let _ = seq.tx.send(Event::Done {
                finish_reason: reason,
                usage: seq.usage,
                time_to_first_token: ttft,
                decode_tokens_per_second: decode_tps,
                text: tail,
            });
        }
    }

    /// Fails the request in slot `i`; its KV may be inconsistent, so it is dropped.
    fn fail(&mut self, i: usize, e: EngineError) {
        let slot = &mut self.slots[i];
        slot.clear_cache();
        if let Some(seq) = slot.seq.take() {
            self.release();
            let _ = seq.tx.send(Event::Failed(e));
        }
    }
}

/// Runs the model, turning errors and panics (e.g. a shape assert in a kernel) into a
/// failure of this request rather than of the worker.
fn forward(model: &dyn Model, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, EngineError> {
    match std::panic::catch_unwind(AssertUnwindSafe(|| model.forward(tokens, cache))) {
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
