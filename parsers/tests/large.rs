//! Gigantic and pathological inputs, fed one character at a time and then all at once:
//! the parsers must finish (amortized linear work, no re-scan per push), never panic, and
//! keep every byte. Not a timed test: a quadratic parser would simply not finish.

use wick_parsers::{parse_chunked, ToolSpec, PARSERS};

const SIZE: usize = 256 * 1024;

fn tools() -> Vec<ToolSpec> {
    let v = serde_json::json!([{"type": "function", "function": {"name": "write_file",
        "parameters": {"type": "object", "properties": {"content": {"type": "string"}}}}}]);
    ToolSpec::from_openai(&v).expect("tools")
}

fn inputs() -> Vec<(&'static str, String)> {
    let long = "x".repeat(SIZE);
    vec![
        ("plain text", "word ".repeat(SIZE / 5)),
        ("open brackets", "[".repeat(SIZE)),
        ("open braces and quotes", "{\"a\": [\"{".repeat(SIZE / 10)),
        ("unterminated JSON string", format!("{{\"name\": \"{long}")),
        ("long tagged call", format!("<tool_call>{{\"name\": \"write_file\", \"arguments\": {{\"content\": \"{long}\"}}}}</tool_call>")),
        ("long XML value", format!("<tool_call>\n<function=write_file>\n<parameter=content>\n{}\n</parameter>\n</function>\n</tool_call>", "<p>a > b</p>\n".repeat(SIZE / 14))),
        ("unclosed tag", format!("<tool_call>\n{long}")),
        ("long reasoning", format!("<think>{}</think>done", "hmm <".repeat(SIZE / 5))),
        ("long whitespace", " \n".repeat(SIZE / 2)),
        ("long code fence", format!("```\n{}```", "let x = [1, 2];\n".repeat(SIZE / 16))),
        ("unclosed json fence", format!("```json\n{{\"name\": \"write_file\", \"arguments\": {{\"content\": \"{long}")),
        ("many markers", "<tool_call>[TOOL_CALLS]✿FUNCTION✿<|python_tag|>".repeat(SIZE / 64)),
        ("deep nesting", format!("{}{}", "{\"a\":[".repeat(SIZE / 6), "]}".repeat(10))),
    ]
}

#[test]
fn finishes_megabyte_scale_inputs_in_one_char_chunks_without_losing_bytes() {
    let tools = tools();
    for (what, input) in inputs() {
        for spec in PARSERS {
            for chunk in [0, 1] {
                let r = parse_chunked(spec.name, &input, &tools, chunk).expect("parser");
                let kept = r.content.as_deref().map_or(0, str::len)
                    + r.reasoning_content.as_deref().map_or(0, str::len);
                let calls = r.tool_calls.len();
                assert!(
                    calls > 0 || kept + 64 >= input.trim().len(),
                    "{what} / {} / chunk {chunk}: lost text ({kept} of {} bytes)",
                    spec.name,
                    input.len()
                );
            }
        }
    }
}
