//! `auto`: recognises every construct of every format wherever it starts (contract: "auto
//! — detect the format"): `<tool_call>` (JSON or XML), `<tools>`, `[TOOL_CALLS]`,
//! DeepSeek sections, `<|python_tag|>`, `✿FUNCTION✿`, fences (`json`, `xml`, none) and bare
//! JSON. Markerless JSON follows the `qwen` rule: only with a tools list and declared
//! names. Leading `<think>` is reasoning. A failed construct's content span ends at its
//! closing tag or at the next opening marker of any format.

use crate::markers;
use crate::scan::{Bare, Features, Scanner};
use crate::types::ToolSpec;
use crate::{ParserSpec, ToolParser};

const FEATURES: Features = Features {
    think: true,
    tool_call_tag: true,
    xml: true,
    tools_tag: true,
    mistral: true,
    python_tag: true,
    qwen_function: true,
    deepseek: true,
    bare: Bare::WithTools,
    fence_xml: true,
};

/// The `auto` parser.
pub type AutoParser = Scanner;

fn new(tools: &[ToolSpec]) -> Box<dyn ToolParser> {
    Box::new(AutoParser::new(FEATURES, tools))
}

/// `auto` is the fallback, never what a template calls for.
fn detect(_template: &str) -> Option<&'static str> {
    None
}

/// The registry entry.
pub const SPEC: ParserSpec = ParserSpec {
    name: "auto",
    description: "every format above, detected from the text",
    new,
    detect,
    call_syntax: Some(markers::hermes::CALL),
};
