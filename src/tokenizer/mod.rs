//! The model's tokenizer, built from GGUF metadata, matching llama.cpp id for id.
//! Input: an opened `Gguf`. Output: `Tokenizer` (encode, decode, per-token bytes, special and
//! end-of-generation ids) and, in `detok`, the incremental detokenizer for streaming.
//! Depends on the `tokenizers` crate (BPE model, regex pre-tokenizers) and `gguf`; must not
//! depend on candle tensors, the engine or the server.
//!
//! Encoding runs in three steps, as in llama.cpp: split the text at special-token text
//! (`special`), split each plain piece into words with the model's pre-tokenizer regexes and
//! map bytes to GPT-2 chars (`pretok`), then merge each word with BPE. SentencePiece
//! vocabularies (`tokenizer.ggml.model = llama`) replace the last two steps with `spm`. Which
//! tokens are special, and which end generation, follows llama.cpp's re-typing (`vocab`).
//! (SentencePiece scores are read through candle's GGUF metadata `Value`; no tensors.)

pub mod compat;
pub mod detok;
pub mod literal;
mod pieces;
mod pretok;
mod special;
mod spm;
mod vocab;

pub use detok::Detokenizer;
pub use literal::Literals;
pub use vocab::FimIds;

use crate::gguf::Gguf;
use pieces::Spelling;
use special::{Fragment, SpecialToken};
use thiserror::Error;
use tokenizers::models::bpe::{Vocab as BpeVocab, BPE};
use tokenizers::{Model, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};
use vocab::{attr, Defaults, Vocab};

#[derive(Debug, Error)]
pub enum TokenizerError {
    #[error("unsupported tokenizer: {0}")]
    Unsupported(String),
    #[error("cannot build the tokenizer from GGUF metadata: {0}")]
    Build(String),
    #[error("tokenization failed: {0}")]
    Encode(String),
}

pub struct Tokenizer {
    vocab: Vocab,
    pieces: pieces::Pieces,
    /// Control, unknown and user-defined tokens, longest text first (llama.cpp's order).
    specials: Vec<SpecialToken>,
    engine: Engine,
}

/// How plain text (without special tokens) becomes ids.
enum Engine {
    /// GPT-2 byte-level BPE: regex pre-tokenizer, then merges (the `tokenizers` crate).
    Bpe {
        pre: Box<tokenizers::PreTokenizerWrapper>,
        bpe: Box<BPE>,
    },
    /// SentencePiece pieces with scores; `add_space_prefix` puts a space before text that
    /// starts the input or follows a special token.
    Spm {
        spm: Box<spm::Spm>,
        add_space_prefix: bool,
    },
}

impl Tokenizer {
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, TokenizerError> {
        let model = gguf.get_str("tokenizer.ggml.model").ok_or_else(|| {
            TokenizerError::Build(format!(
                "{}: tokenizer.ggml.model is missing",
                gguf.path.display()
            ))
        })?;
        let (vocab, engine, spelling) = match model {
            "gpt2" => bpe_engine(gguf)?,
            "llama" => spm_engine(gguf)?,
            other => {
                return Err(TokenizerError::Unsupported(format!(
                    "tokenizer.ggml.model '{other}'; supported: gpt2 (byte-level BPE), llama (SentencePiece)"
                )))
            }
        };
        let pieces = pieces::Pieces::new(&vocab, spelling);
        let specials = special_tokens_longest_first(&vocab);
        Ok(Tokenizer {
            vocab,
            pieces,
            specials,
            engine,
        })
    }

