//! `Handle`: the cheap, cloneable front of the engine. It validates a request, admits it to
//! the bounded queue (or fails fast with `QueueFull` / `ContextLengthExceeded`), and returns
//! the receiving end of that request's event channel. It also starts and stops the worker.
//! Input: `GenerationRequest`. Output: an `EventReceiver` (bounded, see `event_buffer`).
//! Must not depend on axum, minijinja, api or parsers.

use super::draft::DraftModel;
use super::speculate::SpeculativeMode;
use super::worker::{self, Job};
use super::{EngineError, Event, EventReceiver, FinishReason, GenerationRequest, Usage};
use crate::model::Model;
use crate::tokenizer::Tokenizer;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::mpsc::channel;

/// How the engine is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Sequences decoded together (slots). Their KV memory grows with the tokens they
    /// hold, so an idle slot costs nothing.
    pub parallel: usize,
    /// Requests that may wait for a slot; more get `QueueFull`.
    pub max_queue: usize,
    /// Tokens per sequence (prompt + generated): the most one sequence's KV may hold.
    pub ctx_size: usize,
    /// Prompt tokens prefilled in one step while no other sequence decodes.
    pub prefill_chunk: usize,
    /// At most this many prompt tokens are prefilled in one step while other sequences
    /// decode: each step runs the decoding sequences' next tokens and a prompt chunk in one
    /// batch, sized by `pacer` so the step takes ~2.5x a decode-only step (a long prompt
    /// slows the streams by a bounded factor instead of stalling them).
    pub prefill_chunk_decoding: usize,
    /// Bytes of KV kept from finished sequences for prefix reuse (least recently used
    /// dropped first); 0 keeps none.
    pub cache_bytes: usize,
    /// Events a request's receiver may leave unread; one more and the request is
    /// cancelled with `EngineError::SlowReader` (the worker never waits for a reader).
    pub event_buffer: usize,
    /// Draft tokens verified in one forward pass (`--speculative`).
    pub speculative: SpeculativeMode,
    /// Draft wherever a drafter has a proposal, ignoring the measured costs (tests of
    /// exactness under drafting). By default drafting follows what pays on this machine
    /// (`spec_costs.rs`).
    pub draft_always: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            parallel: 4,
            max_queue: 16,
            ctx_size: 4096,
            prefill_chunk: 512,
            prefill_chunk_decoding: 64,
            cache_bytes: 512 << 20,
            event_buffer: 1024,
            speculative: SpeculativeMode::default(),
            draft_always: false,
        }
    }
}

/// Counters and gauges of the engine, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Admitted requests that looked for a cached prefix, and those that found one.
    pub prefix_lookups: u64,
    pub prefix_hits: u64,
    /// Prompt tokens whose KV was reused instead of computed.
    pub prefix_tokens_reused: u64,
    /// Prompt tokens run through the model (prefilled).
    pub prefill_tokens: u64,
    /// Bytes of KV held by the prefix cache now, and by the running sequences.
    pub prefix_cache_bytes: u64,
    pub active_kv_bytes: u64,
    /// Requests cancelled because the client left while queued, while its prompt was
    /// being prefilled, or while it decoded; and those cancelled for not reading.
    pub cancelled_queued: u64,
    pub cancelled_prefill: u64,
    pub cancelled_decode: u64,
    pub cancelled_slow_reader: u64,
    /// Speculative draft tokens proposed (prompt lookup) and those the model confirmed.
    pub spec_draft_tokens: u64,
    pub spec_accepted_tokens: u64,
    /// The same for drafts of the draft model (`--draft-model`).
    pub spec_model_draft_tokens: u64,
    pub spec_model_accepted_tokens: u64,
}

/// The atomics behind `EngineStats` (written by the worker, read at scrape time).
#[derive(Default)]
pub(crate) struct StatCounters {
    pub prefix_lookups: AtomicU64,
    pub prefix_hits: AtomicU64,
    pub prefix_tokens_reused: AtomicU64,
    pub prefill_tokens: AtomicU64,
    pub prefix_cache_bytes: AtomicU64,
    pub active_kv_bytes: AtomicU64,
    pub cancelled_queued: AtomicU64,
    pub cancelled_prefill: AtomicU64,
    pub cancelled_decode: AtomicU64,
    pub cancelled_slow_reader: AtomicU64,
    pub spec_draft_tokens: AtomicU64,
    pub spec_accepted_tokens: AtomicU64,
    pub spec_model_draft_tokens: AtomicU64,
    pub spec_model_accepted_tokens: AtomicU64,
}

