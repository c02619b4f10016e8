//! Fill-in-the-middle prompts for the completions endpoint. Each code-model family marks the
//! code before and after the cursor with its own special tokens; the family is recognised from
//! the vocabulary (e.g. GGUF `tokenizer.ggml.tokens`). Input: token texts, then prefix and
//! suffix. Output: the prompt text (to tokenize with special tokens on) and the texts of the
//! tokens that end a FIM answer. Depends on nothing but std.

/// The FIM prompt layouts of the families wick serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FimStyle {
    /// Qwen2.5-Coder / Qwen3-Coder: `<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>`.
    Qwen,
    /// StarCoder / StarCoder2 / SantaCoder: `<fim_prefix>P<fim_suffix>S<fim_middle>`.
    StarCoder,
    /// DeepSeek-Coder: `<｜fim▁begin｜>P<｜fim▁hole｜>S<｜fim▁end｜>`.
    DeepSeek,
    /// CodeLlama: `<PRE> P <SUF>S <MID>` (the markers are the `▁<PRE>`-style tokens).
    CodeLlama,
    /// Codestral: `[SUFFIX]S[PREFIX]P` (suffix first; the model writes the middle).
    Codestral,
}

/// Marker tokens that identify a style; all of them must be in the vocabulary. Checked in
/// this order: the first complete set wins.
const SIGNATURES: &[(FimStyle, &[&str])] = &[
    (
        FimStyle::Qwen,
        &["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"],
    ),
    (
        FimStyle::StarCoder,
        &["<fim_prefix>", "<fim_suffix>", "<fim_middle>"],
    ),
    (
        FimStyle::DeepSeek,
        &["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"],
    ),
    (FimStyle::CodeLlama, &["▁<PRE>", "▁<SUF>", "▁<MID>"]),
    (FimStyle::CodeLlama, &["<PRE>", "<SUF>", "<MID>"]),
    (FimStyle::Codestral, &["[PREFIX]", "[SUFFIX]"]),
];

