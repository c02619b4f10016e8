//! `POST /v1/responses` (OpenAI Responses) on the chat path: the request (and the stored
//! conversation `previous_response_id` names) is translated into a chat body
//! (`dialect::responses`), run as a `Turn`, and the answer's blocks come back as output
//! items, in one response object or as the typed event stream: `response.created`,
//! `response.in_progress`, per item `response.output_item.added` … `.done` (with
//! `content_part`, `output_text`, `function_call_arguments` and `reasoning_text` events
//! between), then `response.completed` (or `response.incomplete`), each with its
//! `sequence_number`. With `store` (the default) the conversation is kept for follow-ups.
//! The generation runs in `server::respond`'s loop; this file is the wire format.

use super::response_id;
use super::turn::{Turn, TurnEnd};
use crate::api::responses::ResponsesRequest;
use crate::server::blocks::{Block, BlockEvent, BlockKind};
use crate::server::dialect::responses::{self as wire, to_chat};
use crate::server::error::error_body;
use crate::server::extract::{from_value, Json};
use crate::server::respond::{self, Finished, Run, Shape};
use crate::server::sse;
use crate::server::state::AppState;
use crate::Error;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// The request field that holds the prompt, named by context errors.
const PROMPT_PARAM: &str = "input";

/// What the response object echoes of the request, and what the store needs.
struct Meta {
    id: String,
    created_at: u64,
    echo: Value,
    store: bool,
    history: Vec<Value>,
}

pub async fn responses(
    State(state): State<AppState>,
    Json(body): Json<Value>,
) -> Result<Response, Error> {
    tracing::debug!(body = %body, "responses request");
    let req: ResponsesRequest = from_value(body)?;
    let previous = match &req.previous_response_id {
        Some(id) => state
            .responses()
            .get(id)
            .ok_or_else(|| Error::ResponseNotFound(id.clone()))?,
        None => Vec::new(),
    };
    let t = to_chat(&req, previous)?;
    for kind in &t.ignored_tools {
        state.metrics().record_ignored_tool(kind);
    }
    if !t.ignored_tools.is_empty() {
        tracing::warn!(types = ?t.ignored_tools, "ignoring tools that are not functions");
    }
    let (turn, request) = Turn::start(&state, t.body, Vec::new(), PROMPT_PARAM).await?;
    let backend = state.backend()?;
    let stream = req.stream == Some(true);
    let meta = Meta {
        id: response_id("resp").replace('-', "_"),
        created_at: super::now(),
        echo: json!({
            "model": state.config().model_id,
            "instructions": req.instructions,
            "tools": t.tools,
            "tool_choice": req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
            "parallel_tool_calls": req.parallel_tool_calls.unwrap_or(true),
            "max_output_tokens": req.max_output_tokens,
            "previous_response_id": req.previous_response_id,
            "temperature": req.temperature.unwrap_or(1.0),
            "top_p": req.top_p.unwrap_or(1.0),
            "text": {"format": req.text.as_ref().and_then(|x| x.format.clone())
                .unwrap_or_else(|| json!({"type": "text"}))},
            "metadata": req.metadata.clone().unwrap_or_else(|| json!({})),
            "store": req.store.unwrap_or(true),
            "truncation": "disabled",
            "reasoning": {"effort": null, "summary": null},
        }),
        store: req.store.unwrap_or(true),
        history: t.history,
    };
    let id = meta.id.clone();
    let shape = ResponseShape {
        state: state.clone(),
        meta,
        stream,
        turn,
        seq: 0,
        body: None,
    };
    let run = Run {
        request,
        shape: Box::new(shape),
        stream,
        prompt_param: PROMPT_PARAM,
        id,
    };
    let mut response = respond::respond(state, &backend, run).await?;
    if !t.ignored_tools.is_empty() {
        let names = t.ignored_tools.join(", ");
        if let Ok(v) = HeaderValue::from_str(&names) {
            response.headers_mut().insert("x-wick-ignored-tools", v);
        }
    }
    Ok(response)
}

/// The response object in a given state.
fn response_object(meta: &Meta, status: &str, output: Vec<Value>, extra: Value) -> Value {
    let mut r = json!({
        "id": meta.id, "object": "response", "created_at": meta.created_at,
        "status": status, "error": null, "incomplete_details": null,
        "output": output, "usage": null,
    });
    for src in [&meta.echo, &extra] {
        if let (Some(r), Some(src)) = (r.as_object_mut(), src.as_object()) {
            for (k, v) in src {
                r.insert(k.clone(), v.clone());
            }
        }
    }
    r
}

/// The finished response; stores its conversation when asked to.
fn finished(state: &AppState, meta: &Meta, blocks: &[Block], end: &TurnEnd) -> Value {
    if meta.store {
        let mut messages = meta.history.clone();
        messages.push(wire::assistant_message(blocks));
        state.responses().put(meta.id.clone(), messages);
    }
    let output = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| wire::output_item(&meta.id, i, b, true))
        .collect();
    let (status, incomplete) = wire::status(end);
    let reasoning_tokens = 0;
    response_object(
        meta,
        status,
        output,
        json!({"incomplete_details": incomplete, "usage": wire::usage(end, reasoning_tokens)}),
    )
}

