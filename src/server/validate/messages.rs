//! `messages` of a chat request: every field at every depth is one the template reads or
//! one refused with a 400 naming it (`messages[2].foo`), and content is required where
//! OpenAI requires it.

use super::{invalid_value, reject_unknown, unsupported};
use crate::Error;
use serde_json::Value;

/// At most this many messages per request (the template walks them all, some templates
/// more than once).
pub const MAX_MESSAGES: usize = 2048;
const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool"];
/// Fields of a message that the template receives. `reasoning_content` is what some
/// servers return beside `content` and clients send back; templates that know it render it.
const MESSAGE_FIELDS: &[&str] = &[
    "role",
    "content",
    "name",
    "tool_calls",
    "tool_call_id",
    "refusal",
    "reasoning_content",
];
/// `index` appears when a client rebuilt the call from stream deltas and sends it back.
const TOOL_CALL_FIELDS: &[&str] = &["id", "type", "function", "index"];
const FUNCTION_FIELDS: &[&str] = &["name", "arguments"];
const TEXT_PART_FIELDS: &[&str] = &["type", "text"];

fn missing(param: &str, message: impl Into<String>) -> Error {
    Error::invalid(message, Some(param), "missing_required_parameter")
}

fn wrong_type(param: &str, message: impl Into<String>) -> Error {
    Error::invalid(message, Some(param), "invalid_type")
}

fn check_content(param: &str, content: &Value) -> Result<(), Error> {
    match content {
        Value::String(_) => Ok(()),
        Value::Array(parts) => {
            for (j, p) in parts.iter().enumerate() {
                let part = format!("{param}[{j}]");
                let obj = p
                    .as_object()
                    .ok_or_else(|| wrong_type(&part, "each content part must be an object"))?;
                let kind = obj.get("type").and_then(Value::as_str);
                if kind != Some("text") || !obj.get("text").is_some_and(Value::is_string) {
                    return Err(unsupported(
                        &part,
                        "only text content parts ({\"type\":\"text\",\"text\":…}) are supported",
                    ));
                }
                reject_unknown(&part, obj, TEXT_PART_FIELDS)?;
            }
            Ok(())
        }
        _ => Err(wrong_type(
            param,
            format!("{param} must be a string or a list of text parts"),
        )),
    }
}

fn check_tool_calls(param: &str, calls: &Value) -> Result<(), Error> {
    let list = calls
        .as_array()
        .ok_or_else(|| wrong_type(param, "tool_calls must be a list"))?;
    for (j, c) in list.iter().enumerate() {
        let call_param = format!("{param}[{j}]");
        let call = c
            .as_object()
            .ok_or_else(|| wrong_type(&call_param, "each tool call must be an object"))?;
        // `{"name","arguments"}` without the `function` wrapper is read too.
        let (f, f_param) = match call.get("function") {
            Some(f) => {
                reject_unknown(&call_param, call, TOOL_CALL_FIELDS)?;
                let f = f.as_object().ok_or_else(|| {
                    wrong_type(&call_param, "a tool call's 'function' must be an object")
                })?;
                (f, format!("{call_param}.function"))
            }
            None => {
                let mut fields = TOOL_CALL_FIELDS.to_vec();
                fields.extend_from_slice(FUNCTION_FIELDS);
                reject_unknown(&call_param, call, &fields)?;
                (call, call_param.clone())
            }
        };
        reject_unknown(&f_param, f, FUNCTION_FIELDS)?;
        if f.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(wrong_type(param, "every tool call needs a function name"));
        }
        match f.get("arguments") {
            None | Some(Value::String(_)) | Some(Value::Object(_)) => {}
            Some(_) => {
                return Err(wrong_type(
                    param,
                    "tool call arguments must be a JSON string or object",
                ))
            }
        }
    }
    Ok(())
}

/// One message: its role, its fields, and content where the role needs it.
fn check_message(i: usize, m: &Value) -> Result<(), Error> {
    let param = format!("messages[{i}]");
    let obj = m
        .as_object()
        .ok_or_else(|| wrong_type(&param, "each message must be an object"))?;
    let role_param = format!("{param}.role");
    let role = obj
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| missing(&role_param, "each message needs a string 'role'"))?;
    if !ROLES.contains(&role) {
        return Err(invalid_value(
            &role_param,
            format!("unknown role '{role}' (expected one of {ROLES:?})"),
        ));
    }
    reject_unknown(&param, obj, MESSAGE_FIELDS)?;
    let content_param = format!("{param}.content");
    let has_calls = match obj.get("tool_calls").filter(|v| !v.is_null()) {
        Some(calls) => {
            let calls_param = format!("{param}.tool_calls");
            if role != "assistant" {
                return Err(invalid_value(
                    &calls_param,
                    "only assistant messages carry tool_calls",
                ));
            }
            check_tool_calls(&calls_param, calls)?;
            calls.as_array().is_some_and(|c| !c.is_empty())
        }
        None => false,
    };
    let refusal = obj.get("refusal").filter(|v| !v.is_null());
    if let Some(r) = refusal {
        let p = format!("{param}.refusal");
        if role != "assistant" || !r.is_string() {
            return Err(invalid_value(
                &p,
                "refusal is a string of assistant messages",
            ));
        }
    }
    match obj.get("content").filter(|v| !v.is_null()) {
        Some(content) => check_content(&content_param, content),
        // As OpenAI: only an assistant message may leave content out, and only when it
        // carries tool calls or a refusal.
        None if role == "assistant" && (has_calls || refusal.is_some()) => Ok(()),
        None => Err(missing(
            &content_param,
            format!(
                "missing required parameter '{content_param}' (a {role} message needs content)"
            ),
        )),
    }
}

pub fn messages(messages: &[Value]) -> Result<(), Error> {
    if messages.is_empty() {
        return Err(invalid_value("messages", "messages must not be empty"));
    }
    if messages.len() > MAX_MESSAGES {
        return Err(invalid_value(
            "messages",
            format!(
                "at most {MAX_MESSAGES} messages are supported, got {}",
                messages.len()
            ),
        ));
    }
    messages
        .iter()
        .enumerate()
        .try_for_each(|(i, m)| check_message(i, m))
}
