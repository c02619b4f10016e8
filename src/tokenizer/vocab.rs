//! The vocabulary as llama.cpp sees it: token texts, per-token attributes, the special ids
//! (bos, eos, eot, eom, unknown, padding, FIM) and the end-of-generation set.
//! Input: GGUF `tokenizer.ggml.*` metadata. Output: `Vocab`. Knows nothing about BPE merges,
//! pre-tokenizer regexes or how text is split; depends only on `gguf`.
//!
//! llama.cpp does not take the GGUF token types at face value: tokens whose *text* marks an
//! end of turn or a FIM role (`<|im_end|>`, `<|fim_pad|>`, `</s>` …) are re-typed as control
//! and join the end-of-generation set. We repeat that here so that wick stops, splits special
//! text and detokenizes exactly where llama.cpp does (Qwen's 128247 `</s>` is typed normal in
//! the file and becomes control).

use super::TokenizerError;
use crate::gguf::Gguf;
use std::collections::{BTreeSet, HashMap};

/// Token attributes (bit set), after llama.cpp's re-typing.
pub(crate) mod attr {
    pub const NORMAL: u8 = 1;
    pub const UNKNOWN: u8 = 2;
    pub const CONTROL: u8 = 4;
    pub const USER_DEFINED: u8 = 8;
    pub const UNUSED: u8 = 16;
    pub const BYTE: u8 = 32;
}

/// FIM token ids, when the vocabulary has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FimIds {
    pub prefix: Option<u32>,
    pub suffix: Option<u32>,
    pub middle: Option<u32>,
    pub pad: Option<u32>,
    pub repo: Option<u32>,
    pub file_sep: Option<u32>,
}

pub(crate) struct Vocab {
    pub texts: Vec<String>,
    pub attrs: Vec<u8>,
    pub text_to_id: HashMap<String, u32>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unknown: Option<u32>,
    pub padding: Option<u32>,
    pub fim: FimIds,
    pub add_bos: bool,
    pub add_eos: bool,
    /// Sorted ascending.
    pub eog: Vec<u32>,
}

// Texts llama.cpp recognises for each role (src/llama-vocab.cpp, `load`). A role given by a
// GGUF key wins; otherwise the first token with one of these texts takes it.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// Texts that always end generation, whatever role they got.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<｜end▁of▁sentence｜>",
];

/// What llama.cpp assumes for a tokenizer family when the GGUF does not say.
pub(crate) struct Defaults {
    pub add_bos: bool,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub unknown: Option<u32>,
}

impl Vocab {
    pub fn from_gguf(gguf: &Gguf, defaults: &Defaults) -> Result<Self, TokenizerError> {
        let tokens = gguf
            .get_str_array("tokenizer.ggml.tokens")
            .ok_or_else(|| build_err(gguf, "tokenizer.ggml.tokens is missing or not strings"))?;
        let n = tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(build_err(gguf, "tokenizer.ggml.tokens is empty"));
        }
        let types = match gguf.get_i64_array("tokenizer.ggml.token_type") {
            Some(t) if t.len() >= n => Some(t),
            Some(t) => {
                return Err(build_err(
                    gguf,
                    &format!(
                        "tokenizer.ggml.token_type has {} entries for {n} tokens",
                        t.len()
                    ),
                ))
            }
            None => None,
        };

