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
//! call of a few hundred bytes is decided at its closing character, a huge one at most
//! 1/16 of its length later (1/128 once a closing character arrives). Streaming modes (reasoning, failed spans, plain
//! fences) release text as it arrives and keep their state between pushes.
//!
//! Must not depend on anything model- or server-specific.

use crate::json::{CallRules, RawCall};
use crate::markers::{deepseek, hermes, llama3_json, mistral, qwen};
use crate::steps::bare_enabled;
use crate::types::{Construct, Event, Rejection, ToolSpec};
use crate::{ids, ToolParser};
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
pub(crate) enum Mode {
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
pub(crate) enum Run {
    /// After bare JSON: markerless rules.
    Markerless,
    /// After `<|python_tag|>`: no name validation, arguments key optional.
    Tagged,
}

/// What one step decided.
pub(crate) enum Action {
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
pub(crate) struct Marker {
    pub(crate) text: &'static str,
    pub(crate) construct: Construct,
    pub(crate) closing: Option<&'static str>,
}

/// The streaming parser shared by all formats.
pub struct Scanner {
    pub(crate) f: Features,
    pub(crate) tools: Vec<ToolSpec>,
    pub(crate) markers: Vec<Marker>,
    /// Opening markers plus closing tags, for failed spans.
    pub(crate) interesting: [bool; 256],
    buf: String,
    pub(crate) pos: usize,
    /// Absolute offset of `buf[0]` in the whole output.
    pub(crate) base: usize,
    pub(crate) mode: Mode,
    pub(crate) at_line_start: bool,
    pub(crate) run: Option<Run>,
    /// Undecided bytes at the last wait (0: none held).
    held: usize,
    pub(crate) open: Vec<usize>,
    /// Absolute offsets of `{`/`[` known to stay open to the end of output.
    pub(crate) eof_open: HashSet<usize>,
    next_index: usize,
    id_seed: u64,
    pending: String,
    pending_kind: Kind,
}

impl Scanner {
    /// A scanner for one generation.
    pub fn new(f: Features, tools: &[ToolSpec]) -> Scanner {
        let markers = markers(&f);
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
            id_seed: ids::random_seed(),
            pending: String::new(),
            pending_kind: Kind::Content,
        }
    }

    /// Rules for markerless calls (bare JSON, fences), `None` when they are never calls.
    pub(crate) fn markerless_rules(&self) -> Option<CallRules<'_>> {
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

    pub(crate) fn run_rules(&self, run: Run) -> Option<CallRules<'_>> {
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
            .unwrap_or_else(|| ids::call_id(self.id_seed, index as u64));
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
}

/// The opening markers `f` recognises, with their constructs and closing tags.
fn markers(f: &Features) -> Vec<Marker> {
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
    markers
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
