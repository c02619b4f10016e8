//! `POST /v1/completions`: raw text completion, or fill-in-the-middle when `suffix` is
//! given (built with the model's FIM tokens). The prompt is tokenized with special-token
//! text parsed, so raw FIM prompts as editors send them work. Output is never trimmed.

use super::{api_usage, blocking, now, record, response_id, submit, Finished};
use crate::api::{Completion, CompletionChoice, CompletionRequest};
use crate::engine::{EngineError, Event, GenerationRequest};
use crate::server::backend::Backend;
use crate::server::error::error_body;
use crate::server::extract::Json;
use crate::server::logprobs::{self, TokenLogprob};
use crate::server::sse;
use crate::server::state::AppState;
use crate::server::validate::{self, budget};
use crate::Error;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::Instrument;

struct Running {
    state: AppState,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    rx: UnboundedReceiver<Event>,
    backend: Arc<dyn Backend>,
    /// With `logprobs: 0`: the sampled tokens not yet sent, and the text sent before them.
    logprobs: Option<(Vec<TokenLogprob>, usize)>,
}

pub async fn completions(
    State(state): State<AppState>,
    Json(req): Json<CompletionRequest>,
) -> Result<Response, Error> {
    let backend = state.backend()?;
    let plan = validate::completion(
        &req,
        &state.config().model_id,
        &state.config().default_sampling,
    )?;
    let (prompt, stop_ids) = match &plan.suffix {
        Some(suffix) => backend.fim_prompt(&plan.prompt, suffix).ok_or_else(|| {
            Error::invalid(
                "this model has no fill-in-the-middle tokens, so 'suffix' is not supported",
                Some("suffix"),
                "unsupported_parameter",
            )
        })?,
        None => (plan.prompt.clone(), Vec::new()),
    };
    if prompt.is_empty() {
        return Err(Error::invalid(
            "the prompt is empty",
            Some("prompt"),
            "invalid_value",
        ));
    }
    let b = backend.clone();
    let prompt_ids = blocking(move || b.encode(&prompt)).await?;
    let max_tokens = budget(
        plan.common.max_tokens,
        None,
        prompt_ids.len(),
        backend.ctx_size(),
    )?;
    let rx = submit(
        &backend,
        GenerationRequest {
            prompt_ids,
            sampling: plan.common.sampling.clone(),
            max_tokens,
            stop_strings: plan.common.stop.clone(),
            stop_ids,
            logprobs: plan.common.logprobs,
            constraint: None,
        },
    )?;
    let run = Running {
        model: state.config().model_id.clone(),
        state,
        id: response_id("cmpl"),
        created: now(),
        include_usage: plan.common.include_usage,
        rx,
        backend: backend.clone(),
        logprobs: plan.common.logprobs.then(|| (Vec::new(), 0)),
    };
    if plan.common.stream {
        let (tx, response) = sse::channel();
        let span = tracing::info_span!("completion_stream", id = %run.id);
        tokio::spawn(pump(run, tx).instrument(span));
        Ok(response)
    } else {
        whole(run).await
    }
}

impl Running {
    /// Keeps a sampled token's logprob for the next body.
    fn note(&mut self, id: u32, logprob: Option<f32>) {
        if let (Some((list, _)), Some(logprob)) = (&mut self.logprobs, logprob) {
            list.push(TokenLogprob {
                bytes: self.backend.token_bytes(id),
                logprob,
            });
        }
    }

    fn body(&mut self, text: String, finish: Option<&'static str>) -> Completion {
        let logprobs = self.logprobs.as_mut().map(|(list, sent)| {
            let block = logprobs::completion(list, *sent);
            *sent += list
                .iter()
                .map(|t| String::from_utf8_lossy(&t.bytes).len())
                .sum::<usize>();
            list.clear();
            block
        });
        Completion {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            choices: vec![CompletionChoice {
                index: 0,
                text,
                logprobs,
                finish_reason: finish,
            }],
            usage: None,
        }
    }
}

fn reason(f: &Finished) -> &'static str {
    match f.reason {
        crate::engine::FinishReason::Length => "length",
        _ => "stop",
    }
}

async fn whole(mut run: Running) -> Result<Response, Error> {
    let mut text = String::new();
    loop {
        match run.rx.recv().await {
            Some(Event::Token {
                id,
                text: t,
                logprob,
            }) => {
                run.note(id, logprob);
                text.push_str(&t)
            }
            Some(Event::Failed(e)) => return Err(Error::Engine(e)),
            Some(done @ Event::Done { .. }) => {
                let Some(f) = record(&run.state, done) else {
                    continue;
                };
                text.push_str(&f.tail);
                let mut body = run.body(text, Some(reason(&f)));
                body.usage = Some(Some(api_usage(f.usage)));
                return Ok(axum::Json(body).into_response());
            }
            None => return Err(Error::Engine(EngineError::WorkerStopped)),
        }
    }
}

async fn pump(mut run: Running, tx: sse::SseSender) {
    loop {
        let event = tokio::select! {
            e = run.rx.recv() => e,
            _ = tx.closed() => None,
        };
        match event {
            Some(Event::Token { id, text, logprob }) => {
                run.note(id, logprob);
                if text.is_empty() {
                    continue;
                }
                let mut chunk = run.body(text, None);
                chunk.usage = run.include_usage.then_some(None);
                if !tx.send(sse::frame(&chunk)).await {
                    run.state.metrics().record_cancelled();
                    return;
                }
            }
            Some(done @ Event::Done { .. }) => {
                let Some(mut f) = record(&run.state, done) else {
                    continue;
                };
                let mut last = run.body(std::mem::take(&mut f.tail), Some(reason(&f)));
                last.usage = run.include_usage.then_some(None);
                tx.send(sse::frame(&last)).await;
                if run.include_usage {
                    let mut usage = run.body(String::new(), None);
                    usage.choices.clear();
                    usage.usage = Some(Some(api_usage(f.usage)));
                    tx.send(sse::frame(&usage)).await;
                }
                tx.done().await;
                return;
            }
            Some(Event::Failed(e)) => {
                tx.send(sse::error_frame(&error_body(&Error::Engine(e))))
                    .await;
                tx.done().await;
                return;
            }
            None => {
                if tx.is_closed() {
                    tracing::info!("client disconnected: generation cancelled");
                    run.state.metrics().record_cancelled();
                } else {
                    let err = Error::Engine(EngineError::WorkerStopped);
                    tx.send(sse::error_frame(&error_body(&err))).await;
                    tx.done().await;
                }
                return;
            }
        }
    }
}
