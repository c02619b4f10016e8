//! The streaming scanner every parser runs, configured by [`Features`]: which constructs
//! the format recognises. It implements [`ToolParser`].
//!
//! Text is appended to a buffer; the undecided tail starts at `pos`. Each step looks at
//! the tail and either decides a prefix (content, reasoning, markup with calls, a failed
//! construct) or waits. Decisions are monotonic (see `cursor.rs`), so the result does not
//! depend on chunking. Content is released as soon as it cannot start a construct; only a
//! possible marker prefix, an unfinished construct, or an eligible fence is held back.
//!
//! Amortized linear time: a held construct is re-examined only after the undecided tail
//! has grown by 1/16 of its length since the last attempt, or by 1/128 when the new text
//! holds a byte that can end a construct (`>`, `}`, `]`, backtick, newline), or at
//! `finish`. So a construct of length L costs O(L) in total whatever the chunk size; a
//! call of a few hundred bytes is decided at its closing character, a huge one within
//! 1/128 of its length after it. Streaming modes (reasoning, failed spans, plain
//! fences) release text as it arrives and keep their state between pushes.
//!
//! Must not depend on anything model- or server-specific.

use crate::cursor::{Cur, Stop};
use crate::json::{self, CallRules, RawCall};
use crate::types::{Construct, Event, Reason, Rejection, ToolSpec};
use crate::{deepseek, fence, hermes, llama3_json, mistral, qwen, ToolParser};
use std::collections::HashSet;

/// When markerless JSON (bare or fenced) is read as calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bare {
    /// Never (not fence-aware either).
    Never,
    /// Only when a tools list is given, and names must be declared (`qwen`, `auto`).
    WithTools,
    /// Always; names are validated when a tools list is given (`llama3_json`).
    Always,
}

/// The constructs a format recognises.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    /// A leading `<think>` block is reasoning (rule 8).
    pub think: bool,
    /// `<tool_call>` JSON blocks.
    pub tool_call_tag: bool,
    /// Qwen3-Coder XML inside `<tool_call>`.
    pub xml: bool,
    /// `<tools>` JSON blocks.
    pub tools_tag: bool,
    /// `[TOOL_CALLS]`.
    pub mistral: bool,
    /// `<|python_tag|>`.
    pub python_tag: bool,
    /// `✿FUNCTION✿` / `✿ARGS✿`.
    pub qwen_function: bool,
    /// DeepSeek tool-call sections.
    pub deepseek: bool,
    /// Markerless JSON and fences (fence-aware when not `Never`).
    pub bare: Bare,
    /// Fences may be ```` ```xml ```` and hold `<tool_call>`/`<tools>` blocks.
    pub fence_xml: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Before the first non-whitespace: is there a `<think>`?
    Start,
    /// Inside the leading `<think>` block.
    Reasoning,
    Normal,
    /// A construct failed: content until its closing tag (inclusive) or the next opening
    /// marker (exclusive).
    FailedSpan {
        closing: Option<&'static str>,
    },
    /// Inside a fenced block that is not calls: content until the closing fence.
    PlainFence,
}

/// Markup runs after a call: further calls separated by whitespace and one `,`/`;`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// After bare JSON: markerless rules.
    Markerless,
    /// After `<|python_tag|>`: no name validation, arguments key optional.
    Tagged,
}

/// What one step decided.
enum Action {
    Content(usize),
    Reasoning(usize),
    /// Markup that holds no call (`<think>`, `</think>`).
    Skip(usize),
    Calls(usize, Vec<RawCall>),
    /// Content that also counts as a rejected construct.
    Rejected(usize, Rejection),
    /// A marker-introduced construct failed: its marker is content, then a failed span.
    Failed {
        marker: usize,
        closing: Option<&'static str>,
        rejection: Rejection,
    },
    Mode(Mode),
    Wait,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Content,
    Reasoning,
}

/// One opening marker the scanner recognises.
#[derive(Clone, Copy)]
struct Marker {
    text: &'static str,
    construct: Construct,
    closing: Option<&'static str>,
}

/// The streaming parser shared by all formats.
pub struct Scanner {
    f: Features,
    tools: Vec<ToolSpec>,
    markers: Vec<Marker>,
    /// Opening markers plus closing tags, for failed spans.
    interesting: [bool; 256],
    buf: String,
    pos: usize,
    /// Absolute offset of `buf[0]` in the whole output.
    base: usize,
    mode: Mode,
    at_line_start: bool,
    run: Option<Run>,
    /// Undecided bytes at the last wait (0: none held).
    held: usize,
    open: Vec<usize>,
    /// Absolute offsets of `{`/`[` known to stay open to the end of output.
    eof_open: HashSet<usize>,
    next_index: usize,
    id_seed: u64,
    pending: String,
    pending_kind: Kind,
}

