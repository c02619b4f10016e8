//! Any text through every tool-call parser, whole and in chunks: no panic, and chunking
//! never changes the result.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wick_parsers::{parse, parse_chunked, ParseResult, ToolSpec, PARSERS};

/// What must not depend on chunking (call ids are random per generation).
fn key(r: &ParseResult) -> (Option<String>, Option<String>, Vec<(String, String)>) {
    let calls = r
        .tool_calls
        .iter()
        .map(|c| (c.name.clone(), serde_json::Value::Object(c.arguments.clone()).to_string()))
        .collect();
    (r.content.clone(), r.reasoning_content.clone(), calls)
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let tools = vec![ToolSpec {
        name: "get_weather".into(),
        parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    }];
    for spec in PARSERS {
        let whole = parse(spec.name, text, &tools).expect("known parser");
        let chunked =
            parse_chunked(spec.name, text, &tools, usize::from(chunk % 8) + 1).expect("known parser");
        assert_eq!(key(&whole), key(&chunked), "{}: chunking changed the result", spec.name);
    }
});
