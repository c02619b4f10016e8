//! The scanner's steps: given the undecided text and the current mode, decide a prefix
//! (content, reasoning, markup with calls, a failed construct) or wait. Normal mode finds
//! the next character that can start a construct and dispatches to the format parsers;
//! the streaming modes (reasoning, failed span, plain fence) release text as it comes and
//! hold back only a possible closing/marker prefix. See `scan.rs` for the driver.

use crate::cursor::{Cur, Stop};
use crate::json::{self};
use crate::scan::{Action, Bare, Marker, Mode, Run, Scanner};
use crate::types::{Construct, Reason, Rejection, ToolSpec};
use crate::{deepseek, fence, hermes, llama3_json, markers, mistral, qwen};

impl Scanner {
    pub(crate) fn step_start(&mut self, rest: &str, eof: bool) -> Action {
        let body = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        let ws = rest.len() - body.len();
        if body.starts_with("<think>") {
            if ws > 0 {
                return Action::Content(ws);
            }
            self.mode = Mode::Reasoning;
            return Action::Skip("<think>".len());
        }
        if !eof && "<think>".starts_with(body) {
            return Action::Wait;
        }
        Action::Mode(Mode::Normal)
    }

    pub(crate) fn step_normal(&mut self, rest: &str, eof: bool) -> Action {
        if let Some(run) = self.run {
            match self.step_run(rest, eof, run) {
                Some(action) => return action,
                None => self.run = None,
            }
        }
        let bytes = rest.as_bytes();
        let fences = self.f.bare != Bare::Never;
        let mut line_start = self.at_line_start;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if self.interesting[b as usize] || (fences && line_start && b == b'`') {
                break;
            }
            line_start = b == b'\n';
            i += 1;
        }
        if i > 0 {
            // Interesting bytes are ASCII or UTF-8 lead bytes: `i` is a char boundary.
            return Action::Content(i);
        }
        self.construct_at(rest, eof)
    }

    /// At an interesting character: a marker, a fence, bare JSON, or just content.
    fn construct_at(&mut self, rest: &str, eof: bool) -> Action {
        let mut maybe = false;
        for k in 0..self.markers.len() {
            let m = self.markers[k];
            if rest.starts_with(m.text) {
                return self.marked(rest, eof, m);
            }
            maybe |= !eof && m.text.starts_with(rest);
        }
        if maybe {
            return Action::Wait;
        }
        let first = rest.as_bytes()[0];
        if first == b'`' && self.f.bare != Bare::Never && self.at_line_start {
            return self.fenced(rest, eof);
        }
        if matches!(first, b'{' | b'[') && bare_enabled(self.f.bare, &self.tools) {
            return self.bare(rest, eof);
        }
        Action::Content(rest.chars().next().map_or(1, char::len_utf8))
    }

    /// A construct introduced by marker `m` at the start of `rest`.
    fn marked(&mut self, rest: &str, eof: bool, m: Marker) -> Action {
        let tools = std::mem::take(&mut self.tools);
        let mut cur = Cur::new(rest, eof, &mut self.open);
        cur.i = m.text.len();
        let result = match m.construct {
            Construct::ToolCallTag => {
                hermes::tag_block(&mut cur, markers::hermes::TOOL_CALL_END, self.f.xml, &tools)
            }
            Construct::ToolsTag => {
                hermes::tag_block(&mut cur, markers::hermes::TOOLS_END, false, &tools)
            }
            Construct::MistralToolCalls => mistral::after_marker(&mut cur),
            Construct::PythonTag => llama3_json::after_marker(&mut cur),
            Construct::QwenFunction => qwen::function_after_marker(&mut cur),
            _ => deepseek::after_marker(&mut cur),
        };
        let end = cur.i;
        self.tools = tools;
        match result {
            Ok(calls) => {
                if m.construct == Construct::PythonTag {
                    self.run = Some(Run::Tagged);
                }
                Action::Calls(end, calls)
            }
            Err(Stop::More) => Action::Wait,
            Err(Stop::Fail(reason)) => Action::Failed {
                marker: m.text.len(),
                closing: m.closing,
                rejection: Rejection {
                    construct: m.construct,
                    reason,
                },
            },
        }
    }

    /// After a call of a run: another call (separator included), or the run ends (`None`).
    fn step_run(&mut self, rest: &str, eof: bool, run: Run) -> Option<Action> {
        let mut open = std::mem::take(&mut self.open);
        let Some(rules) = self.run_rules(run) else {
            self.open = open;
            return None;
        };
        let mut cur = Cur::new(rest, eof, &mut open);
        cur.ws();
        if matches!(cur.rest().as_bytes().first(), Some(b',' | b';')) {
            cur.i += 1;
            cur.ws();
        }
        let action = match cur.rest().as_bytes().first() {
            None if !eof => Some(Action::Wait),
            Some(b'{' | b'[') => match cur.json() {
                Err(Stop::More) => Some(Action::Wait),
                Ok(v) => match json::calls_from_value(&v, rules) {
                    Ok(calls) => Some(Action::Calls(cur.i, calls)),
                    Err(_) => None,
                },
                Err(Stop::Fail(_)) => None,
            },
            _ => None,
        };
        self.open = open;
        action
    }

    /// Bare JSON at `{` or `[` (contract: "Scanning markerless JSON").
    fn bare(&mut self, rest: &str, eof: bool) -> Action {
        let abs = self.base + self.pos;
        if eof && self.eof_open.contains(&abs) {
            return Action::Content(1);
        }
        let mut open = std::mem::take(&mut self.open);
        let Some(rules) = self.markerless_rules() else {
            self.open = open;
            return Action::Content(1);
        };
        let scanned = json::value_at(rest, &mut open);
        let incomplete = matches!(scanned, Ok(None));
        let action = match scanned {
            Ok(None) if !eof => Action::Wait,
            Ok(None) | Err(_) => Action::Content(1),
            Ok(Some((v, end))) => match json::calls_from_value(&v, rules) {
                Ok(calls) => Action::Calls(end, calls),
                Err(Reason::UndeclaredName) => Action::Rejected(
                    end,
                    Rejection {
                        construct: Construct::BareJson,
                        reason: Reason::UndeclaredName,
                    },
                ),
                Err(_) => Action::Content(end),
            },
        };
        if eof && incomplete {
            // Every container still open at the end stays open from its own start too:
            // remember them so `[[[[…` is not re-scanned once per bracket.
            self.eof_open.extend(open.iter().map(|&o| abs + o));
        }
        self.open = open;
        if matches!(action, Action::Calls(..)) {
            self.run = Some(Run::Markerless);
        }
        action
    }

    /// A fence opening at a line start (contract: "Fenced code blocks").
    fn fenced(&mut self, rest: &str, eof: bool) -> Action {
        let mut open = std::mem::take(&mut self.open);
        let tools = std::mem::take(&mut self.tools);
        let decision = fence::decide(rest, eof, self.f, &tools, &mut open);
        self.open = open;
        self.tools = tools;
        match decision {
            fence::Decision::NotFence => Action::Content(1),
            fence::Decision::Wait => Action::Wait,
            fence::Decision::Content(n) => Action::Content(n),
            fence::Decision::Rejected(n, reason) => Action::Rejected(
                n,
                Rejection {
                    construct: Construct::Fence,
                    reason,
                },
            ),
            fence::Decision::Plain(opening) => {
                self.mode = Mode::PlainFence;
                Action::Content(opening)
            }
            fence::Decision::Calls(n, calls) => Action::Calls(n, calls),
        }
    }

    pub(crate) fn step_reasoning(&mut self, rest: &str, eof: bool) -> Action {
        const END: &str = "</think>";
        match rest.find(END) {
            Some(0) => {
                self.mode = Mode::Normal;
                Action::Skip(END.len())
            }
            Some(at) => Action::Reasoning(at),
            None if eof => Action::Reasoning(rest.len()),
            None => match rest.len() - partial_suffix(rest, END) {
                0 => Action::Wait,
                n => Action::Reasoning(n),
            },
        }
    }

    pub(crate) fn step_plain_fence(&mut self, rest: &str, eof: bool) -> Action {
        match fence::closing_line(rest, self.at_line_start) {
            fence::Closing::At(at) => {
                self.mode = Mode::Normal;
                Action::Content(at + markers::fence::FENCE.len())
            }
            fence::Closing::Partial(at) if !eof => match at {
                0 => Action::Wait,
                n => Action::Content(n),
            },
            _ => Action::Content(rest.len()),
        }
    }

    pub(crate) fn step_failed(
        &mut self,
        rest: &str,
        eof: bool,
        closing: Option<&'static str>,
    ) -> Action {
        // The earliest closing tag (inclusive) or opening marker (exclusive).
        let mut end: Option<(usize, usize)> = None;
        let mut consider = |at: Option<usize>, len: usize| {
            if let Some(at) = at {
                if end.is_none_or(|(e, _)| at < e) {
                    end = Some((at, len));
                }
            }
        };
        if let Some(c) = closing {
            consider(rest.find(c), c.len());
        }
        for m in &self.markers {
            consider(rest.find(m.text), 0);
        }
        if let Some((at, len)) = end {
            self.mode = Mode::Normal;
            return if at + len == 0 {
                Action::Mode(Mode::Normal)
            } else {
                Action::Content(at + len)
            };
        }
        if eof {
            self.mode = Mode::Normal;
            return Action::Content(rest.len());
        }
        let mut hold = closing.map_or(0, |c| partial_suffix(rest, c));
        for m in &self.markers {
            hold = hold.max(partial_suffix(rest, m.text));
        }
        match rest.len() - hold {
            0 => Action::Wait,
            n => Action::Content(n),
        }
    }
}

pub(crate) fn bare_enabled(bare: Bare, tools: &[ToolSpec]) -> bool {
    match bare {
        Bare::Never => false,
        Bare::WithTools => !tools.is_empty(),
        Bare::Always => true,
    }
}

/// The length of the longest suffix of `hay` that is a proper prefix of `needle`.
pub(crate) fn partial_suffix(hay: &str, needle: &str) -> usize {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    (1..n.len().min(h.len() + 1))
        .rev()
        .find(|&k| h.ends_with(&n[..k]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_suffix_finds_marker_prefixes() {
        assert_eq!(partial_suffix("abc</thi", "</think>"), 5);
        assert_eq!(partial_suffix("abc", "</think>"), 0);
        assert_eq!(partial_suffix("</think>", "</think>"), 0);
        assert_eq!(partial_suffix("x<｜tool", "<｜tool▁calls▁begin｜>"), 8);
    }
}
