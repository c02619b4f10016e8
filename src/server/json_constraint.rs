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

/// Deepest nesting accepted (one bit of `stack` per level): serde_json's recursion limit,
/// which refuses a 128th level (and wick reads tool arguments with serde_json).
const MAX_DEPTH: u32 = 127;
/// Largest decimal magnitude of a number's first non-zero digit (with its exponent): every
/// number below 1e308 is a finite f64, and serde_json refuses one that overflows to
/// infinity ("number out of range", from about 1.8e308 on).
const MAX_MAGNITUDE: i64 = 307;
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
        utf8: Utf8,
    },
    /// Inside `true`/`false`/`null`: the word and how much of it was read.
    Word {
        word: &'static [u8],
        pos: u8,
    },
    Num(Number),
    Done,
}

/// Inside a multi-byte UTF-8 character: how many continuation bytes are still due, and the
/// range the next one must be in (narrower than 0x80..=0xBF after the lead bytes E0, ED,
/// F0 and F4: no overlong forms, no UTF-16 surrogates, nothing past U+10FFFF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Utf8 {
    left: u8,
    lo: u8,
    hi: u8,
}

impl Utf8 {
    const NONE: Utf8 = Utf8 {
        left: 0,
        lo: 0x80,
        hi: 0xBF,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    None,
    Backslash,
    /// Inside `\uXXXX`: hex digits still expected, and what the code unit may still be.
    Hex(u8, Unit),
    /// After a high surrogate's `\uD800`-`\uDBFF`: the `\` of its low surrogate is due.
    LowBackslash,
    /// The `u` of the low surrogate is due.
    LowU,
}

/// What a `\uXXXX` escape may still turn out to be: JSON text encodes a character past
/// U+FFFF as a UTF-16 surrogate pair, and a lone surrogate is refused by serde_json (and
/// is no character at all), so a high surrogate must be followed at once by a low one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Any code unit but a surrogate, or a high one (first digit not read yet).
    Any,
    /// The first digit was D: the second says whether it is a surrogate.
    D,
    /// Not a surrogate.
    Plain,
    /// A high surrogate (D800-DBFF): a low one must follow.
    High,
    /// The escape after a high surrogate: its first digit must be D.
    LowFirst,
    /// ...and its second C-F.
    LowSecond,
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

/// A number being read: where in its grammar, and enough of its value to refuse one that
/// is not a finite f64 (see `MAX_MAGNITUDE`) at the digit that makes it so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Number {
    at: Num,
    /// Whether a non-zero digit was read (a zero significand is 0 whatever its exponent).
    nonzero: bool,
    /// The decimal magnitude of the first non-zero digit; while every digit read is a zero,
    /// the magnitude the next non-zero fraction digit would have.
    magnitude: i64,
    /// The exponent's sign was `-` (any value is then finite: it may only underflow to 0).
    negative_exp: bool,
    /// The exponent's value so far (saturating).
    exp: i64,
}

impl Number {
    fn new(at: Num, nonzero: bool) -> Number {
        Number {
            at,
            nonzero,
            magnitude: 0,
            negative_exp: false,
            exp: 0,
        }
    }

