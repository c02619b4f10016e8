//! Runs the conformance corpus (`cases.jsonl`, a copy of the shared contract corpus) and
//! our own cases (`own_cases.jsonl`) through every parser: one-shot, then streamed at
//! every chunk size from 1 to the input length (in characters). Every run must match
//! `expected` under the contract's comparison (content/reasoning trimmed, calls by name
//! and parsed arguments, numbers by value), and a result without calls or reasoning must
//! give the whole input back as content.

use serde_json::Value;
use wick_parsers::{parse_chunked, ParseResult, ToolSpec};

struct Case {
    id: String,
    parser: String,
    tools: Vec<ToolSpec>,
    input: String,
    expected: Value,
}

fn load(file: &str) -> Vec<Case> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("corpus line is JSON");
            let tools = match v.get("tools") {
                Some(t) => ToolSpec::from_openai(t).expect("tools list"),
                None => Vec::new(),
            };
            Case {
                id: v["id"].as_str().expect("id").to_owned(),
                parser: v["parser"].as_str().expect("parser").to_owned(),
                tools,
                input: v["input"].as_str().expect("input").to_owned(),
                expected: v["expected"].clone(),
            }
        })
        .collect()
}

fn norm_text(v: Option<&Value>) -> Option<String> {
    let s = v?.as_str()?.trim_matches([' ', '\t', '\r', '\n']);
    (!s.is_empty()).then(|| s.to_owned())
}

/// JSON equality with numbers compared by value (1 == 1.0) and bools distinct.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, p)| y.get(k).is_some_and(|q| same(p, q)))
        }
        _ => a == b,
    }
}

fn diff(case: &Case, got: &ParseResult) -> Option<String> {
    let e = &case.expected;
    let mut out = Vec::new();
    if norm_text(e.get("content")) != got.content {
        out.push(format!(
            "content: expected {:?} got {:?}",
            norm_text(e.get("content")),
            got.content
        ));
    }
    if norm_text(e.get("reasoning_content")) != got.reasoning_content {
        out.push(format!(
            "reasoning: expected {:?} got {:?}",
            norm_text(e.get("reasoning_content")),
            got.reasoning_content
        ));
    }
    let calls = e
        .get("tool_calls")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if calls.len() != got.tool_calls.len() {
        out.push(format!(
            "calls: expected {} got {:?}",
            calls.len(),
            got.tool_calls
        ));
    } else {
        for (x, g) in calls.iter().zip(&got.tool_calls) {
            let args = Value::Object(g.arguments.clone());
            if x["name"] != g.name || !same(&x["arguments"], &args) {
                out.push(format!("call: expected {x} got {} {args}", g.name));
            }
        }
    }
    let thinks = case.input.trim_start().starts_with("<think>");
    if got.tool_calls.is_empty() && !thinks {
        let whole = norm_text(Some(&Value::String(case.input.clone())));
        if got.content != whole {
            out.push("content is not the whole input".into());
        }
    }
    (!out.is_empty()).then(|| out.join("; "))
}

fn run(file: &str) {
    let cases = load(file);
    assert!(!cases.is_empty(), "{file} is empty");
    let mut failures = Vec::new();
    let mut runs = 0;
    for case in &cases {
        let chars = case.input.chars().count();
        for chunk in 0..=chars.max(1) {
            runs += 1;
            let got =
                parse_chunked(&case.parser, &case.input, &case.tools, chunk).expect("known parser");
            if let Some(d) = diff(case, &got) {
                failures.push(format!("{} chunk={chunk}: {d}", case.id));
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed ({runs} runs):\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{file}: {} cases, {runs} runs passed", cases.len());
}

#[test]
fn conformance_corpus_passes_one_shot_and_at_every_chunk_size() {
    run("cases.jsonl");
}

#[test]
fn own_cases_pass_one_shot_and_at_every_chunk_size() {
    run("own_cases.jsonl");
}
