//! Decoding constraints that make the model's output a JSON object: for
//! `response_format: {"type":"json_object"}` and for the arguments of a forced tool call
//! (`tool_choice: "required"` or a named function), optionally preceded by a choice among
//! fixed strings (the function name).
//! Input: raw token bytes from the sampler. Output: allow/deny, and completion.
//! The checker is a byte-level pushdown automaton whose whole state is `Copy` (the
//! container stack is a bit set), so `allows` tries a piece on a copy without allocating:
//! the sampler calls it for many candidate tokens per step.
//! Must not depend on axum or the tokenizer.

use crate::engine::Constraint;

/// Deepest nesting accepted (one bit of `stack` per level).
const MAX_DEPTH: u32 = 128;
/// Longest run of whitespace between tokens: stops a model from padding forever.
const MAX_WHITESPACE_RUN: u8 = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    /// Before the root object (only `{` may come).
    Start,
    /// Expecting a value; `first` after `[` where `]` may close at once.
    Value {
        first: bool,
    },
    /// Expecting a key; `first` after `{` where `}` may close at once.
    Key {
        first: bool,
    },
    Colon,
    /// After a value: `,`, or the container's closer.
    After,
    Str {
        key: bool,
        esc: Esc,
        utf8_left: u8,
    },
    /// Inside `true`/`false`/`null`: the word and how much of it was read.
    Word {
        word: &'static [u8],
        pos: u8,
    },
    Num(Num),
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    Backslash,
    /// Inside `\uXXXX`: hex digits still expected.
    Hex(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigits,
}

impl Num {
    /// Whether a number may end in this state.
    fn can_end(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }
}

/// Incremental checker for one JSON object (RFC 8259, UTF-8 validated byte by byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonObjectMachine {
    lex: Lex,
    /// Bit i set = level i is an array (clear = object).
    stack: u128,
    depth: u32,
    whitespace_run: u8,
}

