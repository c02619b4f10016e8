//! A small JSON-Schema validator for tool-call arguments.
//!
//! Input: a tool's `parameters` schema and the arguments a parser produced. Output: the list
//! of violations, each with a JSON path (`$.assignee.name`) and what is wrong.
//! It covers the subset that OpenAI tool declarations use: `type` (a name or an array of
//! names), `properties`, `required`, `items`, `enum`, `additionalProperties` (false or a
//! schema) and nested objects. Other keywords (`description`, `default`, `format`, …) are
//! ignored: a tool schema that relies on them is validated less strictly, never wrongly.
//! Depends on serde_json only.

use serde_json::{Map, Value};
use std::fmt;

/// One way the arguments fail the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where, as `$` followed by `.key` and `[index]` steps.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Validates `value` against `schema`; an empty result means valid.
pub fn validate(schema: &Value, value: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut path = String::from("$");
    check(schema, value, &mut path, &mut out);
    out
}

/// Validates tool-call arguments against a tool's `parameters`. A tool without
/// `parameters` takes an object with anything in it (OpenAI treats it as "no schema").
pub fn validate_arguments(parameters: Option<&Value>, arguments: &Value) -> Vec<Violation> {
    match parameters {
        Some(schema) => validate(schema, arguments),
        None if arguments.is_object() => Vec::new(),
        None => vec![Violation {
            path: "$".into(),
            message: format!("arguments must be an object, got {}", type_name(arguments)),
        }],
    }
}

fn check(schema: &Value, value: &Value, path: &mut String, out: &mut Vec<Violation>) {
    // `true`/`{}` accept anything; `false` accepts nothing (draft 6+ boolean schemas).
    let schema = match schema {
        Value::Bool(true) => return,
        Value::Bool(false) => {
            push(out, path, "no value is allowed here".into());
            return;
        }
        Value::Object(s) => s,
        _ => return, // not a schema: nothing we can check
    };
    if let Some(t) = schema.get("type") {
        if !type_matches(t, value) {
            push(
                out,
                path,
                format!("expected {}, got {}", describe_type(t), type_name(value)),
            );
            // Further keywords would only repeat the same mistake in other words.
            return;
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        if !allowed.iter().any(|a| json_eq(a, value)) {
            push(
                out,
                path,
                format!("{} is not one of {}", compact(value), compact_list(allowed)),
            );
        }
    }
    match value {
        Value::Object(obj) => check_object(schema, obj, path, out),
        Value::Array(items) => check_items(schema, items, path, out),
        _ => {}
    }
}

fn check_object(
    schema: &Map<String, Value>,
    obj: &Map<String, Value>,
    path: &mut String,
    out: &mut Vec<Violation>,
) {
    let props = schema.get("properties").and_then(Value::as_object);
    if let Some(Value::Array(required)) = schema.get("required") {
        for key in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(key) {
                push(out, path, format!("missing required property '{key}'"));
            }
        }
    }
    for (key, v) in obj {
        let len = path.len();
        path.push('.');
        path.push_str(key);
        match props.and_then(|p| p.get(key)) {
            Some(sub) => check(sub, v, path, out),
            None => match schema.get("additionalProperties") {
                Some(Value::Bool(false)) => push(out, path, "property is not allowed".into()),
                Some(sub @ Value::Object(_)) => check(sub, v, path, out),
                _ => {}
            },
        }
        path.truncate(len);
    }
}

fn check_items(
    schema: &Map<String, Value>,
    items: &[Value],
    path: &mut String,
    out: &mut Vec<Violation>,
) {
    let Some(item_schema) = schema.get("items") else {
        return;
    };
    for (i, v) in items.iter().enumerate() {
        let len = path.len();
        path.push_str(&format!("[{i}]"));
        check(item_schema, v, path, out);
        path.truncate(len);
    }
}

fn push(out: &mut Vec<Violation>, path: &str, message: String) {
    out.push(Violation {
        path: path.to_owned(),
        message,
    });
}

fn type_matches(t: &Value, value: &Value) -> bool {
    match t {
        Value::String(name) => is_type(name, value),
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .any(|n| is_type(n, value)),
        // A malformed `type` says nothing we can enforce.
        _ => true,
    }
}

fn is_type(name: &str, value: &Value) -> bool {
    match name {
        "string" => value.is_string(),
        "number" => value.is_number(),
        // JSON Schema counts 1.0 as an integer: the value matters, not the spelling.
        "integer" => match value {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        },
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "null" => value.is_null(),
        // An unknown type name is a schema bug, not an argument bug.
        _ => true,
    }
}

