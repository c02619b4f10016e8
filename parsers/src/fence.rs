//! Fenced code blocks (contract: "Scanning markerless JSON" → "Fenced code blocks").
//!
//! A fence opens with three backticks at a line start, then an info string to the end of
//! that line, and closes at the next line that starts with three backticks (only those
//! three characters belong to the fence). With info `""` or `json` (`qwen`/`auto`: also
//! `xml`; compared after trimming, case-sensitive) and a body made only of calls, the whole
//! block is markup. Any other block is content verbatim and nothing inside is parsed.
//!
//! Streaming: an eligible fence is held until it closes, except that it is released as a
//! plain block as soon as its body cannot be calls (first non-blank character not `{`,
//! `[` or — with xml — `<`, or invalid JSON), so ordinary code blocks stream.

use crate::cursor::{Cur, Stop};
use crate::json::{self, CallRules, RawCall};
use crate::markers::fence::FENCE;
use crate::scan::{Bare, Features};
use crate::types::{Reason, ToolSpec};
use crate::{hermes, markers};

/// What to do at a line-start backtick.
pub enum Decision {
    /// Not three backticks: the backtick is content.
    NotFence,
    Wait,
    /// Content bytes (a non-call block, or one never closed at end of output).
    Content(usize),
    /// Content bytes of a block whose body held call-shaped JSON that failed.
    Rejected(usize, Reason),
    /// A non-call block: this many bytes (the opening line) are content, then the body
    /// streams as content until the closing line.
    Plain(usize),
    /// A call block of this many bytes.
    Calls(usize, Vec<RawCall>),
}

/// Where a fence's closing line is.
pub enum Closing {
    /// Three backticks at a line start at this offset.
    At(usize),
    /// Not found; from this offset on the text may still become a closing line.
    Partial(usize),
}

/// Finds the first line starting with three backticks; `line_start` says whether offset 0
/// is a line start.
pub fn closing_line(s: &str, line_start: bool) -> Closing {
    let b = s.as_bytes();
    let mut candidate = if line_start { Some(0) } else { None };
    let mut search = 0;
    loop {
        if let Some(c) = candidate {
            let tail = &b[c..];
            if tail.starts_with(FENCE.as_bytes()) {
                return Closing::At(c);
            }
            if FENCE.as_bytes().starts_with(tail) {
                return Closing::Partial(c);
            }
        }
        match b[search..].iter().position(|&x| x == b'\n') {
            Some(nl) => {
                candidate = Some(search + nl + 1);
                search += nl + 1;
            }
            None => return Closing::Partial(s.len()),
        }
    }
}

/// Decides the fence that starts at `s[0]` (a backtick at a line start).
pub fn decide(
    s: &str,
    eof: bool,
    f: Features,
    tools: &[ToolSpec],
    open: &mut Vec<usize>,
) -> Decision {
    if !s.starts_with(FENCE) {
        return match !eof && FENCE.starts_with(s) {
            true => Decision::Wait,
            false => Decision::NotFence,
        };
    }
    let Some(nl) = s.find('\n') else {
        // No body yet; at the end of output the fence never closes: content.
        return match eof {
            true => Decision::Content(s.len()),
            false => Decision::Wait,
        };
    };
    let info = s[FENCE.len()..nl].trim();
    let eligible = info.is_empty() || info == "json" || (f.fence_xml && info == "xml");
    if !eligible {
        return Decision::Plain(nl + 1);
    }
    let body_start = nl + 1;
    match closing_line(&s[body_start..], true) {
        Closing::At(at) => {
            let end = body_start + at + FENCE.len();
            match body_calls(&s[body_start..body_start + at], f, tools, open) {
                Ok(calls) => Decision::Calls(end, calls),
                Err(Reason::UndeclaredName) => Decision::Rejected(end, Reason::UndeclaredName),
                Err(_) => Decision::Content(end),
            }
        }
        Closing::Partial(_) if eof => Decision::Content(s.len()),
        Closing::Partial(_) => match cannot_be_calls(&s[body_start..], f, open) {
            true => Decision::Plain(body_start),
            false => Decision::Wait,
        },
    }
}

/// Whether an unclosed eligible fence can already be released as plain: its body cannot
/// be calls, whatever follows.
fn cannot_be_calls(body: &str, f: Features, open: &mut Vec<usize>) -> bool {
    let t = body.trim_start_matches([' ', '\t', '\r', '\n']);
    match t.as_bytes().first() {
        None => false,
        Some(b'{' | b'[') => json::scan(t.as_bytes(), open) == json::Scan::Invalid,
        Some(b'<') => {
            let tag = |m: &str| t.starts_with(m) || m.starts_with(t);
            !(f.fence_xml && (tag(markers::hermes::TOOL_CALL) || tag(markers::hermes::TOOLS)))
        }
        Some(_) => true,
    }
}

/// The body of an eligible fence → its calls, or why it is not only calls.
fn body_calls(
    body: &str,
    f: Features,
    tools: &[ToolSpec],
    open: &mut Vec<usize>,
) -> Result<Vec<RawCall>, Reason> {
    let mut cur = Cur::new(body, true, open);
    cur.ws();
    let result = if f.fence_xml && cur.rest().starts_with('<') {
        tag_blocks(&mut cur, f, tools)
    } else {
        let declared = (!tools.is_empty()).then_some(tools);
        let rules = match (f.bare, declared) {
            (Bare::Always, d) => CallRules {
                args_required: true,
                declared: d,
            },
            (Bare::WithTools, Some(d)) => CallRules {
                args_required: true,
                declared: Some(d),
            },
            _ => {
                // Markerless calls need a tools list here: check the shape only, to tell
                // "call with no declared tools" (rejected) from ordinary JSON.
                let shape = CallRules {
                    args_required: true,
                    declared: None,
                };
                return match cur.payload(shape) {
                    Ok(_) => Err(Reason::UndeclaredName),
                    Err(Stop::Fail(r)) => Err(r),
                    Err(Stop::More) => Err(Reason::Truncated),
                };
            }
        };
        cur.payload(rules)
    };
    let calls = result.map_err(|e| match e {
        Stop::Fail(r) => r,
        Stop::More => Reason::Truncated,
    })?;
    cur.ws();
    match cur.at_end() {
        true => Ok(calls),
        false => Err(Reason::Malformed),
    }
}

/// One or more `<tool_call>`/`<tools>` blocks separated by whitespace.
fn tag_blocks(cur: &mut Cur<'_>, f: Features, tools: &[ToolSpec]) -> Result<Vec<RawCall>, Stop> {
    let mut calls = Vec::new();
    loop {
        if cur.try_lit(markers::hermes::TOOL_CALL)? {
            calls.extend(hermes::tag_block(
                cur,
                markers::hermes::TOOL_CALL_END,
                f.xml,
                tools,
            )?);
        } else if cur.try_lit(markers::hermes::TOOLS)? {
            calls.extend(hermes::tag_block(
                cur,
                markers::hermes::TOOLS_END,
                false,
                tools,
            )?);
        } else {
            return Err(Stop::Fail(Reason::Malformed));
        }
        cur.ws();
        if cur.at_end() {
            return Ok(calls);
        }
    }
}
