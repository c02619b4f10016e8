//! `POST /v1/messages` and `POST /v1/messages/count_tokens` (Anthropic Messages) on the
//! chat path: the request is translated into a chat body (`dialect::anthropic`), run as a
//! `Turn`, and the answer's blocks come back as one message or as Anthropic's event
//! stream: `message_start`, `ping`, then per block `content_block_start` /
//! `content_block_delta`* / `content_block_stop`, then `message_delta` (stop reason,
//! usage) and `message_stop`. Errors take Anthropic's shape, before and during a stream.

use super::turn::{Turn, TurnEnd};
use super::{blocking, response_id};
use crate::api::anthropic::MessagesRequest;
use crate::server::assemble::Delta;
use crate::server::blocks::{BlockEvent, BlockKind, BlockList, Blocks};
use crate::server::dialect::anthropic::{self as wire, to_chat};
use crate::server::error::{error_json, AnthropicError, Dialect};
use crate::server::extract::{from_value, Json};
use crate::server::sse::{self, SseSender};
use crate::server::state::AppState;
use crate::server::validate::{self, ToolMode};
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tracing::Instrument;

/// The body extractor whose rejection is Anthropic-shaped.
pub struct AnthropicJson(pub MessagesRequest);

impl<S> axum::extract::FromRequest<S> for AnthropicJson
where
    S: Send + Sync,
    AppState: axum::extract::FromRef<S>,
{
    type Rejection = AnthropicError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<Value>::from_request(req, state).await?;
        tracing::debug!(body = %value, "anthropic request");
        Ok(AnthropicJson(from_value(value)?))
    }
}

pub async fn messages(
    State(state): State<AppState>,
    AnthropicJson(req): AnthropicJson,
) -> Result<Response, AnthropicError> {
    let (body, stops) = to_chat(&req, false)?;
    let mut turn = Turn::start(&state, body, stops, "messages").await?;
    let trim = turn.plan.tool_mode != ToolMode::Off;
    let message = Reply {
        id: response_id("msg").replace('-', "_"),
        model: state.config().model_id.clone(),
        prompt_tokens: turn.prompt_tokens(),
    };
    if req.stream == Some(true) {
        let (tx, response) = sse::channel();
        let span = tracing::info_span!("messages_stream", id = %message.id);
        tokio::spawn(pump(turn, message, trim, tx).instrument(span));
        return Ok(response);
    }
    let mut deltas = Vec::new();
    let mut blocks = Blocks::new(trim);
    let mut events = Vec::new();
    let mut list = BlockList::default();
    turn.begin(&mut deltas);
    let end = loop {
        let done = turn.next(&mut deltas).await?;
        fold(&mut blocks, &mut deltas, &mut events, done.is_some());
        events.drain(..).for_each(|e| list.apply(e));
        if let Some(end) = done {
            break end;
        }
    };
    let content: Vec<Value> = list.blocks.iter().map(wire::content_block).collect();
    let (reason, sequence) = wire::stop_reason(&end);
    Ok(axum::Json(json!({
        "id": message.id, "type": "message", "role": "assistant", "model": message.model,
        "content": content, "stop_reason": reason, "stop_sequence": sequence,
        "usage": wire::usage(&end),
    }))
    .into_response())
}

/// `count_tokens`: the prompt the template renders for this request, in tokens.
pub async fn count_tokens(
    State(state): State<AppState>,
    AnthropicJson(req): AnthropicJson,
) -> Result<Response, AnthropicError> {
    let (body, _) = to_chat(&req, true)?;
    let backend = state.backend()?;
    // The same checks as a real request, so a count never succeeds where a call fails.
    validate::chat(
        &from_value(body.clone())?,
        &state.config().model_id,
        &state.config().default_sampling,
    )?;
    let n = blocking(move || {
        let prompt = backend.render_chat(&body)?;
        Ok(backend.encode(&prompt)?.len())
    })
    .await?;
    Ok(axum::Json(json!({"input_tokens": n})).into_response())
}