impl Scanner {
    /// A scanner for one generation.
    pub fn new(f: Features, tools: &[ToolSpec]) -> Scanner {
        let mut markers = Vec::new();
        let mut add = |on: bool, text, construct, closing| {
            if on {
                markers.push(Marker {
                    text,
                    construct,
                    closing,
                })
            }
        };
        add(
            f.tool_call_tag,
            hermes::TOOL_CALL,
            Construct::ToolCallTag,
            Some(hermes::TOOL_CALL_END),
        );
        add(
            f.tools_tag,
            hermes::TOOLS,
            Construct::ToolsTag,
            Some(hermes::TOOLS_END),
        );
        add(
            f.mistral,
            mistral::TOOL_CALLS,
            Construct::MistralToolCalls,
            None,
        );
        add(
            f.python_tag,
            llama3_json::PYTHON_TAG,
            Construct::PythonTag,
            None,
        );
        add(
            f.qwen_function,
            qwen::FUNCTION,
            Construct::QwenFunction,
            None,
        );
        add(
            f.deepseek,
            deepseek::BEGIN,
            Construct::DeepSeekSection,
            Some(deepseek::END),
        );
        let tools = tools.to_vec();
        let mut interesting = [false; 256];
        for m in &markers {
            interesting[m.text.as_bytes()[0] as usize] = true;
        }
        if bare_enabled(f.bare, &tools) {
            interesting[b'{' as usize] = true;
            interesting[b'[' as usize] = true;
        }
        Scanner {
            f,
            tools,
            markers,
            interesting,
            buf: String::new(),
            pos: 0,
            base: 0,
            mode: if f.think { Mode::Start } else { Mode::Normal },
            at_line_start: true,
            run: None,
            held: 0,
            open: Vec::new(),
            eof_open: HashSet::new(),
            next_index: 0,
            id_seed: random_seed(),
            pending: String::new(),
            pending_kind: Kind::Content,
        }
    }

