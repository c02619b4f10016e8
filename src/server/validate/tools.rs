//! `tools` of a chat request: names the parsers and the forced-call constraint can use,
//! parameter schemas that describe an object, no unknown field at any depth, and caps on
//! what the template renders and the constraint scans per token.

use super::{invalid_value, reject_unknown, unsupported};
use crate::api::Tool;
use crate::Error;
use serde_json::Value;
use std::collections::HashSet;

/// At most this many tools per request (OpenAI's limit).
pub const MAX_TOOLS: usize = 128;
/// At most this many bytes of tool descriptions and parameter schemas (as JSON) in all.
pub const MAX_TOOLS_BYTES: usize = 256 * 1024;
/// Parameter schemas nest at most this deep (objects and arrays).
pub const MAX_SCHEMA_DEPTH: usize = 32;

const TOOL_FIELDS: &[&str] = &["type", "function"];
const FUNCTION_FIELDS: &[&str] = &["name", "description", "parameters", "strict"];

fn valid_function_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// How deep `v` nests, counting each object and array level; stops counting past `cap`.
fn depth(v: &Value, cap: usize) -> usize {
    if cap == 0 {
        return 1;
    }
    match v {
        Value::Object(m) => 1 + m.values().map(|x| depth(x, cap - 1)).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(|x| depth(x, cap - 1)).max().unwrap_or(0),
        _ => 0,
    }
}

/// The parameters schema must be a JSON Schema object describing an object.
fn check_schema(param: &str, schema: &Value) -> Result<(), Error> {
    let bad = |m: &str| Error::invalid(m, Some(param), "invalid_function_parameters");
    let obj = schema
        .as_object()
        .ok_or_else(|| bad("function parameters must be a JSON Schema object"))?;
    if depth(schema, MAX_SCHEMA_DEPTH + 1) > MAX_SCHEMA_DEPTH {
        return Err(bad(&format!(
            "function parameters nest deeper than {MAX_SCHEMA_DEPTH} levels"
        )));
    }
    match obj.get("type") {
        None => {}
        Some(Value::String(t)) if t == "object" => {}
        Some(_) => return Err(bad("function parameters must have \"type\": \"object\"")),
    }
    if let Some(p) = obj.get("properties") {
        let props = p
            .as_object()
            .ok_or_else(|| bad("'properties' must be an object"))?;
        if props.values().any(|v| !v.is_object() && !v.is_boolean()) {
            return Err(bad("each property schema must be an object"));
        }
    }
    if let Some(r) = obj.get("required") {
        let ok = r.as_array().is_some_and(|a| a.iter().all(Value::is_string));
        if !ok {
            return Err(bad("'required' must be a list of property names"));
        }
    }
    Ok(())
}

fn check_tool(i: usize, t: &Tool, names: &mut HashSet<String>) -> Result<usize, Error> {
    reject_unknown(&format!("tools[{i}]"), &t.extra, TOOL_FIELDS)?;
    reject_unknown(
        &format!("tools[{i}].function"),
        &t.function.extra,
        FUNCTION_FIELDS,
    )?;
    if t.kind != "function" {
        let p = format!("tools[{i}].type");
        return Err(unsupported(
            &p,
            format!("tool type '{}' is not supported (only 'function')", t.kind),
        ));
    }
    let name = &t.function.name;
    let name_param = format!("tools[{i}].function.name");
    if !valid_function_name(name) {
        return Err(invalid_value(
            &name_param,
            format!(
                "invalid function name '{name}': 1-64 characters of a-z, A-Z, 0-9, '_', '-', '.'"
            ),
        ));
    }
    if !names.insert(name.clone()) {
        return Err(invalid_value(
            &name_param,
            format!("function '{name}' is declared twice"),
        ));
    }
    let mut bytes = t.function.description.as_ref().map_or(0, String::len);
    if let Some(schema) = &t.function.parameters {
        check_schema(&format!("tools[{i}].function.parameters"), schema)?;
        bytes += serde_json::to_string(schema).map_or(0, |s| s.len());
    }
    Ok(bytes)
}

pub fn tools(tools: &[Tool]) -> Result<(), Error> {
    if tools.len() > MAX_TOOLS {
        return Err(invalid_value(
            "tools",
            format!(
                "at most {MAX_TOOLS} tools are supported, got {}",
                tools.len()
            ),
        ));
    }
    let mut names = HashSet::new();
    let mut bytes = 0;
    for (i, t) in tools.iter().enumerate() {
        bytes += check_tool(i, t, &mut names)?;
        if bytes > MAX_TOOLS_BYTES {
            return Err(invalid_value(
                "tools",
                format!(
                    "tool descriptions and parameter schemas are limited to {MAX_TOOLS_BYTES} bytes in all"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn measures_nesting_depth() {
        assert_eq!(depth(&json!(1), 10), 0);
        assert_eq!(depth(&json!({"a": [1]}), 10), 2);
        let mut deep = json!({});
        for _ in 0..100 {
            deep = json!({ "p": deep });
        }
        assert_eq!(depth(&deep, 5), 6);
    }
}
