//! The probe's check while serving: after a response with tools declared, did the active
//! parser miss calls that are plainly there?
//!
//! Input: the generated text, the request's tools and the active parser's name. Output:
//! `Some(Mismatch)` naming the parser that would read the calls (or none, when the text is
//! only JSON naming a declared tool), else `None`. The server logs a warning, counts it in
//! `/metrics` and, with `--tool-parser-fallback`, answers with `mismatch.calls` instead.
//! Runs the other parsers only when the active one found no call, so the common path costs
//! one parse. Must not depend on the server.

use super::score::{Call, Parsed};
use serde_json::Value;
use wick_parsers::ToolSpec;

/// Calls the active parser did not read.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// The first parser (registry order, `auto` last) that reads declared calls from the
    /// text; `None` when no parser does but the text holds JSON naming a declared tool.
    pub would_parse_with: Option<&'static str>,
    /// The calls that parser read (or the JSON objects found), with arguments as objects.
    pub calls: Vec<Call>,
    /// The content that parser leaves (what a `--tool-parser-fallback` response carries
    /// beside the calls); the whole text when `would_parse_with` is `None`.
    pub content: Option<String>,
}

/// How many `{` positions the bare-JSON fallback tries: bounds the work on long outputs.
const MAX_JSON_STARTS: usize = 64;

/// Whether `text`, for which `active_parser` found no tool call, holds calls anyway.
/// Returns `None` when no tools are declared or when the active parser read a call.
pub fn mismatch(text: &str, tools: &[ToolSpec], active_parser: &str) -> Option<Mismatch> {
    if tools.is_empty() || text.trim().is_empty() {
        return None;
    }
    let found = |name: &str| -> Option<Parsed> { super::parsing::parse(name, text, tools).ok() };
    if found(active_parser).is_some_and(|p| !p.calls.is_empty()) {
        return None;
    }
    let declared = |c: &Call| tools.iter().any(|t| t.name == c.name);
    let mut order: Vec<&'static str> = super::parsing::names();
    // `auto` reads everything the others do: ask it last so the warning names the format.
    order.sort_by_key(|n| *n == "auto");
    for name in order.into_iter().filter(|n| *n != active_parser) {
        if let Some(p) = found(name) {
            if p.calls.iter().any(declared) {
                return Some(Mismatch {
                    would_parse_with: Some(name),
                    calls: p.calls,
                    content: p.content,
                });
            }
        }
    }
    let calls = json_naming_declared_tool(text, tools);
    (!calls.is_empty()).then(|| Mismatch {
        would_parse_with: None,
        calls,
        content: Some(text.trim().to_owned()),
    })
}

/// JSON objects in `text` whose `"name"` is a declared tool, with their arguments (under
/// `arguments` or `parameters`, `{}` when absent; a string holding an object is decoded).
fn json_naming_declared_tool(text: &str, tools: &[ToolSpec]) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut next = 0;
    for (tried, (i, _)) in text.match_indices('{').enumerate() {
        if tried == MAX_JSON_STARTS {
            break;
        }
        if i < next {
            continue; // inside an object already read
        }
        let mut stream = serde_json::Deserializer::from_str(&text[i..]).into_iter::<Value>();
        let Some(Ok(Value::Object(obj))) = stream.next() else {
            continue;
        };
        next = i + stream.byte_offset();
        let Some(name) = obj.get("name").and_then(Value::as_str) else {
            continue;
        };
        if !tools.iter().any(|t| t.name == name) {
            continue;
        }
        let arguments = match obj.get("arguments").or_else(|| obj.get("parameters")) {
            Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
            Some(v) => v.clone(),
            None => Value::Object(Default::default()),
        };
        calls.push(Call {
            name: name.to_owned(),
            arguments,
        });
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tools() -> Vec<ToolSpec> {
        super::super::parsing::tool_specs(&super::super::cases::tools()).expect("valid tools")
    }

    #[test]
    fn names_the_parser_that_reads_a_missed_call() {
        let tools = tools();
        let fenced = "```json\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.rs\"}}\n```";
        let m = mismatch(fenced, &tools, "hermes").expect("hermes misses a fenced call");
        assert!(
            m.would_parse_with
                .is_some_and(|p| p != "hermes" && p != "auto"),
            "{m:?}"
        );
        assert_eq!(m.calls.len(), 1);
        assert_eq!(m.calls[0].name, "read_file");
        assert_eq!(m.calls[0].arguments, json!({"path": "a.rs"}));
        assert_eq!(m.content, None, "the fence is markup of the call");

        let tagged = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>";
        let m = mismatch(tagged, &tools, "mistral").expect("mistral misses a hermes call");
        assert_eq!(m.would_parse_with, Some("hermes"));
    }

    #[test]
    fn silent_when_the_active_parser_reads_the_call_or_there_is_none() {
        let tools = tools();
        let tagged = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>";
        assert_eq!(mismatch(tagged, &tools, "hermes"), None);
        assert_eq!(
            mismatch(
                "HTTP stands for HyperText Transfer Protocol.",
                &tools,
                "hermes"
            ),
            None
        );
        // Tools not declared: nothing to miss.
        assert_eq!(mismatch(tagged, &[], "mistral"), None);
        // JSON that names no declared tool is not a call.
        assert_eq!(
            mismatch(
                "{\"name\": \"delete_repo\", \"arguments\": {}}",
                &tools,
                "hermes"
            ),
            None
        );
    }

    #[test]
    fn finds_json_naming_a_declared_tool_when_no_parser_does() {
        let tools = tools();
        let calls = json_naming_declared_tool(
            "I would call {\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Rome\\\"}\"} now",
            &tools,
        );
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].arguments, json!({"city": "Rome"}));
        assert!(json_naming_declared_tool("{\"name\": \"nope\"} {broken", &tools).is_empty());
    }
}
