//! `tokenizer.ggml.pre` → the pre-tokenizer that splits text into words before BPE.
//! Input: the GGUF pre-tokenizer name. Output: a `tokenizers` pre-tokenizer (regex splits,
//! then GPT-2 byte-level mapping) and the flags llama.cpp ties to that name.
//! Depends only on the `tokenizers` crate; an unknown name is a loud `Unsupported`.
//!
//! The regexes are llama.cpp's (`src/llama-vocab.cpp`, `llm_tokenizer_bpe`), which are the
//! Hugging Face ones with `(?i:…)` spelled out. llama.cpp applies the regexes of a list one
//! after another, each splitting the pieces the previous left, and keeps the text between
//! matches as pieces of its own; `Split` with `Isolated` behaviour does exactly that.

use super::TokenizerError;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

/// What a pre-tokenizer name means.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreTokSpec {
    pub regexes: &'static [&'static str],
    /// A word that is a whole vocabulary entry becomes that token without merging (llama3).
    pub ignore_merges: bool,
    /// llama.cpp's default for `add_bos_token` when the GGUF does not say.
    pub add_bos: bool,
}

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

// `concat!` needs literals, so the contraction group is repeated in each pattern.
const LLAMA3: &str = concat!(
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])",
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);
const QWEN2: &str = concat!(
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])",
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);
const SEED_CODER: &str = concat!(
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])",
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"
);
const CHATGLM4: &str = concat!(
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])",
    r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);
const GPT4O: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?",
    r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*",
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?",
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);
const TEKKEN: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+",
    r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*",
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
);
// Cased letters; written with escapes where a char is a Unicode canonical singleton, because
// text normalisation would silently turn it into another char and break the range.
const DEEPSEEK_LLM: &[&str] = &[
    "[\r\n]",
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u{1F7D}ᾀ-ᾴᾶ-ᾼ\u{1FBE}ῂ-ῄῆ-ῌῐ-\u{1FD3}ῖ-\u{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u{2126}ℨ\u{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
    "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
    // std::regex's `$` is the end of the input; Oniguruma's would also match before a newline.
    "\\s+\\z",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}+",
];
const DEEPSEEK_CODER: &[&str] = &[
    "[\r\n]",
    "\\s?\\p{L}+",
    "\\s?\\p{P}+",
    "[一-龥ࠀ-一가-퟿]+",
    "\\p{N}",
];
const DEEPSEEK3: &[&str] = &[
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
];
const FALCON: &[&str] = &[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"];
const DEFAULT: &[&str] = &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"];
const PORO: &[&str] = &[" ?[^(\\s|.,!?…。，、।۔،)]+"];
const VIKING: &[&str] = &[" ?[^(\\s|.,!?…。，、।۔،)]+", r"\p{N}"];

const fn spec(regexes: &'static [&'static str]) -> PreTokSpec {
    PreTokSpec {
        regexes,
        ignore_merges: false,
        add_bos: false,
    }
}

const fn llama3_like(regexes: &'static [&'static str]) -> PreTokSpec {
    PreTokSpec {
        regexes,
        ignore_merges: true,
        add_bos: true,
    }
}

/// The names llama.cpp knows, grouped as it groups them.
static TABLE: &[(&[&str], PreTokSpec)] = &[
    (&["default"], spec(DEFAULT)),
    (
        &[
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
        ],
        llama3_like(&[LLAMA3]),
    ),
    (&["dbrx", "smaug-bpe"], spec(&[LLAMA3])),
    (&["deepseek-llm"], spec(DEEPSEEK_LLM)),
    (&["deepseek-coder"], spec(DEEPSEEK_CODER)),
    (&["deepseek-v3"], spec(DEEPSEEK3)),
    (&["falcon"], spec(FALCON)),
    (
        &[
            "gpt-2",
            "phi-2",
            "mpt",
            "olmo",
            "jais",
            "jina-es",
            "jina-de",
            "gigachat",
            "jina-v2-es",
            "jina-v2-de",
            "jina-v1-en",
            "jina-v2-code",
            "roberta-bpe",
            "exaone4",
            "trillion",
            "a.x-4.0",
            "mellum",
        ],
        spec(&[GPT2]),
    ),
    (
        &[
            "starcoder",
            "refact",
            "command-r",
            "smollm",
            "codeshell",
            "exaone",
            "minerva-7b",
        ],
        spec(&[r"\p{N}", GPT2]),
    ),
    (
        &[
            "qwen2",
            "deepseek-r1-qwen",
            "stablelm2",
            "megrez",
            "hunyuan",
            "kormo",
        ],
        spec(&[QWEN2]),
    ),
    (&["poro-chat", "bloom", "gpt3-finnish"], spec(PORO)),
    (&["viking"], spec(VIKING)),
    (&["glm4", "chatglm-bpe"], spec(&[CHATGLM4])),
    (
        &["tekken"],
        PreTokSpec {
            regexes: &[TEKKEN],
            ignore_merges: true,
            add_bos: true,
        },
    ),
    (&["gpt-4o", "llama4"], spec(&[GPT4O])),
    (&["seed-coder"], spec(&[SEED_CODER])),
];

/// Looks a pre-tokenizer name up; an absent name means llama.cpp's `default`.
pub(crate) fn lookup(name: Option<&str>) -> Result<PreTokSpec, TokenizerError> {
    let name = match name {
        None | Some("") => {
            tracing::warn!(
                "GGUF has no tokenizer.ggml.pre: using the default pre-tokenizer (tokenization may differ from the model's)"
            );
            "default"
        }
        Some(n) => n,
    };
    TABLE
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            TokenizerError::Unsupported(format!(
                "pre-tokenizer '{name}' (tokenizer.ggml.pre); supported: {}",
                TABLE
                    .iter()
                    .flat_map(|(names, _)| names.iter().copied())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// The regex splits followed by the GPT-2 byte-to-char mapping (no regex of its own).
pub(crate) fn build(spec: &PreTokSpec) -> Result<PreTokenizerWrapper, TokenizerError> {
    let mut steps = Vec::with_capacity(spec.regexes.len() + 1);
    for re in spec.regexes {
        let split = Split::new(
            SplitPattern::Regex((*re).to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| TokenizerError::Build(format!("pre-tokenizer regex {re:?}: {e}")))?;
        steps.push(PreTokenizerWrapper::Split(split));
    }
    steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
        false, false, false,
    )));
    Ok(PreTokenizerWrapper::Sequence(Sequence::new(steps)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_pre_tokenizer_compiles() {
        for (names, spec) in TABLE {
            if let Err(e) = build(spec) {
                panic!("{names:?}: {e}");
            }
        }
    }

    #[test]
    fn unknown_pre_tokenizer_is_named_in_the_error() {
        let err = lookup(Some("no-such-pre")).unwrap_err().to_string();
        assert!(err.contains("no-such-pre"), "{err}");
        assert!(err.contains("qwen2"), "{err}");
    }

    #[test]
    fn missing_pre_tokenizer_means_default() {
        assert_eq!(lookup(None).unwrap().regexes, DEFAULT);
    }
}
