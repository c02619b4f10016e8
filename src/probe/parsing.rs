//! The one place the probe talks to the parsers crate: the registry's names, one-shot
//! parsing into the probe's `Parsed`, and template-based detection.
//!
//! Input: parser names, raw output text, OpenAI tool objects, template source. Output:
//! `score::Parsed` and `report::Detection`. Keeps the rest of the probe independent of the
//! crate's types.

use super::report::Detection;
use super::score::{Call, Parsed};
use super::ProbeError;
use serde_json::Value;
use wick_parsers::ToolSpec;

/// Every registered parser, in registry order (`auto` last).
pub fn names() -> Vec<&'static str> {
    wick_parsers::PARSERS.iter().map(|p| p.name).collect()
}

/// Checks a parser name; the error lists the known ones.
pub fn check_name(name: &str) -> Result<&'static str, ProbeError> {
    wick_parsers::by_name(name)
        .map(|spec| spec.name)
        .map_err(|_| ProbeError::UnknownParser {
            name: name.to_owned(),
            known: wick_parsers::names(),
        })
}

/// The tools of a request (a JSON array of OpenAI tool objects) as the parsers take them.
pub fn tool_specs(tools: &Value) -> Result<Vec<ToolSpec>, ProbeError> {
    Ok(ToolSpec::from_openai(tools)?)
}

/// Runs parser `name` over the whole `text` at once.
pub fn parse(name: &str, text: &str, tools: &[ToolSpec]) -> Result<Parsed, ProbeError> {
    let r = wick_parsers::parse(name, text, tools)?;
    Ok(Parsed {
        calls: r
            .tool_calls
            .into_iter()
            .map(|c| Call {
                name: c.name,
                arguments: Value::Object(c.arguments),
            })
            .collect(),
        content: r.content,
        rejected: r.rejections.len(),
    })
}

/// The parser a chat template (or the vocabulary's special tokens) calls for.
pub fn detect(template: &str, special_tokens: &[&str]) -> Option<Detection> {
    let d = wick_parsers::detect_parser(template, special_tokens)?;
    Some(Detection {
        parser: d.parser.to_owned(),
        evidence: format!(
            "found \"{}\" in the {}",
            d.evidence.marker, d.evidence.source
        ),
    })
}
