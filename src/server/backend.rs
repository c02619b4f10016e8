//! The seam between the HTTP side and a loaded model: what a handler may ask of it.
//! `cli/serve.rs` builds the real backend from the engine handle, tokenizer, chat template
//! and tool-call parser; the server only sees this trait, so it never touches model
//! internals or worker state, and its tests can run before a model is loaded.
//! Must not depend on axum.

use crate::api::Tool;
use crate::engine::{EngineError, EngineStats, EventReceiver, GenerationRequest};
use crate::Error;
use serde_json::Value;

/// What a tool-call parser reports, in the server's terms (the parser crate's events are
/// mapped onto these by the backend).
#[derive(Debug, Clone, PartialEq)]
pub enum ParseEvent {
    /// Assistant text (whitespace kept: the stream forwards it as is).
    Content(String),
    Reasoning(String),
    /// A complete call; `arguments` is the JSON text of the arguments object.
    Call {
        name: String,
        arguments: String,
    },
    /// The start of a call whose arguments follow as `CallArguments` fragments; `id` when
    /// the parser gives one (the model's own, or one it generated).
    CallStart {
        id: Option<String>,
        name: String,
    },
    CallArguments(String),
    /// Call-like text that no parser could read (it is also kept in `Content`).
    Rejected {
        reason: String,
    },
}

/// A push-based tool-call parser: `push` emits what is decided, `finish` the rest.
pub trait CallParser: Send {
    fn push(&mut self, text: &str, out: &mut Vec<ParseEvent>);
    fn finish(&mut self, out: &mut Vec<ParseEvent>);
}

/// A parser that reads no calls: everything is content (`tool_choice: "none"`, no tools).
pub struct PlainText;

impl CallParser for PlainText {
    fn push(&mut self, text: &str, out: &mut Vec<ParseEvent>) {
        if !text.is_empty() {
            out.push(ParseEvent::Content(text.to_owned()));
        }
    }
    fn finish(&mut self, _out: &mut Vec<ParseEvent>) {}
}

/// How the parser named `parser` spells one call, so that `tool_choice` can force it; the
/// parser registry says, per parser.
pub fn call_syntax_for(parser: &str) -> Option<wick_parsers::CallSyntax> {
    wick_parsers::by_name(parser)
        .ok()
        .and_then(|p| p.call_syntax)
}

/// Everything the handlers need from a loaded model.
pub trait Backend: Send + Sync {
    /// The context size in tokens (prompt + completion).
    fn ctx_size(&self) -> usize;
    /// Renders a chat-completions body (its `messages`, `tools`, `tool_choice`) through the
    /// model's chat template, generation prompt included.
    fn render_chat(&self, request: &Value) -> Result<String, Error>;
    /// Tokenizes a prompt; special-token text becomes the special token, BOS per the GGUF.
    fn encode(&self, text: &str) -> Result<Vec<u32>, Error>;
    /// The token ids of a chat request (the template rendered with the generation prompt,
    /// then `suffix`, a forced tool-call opening) and the rendered template without the
    /// suffix, from one render: handlers read its end (an opened `<think>`). A backend that
    /// treats message content as text (never as special tokens) overrides this; the
    /// default is render + encode.
    fn prepare_chat(&self, request: &Value, suffix: &str) -> Result<(Vec<u32>, String), Error> {
        let rendered = self.render_chat(request)?;
        let ids = self.encode(&format!("{rendered}{suffix}"))?;
        Ok((ids, rendered))
    }
    /// The token ids of `prepare_chat`.
    fn encode_chat(&self, request: &Value, suffix: &str) -> Result<Vec<u32>, Error> {
        Ok(self.prepare_chat(request, suffix)?.0)
    }
    /// The fill-in-the-middle prompt for this model and the extra stop ids that end a
    /// middle, or `None` when it has no FIM tokens.
    fn fim_prompt(&self, prefix: &str, suffix: &str) -> Option<(String, Vec<u32>)>;
    /// The name of the tool-call parser in use (`hermes`, `qwen`, …).
    fn parser_name(&self) -> &str;
    /// A fresh parser for one response.
    fn new_parser(&self, tools: &[Tool]) -> Box<dyn CallParser>;
    /// Queues a generation; fails at once when the queue is full or the prompt too long.
    fn submit(&self, request: GenerationRequest) -> Result<EventReceiver, EngineError>;
    fn queue_depth(&self) -> usize;
    fn active(&self) -> usize;
    /// Whether a request submitted now would be queued rather than refused with
    /// `QueueFull`: checked before any work is done for a request. A check, not a
    /// reservation: `submit` still has the last word.
    fn has_room(&self) -> bool {
        true
    }

    /// Prefix-cache, KV memory and cancellation figures for `/metrics`.
    fn engine_stats(&self) -> EngineStats {
        EngineStats::default()
    }
}
