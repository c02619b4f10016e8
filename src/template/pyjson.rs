//! Python-exact text forms of template values: `json.dumps` (what Hugging Face's `tojson`
//! filter calls, with `ensure_ascii=False`) and `repr`/`str` (what jinja2 prints for a value
//! in `{{ }}`). Inputs: minijinja `Value`s. Outputs: strings, byte-identical to CPython's.
//! Knows nothing about chat messages; depends on minijinja only.

use minijinja::value::{Value, ValueKind};
use std::fmt::Write;

/// How `json.dumps` lays out containers.
#[derive(Debug, Clone)]
pub struct JsonStyle {
    /// `indent=`: `None` is one line; `Some(s)` puts each item on its own line, indented by
    /// `s` per level (Python accepts an int, meaning that many spaces, or a string).
    pub indent: Option<String>,
    /// `separators=(item, key)`; Python's default is `(", ", ": ")`, or `(",", ": ")` when
    /// an indent is given.
    pub item_sep: String,
    pub key_sep: String,
    pub sort_keys: bool,
    pub ensure_ascii: bool,
}

impl Default for JsonStyle {
    fn default() -> Self {
        JsonStyle {
            indent: None,
            item_sep: ", ".into(),
            key_sep: ": ".into(),
            sort_keys: false,
            ensure_ascii: false,
        }
    }
}

/// Why a value cannot be written as JSON (Python raises `TypeError` for the same values).
#[derive(Debug)]
pub struct NotJson(pub String);

/// `json.dumps(value, ...)` with the given style.
pub fn dumps(value: &Value, style: &JsonStyle) -> Result<String, NotJson> {
    let mut out = String::new();
    write_json(&mut out, value, style, 0)?;
    Ok(out)
}

fn write_json(out: &mut String, v: &Value, style: &JsonStyle, depth: usize) -> Result<(), NotJson> {
    match v.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(out, v, true),
        ValueKind::String => {
            write_json_str(out, v.as_str().unwrap_or_default(), style.ensure_ascii)
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter().map_err(|e| NotJson(e.to_string()))?.collect();
            write_container(out, style, depth, '[', ']', items.len(), |out, i| {
                write_json(out, &items[i], style, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter().map_err(|e| NotJson(e.to_string()))?.collect();
            if style.sort_keys {
                keys.sort();
            }
            write_container(out, style, depth, '{', '}', keys.len(), |out, i| {
                let key = &keys[i];
                write_json_str(out, &json_key(key)?, style.ensure_ascii);
                out.push_str(&style.key_sep);
                let val = v.get_item(key).unwrap_or_default();
                write_json(out, &val, style, depth + 1)
            })?;
        }
        ValueKind::Undefined => {
            return Err(NotJson(
                "Object of type Undefined is not JSON serializable".into(),
            ))
        }
        _ => {
            return Err(NotJson(format!(
                "Object of type {} is not JSON serializable",
                v.kind()
            )))
        }
    }
    Ok(())
}

/// Opening bracket, items separated per `style`, closing bracket; empty containers stay
/// `[]`/`{}` even with an indent, as in Python.
fn write_container(
    out: &mut String,
    style: &JsonStyle,
    depth: usize,
    open: char,
    close: char,
    len: usize,
    mut item: impl FnMut(&mut String, usize) -> Result<(), NotJson>,
) -> Result<(), NotJson> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    for i in 0..len {
        if i > 0 {
            out.push_str(&style.item_sep);
        }
        if let Some(ind) = &style.indent {
            out.push('\n');
            for _ in 0..=depth {
                out.push_str(ind);
            }
        }
        item(out, i)?;
    }
    if let Some(ind) = &style.indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(ind);
        }
    }
    out.push(close);
    Ok(())
}

/// Python turns non-string dict keys into strings: `1` → `"1"`, `True` → `"true"`.
fn json_key(key: &Value) -> Result<String, NotJson> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_owned()),
        ValueKind::None => Ok("null".into()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.into()),
        ValueKind::Number => {
            let mut s = String::new();
            write_number(&mut s, key, true);
            Ok(s)
        }
        _ => Err(NotJson(format!(
            "keys must be str, int, float, bool or None, not {}",
            key.kind()
        ))),
    }
}

/// A JSON string literal as Python writes it: `"`, `\` and control characters escaped
/// (`\n`, `\t`, ... or `\u00XX`), everything else kept as is unless `ensure_ascii`.
pub fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{:04x}", unit);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Integers as digits; floats as Python's `repr(float)` (shortest round-trip digits,
/// `1.0`, `1e-05`, `1e+16`); `json` spells non-finite floats `NaN`/`Infinity`.
fn write_number(out: &mut String, v: &Value, json: bool) {
    if let Some(f) = float_of(v) {
        write_py_float(out, f, json);
    } else {
        let _ = write!(out, "{v}");
    }
}

