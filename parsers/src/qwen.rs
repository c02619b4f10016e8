//! `qwen`: every format the Qwen families emit.
//!
//! Wire formats (contract: "qwen — every format the Qwen families emit"):
//! 1. Hermes tags, exactly as `hermes`: `<tool_call>{"name": …, "arguments": …}</tool_call>`.
//! 2. The same payload in `<tools>…</tools>` (Qwen2.5-Coder follows it when prompted so).
//! 3. Qwen3-Coder XML inside `<tool_call>`:
//!    ```text
//!    <tool_call>
//!    <function=write_file>
//!    <parameter=path>
//!    notes.md
//!    </parameter>
//!    </function>
//!    </tool_call>
//!    ```
//!    A value runs to the first of `</parameter>`, `<parameter=` or `</function>` (so a
//!    missing `</parameter>` is tolerated); one leading and one trailing `\n` are removed,
//!    the rest is verbatim. Values are typed from the declared tool's JSON Schema
//!    (`integer`, `number`, `boolean` any case, `object`/`array` strict JSON, `null` →
//!    null for typed parameters); anything that does not convert stays a string. A type
//!    list (`["integer", "null"]`) is tried in order.
//! 4. Qwen-Agent: `✿FUNCTION✿: name` (rest of the line, trimmed), whitespace,
//!    `✿ARGS✿: {json object}`; the construct ends with the object.
//! 5. Bare JSON and ```` ```json ````/```` ``` ````/```` ```xml ```` fences, only with a
//!    tools list and declared names (small Qwen2.5-Coder models answer this way).
//!
//! A leading `<think>` block is reasoning.

use crate::cursor::{Cur, Stop, P};
use crate::json::RawCall;
use crate::markers::qwen::{
    ARGS, FUNCTION, XML_FUNCTION, XML_FUNCTION_END, XML_PARAM, XML_PARAM_END,
};
use crate::scan::{Bare, Features, Scanner};
use crate::types::{Reason, ToolSpec};
use crate::{markers, ParserSpec, ToolParser};
use serde_json::{Map, Value};

const FEATURES: Features = Features {
    think: true,
    tool_call_tag: true,
    xml: true,
    tools_tag: true,
    mistral: false,
    python_tag: false,
    qwen_function: true,
    deepseek: false,
    bare: Bare::WithTools,
    fence_xml: true,
};

/// The `qwen` parser.
pub type QwenParser = Scanner;

fn new(tools: &[ToolSpec]) -> Box<dyn ToolParser> {
    Box::new(QwenParser::new(FEATURES, tools))
}

/// Qwen templates: Qwen3-Coder's `<function=` XML, or `<tool_call>` with Qwen's
/// "# Tools" header (Qwen2.5, Qwen2.5-Coder, Qwen3), or `✿FUNCTION✿`.
pub fn detect(template: &str) -> Option<&'static str> {
    if template.contains(XML_FUNCTION) && template.contains(XML_PARAM) {
        return Some(XML_FUNCTION);
    }
    if template.contains(FUNCTION) {
        return Some(FUNCTION);
    }
    if template.contains(markers::hermes::TOOL_CALL) && template.contains("# Tools") {
        return Some("# Tools");
    }
    None
}

pub const SPEC: ParserSpec = ParserSpec {
    name: "qwen",
    description: "Qwen: <tool_call> JSON or Qwen3-Coder XML, <tools>, ✿FUNCTION✿, bare/fenced JSON",
    new,
    detect,
    call_syntax: Some(markers::hermes::CALL),
};

/// `<function=NAME>` parameters `</function>` (the cursor is at `<function=`).
pub fn xml_function(cur: &mut Cur<'_>, tools: &[ToolSpec]) -> P<RawCall> {
    cur.lit(XML_FUNCTION)?;
    let name = cur.until(">")?.trim();
    if name.is_empty() || name.contains('\n') {
        return Err(Stop::Fail(Reason::Malformed));
    }
    let tool = tools.iter().find(|t| t.name == name);
    let mut arguments = Map::new();
    loop {
        cur.ws();
        if cur.try_lit(XML_PARAM)? {
            let param = cur.until(">")?.trim();
            let value = param_value(cur)?;
            arguments.insert(param.to_owned(), typed(value, tool, param));
        } else if cur.try_lit(XML_FUNCTION_END)? {
            break;
        } else if cur.at_end() {
            return cur.more();
        } else {
            return Err(Stop::Fail(Reason::Malformed));
        }
    }
    Ok(RawCall {
        name: name.to_owned(),
        arguments,
        id: None,
    })
}

