//! Turns an OpenAI chat-completions request body into the `messages` and `tools` a Hugging
//! Face chat template expects. Input: the request JSON and the template source (to see which
//! form of tool-call arguments it was written for). Output: template-ready `messages` and
//! `tools`. Knows nothing about minijinja or the model.
//!
//! The rules (the golden generator `tests/templates/gen_goldens.py` implements the same ones
//! independently, in Python):
//! - `developer` messages become `system` messages.
//! - A `system` message whose content is empty is dropped, so the template's default system
//!   prompt applies (clients often send `""` when the user set none).
//! - `content` given as a list of parts becomes the text parts joined with `"\n"`; other part
//!   types are an error (these models read text only).
//! - `content: null` (or missing) becomes `""` (templates build strings with `+`, test
//!   `'x' in content`, or index it), except on an assistant message with tool calls when the
//!   template tests `content is none` / `is not none` (DeepSeek-R1 chooses its tool-call
//!   layout that way): there it stays `null`.
//! - `tool_calls[].function.arguments` given as a JSON string is parsed into an object when
//!   the template serializes arguments itself (`arguments | tojson`, or the whole function
//!   object); it stays a string when the template concatenates it (`+ arguments +`), and an
//!   object is then written as JSON text. A string that is not valid JSON is kept as is.
//! - A `tool` message without `name` gets the name of the call its `tool_call_id` answers.
//! - `tools` is passed when the request has a non-empty list and `tool_choice` is not
//!   `"none"`; otherwise `tools` is `None`, as in HF when no tools are given.

use super::TemplateError;
use serde_json::{Map, Value};

/// What a template expects where OpenAI requests differ from HF conventions, read from its
/// source once at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conventions {
    pub arguments: ArgumentsForm,
    /// The template tells `content` `none` from `""` (`content is none`), so an assistant
    /// tool-call message keeps `content: null`.
    pub null_content: bool,
}

impl Conventions {
    pub fn detect(source: &str) -> Conventions {
        Conventions {
            arguments: ArgumentsForm::detect(source),
            null_content: tests_content_for_none(source),
        }
    }
}

/// Whether the source has `content is none` or `content is not none` (any quoting/indexing:
/// `message['content'] is not none`).
fn tests_content_for_none(source: &str) -> bool {
    source.match_indices("content").any(|(at, w)| {
        if source[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            return false; // `reasoning_content` is another field
        }
        let rest = source[at + w.len()..].trim_start_matches(['\'', '"', ']']);
        let Some(rest) = rest.strip_prefix(char::is_whitespace) else {
            return false;
        };
        let Some(rest) = rest.trim_start().strip_prefix("is") else {
            return false;
        };
        let rest = rest.trim_start();
        let rest = rest
            .strip_prefix("not")
            .map(str::trim_start)
            .unwrap_or(rest);
        rest.starts_with("none")
            && !rest[4..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
    })
}

/// The form of `tool_calls[].function.arguments` a template was written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgumentsForm {
    /// The template serializes arguments itself (`| tojson`): pass a JSON object.
    Object,
    /// The template concatenates arguments into text: pass the JSON string.
    String,
}

impl ArgumentsForm {
    /// `String` when the source concatenates an `arguments` value with `+` (without a
    /// filter in between), `Object` otherwise.
    pub fn detect(source: &str) -> ArgumentsForm {
        const WORD: &str = "arguments";
        for (at, _) in source.match_indices(WORD) {
            let before = &source[..at];
            let after = &source[at + WORD.len()..];
            let after_ref = after.trim_start_matches(['\'', '"', ']']);
            if after_ref.len() == after.len()
                && after.starts_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                continue; // part of a longer identifier
            }
            let next = after_ref.trim_start();
            if next.starts_with('+') {
                return ArgumentsForm::String;
            }
            let ends_expression = next.starts_with("}}") || next.starts_with("-}}");
            let chain_start = before
                .trim_end_matches(|c: char| c.is_alphanumeric() || "_.[]'\"".contains(c))
                .trim_end();
            if ends_expression && chain_start.ends_with('+') {
                return ArgumentsForm::String;
            }
        }
        ArgumentsForm::Object
    }
}

/// What the template receives.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub messages: Value,
    /// `None` when no tools are offered (HF passes `tools=None`).
    pub tools: Value,
}

/// Applies the rules of this module to a chat-completions request body.
pub fn normalize(request: &Value, conv: Conventions) -> Result<Prepared, TemplateError> {
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("`messages` must be an array of message objects"))?;
    let mut out: Vec<Value> = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let Some(message) = message.as_object() else {
            return Err(bad(format!("messages[{i}] must be an object")));
        };
        if let Some(m) = normalize_message(i, message, conv, &out)? {
            out.push(Value::Object(m));
        }
    }
    Ok(Prepared {
        messages: Value::Array(out),
        tools: tools_of(request),
    })
}

