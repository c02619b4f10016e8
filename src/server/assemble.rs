//! Turns generated text into assistant-message deltas: text goes through the tool-call
//! parser, parser events become content, reasoning and OpenAI tool-call deltas (with
//! `call_…` ids). Streaming forwards the deltas; non-streaming folds them with `Message`.
//! One code path for both. Counts parsed calls and rejected call-like text for metrics.
//! Must not depend on axum.

use super::backend::{CallParser, ParseEvent};
use crate::api::{ChatMessage, FunctionCall, ToolCall};
use rand::distributions::Alphanumeric;
use rand::Rng;

/// One piece of an assistant message.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    Content(String),
    Reasoning(String),
    /// A new call: its index among the calls, id and name; arguments follow.
    CallStart {
        index: usize,
        id: String,
        name: String,
    },
    CallArguments {
        index: usize,
        text: String,
    },
}

pub fn call_id() -> String {
    let suffix: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    format!("call_{suffix}")
}

/// The streaming state of one assistant message.
pub struct Assembler {
    parser: Box<dyn CallParser>,
    events: Vec<ParseEvent>,
    /// Calls started so far (the next call's index).
    calls: usize,
    /// `parallel_tool_calls: false`/forced choice: later calls are dropped.
    max_calls: Option<usize>,
    /// Whether the current `CallStart` is being dropped (over `max_calls`).
    skipping: bool,
    rejected: usize,
    dropped: usize,
}

impl Assembler {
    pub fn new(parser: Box<dyn CallParser>, max_calls: Option<usize>) -> Self {
        Assembler {
            parser,
            events: Vec::new(),
            calls: 0,
            max_calls,
            skipping: false,
            rejected: 0,
            dropped: 0,
        }
    }

    /// Feeds generated text; appends the deltas it decides.
    pub fn push(&mut self, text: &str, out: &mut Vec<Delta>) {
        if text.is_empty() {
            return;
        }
        self.parser.push(text, &mut self.events);
        self.drain(out);
    }

    /// End of output: the parser decides what it held back.
    pub fn finish(&mut self, out: &mut Vec<Delta>) {
        self.parser.finish(&mut self.events);
        self.drain(out);
    }

    pub fn calls(&self) -> usize {
        self.calls
    }

    /// Call-like text the parser could not read (kept as content).
    pub fn rejected(&self) -> usize {
        self.rejected
    }

    /// Calls dropped by `parallel_tool_calls: false`.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    fn start_call(
        &mut self,
        id: Option<String>,
        name: String,
        out: &mut Vec<Delta>,
    ) -> Option<usize> {
        if self.max_calls.is_some_and(|m| self.calls >= m) {
            self.dropped += 1;
            tracing::warn!(name = %name, "dropping a tool call past the allowed number of calls");
            return None;
        }
        let index = self.calls;
        self.calls += 1;
        out.push(Delta::CallStart {
            index,
            id: id.unwrap_or_else(call_id),
            name,
        });
        Some(index)
    }

    fn drain(&mut self, out: &mut Vec<Delta>) {
        // Take the buffer so `start_call` can borrow self; put it back to reuse its memory.
        let mut events = std::mem::take(&mut self.events);
        for ev in events.drain(..) {
            match ev {
                ParseEvent::Content(t) if !t.is_empty() => out.push(Delta::Content(t)),
                ParseEvent::Reasoning(t) if !t.is_empty() => out.push(Delta::Reasoning(t)),
                ParseEvent::Content(_) | ParseEvent::Reasoning(_) => {}
                ParseEvent::Call { name, arguments } => {
                    if let Some(index) = self.start_call(None, name, out) {
                        out.push(Delta::CallArguments {
                            index,
                            text: arguments,
                        });
                    }
                }
                ParseEvent::CallStart { id, name } => {
                    self.skipping = self.start_call(id, name, out).is_none();
                }
                ParseEvent::CallArguments(text) => {
                    if !self.skipping && self.calls > 0 {
                        out.push(Delta::CallArguments {
                            index: self.calls - 1,
                            text,
                        });
                    }
                }
                ParseEvent::Rejected { reason } => {
                    self.rejected += 1;
                    tracing::warn!(%reason, "call-like output that no parser could read");
                }
            }
        }
        self.events = events;
    }
}

/// Folds deltas into the final assistant message (non-streaming responses).
#[derive(Debug, Default)]
pub struct Message {
    content: String,
    reasoning: String,
    calls: Vec<ToolCall>,
}

impl Message {
    pub fn apply(&mut self, delta: Delta) {
        match delta {
            Delta::Content(t) => self.content.push_str(&t),
            Delta::Reasoning(t) => self.reasoning.push_str(&t),
            Delta::CallStart { id, name, .. } => self.calls.push(ToolCall {
                index: None,
                id: Some(id),
                kind: Some("function"),
                function: FunctionCall {
                    name: Some(name),
                    arguments: Some(String::new()),
                },
            }),
            Delta::CallArguments { index, text } => {
                if let Some(args) = self
                    .calls
                    .get_mut(index)
                    .and_then(|c| c.function.arguments.as_mut())
                {
                    args.push_str(&text);
                }
            }
        }
    }

    /// Replaces the content (the fallback parser's reading of the same output).
    pub fn set_content(&mut self, content: Option<String>) {
        self.content = content.unwrap_or_default();
    }