/// A parameter value: up to the first `</parameter>` (consumed), `<parameter=` or
/// `</function>` (left for the caller); one leading and one trailing newline removed.
fn param_value<'a>(cur: &mut Cur<'a>) -> P<&'a str> {
    let rest = cur.rest();
    let ends = [XML_PARAM_END, XML_PARAM, XML_FUNCTION_END];
    let Some((at, which)) = ends
        .iter()
        .enumerate()
        .filter_map(|(k, e)| rest.find(e).map(|at| (at, k)))
        .min()
    else {
        return cur.more();
    };
    cur.i += at;
    if which == 0 {
        cur.i += XML_PARAM_END.len();
    }
    let v = &rest[..at];
    let v = v.strip_prefix('\n').unwrap_or(v);
    Ok(v.strip_suffix('\n').unwrap_or(v))
}

/// Converts an XML value by the declared schema type; a string when undeclared or when
/// it does not convert.
fn typed(raw: &str, tool: Option<&ToolSpec>, param: &str) -> Value {
    let types: Vec<&str> = match tool.and_then(|t| t.param_type(param)) {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let t = raw.trim();
    if t == "null" && types.iter().any(|ty| *ty != "string") {
        return Value::Null;
    }
    for ty in types {
        let converted = match ty {
            "string" => return Value::String(raw.to_owned()),
            "integer" => integer(t),
            "number" => serde_json::from_str::<Value>(t)
                .ok()
                .filter(Value::is_number),
            "boolean" => {
                if t.eq_ignore_ascii_case("true") {
                    Some(Value::Bool(true))
                } else if t.eq_ignore_ascii_case("false") {
                    Some(Value::Bool(false))
                } else {
                    None
                }
            }
            "object" => serde_json::from_str::<Value>(t)
                .ok()
                .filter(Value::is_object),
            "array" => serde_json::from_str::<Value>(t)
                .ok()
                .filter(Value::is_array),
            _ => None,
        };
        if let Some(v) = converted {
            return v;
        }
    }
    Value::String(raw.to_owned())
}

fn integer(t: &str) -> Option<Value> {
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    serde_json::from_str::<Value>(t)
        .ok()
        .filter(Value::is_number)
}

/// `✿FUNCTION✿` construct after its marker: `: name` newline, `✿ARGS✿: {…}`.
pub fn function_after_marker(cur: &mut Cur<'_>) -> P<Vec<RawCall>> {
    skip_spaces(cur);
    cur.lit(":")?;
    let name = cur.until("\n")?.trim();
    if name.is_empty() {
        return Err(Stop::Fail(Reason::Malformed));
    }
    cur.ws();
    cur.lit(ARGS)?;
    skip_spaces(cur);
    cur.lit(":")?;
    cur.ws();
    let arguments = cur.object()?;
    Ok(vec![RawCall {
        name: name.to_owned(),
        arguments,
        id: None,
    }])
}

fn skip_spaces(cur: &mut Cur<'_>) {
    let n = cur.rest().bytes().take_while(|&b| b == b' ').count();
    cur.i += n;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_xml_values_from_the_schema() {
        let tool = ToolSpec {
            name: "f".into(),
            parameters: json!({"properties": {
                "n": {"type": "integer"}, "x": {"type": "number"}, "b": {"type": "boolean"},
                "o": {"type": "object"}, "s": {"type": "string"}, "m": {"type": ["integer", "null"]}
            }}),
        };
        let t = Some(&tool);
        assert_eq!(typed(" 12 ", t, "n"), json!(12));
        assert_eq!(typed("1.5", t, "n"), json!("1.5"));
        assert_eq!(typed("-2.5e3", t, "x"), json!(-2500.0));
        assert_eq!(typed("TRUE", t, "b"), json!(true));
        assert_eq!(typed("yes", t, "b"), json!("yes"));
        assert_eq!(typed("{\"a\": 1}", t, "o"), json!({"a": 1}));
        assert_eq!(typed("null", t, "m"), json!(null));
        assert_eq!(typed("null", t, "s"), json!("null"));
        assert_eq!(typed("7", t, "undeclared"), json!("7"));
        assert_eq!(typed("7", None, "n"), json!("7"));
    }
}
