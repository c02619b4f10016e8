//! `deepseek`: DeepSeek V3, R1 and V3.1 tool-call sections.
//!
//! Wire formats (contract: "deepseek — V3, R1, V3.1"); markers are single tokens written
//! with U+FF5C `｜` and U+2581 `▁`:
//! ```text
//! V3 / R1:
//! <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>read_file
//! ```json
//! {"path": "a.py"}
//! ```<｜tool▁call▁end｜><｜tool▁calls▁end｜>
//! V3.1:
//! <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>read_file<｜tool▁sep｜>{"path": "a.py"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>
//! ```
//! The section succeeds or fails as a whole; calls inside are separated by whitespace.
//! `function<｜tool▁sep｜>` followed (after whitespace) by `{` is a V3.1 tool named
//! `function`. The section end may be missing when only whitespace follows to the end of
//! output. On failure the text from the section start through the next section end (or up
//! to the next section start, or the end) is content. R1/V3.1 `<think>` is reasoning.

use crate::cursor::{Cur, Stop, P};
use crate::json::RawCall;
use crate::markers::deepseek::{BEGIN, CALL, CALL_END, END, SEP};
use crate::scan::{Bare, Features, Scanner};
use crate::types::{Reason, ToolSpec};
use crate::{ParserSpec, ToolParser};

const FEATURES: Features = Features {
    think: true,
    tool_call_tag: false,
    xml: false,
    tools_tag: false,
    mistral: false,
    python_tag: false,
    qwen_function: false,
    deepseek: true,
    bare: Bare::Never,
    fence_xml: false,
};

/// The `deepseek` parser.
pub type DeepSeekParser = Scanner;

fn new(tools: &[ToolSpec]) -> Box<dyn ToolParser> {
    Box::new(DeepSeekParser::new(FEATURES, tools))
}

fn detect(template: &str) -> Option<&'static str> {
    template.contains(BEGIN).then_some(BEGIN)
}

pub const SPEC: ParserSpec = ParserSpec {
    name: "deepseek",
    description: "DeepSeek V3/R1/V3.1 <｜tool▁calls▁begin｜> sections, R1 <think> reasoning",
    new,
    detect,
    call_syntax: None,
};

/// The section after its begin marker.
pub fn after_marker(cur: &mut Cur<'_>) -> P<Vec<RawCall>> {
    let mut calls = Vec::new();
    loop {
        cur.ws();
        cur.lit(CALL)?;
        calls.push(call(cur)?);
        cur.ws();
        if cur.at_end() {
            return match cur.eof {
                true => Ok(calls),
                false => Err(Stop::More),
            };
        }
        if cur.try_lit(END)? {
            return Ok(calls);
        }
    }
}

/// One call after `<｜tool▁call▁begin｜>`, through `<｜tool▁call▁end｜>`.
fn call(cur: &mut Cur<'_>) -> P<RawCall> {
    let head = cur.until(SEP)?;
    let v3 = head.trim() == "function" && {
        let save = cur.i;
        cur.ws();
        let next = cur.peek();
        cur.i = save;
        next? != '{'
    };
    let name = if v3 { cur.until("\n")? } else { head }.trim();
    if name.is_empty() || name.contains('\n') {
        return Err(Stop::Fail(Reason::Malformed));
    }
    if v3 {
        cur.lit("```json")?;
    }
    cur.ws();
    let arguments = cur.object()?;
    cur.ws();
    if v3 {
        cur.lit("```")?;
        cur.ws();
    }
    cur.lit(CALL_END)?;
    Ok(RawCall {
        name: name.to_owned(),
        arguments,
        id: None,
    })
}
