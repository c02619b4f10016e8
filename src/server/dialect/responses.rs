//! OpenAI Responses ↔ the chat path. `to_chat` turns a Responses request (plus the stored
//! conversation `previous_response_id` names) into the OpenAI chat body the chat path
//! validates and renders: `instructions` → a system message, `message` items → messages,
//! `function_call` items → assistant `tool_calls`, `function_call_output` → `tool`
//! messages, flat function tools → chat tools, `text.format` → `response_format`. The
//! answer's blocks come back as output items (reasoning, message, function_call).
//!
//! The tool rule: only `function` tools run here. Tools of any other type (Codex sends
//! `local_shell`, `web_search`, `custom`…, which its own runtime or OpenAI's servers
//! would execute) are ignored: the model never sees them, the response carries an
//! `x-wick-ignored-tools` header naming their types, and
//! `wick_responses_ignored_tools_total{type}` counts them. A `tool_choice` that names one
//! is a 400. No I/O, no axum.

use crate::api::responses::{Input, ResponsesRequest};
use crate::server::blocks::{Block, BlockKind};
use crate::server::handlers::turn::{EndReason, TurnEnd};
use crate::Error;
use serde_json::{json, Map, Value};

/// Fields clients send that change nothing here; accepted and ignored.
const HARMLESS_FIELDS: &[&str] = &[
    "user",
    "service_tier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "include",
    "safety_identifier",
    "truncation",
    "stream_options",
    "background",
    // Codex CLI (0.171): thread and turn ids for OpenAI's own tracking.
    "client_metadata",
];

fn unsupported(param: &str, message: impl Into<String>) -> Error {
    Error::invalid(message, Some(param), "unsupported_parameter")
}

fn invalid(param: &str, message: impl Into<String>) -> Error {
    Error::invalid(message, Some(param), "invalid_value")
}

pub struct Translated {
    /// The chat body to run.
    pub body: Value,
    /// The conversation without `instructions` (they are not carried to follow-ups).
    pub history: Vec<Value>,
    /// Types of the tools ignored by the rule above, in request order.
    pub ignored_tools: Vec<String>,
    /// The function tools in Responses' flat form (echoed in the response).
    pub tools: Vec<Value>,
}

/// The chat body for a request; `previous` is the stored conversation it continues.
pub fn to_chat(req: &ResponsesRequest, previous: Vec<Value>) -> Result<Translated, Error> {
    if let Some(k) = req
        .extra
        .keys()
        .find(|k| !HARMLESS_FIELDS.contains(&k.as_str()) && k.as_str() != "chat_template_kwargs")
    {
        return Err(unsupported(
            k,
            format!("parameter '{k}' is not supported by this server"),
        ));
    }
    // `include` is harmless except for logprobs, which this dialect does not return.
    if let Some(Value::Array(items)) = req.extra.get("include") {
        if let Some(i) = items
            .iter()
            .filter_map(Value::as_str)
            .find(|i| i.contains("logprobs"))
        {
            return Err(unsupported(
                "include",
                format!("include '{i}' is not supported: use /v1/chat/completions for logprobs"),
            ));
        }
    }
    if req.extra.get("background").and_then(Value::as_bool) == Some(true) {
        return Err(unsupported(
            "background",
            "background responses are not supported",
        ));
    }
    let mut body = Map::new();
    if let Some(m) = &req.model {
        body.insert("model".into(), json!(m));
    }
    // Extension (vLLM, llama.cpp): extra chat-template variables reach the template.
    if let Some(kwargs) = req.extra.get("chat_template_kwargs") {
        body.insert("chat_template_kwargs".into(), kwargs.clone());
    }
    if let Some(n) = req.max_output_tokens {
        // The chat path checks the value and names `max_tokens`; name ours first.
        if n < 1 {
            return Err(invalid(
                "max_output_tokens",
                format!("max_output_tokens must be at least 1, got {n}"),
            ));
        }
        body.insert("max_tokens".into(), json!(n));
    }
    for (k, v) in [("temperature", req.temperature), ("top_p", req.top_p)] {
        if let Some(v) = v {
            body.insert(k.into(), json!(v));
        }
    }
    if let Some(p) = req.parallel_tool_calls {
        body.insert("parallel_tool_calls".into(), json!(p));
    }
    let mut history = previous;
    match &req.input {
        Input::Text(s) => history.push(json!({"role": "user", "content": s})),
        Input::Items(items) => {
            for (i, item) in items.iter().enumerate() {
                input_item(i, item, &mut history)?;
            }
        }
    }
    let mut messages = Vec::new();
    if let Some(ins) = req.instructions.as_deref().filter(|s| !s.is_empty()) {
        messages.push(json!({"role": "system", "content": ins}));
    }
    let format = text_format(req, &mut messages)?;
    messages.extend(history.iter().cloned());
    body.insert("messages".into(), Value::Array(messages));
    let (tools, ignored_tools) = tools(req.tools.as_deref().unwrap_or_default())?;
    if !tools.is_empty() {
        let chat_tools = tools.iter().map(chat_tool).collect();
        body.insert("tools".into(), Value::Array(chat_tools));
    }
    if let Some(choice) = &req.tool_choice {
        body.insert("tool_choice".into(), tool_choice(choice)?);
    }
    if let Some(f) = format {
        body.insert("response_format".into(), f);
    }
    Ok(Translated {
        body: Value::Object(body),
        history,
        ignored_tools,
        tools,
    })
}

