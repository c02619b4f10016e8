//! The minijinja environment that renders a chat template the way Hugging Face's
//! `apply_chat_template` renders it with Python jinja2: `trim_blocks` + `lstrip_blocks`, the
//! trailing newline of the source dropped, no autoescape, Python's string/list/dict methods
//! (minijinja-contrib pycompat), values printed as Python prints them, and HF's extra globals
//! `raise_exception`, `strftime_now` and the `tojson` filter (`json.dumps`,
//! `ensure_ascii=False`). Work is bounded: minijinja fuel, and an output size cap enforced by
//! the writer in `mod.rs`. Input: template source; output: an `Environment` holding it.
//! Depends on minijinja(-contrib) only.

use super::clock::{strftime, Clock};
use super::pyjson::{self, JsonStyle};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};

/// The name the chat template is stored under in its environment.
pub const TEMPLATE_NAME: &str = "chat_template";

/// Work one render may do, in minijinja fuel: one per instruction, plus one per 64 bytes of
/// data created, so it also bounds memory (about 128 MB of strings). A 1000-message
/// conversation with 64 tools uses about 23,000; a hostile loop or a string doubled in a loop
/// stops within a second instead of hanging a worker or exhausting memory.
pub const FUEL: u64 = 2_000_000;

/// Nesting depth of macro calls / includes; real templates stay in single digits.
const RECURSION_LIMIT: usize = 200;

/// Marks an error produced by the template's own `raise_exception(message)`, so the caller
/// can hand the template's message to the client unchanged.
#[derive(Debug)]
pub struct Raised(pub String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// An environment holding `source` as [`TEMPLATE_NAME`]; fails when the source does not parse.
pub fn build(source: &str, clock: Clock) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false)
        .build()?;
    env.set_syntax(syntax);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // jinja2's default `Undefined`: prints as nothing, iterates as empty, is falsy.
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_unknown_method_callback(python_method);
    env.set_formatter(format_like_python);
    env.add_test("iterable", is_iterable);
    env.add_test("sequence", is_sequence);
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", move |format: &str| -> String {
        strftime(format, clock.now())
    });
    env.add_template_owned(TEMPLATE_NAME, neutralize_generation_tags(source))?;
    Ok(env)
}

/// `{{ value }}` output: `str(value)` as Python computes it (`None`, `True`, `{'a': 1}`).
fn format_like_python(
    out: &mut minijinja::Output,
    _state: &mut minijinja::State,
    value: &Value,
) -> Result<(), Error> {
    let written = match value.as_str() {
        Some(s) => out.write_str(s),
        None => {
            let mut s = String::new();
            pyjson::write_py_str(&mut s, value);
            out.write_str(&s)
        }
    };
    written.map_err(|_| Error::new(ErrorKind::WriteFailure, "output limit reached"))
}

/// Python methods on values: pycompat's set, plus `str.rsplit` which it lacks.
fn python_method(
    state: &mut minijinja::State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let (Some(s), "rsplit") = (value.as_str(), method) {
        let (sep, maxsplit): (Option<&str>, Option<i64>) = minijinja::value::from_args(args)?;
        return Ok(rsplit(s, sep, maxsplit.filter(|m| *m >= 0)));
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// `str.rsplit(sep=None, maxsplit=-1)`: without `sep`, splits on runs of whitespace.
fn rsplit(s: &str, sep: Option<&str>, maxsplit: Option<i64>) -> Value {
    let limit = maxsplit.map(|m| m as usize + 1).unwrap_or(usize::MAX);
    let mut parts: Vec<Value> = match sep {
        Some(sep) if !sep.is_empty() => s.rsplitn(limit, sep).map(Value::from).collect(),
        _ => {
            let trimmed = s.trim_end();
            let mut out = Vec::new();
            let mut rest = trimmed;
            while !rest.is_empty() {
                if out.len() + 1 == limit {
                    out.push(Value::from(rest));
                    break;
                }
                match rest.rfind(char::is_whitespace) {
                    Some(i) => {
                        let ws = rest[i..].chars().next().map_or(1, char::len_utf8);
                        out.push(Value::from(&rest[i + ws..]));
                        rest = rest[..i].trim_end();
                    }
                    None => {
                        out.push(Value::from(rest));
                        break;
                    }
                }
            }
            out
        }
    };
    parts.reverse();
    Value::from(parts)
}

/// jinja2's `iterable` is `iter(x)` succeeding: `None` is not iterable (minijinja iterates
/// it as empty), undefined is (jinja2's `Undefined` iterates as empty).
fn is_iterable(value: &Value) -> bool {
    !value.is_none() && value.try_iter().is_ok()
}

/// jinja2's `sequence` is "has `len()` and `[]`": strings and dicts too, not only lists.
fn is_sequence(value: &Value) -> bool {
    value.is_undefined()
        || matches!(
            value.kind(),
            ValueKind::String | ValueKind::Seq | ValueKind::Map
        )
}

/// HF's `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(
    value: &Value,
    ensure_ascii: Option<bool>,
    indent: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let mut style = JsonStyle {
        ensure_ascii: kwargs
            .get::<Option<bool>>("ensure_ascii")?
            .or(ensure_ascii)
            .unwrap_or(false),
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ..JsonStyle::default()
    };
    let indent = kwargs.get::<Option<Value>>("indent")?.or(indent);
    if let Some(indent) = indent.filter(|i| !i.is_none()) {
        style.indent = Some(match indent.kind() {
            ValueKind::String => indent.as_str().unwrap_or_default().to_owned(),
            _ => {
                let n = i64::try_from(indent.clone()).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: indent must be an int or a string",
                    )
                })?;
                " ".repeat(n.clamp(0, 64) as usize)
            }
        });
        style.item_sep = ",".into();
    }
    if let Some(seps) = kwargs
        .get::<Option<Value>>("separators")?
        .filter(|s| !s.is_none())
    {
        let (item, key): (String, String) =
            match (seps.get_item_by_index(0), seps.get_item_by_index(1)) {
                (Ok(i), Ok(k)) if i.as_str().is_some() && k.as_str().is_some() => (
                    i.as_str().unwrap_or_default().to_owned(),
                    k.as_str().unwrap_or_default().to_owned(),
                ),
                _ => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be a pair of strings",
                    ))
                }
            };
        style.item_sep = item;
        style.key_sep = key;
    }
    kwargs.assert_all_used()?;
    pyjson::dumps(value, &style)
        .map(Value::from)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.0))
}

