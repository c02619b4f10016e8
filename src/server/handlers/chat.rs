//! `POST /v1/chat/completions`: validate → render the template (plus forced call opening)
//! → tokenize → submit → parse the output for tool calls → one JSON response or an SSE
//! stream of chunks ending in `data: [DONE]`.

use super::{api_usage, blocking, now, record, response_id, submit, Finished};
use crate::api::{ChatChoice, ChatChunk, ChatCompletion, ChatDelta, ChatRequest, ChunkChoice};
use crate::engine::{EngineError, Event, FinishReason, GenerationRequest};
use crate::server::assemble::{delta_tool_call, Assembler, Delta, Message};
use crate::server::backend::Backend;
use crate::server::error::error_body;
use crate::server::extract::{from_value, Json};
use crate::server::logprobs::{self, TokenLogprob};
use crate::server::mismatch::{self, Fallback};
use crate::server::reasoning;
use crate::server::sse;
use crate::server::state::AppState;
use crate::server::tool_choice::forcing;
use crate::server::validate::{self, budget, ChatPlan, ToolMode};
use crate::Error;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::Instrument;

/// Everything a running chat generation needs after submission.
struct Running {
    state: AppState,
    plan: ChatPlan,
    id: String,
    created: u64,
    model: String,
    assembler: Assembler,
    /// Forced call markup: fed to the parser before the output / after a completed one.
    prefix: String,
    close: &'static str,
    rx: UnboundedReceiver<Event>,
    /// The active tool parser, named in the mismatch check.
    parser: String,
    /// Everything fed to the parser, kept only when tools are declared: the mismatch check
    /// reads the whole output when the parser found no call.
    output: Option<String>,
    /// Calls another parser read where the active one found none (`--tool-parser-fallback`).
    fallback: Option<Fallback>,
    backend: Arc<dyn Backend>,
    /// With `logprobs`: the sampled tokens not yet sent (a stream sends them with the next
    /// chunk; a whole response keeps them all).
    logprobs: Option<Vec<TokenLogprob>>,
}

pub async fn chat_completions(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> Result<Response, Error> {
    let backend = state.backend()?;
    let req: ChatRequest = from_value(body.clone())?;
    let plan = validate::chat(
        &req,
        &state.config().model_id,
        &state.config().default_sampling,
    )?;
    let forced = forcing(&plan.tool_mode, plan.json_object, backend.parser_name())?;
    let (prefix, close, constraint) = match forced {
        Some(f) => (f.prefix, f.close, Some(f.constraint)),
        None => (String::new(), "", None),
    };
    let b = backend.clone();
    let forced_prefix = prefix.clone();
    let (prompt_ids, rendered) = blocking(move || {
        let mut prompt = b.render_chat(&body)?;
        let rendered = prompt.clone();
        prompt.push_str(&forced_prefix);
        Ok((b.encode(&prompt)?, rendered))
    })
    .await?;
    // Reasoning (`<think>`) is split from content; an opened block starts the answer.
    let (parser, think) =
        reasoning::parser_for(&backend, &plan, state.config().reasoning_format, &rendered);
    let prefix = if prefix.is_empty() {
        think.to_owned()
    } else {
        prefix
    };
    let max_tokens = budget(
        plan.common.max_tokens,
        state.config().default_max_tokens,
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
            stop_ids: Vec::new(),
            logprobs: plan.common.logprobs,
            constraint,
        },
    )?;
    let assembler = Assembler::new(parser, plan.max_calls);
    let output = (plan.tool_mode != ToolMode::Off && !plan.tools.is_empty()).then(String::new);
    let running = Running {
        parser: backend.parser_name().to_owned(),
        output,
        fallback: None,
        logprobs: plan.common.logprobs.then(Vec::new),
        backend: backend.clone(),
        model: state.config().model_id.clone(),
        state,
        id: response_id("chatcmpl"),
        created: now(),
        assembler,
        prefix,
        close,
        rx,
        plan,
    };
    if running.plan.common.stream {
        Ok(stream(running))
    } else {
        whole(running).await
    }
}

