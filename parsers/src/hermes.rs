//! `hermes`: `<tool_call>` JSON blocks (Hermes 2 Pro, Qwen2.5, Qwen3), and the shared
//! parsing of tag blocks that `qwen` and `auto` reuse (`<tool_call>`, `<tools>`).
//!
//! Wire format (contract: "hermes — `<tool_call>` JSON"):
//! ```text
//! Let me look.
//! <tool_call>
//! {"name": "read_file", "arguments": {"path": "src/main.rs"}}
//! </tool_call>
//! ```
//! Construct: `<tool_call>`, whitespace, a JSON call payload (call objects and/or call
//! lists; `arguments` or `parameters`, optional inside tags), whitespace, `</tool_call>`.
//! The closing tag may be missing when only whitespace follows to the end of output
//! (rule 7). Names are never validated. A leading `<think>` block is reasoning (rule 8).
//! On failure the text from `<tool_call>` through the first `</tool_call>` (or up to the
//! next `<tool_call>`, or the end) is content. Not fence-aware.

use crate::cursor::{Cur, Stop, P};
use crate::json::{CallRules, RawCall};
use crate::markers;
use crate::markers::hermes::TOOL_CALL;
use crate::scan::{Bare, Features, Scanner};
use crate::types::ToolSpec;
use crate::{qwen, ParserSpec, ToolParser};

const FEATURES: Features = Features {
    think: true,
    tool_call_tag: true,
    xml: false,
    tools_tag: false,
    mistral: false,
    python_tag: false,
    qwen_function: false,
    deepseek: false,
    bare: Bare::Never,
    fence_xml: false,
};

/// The `hermes` parser.
pub type HermesParser = Scanner;

fn new(tools: &[ToolSpec]) -> Box<dyn ToolParser> {
    Box::new(HermesParser::new(FEATURES, tools))
}

/// Hermes-style templates: `<tool_call>` without Qwen's own markers (those go to `qwen`).
fn detect(template: &str) -> Option<&'static str> {
    let qwen = qwen::detect(template).is_some();
    (!qwen && template.contains(TOOL_CALL)).then_some(TOOL_CALL)
}

pub const SPEC: ParserSpec = ParserSpec {
    name: "hermes",
    description: "<tool_call>{json}</tool_call> (Hermes 2 Pro, Qwen2.5/Qwen3 templates)",
    new,
    detect,
    call_syntax: Some(markers::hermes::CALL),
};

/// The rest of a tag block after its opening tag: whitespace, a JSON call payload (or,
/// with `xml`, one Qwen3-Coder `<function=…>`), whitespace, then `close` (optional at the
/// end of output).
pub fn tag_block(cur: &mut Cur<'_>, close: &str, xml: bool, tools: &[ToolSpec]) -> P<Vec<RawCall>> {
    cur.ws();
    let calls = if xml && cur.peek()? == '<' {
        vec![qwen::xml_function(cur, tools)?]
    } else {
        let rules = CallRules {
            args_required: false,
            declared: None,
        };
        cur.payload(rules)?
    };
    cur.ws();
    if cur.at_end() {
        return match cur.eof {
            true => Ok(calls),
            false => Err(Stop::More),
        };
    }
    cur.lit(close)?;
    Ok(calls)
}
