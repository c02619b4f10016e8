//! Anthropic Messages ↔ the chat path. `to_chat` turns a Messages request into the OpenAI
//! chat body the chat path validates and renders (system → a system message, `tool_use`
//! blocks → assistant `tool_calls`, `tool_result` blocks → `tool` messages, `input_schema`
//! → function `parameters`, `tool_choice` any/tool → required/named); the answer's blocks
//! come back as Anthropic content blocks and stop reasons.
//! Content wick cannot use (images, documents, server tools) is a 400 naming the block,
//! never dropped. No I/O, no axum.

use crate::api::anthropic::{Content, InputMessage, MessagesRequest, System, ToolChoice, ToolDef};
use crate::server::blocks::{Block, BlockKind};
use crate::server::handlers::turn::{EndReason, TurnEnd};
use crate::Error;
use serde_json::{json, Map, Value};

/// Fields clients send that change nothing here; accepted and ignored.
/// (`thinking` and `output_config.effort` are hints a local model cannot follow exactly; a
/// model that thinks on its own returns thinking blocks either way.)
const HARMLESS_FIELDS: &[&str] = &[
    "metadata",
    "service_tier",
    "container",
    "context_management",
    "cache_control",
    "diagnostics",
    "inference_geo",
    "speed",
    "user_profile_id",
    "workspace_id",
];

fn unsupported(param: &str, message: impl Into<String>) -> Error {
    Error::invalid(message, Some(param), "unsupported_parameter")
}

fn invalid(param: &str, message: impl Into<String>) -> Error {
    Error::invalid(message, Some(param), "invalid_value")
}

