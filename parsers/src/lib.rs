//! wick-parsers: turns raw model output into OpenAI-style `content`, `reasoning_content`
//! and tool calls, one-shot or streamed.
//!
//! Inputs: text pushed in arbitrary chunks, plus the request's tools list ([`ToolSpec`]).
//! Outputs: [`Event`]s (content and reasoning deltas, tool calls as OpenAI-style deltas,
//! and [`Rejection`]s for constructs that looked like calls but failed), which
//! [`Collector`] merges into a [`ParseResult`].
//!
//! Every parser is one [`ParserSpec`] in [`PARSERS`]; all of them share the scanner in
//! `scan.rs`, configured by the set of constructs the format recognises. The formats and
//! every decision this crate makes are documented in the crate README and atop each
//! format file. This crate knows nothing about models, tokenizers or servers: it depends on
//! serde, serde_json and thiserror only.

#![warn(missing_docs)]

mod collect;
mod cursor;
mod deepseek;
mod detect;
mod fence;
mod hermes;
mod ids;
mod json;
mod llama3_json;
mod markers;
mod mistral;
mod qwen;
mod scan;
mod steps;
mod types;

mod auto;

pub use collect::{Collector, ParseResult};
pub use detect::{detect_parser, Detection};
pub use types::{Construct, Event, Reason, Rejection, ToolCall, ToolSpec};

/// A tool-call parser fed with model output as it is generated.
///
/// Rules (see the contract in the README): every input character ends up in content, in
/// reasoning or in the markup of a recognised call; a failed construct comes back as content
/// verbatim plus one [`Event::Rejected`]; the merged events do not depend on how the input
/// was chunked. `push` emits everything that is already decided and holds back only what
/// may still become markup.
pub trait ToolParser: Send {
    /// Feeds the next piece of output; appends the events it decides to `out`.
    fn push(&mut self, text: &str, out: &mut Vec<Event>);
    /// Signals end of output: decides everything still held back.
    fn finish(&mut self, out: &mut Vec<Event>);
}

/// Evidence that a chat template (or vocabulary) calls for a parser: the marker found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The marker text that was found, e.g. `<tool_call>`.
    pub marker: &'static str,
    /// Where it was found: `"template"` or `"vocabulary"`.
    pub source: &'static str,
}

/// One entry of the parser registry.
pub struct ParserSpec {
    /// The user-facing name (`--tool-parser`, `wick parse --parser`).
    pub name: &'static str,
    /// One line for help output.
    pub description: &'static str,
    /// A fresh streaming parser for one generation, given the request's tools.
    pub new: fn(&[ToolSpec]) -> Box<dyn ToolParser>,
    /// Whether a chat template calls for this parser; only ranks candidates, it never
    /// changes what the parser accepts.
    pub detect: fn(&str) -> Option<&'static str>,
    /// How to write one call that this parser reads, for servers that force a call
    /// (`tool_choice`); `None` when the format has no such spelling.
    pub call_syntax: Option<CallSyntax>,
}

/// One call in a parser's format: `open`, the JSON string of the name, `before_arguments`,
/// the arguments object, then `close`. A server appends `open` (and the name) to the prompt
/// and constrains the rest, so the model can only write a call this parser reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallSyntax {
    /// Text before the name.
    pub open: &'static str,
    /// Text between the name and the arguments object.
    pub before_arguments: &'static str,
    /// Text after the arguments object.
    pub close: &'static str,
}

impl std::fmt::Debug for ParserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParserSpec")
            .field("name", &self.name)
            .finish()
    }
}

/// Every parser, in the order they are listed to users.
pub static PARSERS: &[ParserSpec] = &[
    hermes::SPEC,
    llama3_json::SPEC,
    mistral::SPEC,
    qwen::SPEC,
    deepseek::SPEC,
    auto::SPEC,
];

/// A parser that reads no calls, only a leading `<think>…</think>` block as reasoning
/// (rule 8): for answers without tools from models that think (Qwen3, QwQ, R1 distills).
/// Everything else is content, whitespace included.
pub fn reasoning_only() -> Box<dyn ToolParser> {
    const FEATURES: scan::Features = scan::Features {
        think: true,
        tool_call_tag: false,
        xml: false,
        tools_tag: false,
        mistral: false,
        python_tag: false,
        qwen_function: false,
        deepseek: false,
        bare: scan::Bare::Never,
        fence_xml: false,
    };
    Box::new(scan::Scanner::new(FEATURES, &[]))
}

/// Errors of this crate: only about the request to parse, never about model output
/// (malformed output is content, by contract).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The parser name is not in [`PARSERS`].
    #[error("unknown tool parser '{name}' (known: {known})")]
    UnknownParser {
        /// The name asked for.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// The tools list is not a JSON array of OpenAI tool objects.
    #[error("invalid tools list: {0}")]
    InvalidTools(String),
}

/// The names of all parsers, comma-separated, for error and help messages.
pub fn names() -> String {
    PARSERS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Looks a parser up by name; the error lists the known names.
pub fn by_name(name: &str) -> Result<&'static ParserSpec, Error> {
    PARSERS
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| Error::UnknownParser {
            name: name.to_owned(),
            known: names(),
        })
}

/// One-shot parse: the whole output pushed at once, then finished, events merged.
pub fn parse(name: &str, input: &str, tools: &[ToolSpec]) -> Result<ParseResult, Error> {
    parse_chunked(name, input, tools, 0)
}

/// Streams `input` through the parser `chunk_chars` Unicode scalar values at a time
/// (0 = all at once) and merges the events.
pub fn parse_chunked(
    name: &str,
    input: &str,
    tools: &[ToolSpec],
    chunk_chars: usize,
) -> Result<ParseResult, Error> {
    let spec = by_name(name)?;
    let mut parser = (spec.new)(tools);
    let mut collector = Collector::default();
    let mut events = Vec::new();
    if chunk_chars == 0 {
        parser.push(input, &mut events);
    } else {
        let mut start = 0;
        let mut count = 0;
        for (i, _) in input.char_indices() {
            if count == chunk_chars {
                parser.push(&input[start..i], &mut events);
                collector.extend(events.drain(..));
                start = i;
                count = 0;
            }
            count += 1;
        }
        parser.push(&input[start..], &mut events);
    }
    parser.finish(&mut events);
    collector.extend(events.drain(..));
    Ok(collector.finish())
}

/// What `auto` found in a text that the chosen parser did not read as calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Missed {
    /// Calls `auto` recognised.
    pub auto_calls: usize,
    /// Calls the chosen parser recognised.
    pub parser_calls: usize,
    /// Constructs `auto` saw begin like a call but rejected.
    pub auto_rejections: Vec<Rejection>,
}

/// Does `text` look like tool calls that parser `name` did not read? Runs `name` and `auto`
/// with the same tools and compares: `Some` when `auto` found more calls or rejected a
/// construct. For the server's failure counter and `wick probe`.
pub fn missed_calls(name: &str, text: &str, tools: &[ToolSpec]) -> Result<Option<Missed>, Error> {
    let mine = parse(name, text, tools)?;
    let auto = parse("auto", text, tools)?;
    if auto.tool_calls.len() > mine.tool_calls.len() || !auto.rejections.is_empty() {
        return Ok(Some(Missed {
            auto_calls: auto.tool_calls.len(),
            parser_calls: mine.tool_calls.len(),
            auto_rejections: auto.rejections,
        }));
    }
    Ok(None)
}