    /// Rules for markerless calls (bare JSON, fences), `None` when they are never calls.
    fn markerless_rules(&self) -> Option<CallRules<'_>> {
        let declared = (!self.tools.is_empty()).then_some(self.tools.as_slice());
        match self.f.bare {
            Bare::Never => None,
            Bare::WithTools => declared.map(|d| CallRules {
                args_required: true,
                declared: Some(d),
            }),
            Bare::Always => Some(CallRules {
                args_required: true,
                declared,
            }),
        }
    }

    fn run_rules(&self, run: Run) -> Option<CallRules<'_>> {
        match run {
            Run::Markerless => self.markerless_rules(),
            Run::Tagged => Some(CallRules {
                args_required: false,
                declared: None,
            }),
        }
    }

    /// Decides as much of the undecided tail as possible.
    fn drive(&mut self, eof: bool, out: &mut Vec<Event>) {
        let buf = std::mem::take(&mut self.buf);
        self.held = 0;
        while self.pos < buf.len() {
            let rest = &buf[self.pos..];
            let action = match self.mode {
                Mode::Start => self.step_start(rest, eof),
                Mode::Reasoning => self.step_reasoning(rest, eof),
                Mode::Normal => self.step_normal(rest, eof),
                Mode::FailedSpan { closing } => self.step_failed(rest, eof, closing),
                Mode::PlainFence => self.step_plain_fence(rest, eof),
            };
            if !self.apply(action, rest, out) {
                self.held = rest.len();
                break;
            }
        }
        if eof && matches!(self.mode, Mode::Start) {
            self.mode = Mode::Normal;
        }
        self.flush(out);
        self.buf = buf;
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.base += self.pos;
            self.pos = 0;
        }
    }

    /// Applies a step; `false` when it waits.
    fn apply(&mut self, action: Action, rest: &str, out: &mut Vec<Event>) -> bool {
        match action {
            Action::Content(n) => self.text(Kind::Content, &rest[..n], out),
            Action::Reasoning(n) => {
                self.text(Kind::Reasoning, &rest[..n], out);
                return true;
            }
            Action::Skip(n) => {
                self.pos += n;
                // `<think>`/`</think>`: the answer starts a fresh line.
                self.at_line_start = true;
                return true;
            }
            Action::Calls(n, calls) => {
                self.flush(out);
                for call in calls {
                    self.emit_call(call, out);
                }
                self.at_line_start = false;
                self.pos += n;
                return true;
            }
            Action::Rejected(n, rejection) => {
                self.flush(out);
                out.push(Event::Rejected(rejection));
                self.text(Kind::Content, &rest[..n], out);
            }
            Action::Failed {
                marker,
                closing,
                rejection,
            } => {
                self.flush(out);
                out.push(Event::Rejected(rejection));
                self.text(Kind::Content, &rest[..marker], out);
                self.mode = Mode::FailedSpan { closing };
                return true;
            }
            Action::Mode(m) => {
                self.mode = m;
                return true;
            }
            Action::Wait => return false,
        }
        // Content actions: advance and track line starts for fences.
        true
    }

    fn text(&mut self, kind: Kind, s: &str, out: &mut Vec<Event>) {
        if s.is_empty() {
            return;
        }
        if kind != self.pending_kind {
            self.flush(out);
            self.pending_kind = kind;
        }
        self.pending.push_str(s);
        self.pos += s.len();
        if kind == Kind::Content {
            self.at_line_start = s.ends_with('\n');
        }
    }

    fn flush(&mut self, out: &mut Vec<Event>) {
        if self.pending.is_empty() {
            return;
        }
        let s = std::mem::take(&mut self.pending);
        out.push(match self.pending_kind {
            Kind::Content => Event::Content(s),
            Kind::Reasoning => Event::Reasoning(s),
        });
    }

    fn emit_call(&mut self, call: RawCall, out: &mut Vec<Event>) {
        let index = self.next_index;
        self.next_index += 1;
        let id = call
            .id
            .unwrap_or_else(|| call_id(self.id_seed, index as u64));
        out.push(Event::CallStart {
            index,
            id,
            name: call.name,
        });
        let fragment = serde_json::Value::Object(call.arguments.clone()).to_string();
        out.push(Event::CallArgs { index, fragment });
        out.push(Event::CallEnd {
            index,
            arguments: call.arguments,
        });
    }

    fn step_start(&mut self, rest: &str, eof: bool) -> Action {
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

    fn step_normal(&mut self, rest: &str, eof: bool) -> Action {
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
                hermes::tag_block(&mut cur, hermes::TOOL_CALL_END, self.f.xml, &tools)
            }
            Construct::ToolsTag => hermes::tag_block(&mut cur, hermes::TOOLS_END, false, &tools),
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

    fn step_reasoning(&mut self, rest: &str, eof: bool) -> Action {
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

    fn step_plain_fence(&mut self, rest: &str, eof: bool) -> Action {
        match fence::closing_line(rest, self.at_line_start) {
            fence::Closing::At(at) => {
                self.mode = Mode::Normal;
                Action::Content(at + fence::FENCE.len())
            }
            fence::Closing::Partial(at) if !eof => match at {
                0 => Action::Wait,
                n => Action::Content(n),
            },
            _ => Action::Content(rest.len()),
        }
    }

    fn step_failed(&mut self, rest: &str, eof: bool, closing: Option<&'static str>) -> Action {
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

fn bare_enabled(bare: Bare, tools: &[ToolSpec]) -> bool {
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

impl Scanner {
    /// Whether a held construct should be re-examined after `text` was appended: once it
    /// grew by 1/16, or by 1/128 when `text` holds a byte that can end a construct. Each
    /// attempt costs O(held), so the total stays linear while calls are still released
    /// promptly (for typical calls of a few hundred bytes: at the closing character).
    fn worth_retry(&self, text: &str) -> bool {
        let grown = self.buf.len() - self.pos - self.held;
        if grown * 16 >= self.held {
            return true;
        }
        let closing = text
            .bytes()
            .any(|b| matches!(b, b'>' | b'}' | b']' | b'`' | b'\n'));
        closing && grown * 128 >= self.held
    }
}

impl ToolParser for Scanner {
    fn push(&mut self, text: &str, out: &mut Vec<Event>) {
        self.buf.push_str(text);
        if self.held > 0 && !self.worth_retry(text) {
            return;
        }
        self.drive(false, out);
    }

    fn finish(&mut self, out: &mut Vec<Event>) {
        self.drive(true, out);
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish()
}

/// `call_` plus 24 alphanumerics derived from the per-generation seed and the index.
fn call_id(seed: u64, index: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut x = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut id = String::with_capacity(29);
    id.push_str("call_");
    for _ in 0..24 {
        // splitmix64 step
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        id.push(ALPHABET[(z % 62) as usize] as char);
    }
    id
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

    #[test]
    fn call_ids_are_distinct_and_openai_shaped() {
        let a = call_id(7, 0);
        let b = call_id(7, 1);
        assert_ne!(a, b);
        assert!(a.starts_with("call_") && a.len() == 29);
    }
}