    /// Special-token text (`<|im_start|>`) becomes the special token when `parse_special`;
    /// user-defined tokens (`<tool_call>`) always do, as in llama.cpp. BOS is prepended (and
    /// EOS appended) when the GGUF says so and `add_special` is set.
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        self.encode_parts(text, add_special, parse_special, None)
    }

    /// Replaces the text of every control token in `content` (client text about to go
    /// through a chat template) by its placeholder in `literals`; see `literal.rs`.
    pub fn protect_specials(&self, content: &str, literals: &mut Literals) -> String {
        let frags = special::partition(content, &self.specials, true);
        // Only control (and unknown) tokens need hiding: user-defined ones are tokens
        // whether or not control tokens are parsed.
        let control = |id: u32| self.special(id).filter(|s| s.control);
        if !frags
            .iter()
            .any(|f| matches!(f, Fragment::Token(id) if control(*id).is_some()))
        {
            return content.to_owned();
        }
        let mut out = String::with_capacity(content.len());
        for frag in frags {
            match frag {
                Fragment::Text(range) => out.push_str(&content[range]),
                Fragment::Token(id) => {
                    let text = self.special(id).map_or("", |s| s.text.as_str());
                    // Plane 16 holds 65534 placeholders, far more than any vocabulary has
                    // control tokens; were it ever exhausted the text stays as it was.
                    match control(id).and_then(|s| literals.placeholder(&s.text)) {
                        Some(c) => out.push(c),
                        None => out.push_str(text),
                    }
                }
            }
        }
        out
    }

    /// Encodes a rendered prompt whose client content went through `protect_specials`:
    /// special-token text of the template becomes special tokens, the content's stays text.
    pub fn encode_with_literals(
        &self,
        text: &str,
        add_special: bool,
        literals: &Literals,
    ) -> Result<Vec<u32>, TokenizerError> {
        self.encode_parts(text, add_special, true, Some(literals))
    }

    fn encode_parts(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        literals: Option<&Literals>,
    ) -> Result<Vec<u32>, TokenizerError> {
        // Byte-level BPE gives about one token per 3-4 bytes of code or English.
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && self.vocab.add_bos {
            ids.extend(self.vocab.bos);
        }
        // SentencePiece: a space goes before text at the start and after each special token.
        let mut after_special = true;
        for frag in special::partition(text, &self.specials, parse_special) {
            match frag {
                Fragment::Token(id) => {
                    ids.push(id);
                    after_special = true;
                }
                Fragment::Text(range) => {
                    let piece = &text[range];
                    match literals.and_then(|l| l.restore(piece)) {
                        // Client text: its control-token text is plain text.
                        Some(restored) => {
                            self.encode_text(&restored, &mut after_special, &mut ids)?
                        }
                        None => {
                            self.encode_plain(piece, after_special, &mut ids)?;
                            after_special = false;
                        }
                    }
                }
            }
        }
        if add_special && self.vocab.add_eos {
            ids.extend(self.vocab.eos);
        }
        Ok(ids)
    }

    /// Encodes text with control tokens not parsed (user-defined ones still are).
    fn encode_text(
        &self,
        text: &str,
        after_special: &mut bool,
        ids: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        for frag in special::partition(text, &self.specials, false) {
            match frag {
                Fragment::Token(id) => {
                    ids.push(id);
                    *after_special = true;
                }
                Fragment::Text(range) => {
                    self.encode_plain(&text[range], *after_special, ids)?;
                    *after_special = false;
                }
            }
        }
        Ok(())
    }

    /// A special token as the partition matches it.
    fn special(&self, id: u32) -> Option<&SpecialToken> {
        self.specials.iter().find(|s| s.id == id)
    }

    /// Tokenizes text that holds no special token.
    fn encode_plain(
        &self,
        text: &str,
        after_special: bool,
        ids: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        match &self.engine {
            Engine::Bpe { pre, bpe } => {
                let mut words = PreTokenizedString::from(text);
                pre.pre_tokenize(&mut words)
                    .map_err(|e| TokenizerError::Encode(e.to_string()))?;
                for (word, _, _) in words.get_splits(OffsetReferential::Original, OffsetType::None)
                {
                    let tokens = bpe
                        .tokenize(word)
                        .map_err(|e| TokenizerError::Encode(e.to_string()))?;
                    ids.extend(tokens.iter().map(|t| t.id));
                }
            }
            Engine::Spm {
                spm,
                add_space_prefix,
            } => {
                let prefix = if *add_space_prefix && after_special {
                    "\u{2581}"
                } else {
                    ""
                };
                let escaped = format!("{prefix}{}", text.replace(' ', "\u{2581}"));
                spm.encode(&self.vocab, &escaped, ids);
            }
        }
        Ok(())
    }

    /// Decodes ids to text; control tokens are dropped when `skip_special`. Bytes that do
    /// not form UTF-8 become U+FFFD. Ids outside the vocabulary decode to nothing.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        // SentencePiece: drop the space `encode` put before the text, as llama.cpp does
        // (kept when a skipped BOS comes first, again as llama.cpp does).
        let mut strip_space = matches!(
            self.engine,
            Engine::Spm {
                add_space_prefix: true,
                ..
            }
        );
        let mut ids = ids;
        if let (true, true, Some(bos), [first, rest @ ..]) =
            (skip_special, self.vocab.add_bos, self.vocab.bos, ids)
        {
            if *first == bos {
                strip_space = false;
                ids = rest;
            }
        }
        for &id in ids {
            if skip_special && self.is_control(id) {
                continue;
            }
            let piece = self.pieces.get(id);
            let piece = match piece.first() {
                Some(b' ') if strip_space => &piece[1..],
                _ => piece,
            };
            strip_space = false;
            bytes.extend_from_slice(piece);
        }
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    /// The raw bytes a token stands for (byte-level BPE decoded; may be part of a UTF-8 char).
    /// Control and user-defined tokens give their text; unused tokens and ids outside the
    /// vocabulary give nothing. Precomputed: no allocation.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.pieces.get(id)
    }

    /// The token's text as stored in the vocabulary (byte-level chars, e.g. `Ġfoo`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.texts.get(id as usize).map(String::as_str)
    }

    pub fn token_to_id(&self, text: &str) -> Option<u32> {
        self.vocab.id(text)
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.vocab.bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.vocab.eos
    }

    /// The end-of-turn token, given by the GGUF or found by its text (`<|im_end|>` …).
    pub fn eot_id(&self) -> Option<u32> {
        self.vocab.eot
    }

    pub fn padding_id(&self) -> Option<u32> {
        self.vocab.padding
    }

    pub fn unknown_id(&self) -> Option<u32> {
        self.vocab.unknown
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }

    /// FIM prefix/suffix/middle/pad/repo/file-separator ids, from the GGUF or by their text.
    pub fn fim_ids(&self) -> FimIds {
        self.vocab.fim
    }

    /// Every end-of-generation id, sorted, as llama.cpp computes it (for Qwen: `<|im_end|>`,
    /// `<|endoftext|>`, FIM pad, repo name, file separator and `</s>`).
    pub fn eog_ids(&self) -> &[u32] {
        &self.vocab.eog
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.binary_search(&id).is_ok()
    }

    /// Control and user-defined tokens, as (id, text), in id order.
    pub fn special_tokens(&self) -> Vec<(u32, &str)> {
        self.vocab
            .texts
            .iter()
            .zip(&self.vocab.attrs)
            .enumerate()
            .filter(|(_, (_, &a))| a & (attr::CONTROL | attr::USER_DEFINED) != 0)
            .map(|(id, (text, _))| (id as u32, text.as_str()))
            .collect()
    }

    /// Control tokens produce no text when decoding for the user (user-defined ones do).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id) & attr::CONTROL != 0
    }
}