/// The chat body and stop sequences for a Messages request. `count_only`: the
/// `count_tokens` body, where `max_tokens` is not required.
pub fn to_chat(req: &MessagesRequest, count_only: bool) -> Result<(Value, Vec<String>), Error> {
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
    if let Some(k) = req
        .output_config
        .as_ref()
        .and_then(Value::as_object)
        .and_then(|o| o.keys().find(|k| k.as_str() != "effort"))
    {
        return Err(unsupported(
            &format!("output_config.{k}"),
            format!("output_config.{k} is not supported by this server"),
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
    match req.max_tokens {
        Some(n) => {
            body.insert("max_tokens".into(), json!(n));
        }
        None if !count_only => {
            return Err(Error::invalid(
                "max_tokens: field required",
                Some("max_tokens"),
                "missing_required_parameter",
            ))
        }
        None => {}
    }
    if let Some(t) = req.temperature {
        if !(0.0..=1.0).contains(&t) {
            return Err(invalid(
                "temperature",
                format!("temperature must be between 0 and 1, got {t}"),
            ));
        }
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(k) = req.top_k {
        body.insert("top_k".into(), json!(k));
    }
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        messages.push(json!({"role": "system", "content": system_text(system)?}));
    }
    if req.messages.is_empty() {
        return Err(invalid("messages", "messages must not be empty"));
    }
    for (i, m) in req.messages.iter().enumerate() {
        message(i, m, &mut messages)?;
    }
    body.insert("messages".into(), Value::Array(messages));
    let tools = req.tools.as_deref().unwrap_or_default();
    if !tools.is_empty() {
        let list = tools
            .iter()
            .enumerate()
            .map(|(i, t)| tool(i, t))
            .collect::<Result<Vec<_>, _>>()?;
        body.insert("tools".into(), Value::Array(list));
    }
    if let Some(choice) = &req.tool_choice {
        tool_choice(choice, &mut body)?;
    }
    let stops = req.stop_sequences.clone().unwrap_or_default();
    if stops.iter().any(String::is_empty) {
        return Err(invalid(
            "stop_sequences",
            "stop sequences must not be empty",
        ));
    }
    Ok((Value::Object(body), stops))
}

fn system_text(system: &System) -> Result<String, Error> {
    match system {
        System::Text(s) => Ok(s.clone()),
        System::Blocks(blocks) => {
            let mut parts = Vec::new();
            for (j, b) in blocks.iter().enumerate() {
                parts.push(text_block(&format!("system[{j}]"), b)?);
            }
            Ok(parts.join("\n\n"))
        }
    }
}

/// The text of a `{"type":"text","text":…}` block; any other block is refused by name.
fn text_block(param: &str, b: &Value) -> Result<String, Error> {
    match (block_type(b), b.get("text").and_then(Value::as_str)) {
        ("text", Some(t)) => Ok(t.to_owned()),
        ("text", None) => Err(Error::invalid(
            "a text block needs a string 'text'",
            Some(&format!("{param}.text")),
            "missing_required_parameter",
        )),
        (other, _) => Err(refused_block(param, other)),
    }
}

fn block_type(b: &Value) -> &str {
    b.get("type").and_then(Value::as_str).unwrap_or("")
}

fn refused_block(param: &str, kind: &str) -> Error {
    let why = match kind {
        "image" | "document" => "this server runs a text-only model",
        "" => "a content block needs a 'type'",
        _ => "this server reads text, tool_use, tool_result and thinking blocks",
    };
    unsupported(
        param,
        format!("content block {param} of type '{kind}' is not supported: {why}"),
    )
}

fn message(i: usize, m: &InputMessage, out: &mut Vec<Value>) -> Result<(), Error> {
    let role = m.role.as_str();
    // Claude Code (2.1) sends `system` messages inside `messages` (its agent and skill
    // lists), which Anthropic's documented API does not have: they become system messages.
    if role != "user" && role != "assistant" && role != "system" {
        return Err(invalid(
            &format!("messages[{i}].role"),
            format!("role must be 'user', 'assistant' or 'system', got '{role}'"),
        ));
    }
    let blocks = match &m.content {
        Content::Text(s) => {
            out.push(json!({"role": role, "content": s}));
            return Ok(());
        }
        Content::Blocks(b) => b,
    };
    if role == "assistant" {
        out.push(assistant(i, blocks)?);
        return Ok(());
    }
    if role == "system" {
        let mut text = Vec::new();
        for (j, b) in blocks.iter().enumerate() {
            text.push(text_block(&format!("messages[{i}].content[{j}]"), b)?);
        }
        out.push(json!({"role": "system", "content": text.join("\n")}));
        return Ok(());
    }
    // Tool results become `tool` messages in place; text between them a user message.
    let mut text = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let param = format!("messages[{i}].content[{j}]");
        if block_type(b) == "tool_result" {
            if !text.is_empty() {
                out.push(json!({"role": "user", "content": text.join("\n")}));
                text.clear();
            }
            out.push(tool_result(&param, b)?);
        } else {
            text.push(text_block(&param, b)?);
        }
    }
    if !text.is_empty() {
        out.push(json!({"role": "user", "content": text.join("\n")}));
    }
    Ok(())
}

fn assistant(i: usize, blocks: &[Value]) -> Result<Value, Error> {
    let mut text = String::new();
    let mut thinking = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let param = format!("messages[{i}].content[{j}]");
        match block_type(b) {
            "tool_use" => {
                let name = b.get("name").and_then(Value::as_str).ok_or_else(|| {
                    Error::invalid(
                        "a tool_use block needs a 'name'",
                        Some(&format!("{param}.name")),
                        "missing_required_parameter",
                    )
                })?;
                let id = b.get("id").and_then(Value::as_str).unwrap_or_default();
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({"id": id, "type": "function",
                    "function": {"name": name, "arguments": input.to_string()}}));
            }
            "thinking" => {
                thinking.push_str(b.get("thinking").and_then(Value::as_str).unwrap_or(""))
            }
            // Encrypted thinking from another model: nothing a local model can read.
            "redacted_thinking" => {}
            _ => text.push_str(&text_block(&param, b)?),
        }
    }
    let mut m = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    if !thinking.is_empty() {
        m["reasoning_content"] = json!(thinking);
    }
    Ok(m)
}

fn tool_result(param: &str, b: &Value) -> Result<Value, Error> {
    let id = b
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::invalid(
                "a tool_result block needs a 'tool_use_id'",
                Some(&format!("{param}.tool_use_id")),
                "missing_required_parameter",
            )
        })?;
    let mut content = match b.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for (k, p) in parts.iter().enumerate() {
                texts.push(text_block(&format!("{param}.content[{k}]"), p)?);
            }
            texts.join("\n")
        }
        Some(_) => {
            return Err(Error::invalid(
                "tool_result content must be a string or a list of blocks",
                Some(&format!("{param}.content")),
                "invalid_type",
            ))
        }
    };
    // The model has no other way to learn that the tool failed.
    if b.get("is_error").and_then(Value::as_bool) == Some(true) {
        content = format!("Error: {content}");
    }
    Ok(json!({"role": "tool", "tool_call_id": id, "content": content}))
}