impl Default for JsonObjectMachine {
    fn default() -> Self {
        Self::new()
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl JsonObjectMachine {
    pub fn new() -> Self {
        JsonObjectMachine {
            lex: Lex::Start,
            stack: 0,
            depth: 0,
            whitespace_run: 0,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.lex == Lex::Done
    }

    /// Feeds every byte; false (and an unspecified state) when one is not allowed.
    pub fn feed_all(&mut self, bytes: &[u8]) -> bool {
        bytes.iter().all(|&b| self.feed(b))
    }

    fn in_array(&self) -> bool {
        self.depth > 0 && (self.stack >> (self.depth - 1)) & 1 == 1
    }

    fn open(&mut self, array: bool) -> bool {
        if self.depth >= MAX_DEPTH {
            return false;
        }
        if array {
            self.stack |= 1 << self.depth;
        } else {
            self.stack &= !(1 << self.depth);
        }
        self.depth += 1;
        self.lex = if array {
            Lex::Value { first: true }
        } else {
            Lex::Key { first: true }
        };
        true
    }

    fn close(&mut self, array: bool) -> bool {
        if self.depth == 0 || self.in_array() != array {
            return false;
        }
        self.depth -= 1;
        self.lex = if self.depth == 0 {
            Lex::Done
        } else {
            Lex::After
        };
        true
    }

    /// Starts a value with byte `b` (the state is `Value`).
    fn begin_value(&mut self, b: u8) -> bool {
        match b {
            b'{' => self.open(false),
            b'[' => self.open(true),
            b'"' => {
                self.lex = Lex::Str {
                    key: false,
                    esc: Esc::None,
                    utf8_left: 0,
                };
                true
            }
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            b'-' => {
                self.lex = Lex::Num(Num::Minus);
                true
            }
            b'0' => {
                self.lex = Lex::Num(Num::Zero);
                true
            }
            b'1'..=b'9' => {
                self.lex = Lex::Num(Num::Int);
                true
            }
            _ => false,
        }
    }

    fn word(&mut self, word: &'static [u8]) -> bool {
        self.lex = Lex::Word { word, pos: 1 };
        true
    }

    /// Feeds one byte. Returns false when the byte cannot continue valid JSON.
    pub fn feed(&mut self, b: u8) -> bool {
        let structural = !matches!(self.lex, Lex::Str { .. } | Lex::Word { .. } | Lex::Num(_));
        if structural && is_ws(b) {
            if matches!(self.lex, Lex::Start | Lex::Done) {
                return false;
            }
            self.whitespace_run = self.whitespace_run.saturating_add(1);
            return self.whitespace_run <= MAX_WHITESPACE_RUN;
        }
        self.whitespace_run = 0;
        match self.lex {
            Lex::Start => b == b'{' && self.open(false),
            Lex::Done => false,
            Lex::Value { first } => (first && b == b']' && self.close(true)) || self.begin_value(b),
            Lex::Key { first } => {
                if first && b == b'}' {
                    return self.close(false);
                }
                if b == b'"' {
                    self.lex = Lex::Str {
                        key: true,
                        esc: Esc::None,
                        utf8_left: 0,
                    };
                    return true;
                }
                false
            }
            Lex::Colon => {
                if b == b':' {
                    self.lex = Lex::Value { first: false };
                    return true;
                }
                false
            }
            Lex::After => match b {
                b',' => {
                    self.lex = if self.in_array() {
                        Lex::Value { first: false }
                    } else {
                        Lex::Key { first: false }
                    };
                    true
                }
                b'}' => self.close(false),
                b']' => self.close(true),
                _ => false,
            },
            Lex::Str {
                key,
                esc,
                utf8_left,
            } => self.feed_str(b, key, esc, utf8_left),
            Lex::Word { word, pos } => {
                if word.get(pos as usize) != Some(&b) {
                    return false;
                }
                let pos = pos + 1;
                self.lex = if pos as usize == word.len() {
                    Lex::After
                } else {
                    Lex::Word { word, pos }
                };
                true
            }
            Lex::Num(n) => self.feed_num(b, n),
        }
    }

    fn feed_str(&mut self, b: u8, key: bool, esc: Esc, utf8_left: u8) -> bool {
        if utf8_left > 0 {
            if b & 0xC0 != 0x80 {
                return false;
            }
            self.lex = Lex::Str {
                key,
                esc,
                utf8_left: utf8_left - 1,
            };
            return true;
        }
        let esc = match esc {
            Esc::Backslash => match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Esc::None,
                b'u' => Esc::Hex(4),
                _ => return false,
            },
            Esc::Hex(left) => {
                if !b.is_ascii_hexdigit() {
                    return false;
                }
                if left > 1 {
                    Esc::Hex(left - 1)
                } else {
                    Esc::None
                }
            }
            Esc::None => match b {
                b'"' => {
                    self.lex = if key { Lex::Colon } else { Lex::After };
                    return true;
                }
                b'\\' => Esc::Backslash,
                0x00..=0x1F => return false,
                0x20..=0x7F => Esc::None,
                // UTF-8 lead bytes (overlong 0xC0/0xC1 and > U+10FFFF excluded).
                0xC2..=0xDF => return self.utf8(key, 1),
                0xE0..=0xEF => return self.utf8(key, 2),
                0xF0..=0xF4 => return self.utf8(key, 3),
                _ => return false,
            },
        };
        self.lex = Lex::Str {
            key,
            esc,
            utf8_left: 0,
        };
        true
    }

    fn utf8(&mut self, key: bool, continuation: u8) -> bool {
        self.lex = Lex::Str {
            key,
            esc: Esc::None,
            utf8_left: continuation,
        };
        true
    }

    fn feed_num(&mut self, b: u8, n: Num) -> bool {
        let next = match (n, b) {
            (Num::Minus, b'0') => Num::Zero,
            (Num::Minus, b'1'..=b'9') => Num::Int,
            (Num::Int, b'0'..=b'9') => Num::Int,
            (Num::Zero | Num::Int, b'.') => Num::Dot,
            (Num::Dot | Num::Frac, b'0'..=b'9') => Num::Frac,
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Num::Exp,
            (Num::Exp, b'+' | b'-') => Num::ExpSign,
            (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Num::ExpDigits,
            _ => {
                // The number ends here; the byte belongs to what follows it.
                if !n.can_end() {
                    return false;
                }
                self.lex = Lex::After;
                return self.feed(b);
            }
        };
        self.lex = Lex::Num(next);
        true
    }
}

/// `response_format: json_object` and forced tool arguments: the output is one JSON object.
#[derive(Debug, Clone, Default)]
pub struct JsonObjectConstraint {
    machine: JsonObjectMachine,
}

impl Constraint for JsonObjectConstraint {
    fn allows(&self, piece: &[u8]) -> bool {
        let mut m = self.machine;
        !piece.is_empty() && m.feed_all(piece)
    }
    fn advance(&mut self, piece: &[u8]) {
        let ok = self.machine.feed_all(piece);
        debug_assert!(ok, "advance() with a piece allows() rejected");
    }
    fn is_complete(&self) -> bool {
        self.machine.is_complete()
    }
}

/// One of several fixed strings, then a JSON object. For `tool_choice: "required"` with
/// several tools: the strings are `"NAME", "arguments": ` for each declared name, so the
/// model picks the function and then writes its arguments.
#[derive(Debug, Clone)]
pub struct ChoiceThenObject {
    choices: Vec<Vec<u8>>,
    /// Bytes of the choice read so far (while not yet complete).
    chosen: Vec<u8>,
    /// Index of the completed choice.
    done_choice: Option<usize>,
    machine: JsonObjectMachine,
}

impl ChoiceThenObject {
    pub fn new(choices: Vec<String>) -> Self {
        ChoiceThenObject {
            choices: choices.into_iter().map(String::into_bytes).collect(),
            chosen: Vec::new(),
            done_choice: None,
            machine: JsonObjectMachine::new(),
        }
    }

    /// Which choice was taken, once it is complete.
    pub fn chosen(&self) -> Option<usize> {
        self.done_choice
    }

    /// Where `piece` leads from the current state: `Some((choice, rest))` when it completes
    /// `choice` and `rest` must go to the JSON machine; `Some((usize::MAX, []))` when it
    /// stays inside some choice; `None` when no choice fits.
    fn split<'p>(&self, piece: &'p [u8]) -> Option<(usize, &'p [u8])> {
        let mut inside = false;
        for (i, c) in self.choices.iter().enumerate() {
            let Some(rest_of_choice) = c.strip_prefix(self.chosen.as_slice()) else {
                continue;
            };
            if piece.len() < rest_of_choice.len() {
                inside |= rest_of_choice.starts_with(piece);
            } else if piece.starts_with(rest_of_choice) {
                return Some((i, &piece[rest_of_choice.len()..]));
            }
        }
        inside.then_some((usize::MAX, &[][..]))
    }
}

impl Constraint for ChoiceThenObject {
    fn allows(&self, piece: &[u8]) -> bool {
        if piece.is_empty() {
            return false;
        }
        if self.done_choice.is_some() {
            let mut m = self.machine;
            return m.feed_all(piece);
        }
        match self.split(piece) {
            None => false,
            Some((usize::MAX, _)) => true,
            Some((_, rest)) => {
                let mut m = self.machine;
                m.feed_all(rest)
            }
        }
    }

    fn advance(&mut self, piece: &[u8]) {
        if self.done_choice.is_some() {
            self.machine.feed_all(piece);
            return;
        }
        match self.split(piece) {
            Some((usize::MAX, _)) => self.chosen.extend_from_slice(piece),
            Some((i, rest)) => {
                self.done_choice = Some(i);
                self.chosen.clear();
                self.machine.feed_all(rest);
            }
            None => debug_assert!(false, "advance() with a piece allows() rejected"),
        }
    }

    fn is_complete(&self) -> bool {
        self.done_choice.is_some() && self.machine.is_complete()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts_whole(s: &str) -> bool {
        let mut m = JsonObjectMachine::new();
        m.feed_all(s.as_bytes()) && m.is_complete()
    }

    fn accepts_prefix(s: &str) -> bool {
        let mut m = JsonObjectMachine::new();
        m.feed_all(s.as_bytes())
    }

    #[test]
    fn agrees_with_serde_on_complete_objects() {
        let cases = [
            r#"{}"#,
            r#"{"a":1}"#,
            r#"{ "a" : [1, 2.5, -3e+2, 0, -0.0e1, true, false, null] }"#,
            r#"{"s":"esc \" \\ \/ \b \f \n \r \t \u00e9 \uD83D\uDE00"}"#,
            r#"{"nested":{"x":[[],[{}],{"y":"ü€😀"}]}}"#,
            "{\"a\":\n  {\"b\": \"c\"}\n}",
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":+1}"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{'a':1}"#,
            r#"{"a":tru}"#,
            r#"{"a":"x\q"}"#,
            r#"{"a":"\u12G4"}"#,
            "{\"a\":\"raw\nnewline\"}",
            r#"{"a":[1 2]}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1]"#,
            r#"{"a":[}"#,
            r#"[1]"#,
            r#"{"a":NaN}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
        ];
        for c in cases {
            let serde_ok =
                serde_json::from_str::<serde_json::Value>(c).is_ok_and(|v| v.is_object());
            assert_eq!(accepts_whole(c), serde_ok, "{c}");
        }
    }

    #[test]
    fn accepts_every_prefix_of_valid_json_and_nothing_after_it() {
        let doc = r#"{"path": "src/ü.rs", "n": [1, -2.5e3, {"k": null}], "ok": true}"#;
        for end in 0..=doc.len() {
            let mut m = JsonObjectMachine::new();
            assert!(m.feed_all(&doc.as_bytes()[..end]), "prefix of {end} bytes");
        }
        assert!(accepts_prefix(doc));
        let mut m = JsonObjectMachine::new();
        assert!(m.feed_all(doc.as_bytes()) && m.is_complete());
        assert!(!m.clone().feed(b' '));
        assert!(!m.feed(b'}'));
    }

    #[test]
    fn rejects_invalid_utf8_and_leading_whitespace() {
        let mut m = JsonObjectMachine::new();
        assert!(!m.clone().feed(b' '), "the object must start at once");
        assert!(m.feed_all(br#"{"a":""#));
        assert!(!m.clone().feed(0xFF));
        assert!(!m.clone().feed_all(&[0xC3, 0x28]));
        assert!(m.feed_all(&[0xC3, 0xA9, b'"', b'}']) && m.is_complete());
    }

    #[test]
    fn caps_runs_of_whitespace() {
        let mut m = JsonObjectMachine::new();
        assert!(m.feed(b'{'));
        assert!(m.feed_all(&[b' '; MAX_WHITESPACE_RUN as usize]));
        assert!(!m.feed(b' '));
    }

    #[test]
    fn constraint_allows_without_changing_state() {
        let mut c = JsonObjectConstraint::default();
        assert!(c.allows(b"{\"a\""));
        assert!(!c.allows(b"hello"));
        assert!(!c.allows(b""));
        c.advance(b"{\"a\"");
        assert!(c.allows(b": 1}"));
        assert!(!c.allows(b": 1}}"), "nothing may follow the object");
        c.advance(b": 1}");
        assert!(c.is_complete());
    }

    #[test]
    fn choice_then_object_picks_a_declared_name() {
        let mut c = ChoiceThenObject::new(vec![
            "\"read_file\", \"arguments\": ".into(),
            "\"run_tests\", \"arguments\": ".into(),
        ]);
        assert!(c.allows(b"\"r"));
        assert!(!c.allows(b"\"write"));
        c.advance(b"\"r");
        assert!(c.allows(b"un"));
        assert!(!c.allows(b"ux"));
        c.advance(b"un_tests\", \"arguments\": {");
        assert_eq!(c.chosen(), Some(1));
        assert!(!c.is_complete());
        assert!(c.allows(b"\"filter\": \"x\"}"));
        c.advance(b"}");
        assert!(c.is_complete());
    }
}
