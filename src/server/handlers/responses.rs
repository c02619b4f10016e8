//! `POST /v1/responses` (OpenAI Responses) on the chat path: the request (and the stored
//! conversation `previous_response_id` names) is translated into a chat body
//! (`dialect::responses`), run as a `Turn`, and the answer's blocks come back as output
//! items, in one response object or as the typed event stream: `response.created`,
//! `response.in_progress`, per item `response.output_item.added` … `.done` (with
//! `content_part`, `output_text`, `function_call_arguments` and `reasoning_text` events
//! between), then `response.completed` (or `response.incomplete`), each with its
//! `sequence_number`. With `store` (the default) the conversation is kept for follow-ups.

use super::response_id;
use super::turn::{Turn, TurnEnd};
use crate::api::responses::ResponsesRequest;
use crate::server::assemble::Delta;
use crate::server::blocks::{Block, BlockEvent, BlockKind, BlockList, Blocks};
use crate::server::dialect::responses::{self as wire, to_chat};
use crate::server::error::error_body;
use crate::server::extract::{from_value, Json};
use crate::server::sse::{self, SseSender};
use crate::server::state::AppState;
use crate::server::validate::ToolMode;
use crate::Error;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tracing::Instrument;

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
    let mut turn = Turn::start(&state, t.body, Vec::new(), "input").await?;
    let trim = turn.plan.tool_mode != ToolMode::Off;
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
    let mut response = if req.stream == Some(true) {
        let (tx, response) = sse::channel();
        let span = tracing::info_span!("responses_stream", id = %meta.id);
        tokio::spawn(pump(state, turn, meta, trim, tx).instrument(span));
        response
    } else {
        let mut run = Run::new(trim);
        turn.begin(&mut run.deltas);
        let end = loop {
            let done = turn.next(&mut run.deltas).await?;
            run.fold(done.is_some());
            run.events.clear();
            if let Some(end) = done {
                break end;
            }
        };
        let body = finished(&state, &meta, &run.list.blocks, &end);
        axum::Json(body).into_response()
    };
    if !t.ignored_tools.is_empty() {
        let names = t.ignored_tools.join(", ");
        if let Ok(v) = HeaderValue::from_str(&names) {
            response.headers_mut().insert("x-wick-ignored-tools", v);
        }
    }
    Ok(response)
}

/// The block state of one response, shared by both forms.
struct Run {
    deltas: Vec<Delta>,
    blocks: Blocks,
    events: Vec<BlockEvent>,
    list: BlockList,
}

impl Run {
    fn new(trim: bool) -> Self {
        Run {
            deltas: Vec::new(),
            blocks: Blocks::new(trim),
            events: Vec::new(),
            list: BlockList::default(),
        }
    }

    /// Moves new deltas into block events (kept in `events`) and the finished blocks.
    fn fold(&mut self, end: bool) {
        for d in self.deltas.drain(..) {
            self.blocks.push(d, &mut self.events);
        }
        if end {
            self.blocks.finish(&mut self.events);
        }
        for e in &self.events {
            self.list.apply(e.clone());
        }
    }
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

/// Numbers the stream's events.
struct Events {
    tx: SseSender,
    seq: u64,
}

impl Events {
    /// Sends one typed event; false once the client is gone.
    async fn send(&mut self, mut value: Value) -> bool {
        value["sequence_number"] = json!(self.seq);
        self.seq += 1;
        let kind = value["type"].as_str().unwrap_or("error").to_owned();
        let mut out = format!("event: {kind}\n").into_bytes();
        out.extend_from_slice(&sse::frame(&value));
        self.tx.send(Bytes::from(out)).await
    }
}

async fn pump(state: AppState, mut turn: Turn, meta: Meta, trim: bool, tx: SseSender) {
    let mut ev = Events { tx, seq: 0 };
    let start = response_object(&meta, "in_progress", Vec::new(), json!({}));
    if !ev
        .send(json!({"type": "response.created", "response": start}))
        .await
        || !ev
            .send(json!({"type": "response.in_progress", "response": start}))
            .await
    {
        return;
    }
    let mut run = Run::new(trim);
    turn.begin(&mut run.deltas);
    loop {
        let next = tokio::select! {
            n = turn.next(&mut run.deltas) => n,
            _ = ev.tx.closed() => {
                tracing::info!("client disconnected: generation cancelled");
                return;
            }
        };
        let done = match next {
            Ok(done) => done,
            Err(err) => {
                tracing::error!(error = %err, "generation failed mid-stream");
                let e = error_body(&err).error;
                ev.send(json!({"type": "error", "code": e.code, "message": e.message, "param": e.param}))
                    .await;
                return;
            }
        };
        run.fold(done.is_some());
        let events = std::mem::take(&mut run.events);
        for e in events {
            for v in item_events(&meta.id, e, &run.list.blocks) {
                if !ev.send(v).await {
                    return;
                }
            }
        }
        if let Some(end) = done {
            let body = finished(&state, &meta, &run.list.blocks, &end);
            let kind = if body["status"] == "incomplete" {
                "response.incomplete"
            } else {
                "response.completed"
            };
            ev.send(json!({"type": kind, "response": body})).await;
            return;
        }
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
