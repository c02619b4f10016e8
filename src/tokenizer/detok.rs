//! Incremental detokenizer for streaming: token ids in, newly completed text out.
//! Input: one id at a time plus the `Tokenizer` (for its precomputed token bytes).
//! Output: only the text completed by that token. Depends on nothing but `super::Tokenizer`.
//!
//! A byte-level BPE token can end in the middle of a UTF-8 character (an emoji is often two
//! or three tokens), so the bytes of an unfinished character are held until a later token
//! completes them. Bytes that can never form a character become U+FFFD, exactly as
//! `String::from_utf8_lossy` would over the whole output, so the concatenated stream always
//! equals `Tokenizer::decode(ids, true)`. Control tokens (`<|im_end|>`) give no text;
//! user-defined ones (`<tool_call>`) give theirs, since tool-call parsers need it.
//!
//! Hot path: after the first few tokens the held-bytes buffer has its full capacity, and
//! `push_into` appends to the caller's string without allocating anything else.

use super::Tokenizer;

#[derive(Debug, Default, Clone)]
pub struct Detokenizer {
    /// Bytes not yet emitted: at most the 3-byte start of an unfinished character between
    /// calls (longer only inside a call).
    held: Vec<u8>,
    /// Reused by `push` so that callers that only look at the text need no buffer of their own.
    out: String,
}

impl Detokenizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds token `id`; returns the text it completes (often all of it, sometimes nothing).
    /// The slice is valid until the next call.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> &str {
        self.out.clear();
        let Detokenizer { held, out } = self;
        emit(
            held,
            tokenizer.token_bytes(id),
            tokenizer.is_control(id),
            out,
        );
        &self.out
    }

    /// Like `push`, appending the completed text to `out`. Returns how many bytes it appended.
    pub fn push_into(&mut self, tokenizer: &Tokenizer, id: u32, out: &mut String) -> usize {
        self.push_piece(tokenizer.token_bytes(id), tokenizer.is_control(id), out)
    }

    /// Feeds the bytes of one token directly (`control` pieces are dropped).
    pub fn push_piece(&mut self, bytes: &[u8], control: bool, out: &mut String) -> usize {
        let before = out.len();
        emit(&mut self.held, bytes, control, out);
        out.len() - before
    }

    /// End of output: appends what is still held, an unfinished character as U+FFFD.
    pub fn finish_into(&mut self, out: &mut String) -> usize {
        let before = out.len();
        if !self.held.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.held));
            self.held.clear();
        }
        out.len() - before
    }

    /// End of output, as a new string (empty in the common case of nothing held).
    pub fn finish(&mut self) -> String {
        let mut s = String::new();
        self.finish_into(&mut s);
        s
    }

    /// Whether bytes of an unfinished character are being held.
    pub fn has_pending(&self) -> bool {
        !self.held.is_empty()
    }

    /// Forgets held bytes, to reuse the detokenizer for another sequence.
    pub fn reset(&mut self) {
        self.held.clear();
        self.out.clear();
    }
}

fn emit(held: &mut Vec<u8>, bytes: &[u8], control: bool, out: &mut String) {
    if control || bytes.is_empty() {
        return;
    }
    // Fast path: nothing held and the token is whole characters (almost every token).
    if held.is_empty() {
        if let Ok(s) = std::str::from_utf8(bytes) {
            out.push_str(s);
            return;
        }
    }
    held.extend_from_slice(bytes);
    let mut start = 0;
    while start < held.len() {
        match std::str::from_utf8(&held[start..]) {
            Ok(s) => {
                out.push_str(s);
                start = held.len();
            }
            Err(e) => {
                let valid = e.valid_up_to();
                if let Ok(s) = std::str::from_utf8(&held[start..start + valid]) {
                    out.push_str(s);
                }
                start += valid;
                match e.error_len() {
                    // A byte sequence no continuation can fix: one U+FFFD, like from_utf8_lossy.
                    Some(bad) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        start += bad;
                    }
                    // The start of a character whose remaining bytes may come next: hold it.
                    None => break,
                }
            }
        }
    }
    held.drain(..start);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds pieces (bytes, control) one at a time; returns each step's output and the final flush.
    fn run(pieces: &[(&[u8], bool)]) -> (Vec<String>, String) {
        let mut d = Detokenizer::new();
        let steps = pieces
            .iter()
            .map(|(b, c)| {
                let mut s = String::new();
                d.push_piece(b, *c, &mut s);
                s
            })
            .collect();
        (steps, d.finish())
    }

    #[test]
    fn holds_emoji_split_across_tokens() {
        let e = "😀".as_bytes(); // F0 9F 98 80
        let (steps, rest) = run(&[
            (b"hi ", false),
            (&e[..1], false),
            (&e[1..3], false),
            (&e[3..], false),
            (b"!", false),
        ]);
        assert_eq!(steps, ["hi ", "", "", "😀", "!"]);
        assert_eq!(rest, "");
    }

    #[test]
    fn emits_cjk_as_soon_as_each_char_completes() {
        let s = "你好".as_bytes(); // two 3-byte chars
        let (steps, _) = run(&[(&s[..2], false), (&s[2..4], false), (&s[4..], false)]);
        assert_eq!(steps, ["", "你", "好"]);
    }

    #[test]
    fn drops_control_tokens_and_keeps_user_defined_ones() {
        let (steps, _) = run(&[
            (b"<|im_end|>", true),
            (b"<tool_call>", false),
            (b"x", false),
        ]);
        assert_eq!(steps, ["", "<tool_call>", "x"]);
    }

    #[test]
    fn invalid_bytes_become_one_replacement_each_like_lossy_decoding() {
        let cases: &[&[&[u8]]] = &[
            &[b"a", &[0xFF], b"b"],
            &[&[0xF0, 0x9F], b"x"],       // unfinished char cut by ASCII
            &[&[0xE4], &[0xBD], &[0xA0]], // 你 one byte at a time
            &[&[0xC3], &[0xC3, 0xA9]],    // unfinished, then a whole é
            &[&[0xF0, 0x9F, 0x98]],       // never finished: flushed by finish
        ];
        for pieces in cases {
            let all: Vec<u8> = pieces.concat();
            let want = String::from_utf8_lossy(&all).into_owned();
            let input: Vec<(&[u8], bool)> = pieces.iter().map(|p| (*p, false)).collect();
            let (steps, rest) = run(&input);
            assert_eq!(steps.concat() + &rest, want, "{pieces:?}");
        }
    }

    #[test]
    fn every_split_of_mixed_text_streams_to_the_same_text() {
        let text = "a😀b 你好 👨‍👩‍👧 é\n";
        let bytes = text.as_bytes();
        for cut in 1..bytes.len() {
            let (steps, rest) = run(&[(&bytes[..cut], false), (&bytes[cut..], false)]);
            assert_eq!(steps.concat() + &rest, text, "cut at {cut}");
            assert!(rest.is_empty());
        }
    }
}
