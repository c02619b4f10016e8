//! Reasoning: models that think (Qwen3, QwQ, DeepSeek-R1 distills) write
//! `<think>…</think>` before the answer. With `--reasoning-format auto` (the default) that
//! block is reasoning, never content: `reasoning_content` on Chat Completions (streamed as
//! its own deltas), `thinking` blocks on Messages, reasoning items on Responses. The tool
//! parsers already read a leading `<think>` block (parser contract rule 8); answers without
//! tools go through `wick_parsers::reasoning_only`, which reads only that block. When the
//! template's generation prompt already opened the block (R1 distills, QwQ), the parser
//! is fed the `<think>` the model will not write. `--reasoning-format none` keeps the raw
//! text in content.
//! Must not depend on axum.

use super::backend::{Backend, CallParser, ParseEvent, PlainText};
use super::validate::{ChatPlan, ToolMode};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReasoningFormat {
    /// `<think>` blocks are reasoning.
    #[default]
    Auto,
    /// The raw text, `<think>` tags included, is content.
    None,
}

impl std::str::FromStr for ReasoningFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" | "deepseek" => Ok(ReasoningFormat::Auto),
            "none" => Ok(ReasoningFormat::None),
            other => Err(format!(
                "unknown reasoning format '{other}' (expected auto or none)"
            )),
        }
    }
}

/// The parser for one answer, and the text to feed it before the model's output.
pub fn parser_for(
    backend: &Arc<dyn Backend>,
    plan: &ChatPlan,
    format: ReasoningFormat,
    prompt: &str,
) -> (Box<dyn CallParser>, &'static str) {
    let with_tools = plan.tool_mode != ToolMode::Off;
    match (format, with_tools) {
        (ReasoningFormat::None, false) => (Box::new(PlainText), ""),
        (ReasoningFormat::None, true) => (
            Box::new(RawThink {
                inner: backend.new_parser(&plan.tools),
                open: false,
            }),
            "",
        ),
        (ReasoningFormat::Auto, tools) => {
            let parser: Box<dyn CallParser> = if tools {
                backend.new_parser(&plan.tools)
            } else {
                Box::new(ReasoningOnly {
                    inner: wick_parsers::reasoning_only(),
                    events: Vec::new(),
                })
            };
            (parser, if opens_think(prompt) { "<think>" } else { "" })
        }
    }
}

/// Whether the rendered prompt ends inside an opened `<think>` block.
pub fn opens_think(prompt: &str) -> bool {
    prompt.trim_end().ends_with("<think>")
}

/// `wick_parsers::reasoning_only` in the server's terms.
struct ReasoningOnly {
    inner: Box<dyn wick_parsers::ToolParser>,
    events: Vec<wick_parsers::Event>,
}

impl ReasoningOnly {
    fn drain(&mut self, out: &mut Vec<ParseEvent>) {
        use wick_parsers::Event as P;
        for ev in self.events.drain(..) {
            match ev {
                P::Content(t) => out.push(ParseEvent::Content(t)),
                P::Reasoning(t) => out.push(ParseEvent::Reasoning(t)),
                P::Rejected(r) => out.push(ParseEvent::Rejected {
                    reason: r.to_string(),
                }),
                // It reads no calls.
                P::CallStart { .. } | P::CallArgs { .. } | P::CallEnd { .. } => {}
            }
        }
    }
}

impl CallParser for ReasoningOnly {
    fn push(&mut self, text: &str, out: &mut Vec<ParseEvent>) {
        self.inner.push(text, &mut self.events);
        self.drain(out);
    }
    fn finish(&mut self, out: &mut Vec<ParseEvent>) {
        self.inner.finish(&mut self.events);
        self.drain(out);
    }
}

/// `--reasoning-format none` with tools: calls are still read, reasoning goes back into
/// content between its tags.
struct RawThink {
    inner: Box<dyn CallParser>,
    open: bool,
}

impl RawThink {
    fn map(&mut self, start: usize, out: &mut Vec<ParseEvent>) {
        let events: Vec<ParseEvent> = out.drain(start..).collect();
        for ev in events {
            match ev {
                ParseEvent::Reasoning(t) => {
                    if !self.open {
                        self.open = true;
                        out.push(ParseEvent::Content("<think>".into()));
                    }
                    out.push(ParseEvent::Content(t));
                }
                other => {
                    self.close(out);
                    out.push(other);
                }
            }
        }
    }

    fn close(&mut self, out: &mut Vec<ParseEvent>) {
        if self.open {
            self.open = false;
            out.push(ParseEvent::Content("</think>".into()));
        }
    }
}

impl CallParser for RawThink {
    fn push(&mut self, text: &str, out: &mut Vec<ParseEvent>) {
        let start = out.len();
        self.inner.push(text, out);
        self.map(start, out);
    }
    fn finish(&mut self, out: &mut Vec<ParseEvent>) {
        let start = out.len();
        self.inner.finish(out);
        self.map(start, out);
        self.close(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(parser: &mut dyn CallParser, prefix: &str, text: &str) -> (String, String) {
        let mut out = Vec::new();
        parser.push(prefix, &mut out);
        for c in text.chars() {
            parser.push(&c.to_string(), &mut out);
        }
        parser.finish(&mut out);
        let (mut content, mut reasoning) = (String::new(), String::new());
        for e in out {
            match e {
                ParseEvent::Content(t) => content.push_str(&t),
                ParseEvent::Reasoning(t) => reasoning.push_str(&t),
                _ => {}
            }
        }
        (content, reasoning)
    }

    fn reasoning_only() -> ReasoningOnly {
        ReasoningOnly {
            inner: wick_parsers::reasoning_only(),
            events: Vec::new(),
        }
    }

    #[test]
    fn splits_a_leading_think_block_without_tools() {
        let (c, r) = run(
            &mut reasoning_only(),
            "",
            "<think>\nThe user wants 2+2.\n</think>\n\nIt is 4.",
        );
        assert_eq!(r.trim(), "The user wants 2+2.");
        assert_eq!(c.trim(), "It is 4.");
        assert!(!c.contains("think"));
    }

    #[test]
    fn reads_thinking_the_prompt_opened() {
        assert!(opens_think("<|Assistant|><think>\n"));
        assert!(!opens_think("<think>\n\n</think>\n\n"));
        let (c, r) = run(&mut reasoning_only(), "<think>", "\nhmm\n</think>\n\nDone.");
        assert_eq!((c.trim(), r.trim()), ("Done.", "hmm"));
    }

    #[test]
    fn plain_answers_stay_verbatim() {
        let (c, r) = run(
            &mut reasoning_only(),
            "",
            "  indented\ncode <think> later\n",
        );
        assert_eq!(c, "  indented\ncode <think> later\n");
        assert_eq!(r, "");
    }

    #[test]
    fn raw_format_puts_reasoning_back_in_content() {
        let inner = Box::new(ReasoningOnly {
            inner: wick_parsers::reasoning_only(),
            events: Vec::new(),
        });
        let mut raw = RawThink { inner, open: false };
        let (c, r) = run(&mut raw, "", "<think>plan</think>answer");
        assert_eq!(r, "");
        assert!(
            c.starts_with("<think>plan</think>") && c.ends_with("answer"),
            "{c}"
        );
    }
}