    fn too_large(&self) -> bool {
        self.nonzero
            && !self.negative_exp
            && self.magnitude.saturating_add(self.exp) > MAX_MAGNITUDE
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
                    utf8: Utf8::NONE,
                };
                true
            }
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            b'-' => {
                self.lex = Lex::Num(Number::new(Num::Minus, false));
                true
            }
            b'0' => {
                self.lex = Lex::Num(Number::new(Num::Zero, false));
                true
            }
            b'1'..=b'9' => {
                self.lex = Lex::Num(Number::new(Num::Int, true));
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
                        utf8: Utf8::NONE,
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
            Lex::Str { key, esc, utf8 } => self.feed_str(b, key, esc, utf8),
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

    fn feed_str(&mut self, b: u8, key: bool, esc: Esc, utf8: Utf8) -> bool {
        if utf8.left > 0 {
            if !(utf8.lo..=utf8.hi).contains(&b) {
                return false;
            }
            self.lex = Lex::Str {
                key,
                esc,
                utf8: Utf8 {
                    left: utf8.left - 1,
                    ..Utf8::NONE
                },
            };
            return true;
        }
        let esc = match esc {
            Esc::Backslash => match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Esc::None,
                b'u' => Esc::Hex(4, Unit::Any),
                _ => return false,
            },
            Esc::LowBackslash if b == b'\\' => Esc::LowU,
            Esc::LowU if b == b'u' => Esc::Hex(4, Unit::LowFirst),
            Esc::LowBackslash | Esc::LowU => return false,
            Esc::Hex(left, unit) => {
                if !b.is_ascii_hexdigit() {
                    return false;
                }
                let digit = (b as char).to_digit(16).unwrap_or(0);
                let unit = match (unit, digit) {
                    (Unit::Any, 0xD) => Unit::D,
                    (Unit::Any, _) => Unit::Plain,
                    (Unit::D, 0x8..=0xB) => Unit::High,
                    // A low surrogate without a high one before it.
                    (Unit::D, 0xC..=0xF) => return false,
                    (Unit::D, _) => Unit::Plain,
                    (Unit::LowFirst, 0xD) => Unit::LowSecond,
                    (Unit::LowSecond, 0xC..=0xF) => Unit::Plain,
                    (Unit::LowFirst | Unit::LowSecond, _) => return false,
                    (unit @ (Unit::Plain | Unit::High), _) => unit,
                };
                match (left, unit) {
                    (1, Unit::High) => Esc::LowBackslash,
                    (1, _) => Esc::None,
                    _ => Esc::Hex(left - 1, unit),
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
                // UTF-8 lead bytes (overlong 0xC0/0xC1 and > U+10FFFF excluded); the range
                // of the first continuation byte excludes overlong 3- and 4-byte forms
                // (E0, F0), UTF-16 surrogates (ED) and code points past U+10FFFF (F4).
                0xC2..=0xDF => return self.utf8(key, 1, 0x80, 0xBF),
                0xE0 => return self.utf8(key, 2, 0xA0, 0xBF),
                0xED => return self.utf8(key, 2, 0x80, 0x9F),
                0xE1..=0xEF => return self.utf8(key, 2, 0x80, 0xBF),
                0xF0 => return self.utf8(key, 3, 0x90, 0xBF),
                0xF4 => return self.utf8(key, 3, 0x80, 0x8F),
                0xF1..=0xF3 => return self.utf8(key, 3, 0x80, 0xBF),
                _ => return false,
            },
        };
        self.lex = Lex::Str {
            key,
            esc,
            utf8: Utf8::NONE,
        };
        true
    }

    fn utf8(&mut self, key: bool, left: u8, lo: u8, hi: u8) -> bool {
        self.lex = Lex::Str {
            key,
            esc: Esc::None,
            utf8: Utf8 { left, lo, hi },
        };
        true
    }

    fn feed_num(&mut self, b: u8, mut n: Number) -> bool {
        let next = match (n.at, b) {
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
                if !n.at.can_end() {
                    return false;
                }
                self.lex = Lex::After;
                return self.feed(b);
            }
        };
        match (n.at, next) {
            (Num::Minus, Num::Int) => n.nonzero = true,
            (Num::Int, Num::Int) => n.magnitude += 1,
            (Num::Zero, Num::Dot) => n.magnitude = -1,
            (_, Num::Frac) if !n.nonzero => {
                if b == b'0' {
                    n.magnitude = n.magnitude.saturating_sub(1);
                } else {
                    n.nonzero = true;
                }
            }
            (Num::Exp, Num::ExpSign) => n.negative_exp = b == b'-',
            (_, Num::ExpDigits) => {
                n.exp = n.exp.saturating_mul(10).saturating_add(i64::from(b - b'0'))
            }
            _ => {}
        }
        n.at = next;
        if n.too_large() {
            return false;
        }
        self.lex = Lex::Num(n);
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

    /// What `cargo fuzz run json_constraint` found: objects the machine let complete that
    /// serde_json refuses. Each must be refused at the byte that makes it invalid, so that
    /// a constrained model is never left in a state with no way to finish.
    #[test]
    fn refuses_what_serde_json_refuses_at_the_first_bad_byte() {
        let deep = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        let cases: Vec<(Vec<u8>, usize)> = vec![
            // The fuzzer's first find, minimized: an overlong 4-byte form (F0 8F) in a key.
            (b"{\"\xF0\x8F\x98\x80\":false}".to_vec(), 3),
            // Invalid UTF-8 that is well-formed byte by byte: a surrogate (ED A0 80), overlong
            // 3- and 4-byte forms (E0 80 80, F0 80 80 80), past U+10FFFF (F4 90 80 80).
            (b"{\"a\":\"\xED\xA0\x80\"}".to_vec(), 7),
            (b"{\"a\":\"\xE0\x80\x80\"}".to_vec(), 7),
            (b"{\"a\":\"\xF0\x80\x80\x80\"}".to_vec(), 7),
            (b"{\"a\":\"\xF4\x90\x80\x80\"}".to_vec(), 7),
            // Lone surrogates in escapes: a low one, a high one without its low one.
            (br#"{"a":"\uDC00"}"#.to_vec(), 9),
            (br#"{"\udfff":1}"#.to_vec(), 5),
            (br#"{"a":"\uD800"}"#.to_vec(), 12),
            (br#"{"a":"\uD800x"}"#.to_vec(), 12),
            (br#"{"a":"\uD800\u0041"}"#.to_vec(), 14),
            (br#"{"a":"\uDBFF\uE000"}"#.to_vec(), 14),
            (br#"{"a":"\uDBFF\uDB00"}"#.to_vec(), 15),
            // Numbers that are no finite f64 (serde_json: "number out of range").
            (br#"{"a":1e400}"#.to_vec(), 9),
            (br#"{"a":1.8e308}"#.to_vec(), 11),
            (br#"{"a":-0.001e312}"#.to_vec(), 14),
            (
                format!(r#"{{"a":1{}}}"#, "0".repeat(400)).into_bytes(),
                5 + 308,
            ),
            // serde_json's recursion limit: 127 levels, the root object included.
            (format!(r#"{{"a":{}}}"#, deep(127)).into_bytes(), 5 + 126),
        ];
        let mut wrong = Vec::new();
        for (doc, bad) in cases {
            let shown = String::from_utf8_lossy(&doc).into_owned();
            assert!(
                serde_json::from_slice::<serde_json::Value>(&doc).is_err(),
                "{shown}"
            );
            let mut m = JsonObjectMachine::new();
            if !m.feed_all(&doc[..bad]) {
                wrong.push(format!("{shown}: refused before byte {bad}"));
            } else if m.feed(doc[bad]) {
                wrong.push(format!("{shown}: byte {bad} accepted"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// Their valid neighbours are still accepted.
    #[test]
    fn accepts_surrogate_pairs_edge_utf8_and_large_finite_numbers() {
        let deep = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        let cases = [
            r#"{"a":"\uD83D\uDE00 \ud800\udc00 \uDBFF\uDFFF \uD7FF \uE000 \uFFFF"}"#.to_owned(),
            "{\"a\":\"\u{D7FF}\u{E000}\u{10FFFF}\u{800}\u{10000}\"}".to_owned(),
            // (1e308 up to f64::MAX are finite too, but refused: the bound is a magnitude.)
            r#"{"a":[1e307, 9.999e307, -9.999e307, 0e999999, 0.000e400, -1e-99999]}"#.to_owned(),
            r#"{"a":[0.001e310, 12.5e306, 1E+307, 0.0000000000000000000001e329]}"#.to_owned(),
            format!(r#"{{"a":1{}}}"#, "0".repeat(307)),
            format!(r#"{{"a":{}}}"#, deep(126)),
        ];
        for c in cases {
            assert!(serde_json::from_str::<serde_json::Value>(&c).is_ok(), "{c}");
            assert!(accepts_whole(&c), "{c}");
        }
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