/// The request with `f` applied to the text a client wrote as message content: each
/// `content` string and each text part's `text`. Everything else is left as it is. (The
/// server uses it to keep special-token text in content from becoming control tokens.)
pub fn map_content(request: &Value, mut f: impl FnMut(&str) -> String) -> Value {
    let mut out = request.clone();
    let messages = out.get_mut("messages").and_then(Value::as_array_mut);
    for message in messages.into_iter().flatten() {
        match message.get_mut("content") {
            Some(Value::String(s)) => *s = f(s),
            Some(Value::Array(parts)) => {
                for part in parts {
                    if let Some(Value::String(t)) = part.get_mut("text") {
                        *t = f(t);
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn normalize_message(
    i: usize,
    message: &Map<String, Value>,
    conv: Conventions,
    earlier: &[Value],
) -> Result<Option<Map<String, Value>>, TemplateError> {
    let role = message
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("messages[{i}].role must be a string")))?;
    let role = if role == "developer" { "system" } else { role };
    let mut m = message.clone();
    m.insert("role".into(), Value::String(role.to_owned()));

    let has_calls = m
        .get("tool_calls")
        .and_then(Value::as_array)
        .is_some_and(|c| !c.is_empty());
    let content = match m.get("content") {
        None | Some(Value::Null) if conv.null_content && role == "assistant" && has_calls => {
            Value::Null
        }
        None | Some(Value::Null) => Value::String(String::new()),
        Some(Value::String(s)) => Value::String(s.clone()),
        Some(Value::Array(parts)) => Value::String(join_text_parts(i, parts)?),
        Some(_) => {
            return Err(bad(format!(
                "messages[{i}].content must be a string, an array of content parts, or null"
            )))
        }
    };
    if role == "system" && content.as_str() == Some("") {
        return Ok(None);
    }
    m.insert("content".into(), content);

    if let Some(calls) = m.get_mut("tool_calls") {
        match calls {
            Value::Null => {}
            Value::Array(calls) => {
                for (j, call) in calls.iter_mut().enumerate() {
                    fix_arguments(i, j, call, conv.arguments)?;
                }
            }
            _ => return Err(bad(format!("messages[{i}].tool_calls must be an array"))),
        }
    }
    if role == "tool" && !m.contains_key("name") {
        if let Some(name) = m
            .get("tool_call_id")
            .and_then(Value::as_str)
            .and_then(|id| call_name(earlier, id))
        {
            m.insert("name".into(), Value::String(name));
        }
    }
    Ok(Some(m))
}

fn join_text_parts(i: usize, parts: &[Value]) -> Result<String, TemplateError> {
    let mut texts = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        match (kind, part.get("text").and_then(Value::as_str)) {
            ("text", Some(text)) => texts.push(text),
            ("text", None) => {
                return Err(bad(format!("messages[{i}].content[{j}].text must be a string")))
            }
            (other, _) => {
                return Err(bad(format!(
                    "messages[{i}].content[{j}]: content parts of type '{other}' are not supported (text only)"
                )))
            }
        }
    }
    Ok(texts.join("\n"))
}

/// Puts `function.arguments` (or bare `arguments`) of one tool call in the template's form.
fn fix_arguments(
    i: usize,
    j: usize,
    call: &mut Value,
    form: ArgumentsForm,
) -> Result<(), TemplateError> {
    let Some(call) = call.as_object_mut() else {
        return Err(bad(format!(
            "messages[{i}].tool_calls[{j}] must be an object"
        )));
    };
    let holder = match call.get_mut("function") {
        Some(Value::Object(f)) => f,
        Some(_) => {
            return Err(bad(format!(
                "messages[{i}].tool_calls[{j}].function must be an object"
            )))
        }
        None => call,
    };
    let Some(args) = holder.get_mut("arguments") else {
        return Ok(());
    };
    match (form, &*args) {
        (ArgumentsForm::Object, Value::String(s)) => {
            if let Ok(parsed) = serde_json::from_str::<Value>(s) {
                *args = parsed;
            }
        }
        (ArgumentsForm::String, v) if !v.is_string() => {
            *args = Value::String(python_json(v));
        }
        _ => {}
    }
    Ok(())
}

/// `json.dumps(v)`: what a Python client would have put in the string.
fn python_json(v: &Value) -> String {
    let value = minijinja::Value::from(minijinja::value::Serde(v));
    super::pyjson::dumps(&value, &super::pyjson::JsonStyle::default())
        .unwrap_or_else(|_| v.to_string())
}

/// The function name of the earlier tool call with this id.
fn call_name(earlier: &[Value], id: &str) -> Option<String> {
    earlier.iter().rev().find_map(|m| {
        m.get("tool_calls")?.as_array()?.iter().find_map(|c| {
            if c.get("id")?.as_str()? != id {
                return None;
            }
            let f = c.get("function").unwrap_or(c);
            Some(f.get("name")?.as_str()?.to_owned())
        })
    })
}

fn tools_of(request: &Value) -> Value {
    let none_chosen = request.get("tool_choice").and_then(Value::as_str) == Some("none");
    match request.get("tools") {
        Some(Value::Array(t)) if !t.is_empty() && !none_chosen => Value::Array(t.clone()),
        _ => Value::Null,
    }
}

fn bad(message: impl Into<String>) -> TemplateError {
    TemplateError::InvalidRequest(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const OBJECT: Conventions = Conventions {
        arguments: ArgumentsForm::Object,
        null_content: false,
    };

    fn norm(request: Value, conv: Conventions) -> Prepared {
        normalize(&request, conv).unwrap()
    }

    #[test]
    fn normalizes_openai_messages() {
        let req = json!({"messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "system", "content": ""},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"x\": 1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            {"role": "assistant", "content": null}
        ]});
        let p = norm(req, OBJECT);
        let want = json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "a\nb"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok", "name": "f"},
            {"role": "assistant", "content": ""}
        ]);
        assert_eq!(p.messages, want);
        assert_eq!(p.tools, Value::Null);
    }

    #[test]
    fn keeps_or_writes_argument_strings_for_concatenating_templates() {
        let req = json!({"messages": [{"role": "assistant", "tool_calls": [
            {"function": {"name": "f", "arguments": "{\"x\":1}"}},
            {"function": {"name": "g", "arguments": {"y": "é"}}}]}]});
        let p = norm(
            req,
            Conventions {
                arguments: ArgumentsForm::String,
                null_content: true,
            },
        );
        assert_eq!(
            p.messages[0]["tool_calls"][0]["function"]["arguments"],
            json!("{\"x\":1}")
        );
        assert_eq!(
            p.messages[0]["tool_calls"][1]["function"]["arguments"],
            json!("{\"y\": \"é\"}")
        );
        assert_eq!(p.messages[0]["content"], Value::Null);
    }

    #[test]
    fn passes_tools_unless_tool_choice_is_none() {
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        let with = norm(json!({"messages": [], "tools": tools}), OBJECT);
        assert_eq!(with.tools, tools);
        let none = norm(
            json!({"messages": [], "tools": tools, "tool_choice": "none"}),
            OBJECT,
        );
        assert_eq!(none.tools, Value::Null);
    }

    #[test]
    fn rejects_malformed_messages() {
        let cases = [
            json!({}),
            json!({"messages": "hi"}),
            json!({"messages": [1]}),
            json!({"messages": [{"content": "x"}]}),
            json!({"messages": [{"role": "user", "content": 5}]}),
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}),
            json!({"messages": [{"role": "assistant", "tool_calls": [{"function": "f"}]}]}),
        ];
        for req in cases {
            assert!(
                matches!(
                    normalize(&req, OBJECT),
                    Err(TemplateError::InvalidRequest(_))
                ),
                "{req}"
            );
        }
    }

    #[test]
    fn detects_templates_that_test_content_for_none() {
        let cases = [
            ("{% if message['content'] is none %}", true),
            ("{% if message.content is not none %}", true),
            ("{% if message.content is not nonesuch %}", false),
            ("{% if message.content %}", false),
            ("{% if content is string %}", false),
            ("{% if message.reasoning_content is not none %}", false),
        ];
        for (src, want) in cases {
            assert_eq!(Conventions::detect(src).null_content, want, "{src}");
        }
    }

    #[test]
    fn detects_argument_form_from_template_source() {
        let cases = [
            ("{{ tool_call.arguments | tojson }}", ArgumentsForm::Object),
            (
                "{{ '```json\\n' + tool['function']['arguments'] + '\\n```' }}",
                ArgumentsForm::String,
            ),
            ("{{ 'x' + tool.arguments }}", ArgumentsForm::String),
            (
                "{{ tool['function']['arguments'] | tojson + 'x' }}",
                ArgumentsForm::Object,
            ),
            (
                "{%- set out = tool_call.function|tojson %}",
                ArgumentsForm::Object,
            ),
            (
                "function name and arguments within + tags",
                ArgumentsForm::Object,
            ),
        ];
        for (src, want) in cases {
            assert_eq!(ArgumentsForm::detect(src), want, "{src}");
        }
    }
}
