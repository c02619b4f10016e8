//! Token logprobs in OpenAI's two wire shapes: Chat Completions'
//! `{"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}], "refusal": null}`
//! and legacy Completions' `{"tokens", "token_logprobs", "top_logprobs", "text_offset"}`.
//! Input: the engine's `TokenLogprob`s. Output: JSON values.
//! Must not depend on a particular endpoint's types.

use crate::engine::TokenLogprob;
use serde_json::{json, Map, Value};

/// A token's text as OpenAI gives it: its bytes as UTF-8, lossily where a token holds
/// part of a character (`bytes` then has the exact bytes).
fn token_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One chat `content` entry.
pub fn chat_entry(t: &TokenLogprob) -> Value {
    let top: Vec<Value> = t
        .top
        .iter()
        .map(|a| json!({"token": token_text(&a.bytes), "logprob": a.logprob, "bytes": a.bytes}))
        .collect();
    json!({
        "token": token_text(&t.bytes),
        "logprob": t.logprob,
        "bytes": t.bytes,
        "top_logprobs": top,
    })
}

/// A chat choice's `logprobs` object.
pub fn chat_object(content: Vec<Value>) -> Value {
    json!({"content": content, "refusal": null})
}

/// Legacy completions' logprobs, built token by token; `text_offset` counts characters
/// from the start of the generated text (as vLLM without `echo`).
#[derive(Debug, Default)]
pub struct CompletionLogprobs {
    tokens: Vec<Value>,
    token_logprobs: Vec<Value>,
    top_logprobs: Vec<Value>,
    text_offset: Vec<Value>,
    /// Characters of the tokens so far.
    offset: usize,
}

impl CompletionLogprobs {
    pub fn push(&mut self, t: &TokenLogprob) {
        let text = token_text(&t.bytes);
        // As OpenAI: the alternatives, and the chosen token even when it is not among them.
        let mut top = Map::new();
        for a in &t.top {
            top.entry(token_text(&a.bytes))
                .or_insert_with(|| json!(a.logprob));
        }
        top.entry(text.clone()).or_insert_with(|| json!(t.logprob));
        self.text_offset.push(json!(self.offset));
        self.offset += text.chars().count();
        self.tokens.push(json!(text));
        self.token_logprobs.push(json!(t.logprob));
        self.top_logprobs.push(Value::Object(top));
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The object for the tokens pushed since the last call (a stream chunk's, or the
    /// whole response's); the offset carries on.
    pub fn take(&mut self) -> Value {
        json!({
            "tokens": std::mem::take(&mut self.tokens),
            "token_logprobs": std::mem::take(&mut self.token_logprobs),
            "top_logprobs": std::mem::take(&mut self.top_logprobs),
            "text_offset": std::mem::take(&mut self.text_offset),
        })
    }
}