fn item_type(item: &Value) -> &str {
    match item.get("type").and_then(Value::as_str) {
        Some(t) => t,
        // The short form `{"role": …, "content": …}` is a message.
        None if item.get("role").is_some() => "message",
        None => "",
    }
}

fn input_item(i: usize, item: &Value, out: &mut Vec<Value>) -> Result<(), Error> {
    let param = format!("input[{i}]");
    let str_field = |name: &str| {
        item.get(name).and_then(Value::as_str).ok_or_else(|| {
            Error::invalid(
                format!("a {} item needs a string '{name}'", item_type(item)),
                Some(&format!("{param}.{name}")),
                "missing_required_parameter",
            )
        })
    };
    match item_type(item) {
        "message" => {
            let role = str_field("role")?;
            let role = match role {
                "user" | "system" | "developer" | "assistant" => role,
                other => {
                    return Err(invalid(
                        &format!("{param}.role"),
                        format!("unknown role '{other}'"),
                    ))
                }
            };
            let text = message_text(&param, item.get("content"))?;
            out.push(json!({"role": role, "content": text}));
        }
        "function_call" => {
            let call = json!({"id": str_field("call_id")?, "type": "function",
                "function": {"name": str_field("name")?, "arguments": str_field("arguments")?}});
            // Consecutive calls (and calls after the assistant's text) are one turn.
            match out.last_mut() {
                Some(last) if last["role"] == "assistant" => {
                    match last.get_mut("tool_calls").and_then(Value::as_array_mut) {
                        Some(calls) => calls.push(call),
                        None => last["tool_calls"] = json!([call]),
                    }
                }
                _ => out.push(json!({"role": "assistant", "content": "", "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let id = str_field("call_id")?;
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                other => message_text(&format!("{param}.output"), other)?,
            };
            out.push(json!({"role": "tool", "tool_call_id": id, "content": output}));
        }
        // Reasoning from an earlier turn: the next turn does not need it.
        "reasoning" => {}
        "" => {
            return Err(Error::invalid(
                "each input item needs a 'type'",
                Some(&format!("{param}.type")),
                "missing_required_parameter",
            ))
        }
        other => {
            return Err(unsupported(
                &format!("{param}.type"),
                format!("input item type '{other}' is not supported (message, function_call, function_call_output, reasoning are)"),
            ))
        }
    }
    Ok(())
}

/// The text of a message's content: a string or a list of text parts.
fn message_text(param: &str, content: Option<&Value>) -> Result<String, Error> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, p) in parts.iter().enumerate() {
                let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
                match (kind, p.get("text").and_then(Value::as_str)) {
                    ("input_text" | "output_text" | "text", Some(t)) => text.push_str(t),
                    ("refusal", _) => {
                        text.push_str(p.get("refusal").and_then(Value::as_str).unwrap_or(""))
                    }
                    (other, _) => {
                        return Err(unsupported(
                            &format!("{param}.content[{j}]"),
                            format!("content part type '{other}' is not supported: this server runs a text-only model (input_text and output_text parts are read)"),
                        ))
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(Error::invalid(
            "content must be a string or a list of parts",
            Some(&format!("{param}.content")),
            "invalid_type",
        )),
    }
}

/// Function tools (flat form) and the types of the others, which are ignored.
fn tools(list: &[Value]) -> Result<(Vec<Value>, Vec<String>), Error> {
    let mut functions = Vec::new();
    let mut ignored = Vec::new();
    for (i, t) in list.iter().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {
                if t.get("name").and_then(Value::as_str).is_none() {
                    return Err(Error::invalid(
                        "a function tool needs a 'name' (Responses tools are flat: {\"type\": \"function\", \"name\": …, \"parameters\": …})",
                        Some(&format!("tools[{i}].name")),
                        "missing_required_parameter",
                    ));
                }
                functions.push(t.clone());
            }
            Some(other) => ignored.push(other.to_owned()),
            None => {
                return Err(Error::invalid(
                    "each tool needs a 'type'",
                    Some(&format!("tools[{i}].type")),
                    "missing_required_parameter",
                ))
            }
        }
    }
    Ok((functions, ignored))
}

fn chat_tool(t: &Value) -> Value {
    let mut f = Map::new();
    for k in ["name", "description", "parameters", "strict"] {
        if let Some(v) = t.get(k).filter(|v| !v.is_null()) {
            f.insert(k.into(), v.clone());
        }
    }
    json!({"type": "function", "function": f})
}

fn tool_choice(choice: &Value) -> Result<Value, Error> {
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" | "none" | "required" => Ok(choice.clone()),
            other => Err(invalid(
                "tool_choice",
                format!(
                    "tool_choice must be 'auto', 'none', 'required' or a function, got '{other}'"
                ),
            )),
        },
        Value::Object(o) => match (o.get("type").and_then(Value::as_str), o.get("name")) {
            (Some("function"), Some(Value::String(name))) => {
                Ok(json!({"type": "function", "function": {"name": name}}))
            }
            (Some(other), _) => Err(unsupported(
                "tool_choice.type",
                format!(
                    "tool_choice type '{other}' is not supported (only function tools run here)"
                ),
            )),
            (None, _) => Err(invalid("tool_choice", "tool_choice needs a 'type'")),
        },
        _ => Err(invalid(
            "tool_choice",
            "tool_choice must be a string or an object",
        )),
    }
}

