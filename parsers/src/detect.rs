//! Choosing a parser from the model: reads a chat template (and the vocabulary's special
//! tokens) and names the parser it calls for, with the marker found as evidence.
//!
//! The template is asked first, in order of specificity (Qwen3-Coder XML and Qwen's
//! "# Tools" header before plain `<tool_call>`, which would also match Qwen templates).
//! When the template shows no tool markup, special tokens of the vocabulary are asked
//! (`[TOOL_CALLS]`, `<｜tool▁calls▁begin｜>`, `<|python_tag|>`, `<tool_call>`). Detection only
//! ranks candidates for `wick probe` and the startup log; it never changes what a parser
//! accepts. `auto` is never detected: it is the fallback.

use crate::{by_name, deepseek, hermes, llama3_json, mistral, qwen, Evidence, ParserSpec};

/// The parser a model calls for, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// A name in [`crate::PARSERS`].
    pub parser: &'static str,
    pub evidence: Evidence,
}

/// Template checks, most specific first.
const ORDER: &[&str] = &["qwen", "deepseek", "mistral", "llama3_json", "hermes"];

/// Vocabulary tokens that name a format on their own.
const TOKENS: &[(&str, &str)] = &[
    (mistral::TOOL_CALLS, "mistral"),
    (deepseek::BEGIN, "deepseek"),
    (llama3_json::PYTHON_TAG, "llama3_json"),
    (hermes::TOOL_CALL, "hermes"),
];

/// Names the parser `template` (and `special_tokens`) call for; `None` when the model shows
/// no tool-call format (e.g. SmolLM2).
pub fn detect_parser(template: &str, special_tokens: &[&str]) -> Option<Detection> {
    for name in ORDER {
        let spec: &ParserSpec = by_name(name).ok()?;
        if let Some(marker) = (spec.detect)(template) {
            return Some(Detection {
                parser: spec.name,
                evidence: Evidence {
                    marker,
                    source: "template",
                },
            });
        }
    }
    let _ = qwen::FUNCTION;
    TOKENS.iter().find_map(|&(token, parser)| {
        special_tokens.contains(&token).then_some(Detection {
            parser,
            evidence: Evidence {
                marker: token,
                source: "vocabulary",
            },
        })
    })
}