/// `Some(f)` when the value is a float (not an integer).
fn float_of(v: &Value) -> Option<f64> {
    if v.is_integer() {
        return None;
    }
    f64::try_from(v.clone()).ok()
}

pub fn write_py_float(out: &mut String, f: f64, json: bool) {
    if f.is_nan() {
        out.push_str(if json { "NaN" } else { "nan" });
        return;
    }
    if f.is_infinite() {
        let s = match (json, f > 0.0) {
            (true, true) => "Infinity",
            (true, false) => "-Infinity",
            (false, true) => "inf",
            (false, false) => "-inf",
        };
        out.push_str(s);
        return;
    }
    // `{:e}` gives the shortest round-trip digits, e.g. "1.5e-7"; Python then chooses
    // positional notation when -4 <= exponent < 16, scientific (two-digit exponent) otherwise.
    let sci = format!("{:e}", f);
    let (mantissa, exp) = match sci.split_once('e') {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (sci.as_str(), 0),
    };
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if neg {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        if point <= 0 {
            out.push_str("0.");
            for _ in 0..(-point) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let point = point as usize;
            if digits.len() <= point {
                out.push_str(&digits);
                for _ in digits.len()..point {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
}

/// What jinja2 prints for `{{ value }}`: `str(value)` in Python. Strings print as is, `None`
/// as `None`, booleans as `True`/`False`, containers as their `repr`, undefined as nothing.
pub fn write_py_str(out: &mut String, v: &Value) {
    match v.kind() {
        ValueKind::String => out.push_str(v.as_str().unwrap_or_default()),
        ValueKind::Undefined => {}
        _ => write_py_repr(out, v),
    }
}

/// Python's `repr(value)` for the kinds a template can hold.
pub fn write_py_repr(out: &mut String, v: &Value) {
    match v.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => write_number(out, v, false),
        ValueKind::String => write_py_str_repr(out, v.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(iter) = v.try_iter() {
                for (i, item) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_py_repr(out, &item);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(iter) = v.try_iter() {
                for (i, key) in iter.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_py_repr(out, &key);
                    out.push_str(": ");
                    write_py_repr(out, &v.get_item(&key).unwrap_or_default());
                }
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{v}");
        }
    }
}

/// `repr(str)`: single quotes unless the text has `'` and no `"`; backslash, the quote and
/// non-printable characters escaped.
fn write_py_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (0x80..0xa0).contains(&(c as u32)) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(json: &str) -> Value {
        let j: serde_json::Value = serde_json::from_str(json).unwrap();
        Value::from(minijinja::value::Serde(&j))
    }

    #[test]
    fn dumps_like_python_json() {
        let cases = [
            (
                r#"{"b": 1, "a": [1, 2.5, null, true]}"#,
                r#"{"b": 1, "a": [1, 2.5, null, true]}"#,
            ),
            (r#"{"s": "é<>&'\"\n\u0001"}"#, r#"{"s": "é<>&'\"\n\u0001"}"#),
            ("[]", "[]"),
            ("{}", "{}"),
            ("1.0", "1.0"),
            ("0.00001", "1e-05"),
            ("1e16", "1e+16"),
            ("123456.789", "123456.789"),
            ("-0.5", "-0.5"),
        ];
        for (input, want) in cases {
            assert_eq!(
                dumps(&v(input), &JsonStyle::default()).unwrap(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn dumps_with_indent_like_python() {
        let style = JsonStyle {
            indent: Some("    ".into()),
            item_sep: ",".into(),
            ..JsonStyle::default()
        };
        let got = dumps(&v(r#"{"a": [1, {}], "b": {"c": []}}"#), &style).unwrap();
        let want = "{\n    \"a\": [\n        1,\n        {}\n    ],\n    \"b\": {\n        \"c\": []\n    }\n}";
        assert_eq!(got, want);
    }

    #[test]
    fn prints_like_python_str() {
        let cases = [
            ("null", "None"),
            ("true", "True"),
            (
                r#"{"a": "it's", "b": [false, 1.5]}"#,
                r#"{'a': "it's", 'b': [False, 1.5]}"#,
            ),
            (r#"["x\ny"]"#, r#"['x\ny']"#),
            (r#""plain""#, "plain"),
        ];
        for (input, want) in cases {
            let mut out = String::new();
            write_py_str(&mut out, &v(input));
            assert_eq!(out, want, "{input}");
        }
    }
}