/// `text.format` → `response_format`. A `json_schema` format is decoded as a JSON object
/// (the constraint enforces JSON syntax, not the schema) with the schema given to the
/// model in a system message.
fn text_format(req: &ResponsesRequest, messages: &mut Vec<Value>) -> Result<Option<Value>, Error> {
    let Some(text) = &req.text else {
        return Ok(None);
    };
    if let Some(k) = text.extra.keys().next() {
        return Err(unsupported(
            &format!("text.{k}"),
            format!("text.{k} is not supported"),
        ));
    }
    let Some(format) = text.format.as_ref().filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let schema = format.get("schema").ok_or_else(|| {
                Error::invalid(
                    "a json_schema format needs a 'schema'",
                    Some("text.format.schema"),
                    "missing_required_parameter",
                )
            })?;
            messages.push(json!({"role": "system", "content": format!(
                "Answer with one JSON object that matches this JSON Schema:\n{schema}")}));
            Ok(Some(json!({"type": "json_object"})))
        }
        other => Err(unsupported(
            "text.format.type",
            format!(
                "text format type '{}' is not supported (text, json_object, json_schema are)",
                other.unwrap_or("")
            ),
        )),
    }
}

/// Item ids of one response: `<prefix>_<response suffix>_<index>`.
pub fn item_id(response_id: &str, kind: &BlockKind, index: usize) -> String {
    let suffix = response_id.strip_prefix("resp_").unwrap_or(response_id);
    let prefix = match kind {
        BlockKind::Thinking => "rs",
        BlockKind::Text => "msg",
        BlockKind::Call { .. } => "fc",
    };
    format!("{prefix}_{suffix}_{index}")
}

/// The output item for a block; `done` gives the finished form, else the empty one a
/// stream announces.
pub fn output_item(response_id: &str, index: usize, block: &Block, done: bool) -> Value {
    let id = item_id(response_id, &block.kind, index);
    let status = if done { "completed" } else { "in_progress" };
    match &block.kind {
        BlockKind::Text => {
            let content = if done {
                json!([output_text(&block.text)])
            } else {
                json!([])
            };
            json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
        }
        BlockKind::Thinking => {
            let content = if done {
                json!([{"type": "reasoning_text", "text": block.text}])
            } else {
                json!([])
            };
            json!({"type": "reasoning", "id": id, "status": status, "summary": [], "content": content})
        }
        BlockKind::Call { id: call_id, name } => json!({"type": "function_call", "id": id,
            "call_id": call_id, "name": name, "arguments": block.text, "status": status}),
    }
}