impl StatCounters {
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> EngineStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EngineStats {
            prefix_lookups: r(&self.prefix_lookups),
            prefix_hits: r(&self.prefix_hits),
            prefix_tokens_reused: r(&self.prefix_tokens_reused),
            prefill_tokens: r(&self.prefill_tokens),
            prefix_cache_bytes: r(&self.prefix_cache_bytes),
            active_kv_bytes: r(&self.active_kv_bytes),
            cancelled_queued: r(&self.cancelled_queued),
            cancelled_prefill: r(&self.cancelled_prefill),
            cancelled_decode: r(&self.cancelled_decode),
            cancelled_slow_reader: r(&self.cancelled_slow_reader),
            spec_draft_tokens: r(&self.spec_draft_tokens),
            spec_accepted_tokens: r(&self.spec_accepted_tokens),
            spec_model_draft_tokens: r(&self.spec_model_draft_tokens),
            spec_model_accepted_tokens: r(&self.spec_model_accepted_tokens),
        }
    }
}

/// State shared by the handles and the worker. The lock is taken once per admission and
/// by the worker only when a job is waiting or a slot is freed, never per token.
pub(crate) struct Shared {
    pub state: Mutex<QueueState>,
    pub wake: Condvar,
    pub opts: EngineOptions,
    /// Mirrors of `QueueState` for lock-free reads (`queue_depth`, `active`, worker polls).
    pub queued: AtomicUsize,
    pub active: AtomicUsize,
    pub stats: StatCounters,
}

pub(crate) struct QueueState {
    pub jobs: VecDeque<Job>,
    /// Slots decoding a request (taken by the worker).
    pub busy: usize,
    pub shutdown: bool,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A poisoned lock means a thread panicked while holding it; the queue itself is
        // still consistent (every mutation is a single push/pop/assignment).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the queued jobs whose client has gone, so they neither wait for a slot nor
    /// count toward `max_queue`. Called with the lock held.
    pub fn drop_gone_jobs(&self, st: &mut QueueState) {
        let before = st.jobs.len();
        st.jobs.retain(|j| !j.tx.is_closed());
        let gone = before - st.jobs.len();
        if gone > 0 {
            StatCounters::add(&self.stats.cancelled_queued, gone as u64);
            self.queued.store(st.jobs.len(), Ordering::Release);
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    tokenizer: Arc<Tokenizer>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: let the worker finish what it has and exit.
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
    }
}

/// The engine's front: `Clone + Send + Sync`.
#[derive(Clone)]
pub struct Handle {
    inner: Arc<Inner>,
}

/// What `Handle::generate_blocking` collects.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub ids: Vec<u32>,
    pub text: String,
    /// The generated tokens' logprobs, when asked for (see `Event::Token`).
    pub logprobs: Vec<f32>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub time_to_first_token: f64,
    pub decode_tokens_per_second: f64,
}

impl Handle {
    /// Starts the worker thread, which owns `model` and every KV cache.
    pub fn start(
        model: Box<dyn Model>,
        tokenizer: Arc<Tokenizer>,
        opts: EngineOptions,
    ) -> Result<Handle, EngineError> {
        Self::start_with_draft(model, tokenizer, opts, None)
    }

