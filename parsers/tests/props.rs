//! Property tests: random text built from marker fragments, JSON pieces and ordinary
//! characters, cut into random chunks. For every parser: no panic, every chunking gives
//! the one-shot result, and when no call is found (and no `<think>` block opens the
//! output) the content is the input, byte for byte after trimming.
//! Bounded for CI: a fixed number of cases of bounded length.

use proptest::prelude::*;
use serde_json::Value;
use wick_parsers::{ParseResult, ToolSpec, PARSERS};

const PIECES: &[&str] = &[
    "<tool_call>",
    "</tool_call>",
    "<tools>",
    "</tools>",
    "[TOOL_CALLS]",
    "[ARGS]",
    "[CALL_ID]",
    "<|python_tag|>",
    "✿FUNCTION✿",
    "✿ARGS✿",
    ": ",
    "<｜tool▁calls▁begin｜>",
    "<｜tool▁call▁begin｜>",
    "<｜tool▁sep｜>",
    "<｜tool▁call▁end｜>",
    "<｜tool▁calls▁end｜>",
    "<function=read_file>",
    "<parameter=path>",
    "</parameter>",
    "</function>",
    "<think>",
    "</think>",
    "```",
    "```json",
    "```xml",
    "\n",
    " ",
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    ";",
    "\\",
    "{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}",
    "{\"path\": \"b\"}",
    "\"name\"",
    "\"arguments\"",
    "read_file",
    "function",
    "é",
    "🚀",
    "x",
    "<",
    "｜",
    "✿",
    "1",
    "true",
    "null",
];

fn tools() -> Vec<ToolSpec> {
    let v = serde_json::json!([{"type": "function", "function": {"name": "read_file",
        "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}]);
    ToolSpec::from_openai(&v).expect("tools")
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            3 => prop::sample::select(PIECES).prop_map(str::to_owned),
            1 => "[a-z {}\\[\\]\"<>|`\n]{1,6}",
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

/// Results without call ids (ids are random per generation).
fn key(r: &ParseResult) -> (Option<String>, Option<String>, Vec<(String, Value)>) {
    let calls = r
        .tool_calls
        .iter()
        .map(|c| (c.name.clone(), Value::Object(c.arguments.clone())))
        .collect();
    (r.content.clone(), r.reasoning_content.clone(), calls)
}

fn chunked(name: &str, input: &str, tools: &[ToolSpec], cuts: &[usize]) -> ParseResult {
    let spec = wick_parsers::by_name(name).expect("parser");
    let mut parser = (spec.new)(tools);
    let mut events = Vec::new();
    let chars: Vec<(usize, char)> = input.char_indices().collect();
    let mut start = 0;
    let mut k = 0;
    for &cut in cuts {
        let end_char = (k + cut).min(chars.len());
        let end = chars.get(end_char).map_or(input.len(), |&(i, _)| i);
        parser.push(&input[start..end], &mut events);
        start = end;
        k = end_char;
    }
    parser.push(&input[start..], &mut events);
    parser.finish(&mut events);
    let mut c = wick_parsers::Collector::default();
    c.extend(events);
    c.finish()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_chunking_gives_the_one_shot_result(
        input in text(),
        cuts in prop::collection::vec(0usize..9, 0..60),
        with_tools in any::<bool>(),
    ) {
        let tools = if with_tools { tools() } else { Vec::new() };
        for spec in PARSERS {
            let whole = wick_parsers::parse(spec.name, &input, &tools).expect("parser");
            let streamed = chunked(spec.name, &input, &tools, &cuts);
            prop_assert_eq!(key(&whole), key(&streamed), "parser {}", spec.name);
            let thinks = input.trim_start().starts_with("<think>");
            if whole.tool_calls.is_empty() && !thinks {
                let expect = input.trim_matches([' ', '\t', '\r', '\n']);
                prop_assert_eq!(whole.content.as_deref().unwrap_or(""), expect, "parser {}", spec.name);
            }
        }
    }
}

/// One valid construct of every format `auto` recognises, each calling read_file(path="a").
const CONSTRUCTS: &[&str] = &[
    "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}\n</tool_call>",
    "<tool_call>\n<function=read_file>\n<parameter=path>\na\n</parameter>\n</function>\n</tool_call>",
    "<tools>{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}</tools>",
    "[TOOL_CALLS]read_file[ARGS]{\"path\": \"a\"}",
    "[TOOL_CALLS]read_file[CALL_ID]x1y2z3w4v[ARGS]{\"path\": \"a\"}",
    "[TOOL_CALLS][{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}]",
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>read_file<｜tool▁sep｜>{\"path\": \"a\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>read_file\n```json\n{\"path\": \"a\"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
    "<|python_tag|>{\"name\": \"read_file\", \"parameters\": {\"path\": \"a\"}}",
    "✿FUNCTION✿: read_file\n✿ARGS✿: {\"path\": \"a\"}",
    "{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\"}}",
];

/// Which constructs (indexes into `CONSTRUCTS`) each parser reads.
const READS: &[(&str, &[usize])] = &[
    ("hermes", &[0]),
    ("llama3_json", &[8, 10]),
    ("mistral", &[3, 4, 5]),
    ("qwen", &[0, 1, 2, 9, 10]),
    ("deepseek", &[6, 7]),
    ("auto", &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Every parser finds each of its constructs wherever it starts, between arbitrary
    /// prose, in any chunking, and the prose alone is the content.
    #[test]
    fn finds_every_construct_between_prose_in_any_chunking(
        which in 0..READS.len(),
        // Prose between constructs is empty or starts with a letter: whitespace or a `,`
        // alone between two JSON calls would join them into one run (it is markup then).
        parts in prop::collection::vec((0usize..64, "([a-z][a-z .,!?\n]{0,11})?"), 0..8),
        lead in "[a-z .,!?\n]{0,12}",
        cuts in prop::collection::vec(0usize..9, 0..80),
    ) {
        let (name, reads) = READS[which];
        let tools = tools();
        let mut input = lead.clone();
        let mut prose = lead;
        for (pick, text) in &parts {
            input.push_str(CONSTRUCTS[reads[pick % reads.len()]]);
            input.push_str(text);
            prose.push_str(text);
        }
        let whole = wick_parsers::parse(name, &input, &tools).expect("parser");
        prop_assert_eq!(whole.tool_calls.len(), parts.len(), "{}", name);
        for call in &whole.tool_calls {
            prop_assert_eq!(call.name.as_str(), "read_file");
            prop_assert_eq!(&Value::Object(call.arguments.clone()), &serde_json::json!({"path": "a"}));
        }
        let prose = prose.trim_matches([' ', '\t', '\r', '\n']);
        prop_assert_eq!(whole.content.as_deref().unwrap_or(""), prose, "{}", name);
        prop_assert!(whole.rejections.is_empty());
        let streamed = chunked(name, &input, &tools, &cuts);
        prop_assert_eq!(key(&whole), key(&streamed), "{}", name);
    }
}
