//! Splitting raw text at special-token text, before BPE sees it.
//! Input: text, the special tokens (longest first), whether control tokens are parsed.
//! Output: fragments, each either a token id or a byte range of plain text.
//! Pure string work; no tokenizers, no GGUF.
//!
//! This follows llama.cpp's `tokenizer_st_partition` so that ids match it exactly: tokens are
//! tried one at a time, longest text first, and each one splits every plain fragment left by
//! the ones before at each of its occurrences. Control (and unknown) tokens take part only
//! when `parse_special` is on; user-defined tokens such as `<tool_call>` always do, as in
//! Hugging Face tokenizers.

use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fragment {
    Token(u32),
    Text(Range<usize>),
}

/// One candidate for matching: its id, its text, and whether it is control-like.
pub(crate) struct SpecialToken {
    pub id: u32,
    pub text: String,
    pub control: bool,
}

/// Splits `text` at special tokens. `specials` must be sorted by text length, longest first.
pub(crate) fn partition(
    text: &str,
    specials: &[SpecialToken],
    parse_special: bool,
) -> Vec<Fragment> {
    if text.is_empty() {
        return Vec::new();
    }
    let mut frags = vec![Fragment::Text(0..text.len())];
    let mut next = Vec::new();
    for sp in specials {
        if (sp.control && !parse_special) || sp.text.is_empty() {
            continue;
        }
        // Cheap skip: most special texts do not occur at all.
        if !text.contains(sp.text.as_str()) {
            continue;
        }
        next.clear();
        for frag in frags.drain(..) {
            match frag {
                Fragment::Text(range) => split_at(text, range, sp, &mut next),
                tok => next.push(tok),
            }
        }
        std::mem::swap(&mut frags, &mut next);
    }
    frags.retain(|f| !matches!(f, Fragment::Text(r) if r.is_empty()));
    frags
}

fn split_at(text: &str, range: Range<usize>, sp: &SpecialToken, out: &mut Vec<Fragment>) {
    let mut start = range.start;
    let hay = &text[range.clone()];
    for (pos, _) in hay.match_indices(sp.text.as_str()) {
        let at = range.start + pos;
        if at > start {
            out.push(Fragment::Text(start..at));
        }
        out.push(Fragment::Token(sp.id));
        start = at + sp.text.len();
    }
    if start < range.end {
        out.push(Fragment::Text(start..range.end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specials() -> Vec<SpecialToken> {
        let mut v = vec![
            SpecialToken {
                id: 1,
                text: "<|im_start|>".into(),
                control: true,
            },
            SpecialToken {
                id: 2,
                text: "<tool_call>".into(),
                control: false,
            },
            SpecialToken {
                id: 3,
                text: "<|im_start|>x".into(),
                control: true,
            },
        ];
        v.sort_by_key(|s| std::cmp::Reverse(s.text.len()));
        v
    }

    fn render(text: &str, frags: &[Fragment]) -> Vec<String> {
        frags
            .iter()
            .map(|f| match f {
                Fragment::Token(id) => format!("#{id}"),
                Fragment::Text(r) => text[r.clone()].to_owned(),
            })
            .collect()
    }

    #[test]
    fn splits_at_control_and_user_defined_tokens() {
        let cases: &[(&str, bool, &[&str])] = &[
            ("a<|im_start|>b", true, &["a", "#1", "b"]),
            ("a<|im_start|>b", false, &["a<|im_start|>b"]),
            ("<tool_call><tool_call>", false, &["#2", "#2"]),
            ("x<|im_start|>xy", true, &["x", "#3", "y"]),
            ("<|im_start", true, &["<|im_start"]),
            ("", true, &[]),
        ];
        for (text, parse, want) in cases {
            let got = render(text, &partition(text, &specials(), *parse));
            assert_eq!(got, *want, "{text:?} parse_special={parse}");
        }
    }
}
