//! SentencePiece-style tokenization (`tokenizer.ggml.model = llama`: CodeLlama, Mistral v1,
//! Llama 2), as llama.cpp's `llm_tokenizer_spm` does it.
//! Input: plain text without special tokens, already prefixed with a space where llama.cpp
//! adds one. Output: token ids appended to a vector. Depends only on the `Vocab` and scores.
//!
//! Why not the `tokenizers` crate here: GGUF stores SentencePiece vocabularies as pieces with
//! scores and no merges, and llama.cpp tokenizes them by greedy bigram merging on those
//! scores. `tokenizers`' Unigram model runs Viterbi over the same scores, which is a different
//! algorithm and splits some words differently. Matching llama.cpp id for id matters more.
//!
//! The algorithm: spaces become `▁`; every UTF-8 char is a symbol; repeatedly merge the
//! adjacent pair whose concatenation is the vocabulary piece with the highest score (leftmost
//! on ties); a final symbol that is not a piece becomes `<0xXX>` byte tokens.

use super::vocab::Vocab;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

pub(crate) struct Spm {
    scores: Vec<f32>,
    /// `<0xXX>` token for each byte (else the one-char ASCII token, else unknown).
    byte_tokens: [Option<u32>; 256],
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Max-heap order: higher score first, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl Spm {
    pub fn new(vocab: &Vocab, scores: Vec<f32>) -> Self {
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            // llama.cpp falls back to the one-byte string (and aborts when that is missing
            // too); we fall back to the unknown token instead of failing.
            let one_char = (b < 0x80).then(|| char::from(b as u8).to_string());
            *slot = vocab
                .id(&hex)
                .or_else(|| one_char.and_then(|c| vocab.id(&c)))
                .or(vocab.unknown);
        }
        Spm {
            scores,
            byte_tokens,
        }
    }

    /// Tokenizes `text` (spaces already escaped as `▁`) into `out`.
    pub fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: Some(i + 1),
            });
        }
        if let Some(last) = symbols.last_mut() {
            last.next = None;
        }
        let mut queue = BinaryHeap::new();
        for i in 1..symbols.len() {
            self.push_bigram(vocab, text, &symbols, i - 1, i, &mut queue);
        }
        while let Some(b) = queue.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            // Stale: one side was merged into something else since this pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != b.len {
                continue;
            }
            symbols[b.left].len += r.len;
            symbols[b.right].len = 0;
            symbols[b.left].next = r.next;
            if let Some(n) = r.next {
                symbols[n].prev = Some(b.left);
            }
            if let Some(p) = l.prev {
                self.push_bigram(vocab, text, &symbols, p, b.left, &mut queue);
            }
            if let Some(n) = r.next {
                self.push_bigram(vocab, text, &symbols, b.left, n, &mut queue);
            }
        }
        let mut i = if symbols.is_empty() { None } else { Some(0) };
        while let Some(k) = i {
            let s = symbols[k];
            let piece = &text[s.start..s.start + s.len];
            match vocab.id(piece) {
                Some(id) => out.push(id),
                None => out.extend(piece.bytes().filter_map(|b| self.byte_tokens[b as usize])),
            }
            i = s.next;
        }
    }

    fn push_bigram(
        &self,
        vocab: &Vocab,
        text: &str,
        symbols: &[Symbol],
        left: usize,
        right: usize,
        queue: &mut BinaryHeap<Bigram>,
    ) {
        let (l, r) = (symbols[left], symbols[right]);
        let len = l.len + r.len;
        if let Some(id) = vocab.id(&text[l.start..l.start + len]) {
            queue.push(Bigram {
                left,
                right,
                score: self.scores.get(id as usize).copied().unwrap_or(0.0),
                len,
            });
        }
    }
}
