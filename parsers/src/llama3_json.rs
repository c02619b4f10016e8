//! `llama3_json`: Llama 3.1/3.2/3.3 JSON tool calls.
//!
//! Wire formats (contract: "llama3_json — Llama 3.1/3.2/3.3 JSON"):
//! ```text
//! {"name": "search_code", "parameters": {"query": "fn main"}}
//! <|python_tag|>{"name": "search_code", "parameters": {"query": "fn main"}}
//! {"name": "a", "parameters": {}}; {"name": "b", "parameters": {"x": 1}}
//! ```
//! Bare JSON is the native format: scanned always, names validated only when a tools list
//! is given; `arguments` is accepted for `parameters`, extra keys (`"type"`) ignored.
//! Calls separated by whitespace and one `;` or `,` form a run (the separators are markup).
//! `<|python_tag|>` + whitespace + a run of calls: no name validation, arguments optional;
//! on failure the text from the marker to the next `<|python_tag|>` (or the end) is
//! content. Fence-aware (```` ```json ```` / ```` ``` ````). No reasoning.

use crate::cursor::{Cur, Stop, P};
use crate::json::{self, CallRules, RawCall};
use crate::markers;
use crate::markers::llama3_json::PYTHON_TAG;
use crate::scan::{Bare, Features, Scanner};
use crate::types::{Reason, ToolSpec};
use crate::{ParserSpec, ToolParser};

const FEATURES: Features = Features {
    think: false,
    tool_call_tag: false,
    xml: false,
    tools_tag: false,
    mistral: false,
    python_tag: true,
    qwen_function: false,
    deepseek: false,
    bare: Bare::Always,
    fence_xml: false,
};

/// The `llama3_json` parser.
pub type Llama3JsonParser = Scanner;

fn new(tools: &[ToolSpec]) -> Box<dyn ToolParser> {
    Box::new(Llama3JsonParser::new(FEATURES, tools))
}

/// Llama 3.x templates: `<|python_tag|>`, or the JSON-call instruction with `"parameters"`
/// in a header-id template.
fn detect(template: &str) -> Option<&'static str> {
    if template.contains(PYTHON_TAG) {
        return Some(PYTHON_TAG);
    }
    let llama = template.contains("<|start_header_id|>");
    (llama && template.contains("\"parameters\"")).then_some("\"parameters\"")
}

pub const SPEC: ParserSpec = ParserSpec {
    name: "llama3_json",
    description: "Llama 3.x JSON calls, bare or after <|python_tag|>, several separated by ';'",
    new,
    detect,
    call_syntax: Some(markers::llama3_json::CALL),
};

/// The first call after `<|python_tag|>`; the scanner continues the run.
pub fn after_marker(cur: &mut Cur<'_>) -> P<Vec<RawCall>> {
    cur.ws();
    match cur.peek()? {
        '{' | '[' => {}
        _ => return Err(Stop::Fail(Reason::Malformed)),
    }
    let v = cur.json()?;
    let rules = CallRules {
        args_required: false,
        declared: None,
    };
    json::calls_from_value(&v, rules).map_err(Stop::Fail)
}