    /// `start` with a draft model for speculative decoding (`SpeculativeMode::Draft` and
    /// `LookupDraft` need one; the other modes leave it unused).
    pub fn start_with_draft(
        model: Box<dyn Model>,
        tokenizer: Arc<Tokenizer>,
        opts: EngineOptions,
        draft: Option<DraftModel>,
    ) -> Result<Handle, EngineError> {
        if opts.speculative.uses_draft_model() && draft.is_none() {
            return Err(EngineError::Inference(
                "speculative decoding with a draft model needs a draft model (--draft-model)"
                    .into(),
            ));
        }
        let opts = EngineOptions {
            parallel: opts.parallel.max(1),
            prefill_chunk: opts.prefill_chunk.max(1),
            prefill_chunk_decoding: opts.prefill_chunk_decoding.max(1),
            event_buffer: opts.event_buffer.max(1),
            ..opts
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                busy: 0,
                shutdown: false,
            }),
            wake: Condvar::new(),
            opts,
            queued: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            stats: StatCounters::default(),
        });
        let join = worker::spawn(model, draft, tokenizer.clone(), shared.clone())?;
        Ok(Handle {
            inner: Arc::new(Inner {
                shared,
                tokenizer,
                worker: Mutex::new(Some(join)),
            }),
        })
    }

    /// Admits a request. Fails at once, without queueing, when the prompt is empty, when
    /// prompt + max_tokens exceeds the context, or when the queue is full.
    pub fn submit(&self, req: GenerationRequest) -> Result<EventReceiver, EngineError> {
        let shared = &self.inner.shared;
        let ctx = shared.opts.ctx_size;
        if req.prompt_ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if req.prompt_ids.len().saturating_add(req.max_tokens) > ctx {
            return Err(EngineError::ContextLengthExceeded {
                prompt_tokens: req.prompt_ids.len(),
                max_tokens: req.max_tokens,
                ctx,
            });
        }
        // One place more than the buffer: the worker keeps it for the final event.
        let (tx, rx) = channel(shared.opts.event_buffer + 1);
        let mut st = shared.lock();
        if st.shutdown {
            return Err(EngineError::WorkerStopped);
        }
        shared.drop_gone_jobs(&mut st);
        // Requests up to the number of free slots start right away; `max_queue` more wait.
        let free = shared.opts.parallel.saturating_sub(st.busy);
        if st.jobs.len() >= shared.opts.max_queue + free {
            return Err(EngineError::QueueFull);
        }
        st.jobs.push_back(Job {
            req,
            tx,
            submitted: Instant::now(),
        });
        shared.queued.store(st.jobs.len(), Ordering::Release);
        drop(st);
        shared.wake.notify_one();
        Ok(rx)
    }

    /// Runs one request to the end on the calling (non-async) thread, calling `on_text` with
    /// each piece of text as soon as it is decoded.
    pub fn generate_blocking(
        &self,
        req: GenerationRequest,
        mut on_text: impl FnMut(&str),
    ) -> Result<Generation, EngineError> {
        let mut rx = self.submit(req)?;
        let mut ids = Vec::new();
        let mut text = String::new();
        let mut logprobs = Vec::new();
        while let Some(ev) = rx.blocking_recv() {
            match ev {
                Event::Token {
                    id,
                    text: t,
                    logprobs: l,
                } => {
                    ids.push(id);
                    on_text(&t);
                    text.push_str(&t);
                    logprobs.extend(l.iter().map(|l| l.logprob));
                }
                Event::Done {
                    finish_reason,
                    usage,
                    time_to_first_token,
                    decode_tokens_per_second,
                    text: tail,
                    logprobs: l,
                } => {
                    logprobs.extend(l.iter().map(|l| l.logprob));
                    on_text(&tail);
                    text.push_str(&tail);
                    return Ok(Generation {
                        ids,
                        text,
                        logprobs,
                        finish_reason,
                        usage,
                        time_to_first_token,
                        decode_tokens_per_second,
                    });
                }
                Event::Failed(e) => return Err(e),
            }
        }
        Err(EngineError::WorkerStopped)
    }

    /// Requests waiting for a slot.
    pub fn queue_depth(&self) -> usize {
        self.inner.shared.queued.load(Ordering::Acquire)
    }

    /// Requests being decoded.
    pub fn active(&self) -> usize {
        self.inner.shared.active.load(Ordering::Acquire)
    }

    pub fn ctx_size(&self) -> usize {
        self.inner.shared.opts.ctx_size
    }

    pub fn options(&self) -> EngineOptions {
        self.inner.shared.opts
    }

    /// Prefix-cache and cancellation counters, KV memory in use.
    pub fn stats(&self) -> EngineStats {
        self.inner.shared.stats.snapshot()
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.inner.tokenizer
    }

    /// Stops admitting requests, lets the worker finish the queued and running ones, and
    /// waits for it to exit. Later `submit`s get `WorkerStopped`.
    pub fn shutdown(&self) {
        self.inner.shared.lock().shutdown = true;
        self.inner.shared.wake.notify_all();
        let join = self
            .inner
            .worker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(j) = join {
            // A panicked worker has already failed its requests; nothing more to do.
            let _ = j.join();
        }
    }
}