/// Equality as JSON Schema defines it for `enum`: numbers compare by value (1 == 1.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn describe_type(t: &Value) -> String {
    match t {
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        Value::String(s) => s.clone(),
        other => compact(other),
    }
}

fn compact(v: &Value) -> String {
    // Serialising a Value cannot fail (all keys are strings).
    serde_json::to_string(v).unwrap_or_default()
}

fn compact_list(vs: &[Value]) -> String {
    let items: Vec<String> = vs.iter().map(compact).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn issue_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "title": {"type": "string"},
                "labels": {"type": "array", "items": {"type": "string", "enum": ["bug", "urgent", "docs"]}},
                "priority": {"type": ["integer", "null"]},
                "assignee": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "team": {"type": "string"}},
                    "required": ["name"],
                    "additionalProperties": false
                }
            },
            "required": ["title"],
            "additionalProperties": false
        })
    }

    #[test]
    fn table() {
        // (arguments, expected violation paths with a word from the message)
        let cases: Vec<(Value, Vec<(&str, &str)>)> = vec![
            (json!({"title": "Crash"}), vec![]),
            (
                json!({"title": "Crash", "labels": ["bug"], "priority": 2, "assignee": {"name": "Alice", "team": "core"}}),
                vec![],
            ),
            (json!({"title": "Crash", "priority": null}), vec![]),
            (json!({"title": "Crash", "priority": 3.0}), vec![]),
            (json!({}), vec![("$", "missing required property 'title'")]),
            (
                json!({"title": 5}),
                vec![("$.title", "expected string, got integer")],
            ),
            (
                json!({"title": "x", "priority": "high"}),
                vec![("$.priority", "expected integer or null, got string")],
            ),
            (
                json!({"title": "x", "priority": 1.5}),
                vec![("$.priority", "got number")],
            ),
            (
                json!({"title": "x", "colour": "red"}),
                vec![("$.colour", "not allowed")],
            ),
            (
                json!({"title": "x", "labels": ["bug", "wontfix", 3]}),
                vec![
                    ("$.labels[1]", "is not one of"),
                    ("$.labels[2]", "expected string"),
                ],
            ),
            (
                json!({"title": "x", "assignee": {"team": "core", "email": "a@b"}}),
                vec![
                    ("$.assignee", "missing required property 'name'"),
                    ("$.assignee.email", "not allowed"),
                ],
            ),
            (
                json!({"title": "x", "assignee": "Alice"}),
                vec![("$.assignee", "expected object, got string")],
            ),
            (json!(["title"]), vec![("$", "expected object, got array")]),
        ];
        let schema = issue_schema();
        for (args, want) in cases {
            let got = validate(&schema, &args);
            assert_eq!(got.len(), want.len(), "{args}: {got:?}");
            for (v, (path, msg)) in got.iter().zip(&want) {
                assert_eq!(v.path, *path, "{args}: {got:?}");
                assert!(v.message.contains(msg), "{args}: {} lacks {msg}", v.message);
            }
        }
    }

    #[test]
    fn additional_properties_schema_checks_extra_keys() {
        let schema = json!({"type": "object", "additionalProperties": {"type": "integer"}});
        assert!(validate(&schema, &json!({"a": 1, "b": 2})).is_empty());
        let v = validate(&schema, &json!({"a": "x"}));
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].path, "$.a");
    }

    #[test]
    fn enum_compares_numbers_by_value() {
        let schema = json!({"enum": [1, "a", {"k": [true]}]});
        assert!(validate(&schema, &json!(1.0)).is_empty());
        assert!(validate(&schema, &json!({"k": [true]})).is_empty());
        assert_eq!(validate(&schema, &json!(2)).len(), 1);
    }

    #[test]
    fn boolean_and_keywordless_schemas() {
        assert!(validate(&json!(true), &json!({"x": 1})).is_empty());
        assert!(validate(&json!({}), &json!([1, "a"])).is_empty());
        assert_eq!(validate(&json!(false), &json!(1)).len(), 1);
        // Unknown keywords and unknown type names are ignored rather than guessed at.
        assert!(validate(&json!({"type": "uuid", "format": "uuid"}), &json!(3)).is_empty());
    }

    #[test]
    fn tool_without_parameters_takes_any_object() {
        assert!(validate_arguments(None, &json!({})).is_empty());
        assert!(validate_arguments(None, &json!({"a": 1})).is_empty());
        assert_eq!(validate_arguments(None, &json!("a")).len(), 1);
        let empty = json!({"type": "object", "properties": {}});
        assert!(validate_arguments(Some(&empty), &json!({})).is_empty());
    }
}
