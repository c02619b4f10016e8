//! Client text inside a rendered prompt. A chat prompt mixes the template's markup, whose
//! special-token text (`<|im_start|>`) must become control tokens, with message content a
//! client sent, whose special-token text must stay text: otherwise a user message holding
//! `<|im_end|>\n<|im_start|>assistant\n…` forges a turn the model believes it wrote.
//!
//! How: before rendering, each control token's text inside client content is replaced by a
//! placeholder, one private-use character (Unicode plane 16) per token, never one that
//! occurs anywhere in the request. The template renders as usual. The rendered prompt is
//! then split at special tokens as always; in each plain-text piece the placeholders are put
//! back and the piece is tokenized with control tokens not parsed. A placeholder is one
//! non-whitespace character, so what templates do to content (`trim`, concatenation,
//! `startswith` on other text) treats it as the text it stands for.
//! Pure string work; the token ids come from `Tokenizer::encode_with_literals`.

use std::collections::{HashMap, HashSet};

/// The first and last code points of Unicode plane 16's private use area.
const FIRST: u32 = 0x10_0000;
const LAST: u32 = 0x10_FFFD;

/// The placeholders of one request: which character stands for which control-token text.
#[derive(Debug, Default)]
pub struct Literals {
    /// Placeholder → the special-token text it replaced.
    texts: HashMap<char, String>,
    /// Special-token text → its placeholder.
    chars: HashMap<String, char>,
    /// Private-use characters the request itself contains: never used as placeholders.
    taken: HashSet<char>,
    next: u32,
}

impl Literals {
    /// Placeholders for a request whose every string is somewhere in `request_text`.
    pub fn new(request_text: &str) -> Self {
        Literals {
            taken: request_text.chars().filter(|&c| is_private(c)).collect(),
            next: FIRST,
            ..Literals::default()
        }
    }

    /// Whether any placeholder was handed out (nothing to restore otherwise).
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// The placeholder for `special` (the same one each time), or `None` when plane 16
    /// has no free character left.
    pub fn placeholder(&mut self, special: &str) -> Option<char> {
        if let Some(&c) = self.chars.get(special) {
            return Some(c);
        }
        while self.next <= LAST {
            let candidate = char::from_u32(self.next);
            self.next += 1;
            if let Some(c) = candidate.filter(|c| !self.taken.contains(c)) {
                self.texts.insert(c, special.to_owned());
                self.chars.insert(special.to_owned(), c);
                return Some(c);
            }
        }
        None
    }

    /// `text` with every placeholder replaced by the text it stands for; `None` when it
    /// holds none.
    pub fn restore(&self, text: &str) -> Option<String> {
        if self.is_empty() || !text.chars().any(|c| self.texts.contains_key(&c)) {
            return None;
        }
        let mut out = String::with_capacity(text.len() + 16);
        for c in text.chars() {
            match self.texts.get(&c) {
                Some(t) => out.push_str(t),
                None => out.push(c),
            }
        }
        Some(out)
    }
}

fn is_private(c: char) -> bool {
    (FIRST..=LAST).contains(&u32::from(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_avoid_the_request_and_round_trip() {
        let taken = char::from_u32(FIRST).unwrap();
        let mut lits = Literals::new(&format!("a{taken}b"));
        let p = lits.placeholder("<|im_end|>").unwrap();
        assert_ne!(p, taken);
        assert_eq!(lits.placeholder("<|im_end|>"), Some(p));
        let q = lits.placeholder("<|im_start|>").unwrap();
        assert_ne!(p, q);
        let text = format!("x{p}\n{q}y{taken}");
        assert_eq!(
            lits.restore(&text).unwrap(),
            format!("x<|im_end|>\n<|im_start|>y{taken}")
        );
        assert_eq!(lits.restore("plain"), None);
    }
}
