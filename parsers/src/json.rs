//! JSON for tool calls: a strict syntax scanner that finds where a JSON container that
//! starts at `{` or `[` ends (or that it is invalid, or still incomplete), and the
//! interpretation of a parsed value as a call object or call list (contract rule 5).
//!
//! The scanner is a byte state machine with an explicit stack (no recursion), so
//! gigantic or deeply nested input cannot overflow the stack. It checks RFC 8259 syntax:
//! string escapes, control characters, number grammar, literals. Values it accepts are then
//! parsed by serde_json, which also rejects lone surrogates (and nesting deeper than 128,
//! which we treat as invalid).

use crate::types::{Reason, ToolSpec};
use serde_json::{Map, Value};

/// Outcome of scanning from a `{` or `[`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A syntactically complete container ends at this byte offset (exclusive).
    Complete(usize),
    /// The text cannot be JSON: the offending byte offset.
    Invalid,
    /// Valid so far, but the text ends before the container closes.
    Incomplete,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    /// A value must start here (after `[`, `:` or `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ValueOrClose,
    /// After `{`: a key or `}`.
    KeyOrClose,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value inside a container: `,` or the closing bracket.
    After,
    /// Inside a string; `key` says whether it is an object key.
    Str { key: bool },
    /// After a backslash in a string.
    Esc { key: bool },
    /// In `\uXXXX`: hex digits still expected.
    Hex { key: bool, left: u8 },
    /// In a number; the sub-state says what may come next.
    Num(NumSt),
    /// In `true`/`false`/`null`: the literal and how many bytes matched.
    Lit(&'static [u8], u8),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum NumSt {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Scans the container starting at `s[0]` (`{` or `[`). `open` receives the offsets of the
/// containers still open when the text ends (used to skip re-scanning them at end of
/// output); it is cleared first.
pub fn scan(s: &[u8], open: &mut Vec<usize>) -> Scan {
    open.clear();
    // The stack holds (is_object, start offset) of each open container.
    let mut stack: Vec<(bool, usize)> = Vec::new();
    let mut st = St::Value;
    let mut i = 0;
    while i < s.len() {
        match transition(st, s[i], i, &mut stack) {
            Step::Next(next) => {
                st = next;
                i += 1;
            }
            Step::Again(next) => st = next,
            Step::Done(outcome) => return outcome,
        }
    }
    open.extend(stack.iter().map(|&(_, at)| at));
    Scan::Incomplete
}

/// What one byte does to the scanner.
enum Step {
    /// Consume the byte; continue in this state.
    Next(St),
    /// Re-examine the same byte in this state (after a number ends).
    Again(St),
    /// Decided.
    Done(Scan),
}

/// The state machine's transition for byte `b` at offset `i`.
fn transition(st: St, b: u8, i: usize, stack: &mut Vec<(bool, usize)>) -> Step {
    Step::Next(match st {
        St::Value | St::ValueOrClose | St::KeyOrClose | St::Key | St::Colon | St::After
            if is_ws(b) =>
        {
            st
        }
        St::Value | St::ValueOrClose => {
            if b == b']' && st == St::ValueOrClose {
                match close(stack) {
                    Some(s2) => s2,
                    None => return Step::Done(Scan::Complete(i + 1)),
                }
            } else {
                match start_value(b, i, stack) {
                    Some(s2) => s2,
                    None => return Step::Done(Scan::Invalid),
                }
            }
        }
        St::KeyOrClose | St::Key => match b {
            b'"' => St::Str { key: true },
            b'}' if st == St::KeyOrClose => match close(stack) {
                Some(s2) => s2,
                None => return Step::Done(Scan::Complete(i + 1)),
            },
            _ => return Step::Done(Scan::Invalid),
        },
        St::Colon => match b {
            b':' => St::Value,
            _ => return Step::Done(Scan::Invalid),
        },
        St::After => match (b, stack.last()) {
            (b',', Some((true, _))) => St::Key,
            (b',', Some((false, _))) => St::Value,
            (b'}', Some((true, _))) | (b']', Some((false, _))) => match close(stack) {
                Some(s2) => s2,
                None => return Step::Done(Scan::Complete(i + 1)),
            },
            _ => return Step::Done(Scan::Invalid),
        },
        St::Str { .. } | St::Esc { .. } | St::Hex { .. } | St::Num(_) | St::Lit(..) => {
            return in_scalar(st, b)
        }
    })
}

/// Transitions inside a string, number or literal.
fn in_scalar(st: St, b: u8) -> Step {
    Step::Next(match st {
        St::Str { key } => match b {
            b'"' => {
                if key {
                    St::Colon
                } else {
                    St::After
                }
            }
            b'\\' => St::Esc { key },
            0..=0x1f => return Step::Done(Scan::Invalid),
            _ => st,
        },
        St::Esc { key } => match b {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => St::Str { key },
            b'u' => St::Hex { key, left: 4 },
            _ => return Step::Done(Scan::Invalid),
        },
        St::Hex { key, left } => {
            if !b.is_ascii_hexdigit() {
                return Step::Done(Scan::Invalid);
            }
            if left == 1 {
                St::Str { key }
            } else {
                St::Hex {
                    key,
                    left: left - 1,
                }
            }
        }
        St::Num(n) => match number_step(n, b) {
            Some(n2) => St::Num(n2),
            None => {
                if !number_can_end(n) {
                    return Step::Done(Scan::Invalid);
                }
                // The byte after a number is re-examined as if after a value.
                return Step::Again(St::After);
            }
        },
        St::Lit(lit, k) => {
            if b != lit[k as usize] {
                return Step::Done(Scan::Invalid);
            }
            if k as usize + 1 == lit.len() {
                St::After
            } else {
                St::Lit(lit, k + 1)
            }
        }
        _ => st,
    })
}

fn start_value(b: u8, i: usize, stack: &mut Vec<(bool, usize)>) -> Option<St> {
    Some(match b {
        b'{' => {
            stack.push((true, i));
            St::KeyOrClose
        }
        b'[' => {
            stack.push((false, i));
            St::ValueOrClose
        }
        // A scalar at top level cannot happen: scanning always starts at a bracket.
        _ if stack.is_empty() => return None,
        b'"' => St::Str { key: false },
        b'-' => St::Num(NumSt::Minus),
        b'0' => St::Num(NumSt::Zero),
        b'1'..=b'9' => St::Num(NumSt::Int),
        b't' => St::Lit(b"true", 1),
        b'f' => St::Lit(b"false", 1),
        b'n' => St::Lit(b"null", 1),
        _ => return None,
    })
}

/// Pops a container; `None` when the outermost one closed.
fn close(stack: &mut Vec<(bool, usize)>) -> Option<St> {
    stack.pop();
    if stack.is_empty() {
        None
    } else {
        Some(St::After)
    }
}

fn number_step(n: NumSt, b: u8) -> Option<NumSt> {
    use NumSt::*;
    match (n, b) {
        (Minus, b'0') => Some(Zero),
        (Minus, b'1'..=b'9') => Some(Int),
        (Int, b'0'..=b'9') => Some(Int),
        (Zero | Int, b'.') => Some(Dot),
        (Dot | Frac, b'0'..=b'9') => Some(Frac),
        (Zero | Int | Frac, b'e' | b'E') => Some(E),
        (E, b'+' | b'-') => Some(ESign),
        (E | ESign | Exp, b'0'..=b'9') => Some(Exp),
        _ => None,
    }
}

fn number_can_end(n: NumSt) -> bool {
    matches!(n, NumSt::Zero | NumSt::Int | NumSt::Frac | NumSt::Exp)
}

/// Scans then parses a complete container. `Ok(None)` = incomplete; `Err` = invalid.
pub fn value_at(s: &str, open: &mut Vec<usize>) -> Result<Option<(Value, usize)>, Reason> {
    match scan(s.as_bytes(), open) {
        Scan::Incomplete => Ok(None),
        Scan::Invalid => Err(Reason::InvalidJson),
        Scan::Complete(end) => match serde_json::from_str::<Value>(&s[..end]) {
            Ok(v) => Ok(Some((v, end))),
            Err(_) => Err(Reason::InvalidJson),
        },
    }
}

/// A call read from JSON: name, arguments and the id the model gave, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct RawCall {
    pub name: String,
    pub arguments: Map<String, Value>,
    pub id: Option<String>,
}

