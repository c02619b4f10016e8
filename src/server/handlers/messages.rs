//! `POST /v1/messages` and `POST /v1/messages/count_tokens` (Anthropic Messages) on the
//! chat path: the request is translated into a chat body (`dialect::anthropic`), run as a
//! `Turn`, and the answer's blocks come back as one message or as Anthropic's event
//! stream: `message_start`, `ping`, then per block `content_block_start` /
//! `content_block_delta`* / `content_block_stop`, then `message_delta` (stop reason,
//! usage) and `message_stop`. Errors take Anthropic's shape, before and during a stream.
//! The generation runs in `server::respond`'s loop; this file is the wire format.

use super::turn::{Turn, TurnEnd};
use super::{blocking, response_id};
use crate::api::anthropic::MessagesRequest;
use crate::server::blocks::{BlockEvent, BlockKind};
use crate::server::dialect::anthropic::{self as wire, to_chat};
use crate::server::error::{error_json, AnthropicError, Dialect};
use crate::server::extract::{from_value, Json};
use crate::server::respond::{self, Finished, Run, Shape};
use crate::server::sse;
use crate::server::state::AppState;
use crate::server::validate;
use crate::Error;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// The request field that holds the prompt, named by context errors.
const PROMPT_PARAM: &str = "messages";

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
    let (turn, request) = Turn::start(&state, body, stops, PROMPT_PARAM).await?;
    let backend = state.backend()?;
    let stream = req.stream == Some(true);
    let id = response_id("msg").replace('-', "_");
    let shape = MessageShape {
        id: id.clone(),
        model: state.config().model_id.clone(),
        stream,
        turn,
        kinds: Vec::new(),
        end: None,
    };
    let run = Run {
        request,
        shape: Box::new(shape),
        stream,
        prompt_param: PROMPT_PARAM,
        id,
    };
    Ok(respond::respond(state, &backend, run).await?)
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

/// A message being built: the turn's blocks as Anthropic events (streaming) or, whole,
/// one message object.
struct MessageShape {
    id: String,
    model: String,
    stream: bool,
    turn: Turn,
    /// The kind of each block started so far (its deltas' type depends on it).
    kinds: Vec<BlockKind>,
    end: Option<TurnEnd>,
}

impl MessageShape {
    /// The turn's last block events as frames (streaming only).
    fn send_blocks(&mut self, out: &mut Vec<Bytes>) {
        if !self.stream {
            return;
        }
        for e in self.turn.events.drain(..) {
            out.push(event(&block_event(e, &mut self.kinds)));
        }
    }
}

impl Shape for MessageShape {
    fn open(&mut self, out: &mut Vec<Bytes>) {
        if self.stream {
            let start = json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": self.turn.prompt_tokens(), "output_tokens": 0}}});
            out.push(event(&start));
            out.push(event(&json!({"type": "ping"})));
        }
        self.turn.begin();
        self.send_blocks(out);
    }

    fn text(&mut self, text: &str, out: &mut Vec<Bytes>) {
        self.turn.push(text);
        self.send_blocks(out);
    }

    fn ended(&self) -> bool {
        self.turn.stopped()
    }

    fn finish(&mut self, done: &Finished, out: &mut Vec<Bytes>) {
        let end = self.turn.finish(done);
        self.send_blocks(out);
        if self.stream {
            let (reason, sequence) = wire::stop_reason(&end);
            out.push(event(&json!({"type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": sequence},
                "usage": wire::usage(&end)})));
            out.push(event(&json!({"type": "message_stop"})));
        }
        self.end = Some(end);
    }

    fn body(self: Box<Self>, _done: &Finished) -> Response {
        let content: Vec<Value> = self
            .turn
            .list
            .blocks
            .iter()
            .map(wire::content_block)
            .collect();
        let end = self.end.expect("finish runs before body");
        let (reason, sequence) = wire::stop_reason(&end);
        axum::Json(json!({
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": content, "stop_reason": reason, "stop_sequence": sequence,
            "usage": wire::usage(&end),
        }))
        .into_response()
    }

    fn dialect(&self) -> Dialect {
        Dialect::Anthropic
    }

    fn error_frame(&mut self, err: &Error) -> Bytes {
        event(&error_json(err, Dialect::Anthropic))
    }

    fn end_frame(&self) -> Option<Bytes> {
        None
    }

    fn keepalive_every(&self) -> Option<std::time::Duration> {
        Some(PING_EVERY)
    }

    fn keepalive(&mut self) -> Bytes {
        event(&json!({"type": "ping"}))
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