pub fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// The assistant's answer as a chat message, for the stored conversation.
pub fn assistant_message(blocks: &[Block]) -> Value {
    let mut text = String::new();
    let mut thinking = String::new();
    let mut calls = Vec::new();
    for b in blocks {
        match &b.kind {
            BlockKind::Text => text.push_str(&b.text),
            BlockKind::Thinking => thinking.push_str(&b.text),
            BlockKind::Call { id, name } => calls.push(json!({"id": id, "type": "function",
                "function": {"name": name, "arguments": b.text}})),
        }
    }
    let mut m = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    if !thinking.is_empty() {
        m["reasoning_content"] = json!(thinking);
    }
    m
}

/// `status` and `incomplete_details` for how the turn ended.
pub fn status(end: &TurnEnd) -> (&'static str, Value) {
    match end.reason {
        EndReason::Length => ("incomplete", json!({"reason": "max_output_tokens"})),
        EndReason::Stop | EndReason::StopSequence(_) => ("completed", Value::Null),
    }
}

pub fn usage(end: &TurnEnd, reasoning_tokens: usize) -> Value {
    json!({
        "input_tokens": end.prompt_tokens,
        "input_tokens_details": {"cached_tokens": end.cached_tokens},
        "output_tokens": end.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": end.prompt_tokens + end.completion_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::extract::parse_body;

    fn translate(body: Value, previous: Vec<Value>) -> Result<Translated, Error> {
        let req: ResponsesRequest = parse_body(body.to_string().as_bytes())?;
        to_chat(&req, previous)
    }

    #[test]
    fn translates_items_tools_and_history() {
        let t = translate(
            json!({
                "model": "m", "instructions": "Be brief.", "max_output_tokens": 20,
                "input": [
                    {"role": "user", "content": "Read a.txt"},
                    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Reading."}]},
                    {"type": "function_call", "call_id": "call_1", "name": "read", "arguments": "{\"p\":\"a\"}"},
                    {"type": "function_call", "call_id": "call_2", "name": "read", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "call_1", "output": "42"},
                    {"type": "reasoning", "id": "rs_1", "summary": []},
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "ok?"}]}
                ],
                "tools": [{"type": "function", "name": "read", "parameters": {"type": "object"}},
                          {"type": "local_shell"}, {"type": "web_search"}],
                "tool_choice": {"type": "function", "name": "read"},
                "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
                "store": true, "include": [], "prompt_cache_key": "k"
            }),
            vec![json!({"role": "user", "content": "earlier"})],
        )
        .unwrap();
        assert_eq!(t.ignored_tools, vec!["local_shell", "web_search"]);
        let b = &t.body;
        assert_eq!(b["max_tokens"], 20);
        assert_eq!(b["tools"][0]["function"]["name"], "read");
        assert_eq!(b["tool_choice"]["function"]["name"], "read");
        assert_eq!(b["response_format"]["type"], "json_object");
        let m = b["messages"].as_array().unwrap();
        let roles: Vec<&str> = m.iter().map(|x| x["role"].as_str().unwrap()).collect();
        assert_eq!(
            roles,
            [
                "system",
                "system",
                "user",
                "user",
                "assistant",
                "tool",
                "user"
            ]
        );
        assert_eq!(m[2]["content"], "earlier");
        assert_eq!(m[4]["content"], "Reading.");
        assert_eq!(m[4]["tool_calls"].as_array().unwrap().len(), 2);
        // History keeps neither instructions nor the format message.
        assert_eq!(t.history.len(), 5);
    }

    #[test]
    fn refuses_what_it_cannot_use_by_name() {
        for (body, param) in [
            (
                json!({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}),
                "input[0].content[0]",
            ),
            (
                json!({"input": [{"type": "item_reference", "id": "x"}]}),
                "input[0].type",
            ),
            (
                json!({"input": [{"type": "function_call", "name": "a", "arguments": "{}"}]}),
                "input[0].call_id",
            ),
            (
                json!({"input": "hi", "tool_choice": {"type": "web_search"}}),
                "tool_choice.type",
            ),
            (
                json!({"input": "hi", "text": {"format": {"type": "xml"}}}),
                "text.format.type",
            ),
            (
                json!({"input": "hi", "max_output_tokens": 0}),
                "max_output_tokens",
            ),
            (
                json!({"input": "hi", "tools": [{"type": "function", "function": {"name": "a"}}]}),
                "tools[0].name",
            ),
            (json!({"input": "hi", "frobnicate": true}), "frobnicate"),
        ] {
            let e = translate(body.clone(), vec![])
                .err()
                .unwrap_or_else(|| panic!("accepted {body}"));
            assert_eq!(e.shape().param.as_deref(), Some(param), "{body}");
        }
    }
}