/// Byte-level BPE: the vocabulary, the merges and the pre-tokenizer `tokenizer.ggml.pre` names.
fn bpe_engine(gguf: &Gguf) -> Result<(Vocab, Engine, Spelling), TokenizerError> {
    let spec = pretok::lookup(gguf.get_str("tokenizer.ggml.pre"))?;
    let defaults = Defaults {
        add_bos: spec.add_bos,
        bos: None,
        eos: None,
        unknown: None,
    };
    let vocab = Vocab::from_gguf(gguf, &defaults)?;
    let engine = Engine::Bpe {
        bpe: Box::new(build_bpe(gguf, &vocab, spec.ignore_merges)?),
        pre: Box::new(pretok::build(&spec)?),
    };
    Ok((vocab, engine, Spelling::ByteLevel))
}

/// SentencePiece: the vocabulary with its scores, and llama.cpp's defaults for the family.
fn spm_engine(gguf: &Gguf) -> Result<(Vocab, Engine, Spelling), TokenizerError> {
    let defaults = Defaults {
        add_bos: true,
        bos: Some(1),
        eos: Some(2),
        unknown: Some(0),
    };
    let vocab = Vocab::from_gguf(gguf, &defaults)?;
    let scores = read_scores(gguf, vocab.len())?;
    let engine = Engine::Spm {
        spm: Box::new(spm::Spm::new(&vocab, scores)),
        add_space_prefix: gguf
            .get_bool("tokenizer.ggml.add_space_prefix")
            .unwrap_or(true),
    };
    Ok((vocab, engine, Spelling::SentencePiece))
}