/// With fallback calls, `calls` counts them (finish_reason `tool_calls`).
fn finish_reason(f: &Finished, calls: usize) -> &'static str {
    match f.reason {
        FinishReason::Stop if calls > 0 => "tool_calls",
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

impl Running {
    /// Feeds one engine event to the parser. `Ok(Some)` once the generation is done.
    fn step(&mut self, event: Event, out: &mut Vec<Delta>) -> Result<Option<Finished>, Error> {
        match event {
            Event::Token {
                id, text, logprob, ..
            } => {
                if let (Some(list), Some(logprob)) = (&mut self.logprobs, logprob) {
                    list.push(TokenLogprob {
                        bytes: self.backend.token_bytes(id),
                        logprob,
                    });
                }
                self.feed(&text, out);
                Ok(None)
            }
            Event::Failed(e) => Err(Error::Engine(e)),
            done @ Event::Done { .. } => {
                let finished = record(&self.state, done);
                if let Some(f) = &finished {
                    self.feed(&f.tail, out);
                    // The constraint completed the forced call: add its closing markup.
                    if f.reason == FinishReason::Stop && !self.close.is_empty() {
                        self.feed(self.close, out);
                    }
                }
                self.assembler.finish(out);
                self.state
                    .metrics()
                    .record_tool_calls(self.assembler.calls(), self.assembler.rejected());
                self.check_mismatch();
                Ok(finished)
            }
        }
    }

    fn feed(&mut self, text: &str, out: &mut Vec<Delta>) {
        if let Some(output) = &mut self.output {
            output.push_str(text);
        }
        self.assembler.push(text, out);
    }

    /// Tools declared and no call parsed: did another parser read calls in the output?
    fn check_mismatch(&mut self) {
        if self.assembler.calls() > 0 {
            return;
        }
        let Some(output) = self.output.take() else {
            return;
        };
        self.fallback = mismatch::check(
            &self.state,
            &self.parser,
            &self.plan.tools,
            &output,
            self.plan.max_calls,
        )
        .filter(|f| !f.calls.is_empty());
        if let Some(f) = &self.fallback {
            self.state.metrics().record_tool_calls(f.calls.len(), 0);
        }
    }

    /// The calls the response carries: the active parser's, else the fallback's.
    fn calls(&self) -> usize {
        match &self.fallback {
            Some(f) => f.calls.len(),
            None => self.assembler.calls(),
        }
    }

    fn start(&mut self, out: &mut Vec<Delta>) {
        if !self.prefix.is_empty() {
            let prefix = std::mem::take(&mut self.prefix);
            self.feed(&prefix, out);
        }
    }
}

/// The fallback calls as deltas (indices from 0: the active parser found none).
fn fallback_deltas(f: &Fallback) -> impl Iterator<Item = Delta> + '_ {
    f.calls.iter().enumerate().flat_map(|(index, c)| {
        [
            Delta::CallStart {
                index,
                id: crate::server::assemble::call_id(),
                name: c.name.clone(),
            },
            Delta::CallArguments {
                index,
                text: c.arguments.clone(),
            },
        ]
    })
}

async fn whole(mut run: Running) -> Result<Response, Error> {
    let mut deltas = Vec::new();
    let mut message = Message::default();
    run.start(&mut deltas);
    let finished = loop {
        let Some(event) = run.rx.recv().await else {
            return Err(Error::Engine(EngineError::WorkerStopped));
        };
        let done = run.step(event, &mut deltas)?;
        deltas.drain(..).for_each(|d| message.apply(d));
        if let Some(f) = done {
            break f;
        }
    };
    let trim = run.plan.tool_mode != ToolMode::Off;
    if let Some(f) = &run.fallback {
        message.set_content(f.content.clone());
        fallback_deltas(f).for_each(|d| message.apply(d));
    }
    let reason = finish_reason(&finished, run.calls());
    let response = ChatCompletion {
        id: run.id,
        object: "chat.completion",
        created: run.created,
        model: run.model,
        choices: vec![ChatChoice {
            index: 0,
            finish_reason: reason,
            message: message.into_message(trim),
            logprobs: run.logprobs.as_deref().map(logprobs::chat),
        }],
        usage: api_usage(finished.usage),
    };
    Ok(axum::Json(response).into_response())
}

