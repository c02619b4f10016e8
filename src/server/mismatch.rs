//! The live tool-parser mismatch check: after a response with tools declared in which the
//! active parser found no call, ask `probe::live::mismatch` whether the text holds calls
//! anyway; if so, warn (naming the parser that reads them), count it in `/metrics`, and
//! with `--tool-parser-fallback` hand back those calls for the response.
//! Input: the whole generated text, the request's tools, the active parser's name.
//! Output: the fallback calls (`name`, JSON-string arguments) or nothing.
//! Only runs when the active parser found no call, so the common path costs nothing.
//! Must not depend on axum.

use super::state::AppState;
use crate::api::Tool;
use crate::probe::live::mismatch;
use wick_parsers::ToolSpec;

/// The metric label for calls no parser reads but that are JSON naming a declared tool.
pub const JSON_LABEL: &str = "json";

/// One call the fallback parser read: name and arguments as JSON text.
#[derive(Debug, Clone, PartialEq)]
pub struct FallbackCall {
    pub name: String,
    pub arguments: String,
}

/// What the response uses instead of the active parser's reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    pub calls: Vec<FallbackCall>,
    /// The content beside the calls (`None` when nothing is left).
    pub content: Option<String>,
}

/// Runs the check on `text` (the whole output the parser saw). Call it only when the
/// active parser found no call. Returns the calls to answer with when the server runs
/// with `--tool-parser-fallback` and another reading found some.
pub fn check(
    state: &AppState,
    active_parser: &str,
    tools: &[Tool],
    text: &str,
    max_calls: Option<usize>,
) -> Option<Fallback> {
    if tools.is_empty() || text.trim().is_empty() {
        return None;
    }
    let specs = tool_specs(tools);
    let found = mismatch(text, &specs, active_parser)?;
    let label = found.would_parse_with.unwrap_or(JSON_LABEL);
    let names: Vec<&str> = found.calls.iter().map(|c| c.name.as_str()).collect();
    let fallback = state.config().tool_parser_fallback;
    match found.would_parse_with {
        Some(other) => tracing::warn!(
            parser = active_parser,
            would_parse_with = other,
            calls = ?names,
            fallback,
            "the active tool parser found no call, but the '{other}' parser reads one: \
             check --tool-parser"
        ),
        None => tracing::warn!(
            parser = active_parser,
            would_parse_with = "JSON naming a declared tool",
            calls = ?names,
            fallback,
            "the active tool parser found no call, but the output is JSON naming a declared tool"
        ),
    }
    state.metrics().record_parser_mismatch(active_parser, label);
    if !fallback {
        return None;
    }
    state.metrics().record_parser_fallback();
    let keep = max_calls.unwrap_or(usize::MAX);
    Some(Fallback {
        calls: found
            .calls
            .into_iter()
            .take(keep)
            .map(|c| FallbackCall {
                name: c.name,
                arguments: c.arguments.to_string(),
            })
            .collect(),
        content: found.content.filter(|c| !c.trim().is_empty()),
    })
}

/// The request's tools in the parser crate's terms (as the backend gives its parser).
pub fn tool_specs(tools: &[Tool]) -> Vec<ToolSpec> {
    tools
        .iter()
        .map(|t| ToolSpec {
            name: t.function.name.clone(),
            parameters: t
                .function
                .parameters
                .clone()
                .unwrap_or(serde_json::Value::Null),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::state::ServerConfig;

    fn tools() -> Vec<Tool> {
        serde_json::from_value(serde_json::json!([
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
        ]))
        .expect("valid tools")
    }

    const BARE: &str = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}";

    #[test]
    fn counts_a_miss_and_falls_back_only_when_asked() {
        let state = AppState::loading(ServerConfig::new("m"));
        assert_eq!(check(&state, "mistral", &tools(), BARE, None), None);
        let text = state.metrics().render(Default::default());
        let line = text
            .lines()
            .find(|l| l.starts_with("wick_tool_parser_mismatch_total{parser=\"mistral\""))
            .unwrap_or_else(|| panic!("no mismatch series in\n{text}"));
        assert!(line.ends_with(" 1") && !line.contains("would_parse_with=\"mistral\""));

        let mut config = ServerConfig::new("m");
        config.tool_parser_fallback = true;
        let state = AppState::loading(config);
        let fb = check(&state, "mistral", &tools(), BARE, None).expect("falls back");
        assert_eq!(fb.calls.len(), 1);
        assert_eq!(fb.calls[0].name, "get_weather");
        let args: serde_json::Value =
            serde_json::from_str(&fb.calls[0].arguments).expect("JSON arguments");
        assert_eq!(args, serde_json::json!({"city": "Paris"}));
        assert_eq!(fb.content, None);
        let text = state.metrics().render(Default::default());
        assert!(text
            .lines()
            .any(|l| l == "wick_tool_parser_fallback_total 1"));
    }

    #[test]
    fn silent_on_plain_text_and_without_tools() {
        let state = AppState::loading(ServerConfig::new("m"));
        assert_eq!(
            check(&state, "mistral", &tools(), "Paris is sunny.", None),
            None
        );
        assert_eq!(check(&state, "mistral", &[], BARE, None), None);
        let text = state.metrics().render(Default::default());
        assert!(!text.contains("wick_tool_parser_mismatch_total{"), "{text}");
    }
}
