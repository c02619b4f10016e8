//! The one loop that turns a generation's engine events into a response, shared by every
//! generating endpoint. An endpoint says only how its wire format looks (`Shape`); this
//! file owns everything else, once: admission, submission, metrics, cancellation, errors
//! before and after a stream started, and the SSE terminator.
//!
//! The loop always runs in its own task, streaming or not, so that a client who leaves is
//! noticed the same way in both modes (the SSE body or the waiting handler is dropped):
//! the loop then drops the engine's receiver (which frees the slot), counts the tokens
//! generated so far and the cancellation, and logs it. A generation that already finished
//! is not "cancelled" when the client leaves while its last frames are written.
//! Must not depend on a particular endpoint's types.

use super::backend::Backend;
use super::error::{error_json, Dialect};
use super::sse;
use super::state::AppState;
use crate::engine::{EngineError, Event, FinishReason, GenerationRequest, TokenLogprob, Usage};
use crate::Error;
use axum::body::Bytes;
use axum::response::Response;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::Instrument;

/// How a generation ended.
#[derive(Debug, Clone)]
pub struct Finished {
    pub reason: FinishReason,
    pub usage: Usage,
    /// Output the engine held back until the end; it follows the last token.
    pub tail: String,
}

/// What an endpoint makes of a generation's output: its wire format, nothing else.
/// Frames pushed to `out` are sent only when streaming; a non-streaming shape keeps what it
/// needs and builds its body in `body`.
pub trait Shape: Send + 'static {
    /// Before any output: streaming frames such as the chat role chunk, and text the
    /// endpoint itself put in front of the output (a forced tool-call opening).
    fn open(&mut self, out: &mut Vec<Bytes>);
    /// One token's text, in order (may be empty while the engine holds bytes back).
    fn text(&mut self, text: &str, out: &mut Vec<Bytes>);
    /// True once the output so far ended the answer by a rule the endpoint applies itself
    /// (a stop sequence it must name): the loop then stops the generation and finishes
    /// with the tokens received so far, reason `Stop` and no tail.
    fn ended(&self) -> bool {
        false
    }
    /// When logprobs were asked for: those of the tokens whose text comes with the next
    /// `text` or `finish` call (the engine aligns them with the text it emits).
    fn logprobs(&mut self, _tokens: Vec<TokenLogprob>) {}
    /// The generation ended (`done.tail` is output not yet given to `text`): the last
    /// frames of a stream.
    fn finish(&mut self, done: &Finished, out: &mut Vec<Bytes>);
    /// Non-streaming: the response, after `finish`.
    fn body(self: Box<Self>, done: &Finished) -> Response;
    /// The error shape of this endpoint's API.
    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }
    /// An error once the stream started: one `data:` event in the dialect's shape.
    fn error_frame(&mut self, err: &Error) -> Bytes {
        sse::frame(&error_json(err, self.dialect()))
    }
    /// The frame that ends a stream (`data: [DONE]`), if the API has one.
    fn end_frame(&self) -> Option<Bytes> {
        Some(Bytes::from_static(sse::DONE))
    }
    /// How long a stream may be quiet (a long prompt being prefilled) before `keepalive`
    /// is sent, if the API has such an event (Anthropic's `ping`).
    fn keepalive_every(&self) -> Option<Duration> {
        None
    }
    fn keepalive(&mut self) -> Bytes {
        Bytes::new()
    }
}

/// Refuses a request before any work is done for it when the engine cannot take it now
/// (queue full): rendering and tokenizing a prompt that would get 429 is wasted CPU.
pub fn admit(backend: &Arc<dyn Backend>, prompt_param: &'static str) -> Result<(), Error> {
    if backend.has_room() {
        Ok(())
    } else {
        Err(Error::engine(EngineError::QueueFull, prompt_param))
    }
}

/// A generation to run: the engine request and how to present it.
pub struct Run {
    pub request: GenerationRequest,
    pub shape: Box<dyn Shape>,
    pub stream: bool,
    /// The request field that holds the prompt, named by context errors.
    pub prompt_param: &'static str,
    /// For the task's log span (`chatcmpl-…`).
    pub id: String,
}

/// Submits the generation and answers with its response: an SSE stream at once, or the
/// whole body when the generation ends. Queue-full and context errors come back at once.
pub async fn respond(
    state: AppState,
    backend: &Arc<dyn Backend>,
    run: Run,
) -> Result<Response, Error> {
    let prompt_tokens = run.request.prompt_ids.len();
    let rx = backend
        .submit(run.request)
        .map_err(|e| Error::engine(e, run.prompt_param))?;
    let span = tracing::info_span!("generation", id = %run.id);
    let task = Task {
        state,
        rx,
        shape: run.shape,
        prompt_tokens,
        generated: 0,
    };
    if run.stream {
        let (tx, response) = sse::channel();
        tokio::spawn(task.stream(tx).instrument(span));
        return Ok(response);
    }
    let (tx, rx) = oneshot::channel();
    tokio::spawn(task.whole(tx).instrument(span));
    // The sender is dropped without a value only if the task panicked.
    rx.await
        .unwrap_or_else(|_| Err(Error::from(EngineError::WorkerStopped)))
}

/// What the loop got from the engine for one step.
enum Step {
    Text(String, Vec<TokenLogprob>),
    Done(Finished, Vec<TokenLogprob>),
    Failed(Error),
    /// The client went away before the generation finished.
    Gone,
    /// Nothing came for the shape's keepalive interval.
    Quiet,
}

struct Task {
    state: AppState,
    rx: crate::engine::EventReceiver,
    shape: Box<dyn Shape>,
    prompt_tokens: usize,
    /// Tokens received so far, counted even when the client leaves.
    generated: usize,
}