        let mut texts = Vec::with_capacity(n);
        let mut text_to_id = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            // llama.cpp renames empty tokens so that every text is unique and non-empty.
            let text = if t.is_empty() {
                format!("[EMPTY_{i}]")
            } else {
                (*t).to_owned()
            };
            if let Some(prev) = text_to_id.insert(text.clone(), i as u32) {
                return Err(build_err(
                    gguf,
                    &format!("duplicate token {text:?} has ids {prev} and {i}"),
                ));
            }
            texts.push(text);
        }
        let attrs = (0..n)
            .map(|i| match types.as_ref().map(|t| t[i]) {
                None | Some(1) => attr::NORMAL,
                Some(2) => attr::UNKNOWN,
                Some(3) => attr::CONTROL,
                Some(4) => attr::USER_DEFINED,
                Some(5) => attr::UNUSED,
                Some(6) => attr::BYTE,
                Some(_) => 0,
            })
            .collect();

        let key_id = |key: &str| -> Option<u32> {
            gguf.get_u64(key)
                .filter(|&id| (id as usize) < n)
                .map(|id| id as u32)
        };
        let in_range = |id: Option<u32>| id.filter(|&id| (id as usize) < n);
        let fim_key = |new: &str, old: &str| key_id(new).or_else(|| key_id(old));
        let mut v = Vocab {
            texts,
            attrs,
            text_to_id,
            bos: key_id("tokenizer.ggml.bos_token_id").or(in_range(defaults.bos)),
            eos: key_id("tokenizer.ggml.eos_token_id").or(in_range(defaults.eos)),
            eot: key_id("tokenizer.ggml.eot_token_id"),
            eom: key_id("tokenizer.ggml.eom_token_id"),
            unknown: key_id("tokenizer.ggml.unknown_token_id").or(in_range(defaults.unknown)),
            padding: key_id("tokenizer.ggml.padding_token_id"),
            fim: FimIds {
                prefix: fim_key(
                    "tokenizer.ggml.fim_pre_token_id",
                    "tokenizer.ggml.prefix_token_id",
                ),
                suffix: fim_key(
                    "tokenizer.ggml.fim_suf_token_id",
                    "tokenizer.ggml.suffix_token_id",
                ),
                middle: fim_key(
                    "tokenizer.ggml.fim_mid_token_id",
                    "tokenizer.ggml.middle_token_id",
                ),
                pad: key_id("tokenizer.ggml.fim_pad_token_id"),
                repo: key_id("tokenizer.ggml.fim_rep_token_id"),
                file_sep: key_id("tokenizer.ggml.fim_sep_token_id"),
            },
            add_bos: gguf
                .get_bool("tokenizer.ggml.add_bos_token")
                .unwrap_or(defaults.add_bos),
            add_eos: gguf
                .get_bool("tokenizer.ggml.add_eos_token")
                .unwrap_or(false),
            eog: Vec::new(),
        };
        if v.add_bos && v.bos.is_none() {
            return Err(build_err(
                gguf,
                "add_bos_token is set but there is no bos_token_id",
            ));
        }
        if v.add_eos && v.eos.is_none() {
            return Err(build_err(
                gguf,
                "add_eos_token is set but there is no eos_token_id",
            ));
        }
        v.detect_roles();
        v.eog = v.end_of_generation();
        Ok(v)
    }

    /// Fills roles the GGUF does not name from token texts, re-typing each such token as
    /// control, as llama.cpp does. Lists are scanned in text order so the result does not
    /// depend on hash order.
    fn detect_roles(&mut self) {
        let find = |v: &Vocab, texts: &[&str]| texts.iter().find_map(|t| v.id(t));
        let slots: [(RoleSlot, &[&str]); 8] = [
            (|v| &mut v.eot, EOT_TEXTS),
            (|v| &mut v.eom, EOM_TEXTS),
            (|v| &mut v.fim.prefix, FIM_PRE_TEXTS),
            (|v| &mut v.fim.suffix, FIM_SUF_TEXTS),
            (|v| &mut v.fim.middle, FIM_MID_TEXTS),
            (|v| &mut v.fim.pad, FIM_PAD_TEXTS),
            (|v| &mut v.fim.repo, FIM_REP_TEXTS),
            (|v| &mut v.fim.file_sep, FIM_SEP_TEXTS),
        ];
        for (slot, texts) in slots {
            if slot(self).is_none() {
                if let Some(id) = find(self, texts) {
                    *slot(self) = Some(id);
                    self.attrs[id as usize] |= attr::CONTROL;
                }
            }
        }
        // Control tokens named "unused" are placeholders.
        for (text, a) in self.texts.iter().zip(self.attrs.iter_mut()) {
            if *a & attr::CONTROL != 0 && text.contains("unused") {
                *a |= attr::UNUSED;
            }
        }
    }

    /// llama.cpp's end-of-generation set: FIM pad/repo/file-separator, every token whose text
    /// ends a turn (re-typed as control), and eos, eot, eom.
    fn end_of_generation(&mut self) -> Vec<u32> {
        let mut eog = BTreeSet::new();
        eog.extend(
            [self.fim.pad, self.fim.repo, self.fim.file_sep]
                .into_iter()
                .flatten(),
        );
        for text in EOG_TEXTS {
            if let Some(id) = self.id(text) {
                eog.insert(id);
                self.attrs[id as usize] |= attr::CONTROL;
            }
        }
        eog.extend([self.eos, self.eot, self.eom].into_iter().flatten());
        eog.into_iter().collect()
    }

    pub fn id(&self, text: &str) -> Option<u32> {
        self.text_to_id.get(text).copied()
    }

    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn attr(&self, id: u32) -> u8 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }
}

/// Where a detected role's id goes.
type RoleSlot = fn(&mut Vocab) -> &mut Option<u32>;

fn build_err(gguf: &Gguf, what: &str) -> TokenizerError {
    TokenizerError::Build(format!("{}: {what}", gguf.path.display()))
}
