//! `mistral`: `[TOOL_CALLS]`, both tokenizer generations.
//!
//! Wire formats (contract: "mistral — `[TOOL_CALLS]`"):
//! ```text
//! [TOOL_CALLS][{"name": "run_tests", "arguments": {"pattern": "parser"}}]     (v2–v7)
//! [TOOL_CALLS]run_tests[ARGS]{"pattern": "parser"}                            (v11+)
//! [TOOL_CALLS]run_tests[CALL_ID]a1b2c3d4e[ARGS]{"pattern": "parser"}          (v11+, id)
//! [TOOL_CALLS]run_tests{"pattern": "parser"}            ([ARGS] dropped while decoding)
//! ```
//! Construct: the marker, whitespace, then a call list, or a name (letters, digits, `_`,
//! `-`, `.`), optional `[CALL_ID]` + id (kept as the call id), optional `[ARGS]`,
//! whitespace, a JSON object. Text around calls is content. On failure the text from the
//! marker to the next `[TOOL_CALLS]` (or the end) is content. No reasoning, no fences.

use crate::cursor::{Cur, Stop, P};
use crate::json::{self, CallRules, RawCall};
use crate::markers;
use crate::markers::mistral::{ARGS, CALL_ID, TOOL_CALLS};
use crate::scan::{Bare, Features, Scanner};
use crate::types::{Reason, ToolSpec};
use crate::{ParserSpec, ToolParser};

const FEATURES: Features = Features {
    think: false,
    tool_call_tag: false,
    xml: false,
    tools_tag: false,
    mistral: true,
    python_tag: false,
    qwen_function: false,
    deepseek: false,
    bare: Bare::Never,
    fence_xml: false,
};

/// The `mistral` parser.
pub type MistralParser = Scanner;

fn new(tools: &[ToolSpec]) -> Box<dyn ToolParser> {
    Box::new(MistralParser::new(FEATURES, tools))
}

fn detect(template: &str) -> Option<&'static str> {
    template.contains(TOOL_CALLS).then_some(TOOL_CALLS)
}

pub const SPEC: ParserSpec = ParserSpec {
    name: "mistral",
    description: "[TOOL_CALLS][{…}] (v2–v7) and [TOOL_CALLS]name[ARGS]{…} (v11+)",
    new,
    detect,
    call_syntax: Some(markers::mistral::CALL),
};

fn name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// The construct after `[TOOL_CALLS]`.
pub fn after_marker(cur: &mut Cur<'_>) -> P<Vec<RawCall>> {
    cur.ws();
    let first = cur.peek()?;
    if first == '[' {
        let v = cur.json()?;
        if !v.is_array() {
            return Err(Stop::Fail(Reason::NotACall));
        }
        let rules = CallRules {
            args_required: false,
            declared: None,
        };
        return json::calls_from_value(&v, rules).map_err(Stop::Fail);
    }
    if !name_char(first) {
        return Err(Stop::Fail(Reason::Malformed));
    }
    let rest = cur.rest();
    let len = rest
        .char_indices()
        .find(|&(_, c)| !name_char(c))
        .map_or(rest.len(), |(i, _)| i);
    if len == rest.len() {
        return cur.more();
    }
    let name = &rest[..len];
    cur.i += len;
    let mut id = None;
    if cur.try_lit(CALL_ID)? {
        id = Some(cur.until(ARGS)?.trim().to_owned());
        cur.ws();
    } else if cur.try_lit(ARGS)? {
        cur.ws();
    } else if cur.peek()? != '{' {
        return Err(Stop::Fail(Reason::Malformed));
    }
    let arguments = cur.object()?;
    Ok(vec![RawCall {
        name: name.to_owned(),
        arguments,
        id: id.filter(|i| !i.is_empty()),
    }])
}
