//! `POST /v1/chat/completions`: validate → render the template (plus forced call opening)
//! → tokenize → submit → parse the output for tool calls → one JSON response or an SSE
//! stream of chunks ending in `data: [DONE]`. The stages before the engine are
//! `turn::prepare` (shared with the dialects), the event loop is `server::respond`'s; this
//! file is the chat wire format (`ChatShape`).

use super::turn::{prepare, Prepared};
use super::{api_usage, now, response_id};
use crate::api::{ChatChoice, ChatChunk, ChatCompletion, ChatDelta, ChunkChoice};
use crate::engine::{FinishReason, TokenLogprob};
use crate::server::assemble::{delta_tool_call, Assembler, Delta, Message};
use crate::server::extract::Json;
use crate::server::logprobs::{chat_entry, chat_object};
use crate::server::mismatch::{self, Fallback};
use crate::server::respond::{self, Finished, Run, Shape};
use crate::server::sse;
use crate::server::state::AppState;
use crate::server::validate::{ChatPlan, ToolMode};
use crate::Error;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The request field that holds the prompt, named by context errors.
const PROMPT_PARAM: &str = "messages";

/// A chat response being built: the tool-call parser state, and the message (whole) or
/// the chunks (streaming).
struct ChatShape {
    state: AppState,
    plan: ChatPlan,
    id: String,
    created: u64,
    model: String,
    assembler: Assembler,
    /// Forced call markup: fed to the parser before the output / after a completed one.
    prefix: String,
    close: &'static str,
    stream: bool,
    /// Deltas decided by the parser, not yet applied or sent (reused).
    deltas: Vec<Delta>,
    /// Non-streaming: the message so far.
    message: Message,
    /// The active tool parser, named in the mismatch check.
    parser: String,
    /// Everything fed to the parser, kept only when tools are declared: the mismatch check
    /// reads the whole output when the parser found no call.
    output: Option<String>,
    /// Calls another parser read where the active one found none (`--tool-parser-fallback`).
    fallback: Option<Fallback>,
    /// With `logprobs: true`: the `content` entries, all of them (whole) or those not yet
    /// sent (streaming: they go with the next chunk).
    logprobs: Option<Vec<Value>>,
}

pub async fn chat_completions(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> Result<Response, Error> {
    let backend = state.backend()?;
    let Prepared {
        plan,
        request,
        assembler,
        prefix,
        close,
    } = prepare(&state, body, PROMPT_PARAM, false).await?;
    let output = (plan.tool_mode != ToolMode::Off && !plan.tools.is_empty()).then(String::new);
    let id = response_id("chatcmpl");
    let stream = plan.common.stream;
    let shape = ChatShape {
        parser: backend.parser_name().to_owned(),
        output,
        fallback: None,
        logprobs: plan.common.logprobs.map(|_| Vec::new()),
        model: state.config().model_id.clone(),
        state: state.clone(),
        id: id.clone(),
        created: now(),
        assembler,
        prefix,
        close,
        stream,
        deltas: Vec::new(),
        message: Message::default(),
        plan,
    };
    let run = Run {
        request,
        shape: Box::new(shape),
        stream,
        prompt_param: PROMPT_PARAM,
        id,
    };
    respond::respond(state, &backend, run).await
}

/// With fallback calls, `calls` counts them (finish_reason `tool_calls`).
fn finish_reason(f: &Finished, calls: usize) -> &'static str {
    match f.reason {
        FinishReason::Stop if calls > 0 => "tool_calls",
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

impl ChatShape {
    fn feed(&mut self, text: &str) {
        if let Some(output) = &mut self.output {
            output.push_str(text);
        }
        self.assembler.push(text, &mut self.deltas);
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

    /// Streaming: the logprobs the next chunk carries (those not sent yet).
    fn pending_logprobs(&mut self) -> Option<Value> {
        match &mut self.logprobs {
            Some(v) if !v.is_empty() => Some(chat_object(std::mem::take(v))),
            _ => None,
        }
    }

    /// Streaming: the decided deltas become chunks; whole: they build the message.
    fn flush(&mut self, out: &mut Vec<Bytes>) {
        if self.stream {
            let mut deltas = std::mem::take(&mut self.deltas);
            for d in deltas.drain(..) {
                let mut chunk = self.delta_chunk(&d);
                chunk.choices[0].logprobs = self.pending_logprobs();
                out.push(sse::frame(&chunk));
            }
            // Kept for its buffer.
            self.deltas = deltas;
        } else {
            self.deltas.drain(..).for_each(|d| self.message.apply(d));
        }
    }

    fn chunk(&self, delta: ChatDelta, finish: Option<&'static str>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish,
            }],
            usage: self.plan.common.include_usage.then_some(None),
        }
    }

    fn delta_chunk(&self, d: &Delta) -> ChatChunk {
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

impl Shape for ChatShape {
    fn open(&mut self, out: &mut Vec<Bytes>) {
        if self.stream {
            let first = self.chunk(
                ChatDelta {
                    role: Some("assistant"),
                    content: Some(String::new()),
                    ..ChatDelta::default()
                },
                None,
            );
            out.push(sse::frame(&first));
        }
        if !self.prefix.is_empty() {
            let prefix = std::mem::take(&mut self.prefix);
            self.feed(&prefix);
            self.flush(out);
        }
    }

    fn text(&mut self, text: &str, out: &mut Vec<Bytes>) {
        self.feed(text);
        self.flush(out);
    }

    fn logprobs(&mut self, tokens: Vec<TokenLogprob>) {
        if let Some(v) = &mut self.logprobs {
            v.extend(tokens.iter().map(chat_entry));
        }
    }

    fn finish(&mut self, done: &Finished, out: &mut Vec<Bytes>) {
        self.feed(&done.tail);
        // The constraint completed the forced call: add its closing markup.
        if done.reason == FinishReason::Stop && !self.close.is_empty() {
            self.feed(self.close);
        }
        self.assembler.finish(&mut self.deltas);
        self.state
            .metrics()
            .record_tool_calls(self.assembler.calls(), self.assembler.rejected());
        self.check_mismatch();
        self.flush(out);
        if !self.stream {
            return;
        }
        // Content was streamed already; fallback calls follow it as call deltas.
        if let Some(fb) = &self.fallback {
            for d in fallback_deltas(fb) {
                out.push(sse::frame(&self.delta_chunk(&d)));
            }
        }
        let reason = finish_reason(done, self.calls());
        let mut last = self.chunk(ChatDelta::default(), Some(reason));
        // Tokens whose text the parser kept (markup, held-back text) end the list here.
        last.choices[0].logprobs = self.pending_logprobs();
        out.push(sse::frame(&last));
        if self.plan.common.include_usage {
            let mut last = self.chunk(ChatDelta::default(), None);
            last.choices.clear();
            last.usage = Some(Some(api_usage(done.usage)));
            out.push(sse::frame(&last));
        }
    }

    fn body(self: Box<Self>, done: &Finished) -> Response {
        let this = *self;
        let reason = finish_reason(done, this.calls());
        let trim = this.plan.tool_mode != ToolMode::Off;
        let mut message = this.message;
        if let Some(f) = &this.fallback {
            message.set_content(f.content.clone());
            fallback_deltas(f).for_each(|d| message.apply(d));
        }
        let response = ChatCompletion {
            id: this.id,
            object: "chat.completion",
            created: this.created,
            model: this.model,
            choices: vec![ChatChoice {
                index: 0,
                finish_reason: reason,
                message: message.into_message(trim),
                logprobs: this.logprobs.map(chat_object),
            }],
            usage: api_usage(done.usage),
        };
        axum::Json(response).into_response()
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