/// How strict call-object interpretation is.
#[derive(Debug, Clone, Copy)]
pub struct CallRules<'t> {
    /// Markerless JSON must carry `arguments` or `parameters`.
    pub args_required: bool,
    /// When set, every name must be declared here (markerless calls).
    pub declared: Option<&'t [ToolSpec]>,
}

/// Arguments value → object: an object, or a string holding a JSON object.
pub fn arguments_object(v: &Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m.clone()),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Some(m),
            _ => None,
        },
        _ => None,
    }
}

fn call_object(v: &Value, rules: CallRules<'_>) -> Result<RawCall, Reason> {
    let obj = v.as_object().ok_or(Reason::NotACall)?;
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or(Reason::NotACall)?;
    let args = match obj.get("arguments").or_else(|| obj.get("parameters")) {
        Some(a) => arguments_object(a).ok_or(Reason::NotACall)?,
        None if rules.args_required => return Err(Reason::NotACall),
        None => Map::new(),
    };
    Ok(RawCall {
        name: name.to_owned(),
        arguments: args,
        id: None,
    })
}

/// A call object or a non-empty call list → calls (then name validation when asked).
pub fn calls_from_value(v: &Value, rules: CallRules<'_>) -> Result<Vec<RawCall>, Reason> {
    let calls = match v {
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|item| call_object(item, rules))
            .collect::<Result<Vec<_>, _>>()?,
        Value::Object(_) => vec![call_object(v, rules)?],
        _ => return Err(Reason::NotACall),
    };
    if let Some(tools) = rules.declared {
        if !calls.iter().all(|c| tools.iter().any(|t| t.name == c.name)) {
            return Err(Reason::UndeclaredName);
        }
    }
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(s: &str) -> Scan {
        scan(s.as_bytes(), &mut Vec::new())
    }

    #[test]
    fn finds_the_end_of_complete_containers() {
        let cases = [
            ("{}", 2),
            ("[]", 2),
            ("{\"a\": [1, -2.5e+3, true, null, \"x\\\"}\"]} tail", 39),
            ("[0, {\"b\": false}] x", 17),
            ("{\"u\": \"\\u00e9\"}", 15),
        ];
        for (s, end) in cases {
            assert_eq!(sc(s), Scan::Complete(end), "{s}");
        }
    }

    #[test]
    fn rejects_invalid_syntax_early() {
        for s in [
            "{'a': 1}",
            "{\"a\": 1,}",
            "[1,]",
            "{\"a\": tru }",
            "{\"a\": 01}",
            "{\"a\": \"\n\"}",
            "{\"a\" 1}",
            "{ hello",
            "{{",
            "[1 2]",
            "{\"a\": \"\\x\"}",
            "{\"a\": NaN}",
            "{\"a\": -}",
        ] {
            assert_eq!(sc(s), Scan::Invalid, "{s}");
        }
    }

    #[test]
    fn reports_incomplete_and_open_containers() {
        let mut open = Vec::new();
        assert_eq!(scan(b"[[{\"a\": [1", &mut open), Scan::Incomplete);
        assert_eq!(open, vec![0, 1, 2, 8]);
        assert_eq!(sc("{\"a\": 12"), Scan::Incomplete);
        assert_eq!(sc("{\"a\": \"\\u00"), Scan::Incomplete);
    }

    #[test]
    fn interprets_call_objects_and_lists() {
        let rules = CallRules {
            args_required: true,
            declared: None,
        };
        let v: Value = serde_json::from_str(r#"{"name":"a","parameters":{"x":1}}"#).unwrap();
        assert_eq!(calls_from_value(&v, rules).unwrap()[0].arguments["x"], 1);
        let v: Value = serde_json::from_str(r#"{"name":"a","arguments":"{\"x\":2}"}"#).unwrap();
        assert_eq!(calls_from_value(&v, rules).unwrap()[0].arguments["x"], 2);
        let v: Value = serde_json::from_str(r#"{"name":"a"}"#).unwrap();
        assert_eq!(calls_from_value(&v, rules), Err(Reason::NotACall));
        let v: Value = serde_json::from_str(r#"{"name":"a","arguments":[1]}"#).unwrap();
        assert_eq!(calls_from_value(&v, rules), Err(Reason::NotACall));
        let v: Value = serde_json::from_str(r#"[]"#).unwrap();
        assert_eq!(calls_from_value(&v, rules), Err(Reason::NotACall));
    }
}
