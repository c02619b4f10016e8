//! Merges a parser's event stream into one result (what a non-streaming response holds,
//! and what `wick parse` prints). Content and reasoning deltas are concatenated and then
//! trimmed of surrounding ASCII whitespace (space, tab, CR, LF), as the contract says.

use crate::types::{Event, Rejection, ToolCall};
use serde_json::{Map, Value};

/// The merged result of one parse.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParseResult {
    /// Content, trimmed; `None` when nothing remains.
    pub content: Option<String>,
    /// Reasoning, trimmed; `None` when empty.
    pub reasoning_content: Option<String>,
    /// Complete calls in order of appearance.
    pub tool_calls: Vec<ToolCall>,
    /// Constructs that began like calls but failed.
    pub rejections: Vec<Rejection>,
}

impl ParseResult {
    /// The `wick parse` output object: `content`, `reasoning_content` (only when present)
    /// and `tool_calls` with arguments as objects.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert(
            "content".into(),
            self.content.clone().map_or(Value::Null, Value::String),
        );
        if let Some(r) = &self.reasoning_content {
            obj.insert("reasoning_content".into(), Value::String(r.clone()));
        }
        let calls = self
            .tool_calls
            .iter()
            .map(|c| {
                let mut m = Map::new();
                m.insert("name".into(), Value::String(c.name.clone()));
                m.insert("arguments".into(), Value::Object(c.arguments.clone()));
                Value::Object(m)
            })
            .collect();
        obj.insert("tool_calls".into(), Value::Array(calls));
        Value::Object(obj)
    }
}

/// Accumulates events; [`Collector::finish`] gives the merged result.
#[derive(Debug, Default)]
pub struct Collector {
    content: String,
    reasoning: String,
    calls: Vec<ToolCall>,
    rejections: Vec<Rejection>,
}

const TRIM: &[char] = &[' ', '\t', '\r', '\n'];

fn trimmed(s: String) -> Option<String> {
    let t = s.trim_matches(TRIM);
    (!t.is_empty()).then(|| t.to_owned())
}

impl Collector {
    /// Adds one event.
    pub fn add(&mut self, event: Event) {
        match event {
            Event::Content(s) => self.content.push_str(&s),
            Event::Reasoning(s) => self.reasoning.push_str(&s),
            Event::CallStart { id, name, .. } => self.calls.push(ToolCall {
                id,
                name,
                arguments: Map::new(),
            }),
            // The fragments only serve streaming clients; CallEnd carries the parsed value.
            Event::CallArgs { .. } => {}
            Event::CallEnd { arguments, .. } => {
                if let Some(last) = self.calls.last_mut() {
                    last.arguments = arguments;
                }
            }
            Event::Rejected(r) => self.rejections.push(r),
        }
    }

    /// Adds events in order.
    pub fn extend(&mut self, events: impl IntoIterator<Item = Event>) {
        for e in events {
            self.add(e);
        }
    }

    /// The merged result.
    pub fn finish(self) -> ParseResult {
        ParseResult {
            content: trimmed(self.content),
            reasoning_content: trimmed(self.reasoning),
            tool_calls: self.calls,
            rejections: self.rejections,
        }
    }
}