/// Moves the turn's new deltas through the block state machine.
fn fold(blocks: &mut Blocks, deltas: &mut Vec<Delta>, events: &mut Vec<BlockEvent>, end: bool) {
    deltas.drain(..).for_each(|d| blocks.push(d, events));
    if end {
        blocks.finish(events);
    }
}

struct Reply {
    id: String,
    model: String,
    prompt_tokens: usize,
}

/// One Anthropic SSE event: `event: <type>` and its JSON.
fn event(value: &Value) -> Bytes {
    let kind = value.get("type").and_then(Value::as_str).unwrap_or("error");
    let mut out = format!("event: {kind}\n").into_bytes();
    out.extend_from_slice(&sse::frame(value));
    Bytes::from(out)
}

/// A `ping` goes out when the stream has been quiet this long (a long prompt still being
/// prefilled), as Anthropic's API pings: it keeps bytes flowing for byte-level idle
/// watchdogs and proxies. (Claude Code 2.1's event idle timeout, 5 minutes, does not count
/// pings: raise `CLAUDE_STREAM_IDLE_TIMEOUT_MS` for prompts slower than that.)
const PING_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

async fn pump(mut turn: Turn, reply: Reply, trim: bool, tx: SseSender) {
    let start = json!({"type": "message_start", "message": {
        "id": reply.id, "type": "message", "role": "assistant", "model": reply.model,
        "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": 0}}});
    if !tx.send(event(&start)).await || !tx.send(event(&json!({"type": "ping"}))).await {
        return;
    }
    let mut deltas = Vec::new();
    let mut blocks = Blocks::new(trim);
    let mut events = Vec::new();
    let mut kinds: Vec<BlockKind> = Vec::new();
    turn.begin(&mut deltas);
    loop {
        let next = tokio::select! {
            n = turn.next(&mut deltas) => n,
            _ = tx.closed() => {
                tracing::info!("client disconnected: generation cancelled");
                return;
            }
            // `Turn::next` is cancel-safe: it awaits only the engine's channel.
            _ = tokio::time::sleep(PING_EVERY) => {
                if !tx.send(event(&json!({"type": "ping"}))).await {
                    return;
                }
                continue;
            }
        };
        let done = match next {
            Ok(done) => done,
            Err(err) => {
                tracing::error!(error = %err, "generation failed mid-stream");
                tx.send(event(&error_json(&err, Dialect::Anthropic))).await;
                return;
            }
        };
        fold(&mut blocks, &mut deltas, &mut events, done.is_some());
        for e in events.drain(..) {
            if !tx.send(event(&block_event(e, &mut kinds))).await {
                return;
            }
        }
        if let Some(end) = done {
            finish(&tx, &end).await;
            return;
        }
    }
}

fn block_event(e: BlockEvent, kinds: &mut Vec<BlockKind>) -> Value {
    match e {
        BlockEvent::Start { index, kind } => {
            let block = wire::start_block(&kind);
            kinds.push(kind);
            json!({"type": "content_block_start", "index": index, "content_block": block})
        }
        BlockEvent::Delta { index, text } => {
            let kind = kinds.get(index).unwrap_or(&BlockKind::Text);
            json!({"type": "content_block_delta", "index": index, "delta": wire::delta(kind, &text)})
        }
        BlockEvent::Stop { index } => json!({"type": "content_block_stop", "index": index}),
    }
}

async fn finish(tx: &SseSender, end: &TurnEnd) {
    let (reason, sequence) = wire::stop_reason(end);
    let delta = json!({"type": "message_delta",
        "delta": {"stop_reason": reason, "stop_sequence": sequence},
        "usage": wire::usage(end)});
    if tx.send(event(&delta)).await {
        tx.send(event(&json!({"type": "message_stop"}))).await;
    }
}