impl Running {
    fn chunk(&mut self, delta: ChatDelta, finish: Option<&'static str>) -> ChatChunk {
        // The tokens sampled since the last chunk ride on this one.
        let logprobs = self
            .logprobs
            .as_mut()
            .filter(|l| !l.is_empty())
            .map(|l| logprobs::chat(&std::mem::take(l)));
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs,
                finish_reason: finish,
            }],
            usage: self.plan.common.include_usage.then_some(None),
        }
    }

    fn delta_chunk(&mut self, d: &Delta) -> ChatChunk {
        let delta = match d {
            Delta::Content(t) => ChatDelta {
                content: Some(t.clone()),
                ..ChatDelta::default()
            },
            Delta::Reasoning(t) => ChatDelta {
                reasoning_content: Some(t.clone()),
                ..ChatDelta::default()
            },
            call => ChatDelta {
                tool_calls: delta_tool_call(call).map(|c| vec![c]),
                ..ChatDelta::default()
            },
        };
        self.chunk(delta, None)
    }
}

fn stream(run: Running) -> Response {
    let (tx, response) = sse::channel();
    let span = tracing::info_span!("chat_stream", id = %run.id);
    tokio::spawn(pump(run, tx).instrument(span));
    response
}

/// Forwards engine events as chunks until done, failed, or the client left.
async fn pump(mut run: Running, tx: sse::SseSender) {
    let mut deltas = Vec::new();
    let first = run.chunk(
        ChatDelta {
            role: Some("assistant"),
            content: Some(String::new()),
            ..ChatDelta::default()
        },
        None,
    );
    if !tx.send(sse::frame(&first)).await {
        run.state.metrics().record_cancelled();
        return;
    }
    run.start(&mut deltas);
    loop {
        let event = tokio::select! {
            e = run.rx.recv() => e,
            _ = tx.closed() => None,
        };
        let Some(event) = event else {
            if tx.is_closed() {
                tracing::info!("client disconnected: generation cancelled");
                run.state.metrics().record_cancelled();
            } else {
                let err = Error::Engine(EngineError::WorkerStopped);
                tx.send(sse::error_frame(&error_body(&err))).await;
                tx.done().await;
            }
            return;
        };
        let done = match run.step(event, &mut deltas) {
            Ok(done) => done,
            Err(err) => {
                tracing::error!(error = %err, "generation failed mid-stream");
                tx.send(sse::error_frame(&error_body(&err))).await;
                tx.done().await;
                return;
            }
        };
        for d in deltas.drain(..) {
            if !tx.send(sse::frame(&run.delta_chunk(&d))).await {
                run.state.metrics().record_cancelled();
                return;
            }
        }
        if let Some(f) = done {
            let reason = finish_reason(&f, run.calls());
            // Content was streamed already; fallback calls follow it as call deltas.
            if let Some(fb) = run.fallback.take() {
                for d in fallback_deltas(&fb).collect::<Vec<_>>() {
                    if !tx.send(sse::frame(&run.delta_chunk(&d))).await {
                        return;
                    }
                }
            }
            tx.send(sse::frame(&run.chunk(ChatDelta::default(), Some(reason))))
                .await;
            if run.plan.common.include_usage {
                let mut last = run.chunk(ChatDelta::default(), None);
                last.choices.clear();
                last.usage = Some(Some(api_usage(f.usage)));
                tx.send(sse::frame(&last)).await;
            }
            tx.done().await;
            return;
        }
    }
}