fn build_bpe(gguf: &Gguf, vocab: &Vocab, ignore_merges: bool) -> Result<BPE, TokenizerError> {
    let merges = gguf.get_str_array("tokenizer.ggml.merges").ok_or_else(|| {
        TokenizerError::Build(format!(
            "{}: tokenizer.ggml.merges is missing or not strings",
            gguf.path.display()
        ))
    })?;
    // llama.cpp splits a merge at the first space after its first byte.
    let merges = merges
        .iter()
        .map(|m| match m.bytes().skip(1).position(|b| b == b' ') {
            // A space byte is always a char boundary, so these slices cannot panic.
            Some(i) => Ok((m[..i + 1].to_owned(), m[i + 2..].to_owned())),
            None => Err(TokenizerError::Build(format!(
                "{}: malformed merge {m:?} (no space)",
                gguf.path.display()
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bpe_vocab: BpeVocab = vocab
        .texts
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    BPE::builder()
        .vocab_and_merges(bpe_vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|e| {
            TokenizerError::Build(format!(
                "{}: BPE vocabulary and merges: {e}",
                gguf.path.display()
            ))
        })
}

/// `tokenizer.ggml.scores` as f32 (SentencePiece merge priorities).
fn read_scores(gguf: &Gguf, n: usize) -> Result<Vec<f32>, TokenizerError> {
    use candle_core::quantized::gguf_file::Value;
    let bad = || {
        TokenizerError::Build(format!(
            "{}: tokenizer.ggml.scores is missing, not numbers, or shorter than the vocabulary",
            gguf.path.display()
        ))
    };
    let values = gguf.get_array("tokenizer.ggml.scores").ok_or_else(bad)?;
    let scores = values
        .iter()
        .map(|v| match v {
            Value::F32(x) => Some(*x),
            Value::F64(x) => Some(*x as f32),
            Value::I32(x) => Some(*x as f32),
            _ => None,
        })
        .collect::<Option<Vec<f32>>>()
        .ok_or_else(bad)?;
    if scores.len() < n {
        return Err(bad());
    }
    Ok(scores)
}

fn special_tokens_longest_first(vocab: &Vocab) -> Vec<SpecialToken> {
    let mut specials: Vec<SpecialToken> = vocab
        .texts
        .iter()
        .zip(&vocab.attrs)
        .enumerate()
        .filter(|(_, (_, &a))| a & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0)
        .map(|(id, (text, &a))| SpecialToken {
            id: id as u32,
            text: text.clone(),
            control: a & (attr::CONTROL | attr::UNKNOWN) != 0,
        })
        .collect();
    // Stable: equal lengths keep id order, so the result never depends on sort internals.
    specials.sort_by_key(|s| std::cmp::Reverse(s.text.len()));
    specials
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokenizer_and_detokenizer_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::Tokenizer>();
        assert_send_sync::<super::Detokenizer>();
    }
}