impl Task {
    /// The next event, `Gone` as soon as `gone` resolves, or `Quiet` after `quiet`.
    async fn next(
        &mut self,
        gone: impl std::future::Future<Output = ()>,
        quiet: Option<Duration>,
    ) -> Step {
        let quiet = async move {
            match quiet {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        // Every arm but the receive is only a timer or a channel-closed wait, and `recv`
        // is cancel-safe: no event is lost when another arm wins.
        let event = tokio::select! {
            e = self.rx.recv() => e,
            _ = gone => return Step::Gone,
            _ = quiet => return Step::Quiet,
        };
        match event {
            Some(Event::Token { text, logprobs, .. }) => {
                self.generated += 1;
                Step::Text(text, logprobs)
            }
            Some(Event::Done {
                finish_reason,
                usage,
                time_to_first_token,
                decode_tokens_per_second,
                text,
                logprobs,
            }) => {
                self.state.metrics().record_generation(
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    time_to_first_token,
                    decode_tokens_per_second,
                );
                tracing::info!(
                    prompt = usage.prompt_tokens,
                    cached = usage.cached_tokens,
                    generated = usage.completion_tokens,
                    ttft_s = format_args!("{time_to_first_token:.2}"),
                    decode_tps = format_args!("{decode_tokens_per_second:.1}"),
                    reason = ?finish_reason,
                    "generation done"
                );
                Step::Done(
                    Finished {
                        reason: finish_reason,
                        usage,
                        tail: text,
                    },
                    logprobs,
                )
            }
            Some(Event::Failed(e)) => Step::Failed(e.into()),
            None => Step::Failed(EngineError::WorkerStopped.into()),
        }
    }

    fn logprobs(&mut self, tokens: Vec<TokenLogprob>) {
        if !tokens.is_empty() {
            self.shape.logprobs(tokens);
        }
    }

    /// One token's text; `Some` when the shape ended the answer with it.
    fn text(
        &mut self,
        text: &str,
        logprobs: Vec<TokenLogprob>,
        out: &mut Vec<Bytes>,
    ) -> Option<Finished> {
        self.logprobs(logprobs);
        self.shape.text(text, out);
        self.shape.ended().then(|| self.ended_early())
    }

    /// The shape ended the answer (a stop sequence it matches itself): closing the
    /// channel stops the engine within a token (the slot keeps its KV for reuse). The
    /// generation finished normally, so it is counted, not cancelled.
    fn ended_early(&mut self) -> Finished {
        self.rx.close();
        self.state
            .metrics()
            .record_partial_generation(self.prompt_tokens, self.generated);
        tracing::debug!(generated = self.generated, "stopped by a stop sequence");
        Finished {
            reason: FinishReason::Stop,
            usage: Usage {
                prompt_tokens: self.prompt_tokens,
                completion_tokens: self.generated,
                cached_tokens: 0,
            },
            tail: String::new(),
        }
    }

    /// The client left mid-generation: dropping the receiver stops the engine; count what
    /// it generated (including tokens still in the channel) and the cancellation.
    fn cancelled(mut self) {
        while let Ok(event) = self.rx.try_recv() {
            if matches!(event, Event::Token { .. }) {
                self.generated += 1;
            }
        }
        drop(self.rx);
        let metrics = self.state.metrics();
        metrics.record_cancelled();
        metrics.record_partial_generation(self.prompt_tokens, self.generated);
        tracing::info!(
            generated = self.generated,
            "client disconnected: generation cancelled"
        );
    }

    async fn whole(mut self, mut tx: oneshot::Sender<Result<Response, Error>>) {
        let mut ignored = Vec::new();
        self.shape.open(&mut ignored);
        loop {
            let done = match self.next(tx.closed(), None).await {
                Step::Text(t, lp) => match self.text(&t, lp, &mut ignored) {
                    Some(done) => done,
                    None => {
                        ignored.clear();
                        continue;
                    }
                },
                Step::Done(done, lp) => {
                    self.logprobs(lp);
                    done
                }
                Step::Failed(err) => {
                    let _ = tx.send(Err(err));
                    return;
                }
                Step::Gone => return self.cancelled(),
                Step::Quiet => continue,
            };
            self.shape.finish(&done, &mut ignored);
            let _ = tx.send(Ok(self.shape.body(&done)));
            return;
        }
    }

    async fn stream(mut self, tx: sse::SseSender) {
        let mut frames = Vec::new();
        self.shape.open(&mut frames);
        let quiet = self.shape.keepalive_every();
        loop {
            for f in frames.drain(..) {
                if !tx.send(f).await {
                    return self.cancelled();
                }
            }
            let done = match self.next(tx.closed(), quiet).await {
                Step::Text(t, lp) => match self.text(&t, lp, &mut frames) {
                    Some(done) => done,
                    None => continue,
                },
                Step::Done(done, lp) => {
                    self.logprobs(lp);
                    done
                }
                Step::Quiet => {
                    frames.push(self.shape.keepalive());
                    continue;
                }
                Step::Failed(err) => {
                    tracing::error!(error = %err, "generation failed mid-stream");
                    let last = self.shape.error_frame(&err);
                    if tx.send(last).await {
                        if let Some(end) = self.shape.end_frame() {
                            tx.send(end).await;
                        }
                    }
                    return;
                }
                Step::Gone => return self.cancelled(),
            };
            self.shape.finish(&done, &mut frames);
            // Finished: a client that leaves now missed only the last frames.
            for f in frames.drain(..).chain(self.shape.end_frame()) {
                if !tx.send(f).await {
                    break;
                }
            }
            return;
        }
    }
}