/// A response being built: the turn's blocks as typed, numbered events (streaming) and,
/// at the end, the response object (stored for `previous_response_id` when asked).
struct ResponseShape {
    state: AppState,
    meta: Meta,
    stream: bool,
    turn: Turn,
    /// The next event's `sequence_number`.
    seq: u64,
    /// The finished response object.
    body: Option<Value>,
}

impl ResponseShape {
    /// One typed event with its `sequence_number`.
    fn event(&mut self, mut value: Value) -> Bytes {
        value["sequence_number"] = json!(self.seq);
        self.seq += 1;
        let kind = value["type"].as_str().unwrap_or("error").to_owned();
        let mut out = format!("event: {kind}\n").into_bytes();
        out.extend_from_slice(&sse::frame(&value));
        Bytes::from(out)
    }

    /// The turn's last block events as typed events (streaming only).
    fn send_items(&mut self, out: &mut Vec<Bytes>) {
        if !self.stream {
            return;
        }
        let events = std::mem::take(&mut self.turn.events);
        for e in events {
            for v in item_events(&self.meta.id, e, &self.turn.list.blocks) {
                let frame = self.event(v);
                out.push(frame);
            }
        }
    }
}

impl Shape for ResponseShape {
    fn open(&mut self, out: &mut Vec<Bytes>) {
        if self.stream {
            let start = response_object(&self.meta, "in_progress", Vec::new(), json!({}));
            let created = self.event(json!({"type": "response.created", "response": start}));
            let progress = self.event(json!({"type": "response.in_progress", "response": start}));
            out.extend([created, progress]);
        }
        self.turn.begin();
        self.send_items(out);
    }

    fn text(&mut self, text: &str, out: &mut Vec<Bytes>) {
        self.turn.push(text);
        self.send_items(out);
    }

    fn ended(&self) -> bool {
        self.turn.stopped()
    }

    fn finish(&mut self, done: &Finished, out: &mut Vec<Bytes>) {
        let end = self.turn.finish(done);
        self.send_items(out);
        let body = finished(&self.state, &self.meta, &self.turn.list.blocks, &end);
        if self.stream {
            let kind = if body["status"] == "incomplete" {
                "response.incomplete"
            } else {
                "response.completed"
            };
            let frame = self.event(json!({"type": kind, "response": body}));
            out.push(frame);
        }
        self.body = Some(body);
    }

    fn body(self: Box<Self>, _done: &Finished) -> Response {
        axum::Json(self.body.expect("finish runs before body")).into_response()
    }

    fn error_frame(&mut self, err: &Error) -> Bytes {
        let e = error_body(err).error;
        self.event(json!({"type": "error", "code": e.code, "message": e.message, "param": e.param}))
    }

    fn end_frame(&self) -> Option<Bytes> {
        None
    }
}

/// The typed stream events for one block event (`blocks` already holds its text).
fn item_events(response_id: &str, e: BlockEvent, blocks: &[Block]) -> Vec<Value> {
    let index = match &e {
        BlockEvent::Start { index, .. }
        | BlockEvent::Delta { index, .. }
        | BlockEvent::Stop { index } => *index,
    };
    let Some(block) = blocks.get(index) else {
        return Vec::new();
    };
    let item_id = wire::item_id(response_id, &block.kind, index);
    let at = json!({"item_id": item_id, "output_index": index});
    let with = |mut v: Value, more: &Value| {
        for (k, x) in more.as_object().into_iter().flatten() {
            v[k] = x.clone();
        }
        v
    };
    match (e, &block.kind) {
        (BlockEvent::Start { .. }, kind) => {
            let empty = Block {
                kind: kind.clone(),
                text: String::new(),
            };
            let mut out = vec![
                json!({"type": "response.output_item.added", "output_index": index,
                "item": wire::output_item(response_id, index, &empty, false)}),
            ];
            if *kind == BlockKind::Text {
                out.push(with(
                    json!({"type": "response.content_part.added", "content_index": 0,
                        "part": wire::output_text("")}),
                    &at,
                ));
            }
            out
        }
        (BlockEvent::Delta { text, .. }, kind) => {
            let v = match kind {
                BlockKind::Text => json!({"type": "response.output_text.delta",
                    "content_index": 0, "delta": text, "logprobs": []}),
                BlockKind::Thinking => json!({"type": "response.reasoning_text.delta",
                    "content_index": 0, "delta": text}),
                BlockKind::Call { .. } => {
                    json!({"type": "response.function_call_arguments.delta", "delta": text})
                }
            };
            vec![with(v, &at)]
        }
        (BlockEvent::Stop { .. }, kind) => {
            let mut out = match kind {
                BlockKind::Text => vec![
                    with(
                        json!({"type": "response.output_text.done", "content_index": 0,
                        "text": block.text, "logprobs": []}),
                        &at,
                    ),
                    with(
                        json!({"type": "response.content_part.done", "content_index": 0,
                        "part": wire::output_text(&block.text)}),
                        &at,
                    ),
                ],
                BlockKind::Thinking => vec![with(
                    json!({"type": "response.reasoning_text.done", "content_index": 0,
                        "text": block.text}),
                    &at,
                )],
                BlockKind::Call { name, .. } => vec![with(
                    json!({"type": "response.function_call_arguments.done",
                        "arguments": block.text, "name": name}),
                    &at,
                )],
            };
            out.push(
                json!({"type": "response.output_item.done", "output_index": index,
                "item": wire::output_item(response_id, index, block, true)}),
            );
            out
        }
    }
}