impl FimStyle {
    /// Every style, in the order they are listed to users.
    pub const ALL: &'static [FimStyle] = &[
        FimStyle::Qwen,
        FimStyle::StarCoder,
        FimStyle::CodeLlama,
        FimStyle::DeepSeek,
        FimStyle::Codestral,
    ];

    /// The style with this user-facing name (`fim = "…"` in models.toml).
    pub fn from_name(name: &str) -> Option<FimStyle> {
        FimStyle::ALL.iter().copied().find(|s| s.name() == name)
    }

    /// The style whose marker tokens are all in `tokens`, if any.
    pub fn detect<S: AsRef<str>>(tokens: &[S]) -> Option<FimStyle> {
        // Mark which markers occur in one pass over the (large) vocabulary.
        let markers: Vec<&str> = SIGNATURES
            .iter()
            .flat_map(|(_, m)| m.iter().copied())
            .collect();
        let mut seen = vec![false; markers.len()];
        for token in tokens {
            let token = token.as_ref();
            for (i, m) in markers.iter().enumerate() {
                if token == *m {
                    seen[i] = true;
                }
            }
        }
        let mut offset = 0;
        for (style, signature) in SIGNATURES {
            if seen[offset..offset + signature.len()].iter().all(|s| *s) {
                return Some(*style);
            }
            offset += signature.len();
        }
        None
    }

    /// The user-facing name, e.g. for logs.
    pub fn name(self) -> &'static str {
        match self {
            FimStyle::Qwen => "qwen",
            FimStyle::StarCoder => "starcoder",
            FimStyle::DeepSeek => "deepseek",
            FimStyle::CodeLlama => "codellama",
            FimStyle::Codestral => "codestral",
        }
    }

    /// The prompt asking for the code between `prefix` and `suffix`. Tokenize it with special
    /// tokens recognised. Prefix and suffix are kept byte for byte (leading whitespace is
    /// indentation).
    pub fn build(self, prefix: &str, suffix: &str) -> String {
        match self {
            FimStyle::Qwen => format!("<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"),
            FimStyle::StarCoder => format!("<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>"),
            FimStyle::DeepSeek => {
                format!("<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>")
            }
            FimStyle::CodeLlama => format!("<PRE> {prefix} <SUF>{suffix} <MID>"),
            FimStyle::Codestral => format!("[SUFFIX]{suffix}[PREFIX]{prefix}"),
        }
    }

    /// Texts of the tokens that end a FIM answer in this family, besides the model's eos.
    /// Some may be missing from a given vocabulary; callers skip those.
    pub fn stop_tokens(self) -> &'static [&'static str] {
        match self {
            FimStyle::Qwen => &[
                "<|endoftext|>",
                "<|fim_pad|>",
                "<|repo_name|>",
                "<|file_sep|>",
                "<|im_end|>",
                "<|fim_prefix|>",
                "<|fim_suffix|>",
                "<|fim_middle|>",
            ],
            FimStyle::StarCoder => &[
                "<|endoftext|>",
                "<file_sep>",
                "<fim_pad>",
                "<fim_prefix>",
                "<fim_suffix>",
                "<fim_middle>",
            ],
            FimStyle::DeepSeek => &[
                "<｜end▁of▁sentence｜>",
                "<|EOT|>",
                "<｜fim▁begin｜>",
                "<｜fim▁hole｜>",
                "<｜fim▁end｜>",
            ],
            FimStyle::CodeLlama => &["▁<EOT>", "<EOT>", "</s>"],
            FimStyle::Codestral => &["</s>", "[PREFIX]", "[SUFFIX]"],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_style_from_vocabulary() {
        let cases: &[(&[&str], Option<FimStyle>)] = &[
            (
                &[
                    "a",
                    "<|fim_prefix|>",
                    "<|fim_middle|>",
                    "<|fim_suffix|>",
                    "<fim_prefix>",
                ],
                Some(FimStyle::Qwen),
            ),
            (
                &["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>"],
                Some(FimStyle::StarCoder),
            ),
            (
                &["<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"],
                Some(FimStyle::DeepSeek),
            ),
            (
                &["▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>"],
                Some(FimStyle::CodeLlama),
            ),
            (
                &["[PREFIX]", "[SUFFIX]", "[INST]"],
                Some(FimStyle::Codestral),
            ),
            (&["<|fim_prefix|>", "<|fim_suffix|>"], None),
            (&["<|im_start|>", "<|im_end|>"], None),
        ];
        for (tokens, want) in cases {
            assert_eq!(FimStyle::detect(tokens), *want, "{tokens:?}");
        }
    }

    #[test]
    fn builds_prompts_keeping_whitespace() {
        let (p, s) = ("def f():\n    ", "\n    return x\n");
        let cases = [
            (
                FimStyle::Qwen,
                "<|fim_prefix|>def f():\n    <|fim_suffix|>\n    return x\n<|fim_middle|>",
            ),
            (
                FimStyle::StarCoder,
                "<fim_prefix>def f():\n    <fim_suffix>\n    return x\n<fim_middle>",
            ),
            (
                FimStyle::DeepSeek,
                "<｜fim▁begin｜>def f():\n    <｜fim▁hole｜>\n    return x\n<｜fim▁end｜>",
            ),
            (
                FimStyle::CodeLlama,
                "<PRE> def f():\n     <SUF>\n    return x\n <MID>",
            ),
            (
                FimStyle::Codestral,
                "[SUFFIX]\n    return x\n[PREFIX]def f():\n    ",
            ),
        ];
        for (style, want) in cases {
            assert_eq!(style.build(p, s), want, "{}", style.name());
        }
    }

    #[test]
    fn every_style_has_stop_tokens() {
        for style in [
            FimStyle::Qwen,
            FimStyle::StarCoder,
            FimStyle::DeepSeek,
            FimStyle::CodeLlama,
            FimStyle::Codestral,
        ] {
            assert!(!style.stop_tokens().is_empty(), "{}", style.name());
        }
    }
}
