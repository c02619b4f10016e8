//! The inference engine: one worker thread owns the model and all KV caches and serves a
//! bounded queue of generation requests; events flow back per request over a channel.
//! Input: `GenerationRequest` (token ids + sampling + stop rules). Output: `Event`s.
//! Must not depend on axum, minijinja, api or parsers.
//!
//! Files: `handle.rs` (admission, the public `Handle`), `worker.rs` (the step loop:
//! chunked prefill interleaved with decode), `slot.rs` (one active sequence),
//! `prefix_cache.rs` (KV of finished sequences kept for prefix reuse), `lookup.rs` and
//! `draft.rs` (speculative drafters), `spec_costs.rs` (the draft length that pays on this
//! machine), `speculate.rs` (verifying their drafts), `pacer.rs` (how
//! much prompt a step may run beside decode), `sampler.rs`,
//! `stop.rs` (stop ids, stop strings, length), `threads.rs` (CPU pools). Text comes from
//! `tokenizer::detok`.
//! The types below are the seam the server codes against.

use thiserror::Error;

pub mod draft;
mod handle;
mod logprobs;
mod lookup;
mod pacer;
mod prefix_cache;
pub mod sampler;
mod slot;
mod spec_costs;
pub mod speculate;
pub mod stop;
pub mod threads;
mod worker;

pub use draft::DraftModel;
pub use handle::{EngineOptions, EngineStats, Generation, Handle};
pub use logprobs::{TokenLogprob, TopLogprob, MAX_TOP_LOGPROBS};
pub use speculate::SpeculativeMode;

/// The receiving end of one request's events. Bounded (`EngineOptions::event_buffer`):
/// the worker never waits on it; a reader that falls that far behind is cancelled with
/// `EngineError::SlowReader`.
pub type EventReceiver = tokio::sync::mpsc::Receiver<Event>;

/// Sampling settings. `temperature == 0` means greedy (argmax, ties to the lower id).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_k: Option<usize>,
    pub top_p: f32,
    pub min_p: f32,
    pub seed: Option<u64>,
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: None,
            top_p: 1.0,
            min_p: 0.0,
            seed: None,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
        }
    }
}

/// A decoding constraint (e.g. "the output must be valid JSON"): the sampler skips tokens
/// it does not allow. Token text is given as raw bytes (a token may hold part of a UTF-8
/// character).
pub trait Constraint: Send {
    /// Whether `piece` may be appended to what was generated so far. Must not change state.
    fn allows(&self, piece: &[u8]) -> bool;
    /// Commit a sampled piece.
    fn advance(&mut self, piece: &[u8]);
    /// True once the constrained output is complete: the engine then finishes with `Stop`.
    fn is_complete(&self) -> bool;
}

/// The only type the engine accepts.
pub struct GenerationRequest {
    pub prompt_ids: Vec<u32>,
    pub sampling: SamplingParams,
    pub max_tokens: usize,
    /// Generation stops before any of these strings; the string itself is not emitted.
    pub stop_strings: Vec<String>,
    /// Extra stop ids besides the model's end-of-generation set.
    pub stop_ids: Vec<u32>,
    /// `Some(k)`: return each generated token's logprob and its step's `k` most likely
    /// tokens (`k` at most `MAX_TOP_LOGPROBS`); `None`: no logprobs.
    pub logprobs: Option<usize>,
    pub constraint: Option<Box<dyn Constraint>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token, a stop string or a completed constraint.
    Stop,
    /// `max_tokens` or the context was reached.
    Length,
    /// The receiver went away.
    Cancelled,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose KV was reused from an earlier request (prefix cache).
    pub cached_tokens: usize,
}

/// What the worker sends back for one request, in order: `Token`* then `Done` or `Failed`.
/// The end-of-generation token that stopped a request is not sent as a `Token`.
#[derive(Debug, Clone)]
pub enum Event {
    /// `text` is the newly decoded text (may be empty while a UTF-8 char or a possible stop
    /// string is held back). `logprobs` (when asked for) are those of the tokens whose text
    /// `text` completes: usually this token's alone, none while its text is held back, the
    /// held-back ones with the text that releases them. Tokens wholly inside a matched stop
    /// string get none, like their text.
    Token {
        id: u32,
        text: String,
        logprobs: Vec<TokenLogprob>,
    },
    Done {
        finish_reason: FinishReason,
        usage: Usage,
        /// Seconds from admission to the first token, and decode tokens per second.
        time_to_first_token: f64,
        decode_tokens_per_second: f64,
        /// Text held back until the end (a possible stop-string prefix, or bytes of an
        /// unfinished character) that is real output: append it after the last `Token`.
        /// Usually empty.
        text: String,
        /// The logprobs of the tokens whose text is in `text` (when asked for).
        logprobs: Vec<TokenLogprob>,
    },
    Failed(EngineError),
}

#[derive(Debug, Clone, Error)]
pub enum EngineError {
    #[error("the request queue is full")]
    QueueFull,
    #[error("the inference worker has stopped")]
    WorkerStopped,
    #[error("the prompt has {prompt_tokens} tokens and asks for {max_tokens} more, but the context holds {ctx}")]
    ContextLengthExceeded {
        prompt_tokens: usize,
        max_tokens: usize,
        ctx: usize,
    },
    #[error("the prompt is empty")]
    EmptyPrompt,
    #[error("inference failed: {0}")]
    Inference(String),
    /// The client read nothing while `buffered` events waited for it: the request was
    /// cancelled so that it holds no slot and no memory.
    #[error(
        "the client did not read the stream ({buffered} events waiting); generation was cancelled"
    )]
    SlowReader { buffered: usize },
}
