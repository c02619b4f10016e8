//! `Handle`: the cheap, cloneable front of the engine. It validates a request, admits it to
//! the bounded queue (or fails fast with `QueueFull` / `ContextLengthExceeded`), and returns
//! the receiving end of that request's event channel. It also starts and stops the worker.
//! Input: `GenerationRequest`. Output: `UnboundedReceiver<Event>`.
//! Must not depend on axum, minijinja, api or parsers.

use super::worker::{self, Job};
use super::{EngineError, Event, FinishReason, GenerationRequest, Usage};
use crate::model::Model;
use crate::tokenizer::Tokenizer;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// How the engine is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineOptions {
    /// Sequences decoded together (slots, each with its own KV cache).
    pub parallel: usize,
    /// Requests that may wait for a slot; more get `QueueFull`.
    pub max_queue: usize,
    /// Tokens per sequence (prompt + generated); each slot's KV cache holds this many.
    pub ctx_size: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            parallel: 1,
            max_queue: 16,
            ctx_size: 4096,
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
        let opts = EngineOptions {
            parallel: opts.parallel.max(1),
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
        });
        let join = worker::spawn(model, tokenizer.clone(), shared.clone())?;
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
    pub fn submit(&self, req: GenerationRequest) -> Result<UnboundedReceiver<Event>, EngineError> {
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
        let (tx, rx) = unbounded_channel();
        let mut st = shared.lock();
        if st.shutdown {
            return Err(EngineError::WorkerStopped);
        }
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
                    logprob,
                } => {
                    ids.push(id);
                    on_text(&t);
                    text.push_str(&t);
                    logprobs.extend(logprob);
                }
                Event::Done {
                    finish_reason,
                    usage,
                    time_to_first_token,
                    decode_tokens_per_second,
                    text: tail,
                } => {
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