fn tool(i: usize, t: &ToolDef) -> Result<Value, Error> {
    match t.kind.as_deref() {
        None | Some("custom") => {}
        Some(other) => {
            return Err(unsupported(
                &format!("tools[{i}].type"),
                format!("tool type '{other}' is an Anthropic server tool; this server runs only client tools (with input_schema)"),
            ))
        }
    }
    let mut function = json!({
        "name": t.name,
        "parameters": t.input_schema.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
    });
    if let Some(d) = &t.description {
        function["description"] = json!(d);
    }
    Ok(json!({"type": "function", "function": function}))
}

fn tool_choice(choice: &ToolChoice, body: &mut Map<String, Value>) -> Result<(), Error> {
    let value = match choice.kind.as_str() {
        "auto" => json!("auto"),
        "any" => json!("required"),
        "none" => json!("none"),
        "tool" => {
            let name = choice.name.as_deref().ok_or_else(|| {
                Error::invalid(
                    "tool_choice type 'tool' needs a 'name'",
                    Some("tool_choice.name"),
                    "missing_required_parameter",
                )
            })?;
            json!({"type": "function", "function": {"name": name}})
        }
        other => {
            return Err(invalid(
                "tool_choice.type",
                format!("tool_choice type must be 'auto', 'any', 'tool' or 'none', got '{other}'"),
            ))
        }
    };
    body.insert("tool_choice".into(), value);
    if choice.disable_parallel_tool_use == Some(true) {
        body.insert("parallel_tool_calls".into(), json!(false));
    }
    Ok(())
}

/// Anthropic tool-use ids read `toolu_…`; the assembler's `call_…` suffix is kept.
pub fn tool_use_id(call_id: &str) -> String {
    format!("toolu_{}", call_id.strip_prefix("call_").unwrap_or(call_id))
}

/// A tool call's arguments as the `input` object.
pub fn input_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            tracing::warn!(arguments, "tool call arguments are not a JSON object");
            json!({})
        }
    }
}

/// The content block for a finished block.
pub fn content_block(b: &Block) -> Value {
    match &b.kind {
        BlockKind::Text => json!({"type": "text", "text": b.text}),
        BlockKind::Thinking => json!({"type": "thinking", "thinking": b.text, "signature": ""}),
        BlockKind::Call { id, name } => json!({"type": "tool_use", "id": tool_use_id(id),
            "name": name, "input": input_object(&b.text)}),
    }
}

/// The empty block a stream's `content_block_start` announces.
pub fn start_block(kind: &BlockKind) -> Value {
    match kind {
        BlockKind::Text => json!({"type": "text", "text": ""}),
        BlockKind::Thinking => json!({"type": "thinking", "thinking": "", "signature": ""}),
        BlockKind::Call { id, name } => {
            json!({"type": "tool_use", "id": tool_use_id(id), "name": name, "input": {}})
        }
    }
}

/// The delta a stream's `content_block_delta` carries for a block kind.
pub fn delta(kind: &BlockKind, text: &str) -> Value {
    match kind {
        BlockKind::Text => json!({"type": "text_delta", "text": text}),
        BlockKind::Thinking => json!({"type": "thinking_delta", "thinking": text}),
        BlockKind::Call { .. } => json!({"type": "input_json_delta", "partial_json": text}),
    }
}

/// `stop_reason` and `stop_sequence`.
pub fn stop_reason(end: &TurnEnd) -> (&'static str, Value) {
    match &end.reason {
        EndReason::StopSequence(s) => ("stop_sequence", json!(s)),
        EndReason::Length => ("max_tokens", Value::Null),
        EndReason::Stop if end.calls > 0 => ("tool_use", Value::Null),
        EndReason::Stop => ("end_turn", Value::Null),
    }
}