    /// The assistant message. With `trim` (a tool parser was used) content follows the
    /// parser contract: trimmed, `null` when empty. Without, content is kept verbatim.
    pub fn into_message(self, trim: bool) -> ChatMessage {
        let content = if trim {
            Some(self.content.trim().to_owned()).filter(|c| !c.is_empty())
        } else if self.content.is_empty() && !self.calls.is_empty() {
            None
        } else {
            Some(self.content)
        };
        let reasoning = Some(self.reasoning.trim().to_owned()).filter(|r| !r.is_empty());
        ChatMessage {
            role: "assistant",
            content,
            reasoning_content: reasoning,
            tool_calls: self.calls,
        }
    }
}

/// The stream form of a delta (`choices[0].delta.tool_calls[0]` etc.).
pub fn delta_tool_call(delta: &Delta) -> Option<ToolCall> {
    match delta {
        Delta::CallStart { index, id, name } => Some(ToolCall {
            index: Some(*index),
            id: Some(id.clone()),
            kind: Some("function"),
            function: FunctionCall {
                name: Some(name.clone()),
                arguments: Some(String::new()),
            },
        }),
        Delta::CallArguments { index, text } => Some(ToolCall {
            index: Some(*index),
            id: None,
            kind: None,
            function: FunctionCall {
                name: None,
                arguments: Some(text.clone()),
            },
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::backend::PlainText;

    /// Emits a call for every line `CALL name args`, streaming args per char otherwise
    /// content; enough to drive the assembler's bookkeeping.
    struct LineCalls {
        buf: String,
        split_args: bool,
    }

    impl CallParser for LineCalls {
        fn push(&mut self, text: &str, out: &mut Vec<ParseEvent>) {
            self.buf.push_str(text);
            while let Some(nl) = self.buf.find('\n') {
                let line: String = self.buf.drain(..=nl).collect();
                let line = line.trim_end();
                match line.strip_prefix("CALL ") {
                    Some(rest) => {
                        let (name, args) = rest.split_once(' ').unwrap_or((rest, "{}"));
                        if self.split_args {
                            out.push(ParseEvent::CallStart {
                                id: None,
                                name: name.into(),
                            });
                            for c in args.chars() {
                                out.push(ParseEvent::CallArguments(c.to_string()));
                            }
                        } else {
                            out.push(ParseEvent::Call {
                                name: name.into(),
                                arguments: args.into(),
                            });
                        }
                    }
                    None if line.starts_with("CALL") => {
                        out.push(ParseEvent::Content(format!("{line}\n")));
                        out.push(ParseEvent::Rejected {
                            reason: "bad".into(),
                        });
                    }
                    None => out.push(ParseEvent::Content(format!("{line}\n"))),
                }
            }
        }
        fn finish(&mut self, out: &mut Vec<ParseEvent>) {
            let rest = std::mem::take(&mut self.buf);
            if !rest.is_empty() {
                out.push(ParseEvent::Content(rest));
            }
        }
    }

    fn run(text: &str, split_args: bool, max_calls: Option<usize>) -> (ChatMessage, usize, usize) {
        let mut a = Assembler::new(
            Box::new(LineCalls {
                buf: String::new(),
                split_args,
            }),
            max_calls,
        );
        let mut deltas = Vec::new();
        for c in text.chars() {
            a.push(&c.to_string(), &mut deltas);
        }
        a.finish(&mut deltas);
        let mut m = Message::default();
        for d in deltas {
            m.apply(d);
        }
        (m.into_message(true), a.rejected(), a.dropped())
    }

    #[test]
    fn folds_calls_and_content_whole_or_in_fragments() {
        let text = "Sure.\nCALL a {\"x\":1}\nCALL b {}\nCALL\ndone";
        for split in [false, true] {
            let (m, rejected, dropped) = run(text, split, None);
            assert_eq!(m.content.as_deref(), Some("Sure.\nCALL\ndone"));
            assert_eq!(m.tool_calls.len(), 2);
            assert_eq!(m.tool_calls[0].function.name.as_deref(), Some("a"));
            assert_eq!(
                m.tool_calls[0].function.arguments.as_deref(),
                Some("{\"x\":1}")
            );
            assert_eq!(m.tool_calls[1].function.arguments.as_deref(), Some("{}"));
            assert!(m.tool_calls[0].id.as_deref().unwrap().starts_with("call_"));
            assert_ne!(m.tool_calls[0].id, m.tool_calls[1].id);
            assert_eq!((rejected, dropped), (1, 0));
        }
    }

    #[test]
    fn keeps_only_the_first_call_when_parallel_calls_are_off() {
        for split in [false, true] {
            let (m, _, dropped) = run("CALL a {\"x\":1}\nCALL b {\"y\":2}\n", split, Some(1));
            assert_eq!(m.tool_calls.len(), 1);
            assert_eq!(
                m.tool_calls[0].function.arguments.as_deref(),
                Some("{\"x\":1}")
            );
            assert_eq!(m.content, None);
            assert_eq!(dropped, 1);
        }
    }

    #[test]
    fn plain_text_keeps_whitespace() {
        let mut a = Assembler::new(Box::new(PlainText), None);
        let mut deltas = Vec::new();
        a.push("  indented\n", &mut deltas);
        a.finish(&mut deltas);
        let mut m = Message::default();
        deltas.into_iter().for_each(|d| m.apply(d));
        assert_eq!(
            m.into_message(false).content.as_deref(),
            Some("  indented\n")
        );
    }
}