fn raise_exception(message: Value) -> Result<Value, Error> {
    let mut text = String::new();
    pyjson::write_py_str(&mut text, &message);
    Err(Error::new(ErrorKind::InvalidOperation, text.clone()).with_source(Raised(text)))
}

/// HF templates may wrap assistant turns in `{% generation %}…{% endgeneration %}` (a
/// transformers extension that only records spans). minijinja has no such tag; an `if true`
/// block has the same output and the same whitespace handling.
fn neutralize_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            break;
        };
        let inner = &tag[2..end];
        let (lead, body, trail) = split_modifiers(inner);
        match body.trim() {
            "generation" => {
                out.push_str(&format!("{{%{lead} if true {trail}%}}"));
                rest = &tag[end + 2..];
            }
            "endgeneration" => {
                out.push_str(&format!("{{%{lead} endif {trail}%}}"));
                rest = &tag[end + 2..];
            }
            _ => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Splits `-`/`+` whitespace modifiers off a tag's inside: `"- generation -"` →
/// `("-", " generation ", "-")`.
fn split_modifiers(inner: &str) -> (&str, &str, &str) {
    let lead = if inner.starts_with(['-', '+']) {
        &inner[..1]
    } else {
        ""
    };
    let inner = &inner[lead.len()..];
    let trail = if inner.ends_with(['-', '+']) {
        &inner[inner.len() - 1..]
    } else {
        ""
    };
    (lead, &inner[..inner.len() - trail.len()], trail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, ctx: serde_json::Value) -> Result<String, Error> {
        let env = build(source, Clock::Fixed(1_700_000_000))?;
        env.get_template(TEMPLATE_NAME)?
            .render(Value::from(minijinja::value::Serde(ctx)))
    }

    #[test]
    fn renders_python_semantics() {
        let cases = [
            ("{{ x | tojson }}", serde_json::json!({"x": {"b": "é<", "a": [1, 2.0]}}), r#"{"b": "é<", "a": [1, 2.0]}"#),
            ("{{ x | tojson(indent=2) }}", serde_json::json!({"x": [1]}), "[\n  1\n]"),
            ("{{ x }}", serde_json::json!({"x": {"a": null, "b": true}}), "{'a': None, 'b': True}"),
            ("{{ x.strip().split(',') | join('|') }}", serde_json::json!({"x": " a,b "}), "a|b"),
            ("{% for k, v in x.items() %}{{ k }}={{ v }};{% endfor %}", serde_json::json!({"x": {"z": 1, "a": 2}}), "z=1;a=2;"),
            ("{{ x.get('q', 'd') }}", serde_json::json!({"x": {}}), "d"),
            ("{% set ns = namespace(n=0) %}{% for i in [1,2,3] %}{% if i == 2 %}{% continue %}{% endif %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}", serde_json::json!({}), "4"),
            ("a\n", serde_json::json!({}), "a"),
            ("{% if true %}\n  x\n{% endif %}\n", serde_json::json!({}), "  x\n"),
            ("  {% if true %}\nx{% endif %}", serde_json::json!({}), "x"),
            ("{{ strftime_now('%d %b %Y') }}", serde_json::json!({}), "14 Nov 2023"),
            ("{{ 'aXbXc'.rsplit('X', 1) }}{{ ' a  b c '.rsplit(none, 1) }}{{ 'a b'.rsplit() }}", serde_json::json!({}), "['aXb', 'c'][' a  b', 'c']['a', 'b']"),
            ("{% generation %}a{% endgeneration %}", serde_json::json!({}), "a"),
            ("{{ x is iterable }}{{ y is iterable }}{{ 'a' is sequence }}{{ {} is sequence }}{{ 1 is sequence }}", serde_json::json!({"x": null, "y": []}), "FalseTrueTrueTrueFalse"),
        ];
        for (src, ctx, want) in cases {
            assert_eq!(render(src, ctx).unwrap(), want, "{src}");
        }
    }

    #[test]
    fn raise_exception_carries_the_message() {
        let err = render(
            "{{ raise_exception('roles must alternate') }}",
            serde_json::json!({}),
        )
        .unwrap_err();
        let mut source: Option<&dyn std::error::Error> = Some(&err);
        let mut found = None;
        while let Some(e) = source {
            if let Some(r) = e.downcast_ref::<Raised>() {
                found = Some(r.0.clone());
            }
            source = e.source();
        }
        assert_eq!(found.as_deref(), Some("roles must alternate"));
    }
}