pub fn usage(end: &TurnEnd) -> Value {
    json!({"input_tokens": end.prompt_tokens, "output_tokens": end.completion_tokens,
        "cache_read_input_tokens": end.cached_tokens, "cache_creation_input_tokens": 0})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::extract::parse_body;

    fn chat(body: Value) -> Result<(Value, Vec<String>), Error> {
        let req: MessagesRequest = parse_body(body.to_string().as_bytes())?;
        to_chat(&req, false)
    }

    fn param_of(body: Value) -> String {
        let e = chat(body.clone())
            .err()
            .unwrap_or_else(|| panic!("accepted {body}"));
        assert_eq!(e.shape().status, 400, "{body}");
        e.shape().param.unwrap_or_default()
    }

    #[test]
    fn translates_a_tool_round_trip() {
        let (body, stops) = chat(json!({
            "model": "m", "max_tokens": 50, "stop_sequences": ["END"],
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "read_file", "description": "Read", "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}],
            "tool_choice": {"type": "tool", "name": "read_file", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": "Read a.txt"},
                {"role": "assistant", "content": [{"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a.txt"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "42"}]},
                    {"type": "text", "text": "And now?"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_2", "name": "read_file", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "no such file", "is_error": true}]}
            ]
        }))
        .unwrap();
        assert_eq!(stops, vec!["END".to_string()]);
        assert_eq!(body["max_tokens"], 50);
        assert_eq!(body["tool_choice"]["function"]["name"], "read_file");
        assert_eq!(body["parallel_tool_calls"], false);
        assert_eq!(
            body["tools"][0]["function"]["parameters"]["properties"]["path"]["type"],
            "string"
        );
        let m = body["messages"].as_array().unwrap();
        let roles: Vec<&str> = m.iter().map(|x| x["role"].as_str().unwrap()).collect();
        assert_eq!(
            roles,
            [
                "system",
                "user",
                "assistant",
                "tool",
                "user",
                "assistant",
                "tool"
            ]
        );
        assert_eq!(m[0]["content"], "Be brief.");
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            "{\"path\":\"a.txt\"}"
        );
        assert_eq!(m[3]["tool_call_id"], "toolu_1");
        assert_eq!(m[3]["content"], "42");
        assert_eq!(m[6]["content"], "Error: no such file");
    }

    #[test]
    fn refuses_what_it_cannot_use_by_name() {
        let user = |content: Value| json!({"max_tokens": 5, "messages": [{"role": "user", "content": content}]});
        assert_eq!(
            param_of(json!({"messages": [{"role": "user", "content": "hi"}]})),
            "max_tokens"
        );
        assert_eq!(
            param_of(user(
                json!([{"type": "text", "text": "see"}, {"type": "image", "source": {}}])
            )),
            "messages[0].content[1]"
        );
        assert_eq!(
            param_of(user(json!([{"type": "document", "source": {}}]))),
            "messages[0].content[0]"
        );
        assert_eq!(
            param_of(user(
                json!([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}])
            )),
            "messages[0].content[0].content[0]"
        );
        let mut b = user(json!("hi"));
        b["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]);
        assert_eq!(param_of(b), "tools[0].type");
        let mut b = user(json!("hi"));
        b["temperature"] = json!(1.5);
        assert_eq!(param_of(b), "temperature");
        let mut b = user(json!("hi"));
        b["tool_choice"] = json!({"type": "sometimes"});
        assert_eq!(param_of(b), "tool_choice.type");
        let mut b = user(json!("hi"));
        b["frobnicate"] = json!(1);
        assert_eq!(param_of(b), "frobnicate");
        assert_eq!(
            param_of(json!({"max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]})),
            "messages[0].role"
        );
    }

    #[test]
    fn maps_tool_choice_any_and_stop_reasons() {
        let (body, _) = chat(json!({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"name": "a", "input_schema": {"type": "object"}}], "tool_choice": {"type": "any"}}))
        .unwrap();
        assert_eq!(body["tool_choice"], "required");
        let end = |reason, calls| TurnEnd {
            reason,
            prompt_tokens: 1,
            completion_tokens: 1,
            cached_tokens: 0,
            calls,
        };
        assert_eq!(stop_reason(&end(EndReason::Stop, 1)).0, "tool_use");
        assert_eq!(stop_reason(&end(EndReason::Stop, 0)).0, "end_turn");
        assert_eq!(stop_reason(&end(EndReason::Length, 0)).0, "max_tokens");
        let (r, s) = stop_reason(&end(EndReason::StopSequence("X".into()), 0));
        assert_eq!((r, s), ("stop_sequence", json!("X")));
    }
}
