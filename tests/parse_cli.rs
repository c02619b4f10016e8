//! `wick parse` end to end: the conformance corpus through `wick parse --batch` at chunk
//! sizes 0, 1, 3 and 7 (as the shared check.py does), single mode with `--tools` and
//! `--chunk-size`, and the errors for bad input (unknown parser, invalid UTF-8, bad tools
//! file, bad batch line).

mod common;

use serde_json::Value;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn wick(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(common::wick_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wick starts");
    let mut pipe = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || pipe.write_all(&data));
    let out = child.wait_with_output().expect("wick runs");
    writer
        .join()
        .expect("writer thread")
        .expect("stdin written");
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn corpus() -> Vec<Value> {
    let path = common::test_data("../parsers/tests/cases.jsonl");
    let text = std::fs::read_to_string(&path).expect("corpus present");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("corpus line"))
        .collect()
}

fn norm(v: Option<&Value>) -> Option<String> {
    let s = v?.as_str()?.trim_matches([' ', '\t', '\r', '\n']);
    (!s.is_empty()).then(|| s.to_owned())
}

/// JSON equality with numbers by value.
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

fn matches(expected: &Value, got: &Value) -> bool {
    let calls = |v: &Value| {
        v.get("tool_calls")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (e, g) = (calls(expected), calls(got));
    norm(expected.get("content")) == norm(got.get("content"))
        && norm(expected.get("reasoning_content")) == norm(got.get("reasoning_content"))
        && e.len() == g.len()
        && e.iter()
            .zip(&g)
            .all(|(x, y)| x["name"] == y["name"] && same(&x["arguments"], &y["arguments"]))
}

#[test]
fn batch_mode_passes_the_corpus_at_chunk_sizes_0_1_3_7() {
    let cases = corpus();
    let mut lines = String::new();
    let mut jobs = Vec::new();
    for case in &cases {
        for chunk in [0, 1, 3, 7] {
            let mut req = serde_json::json!({"parser": case["parser"], "input": case["input"]});
            if let Some(t) = case.get("tools") {
                req["tools"] = t.clone();
            }
            if chunk > 0 {
                req["chunk_size"] = chunk.into();
            }
            lines.push_str(&req.to_string());
            lines.push('\n');
            jobs.push((case, chunk));
        }
    }
    let out = wick(&["parse", "--batch"], lines.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    let answers: Vec<Value> = String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(answers.len(), jobs.len());
    let failures: Vec<String> = jobs
        .iter()
        .zip(&answers)
        .filter(|((case, _), got)| !matches(&case["expected"], got))
        .map(|((case, chunk), got)| format!("{} chunk={chunk}: got {got}", case["id"]))
        .collect();
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn single_mode_reads_tools_and_streams_in_chunks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tools = dir.path().join("tools.json");
    std::fs::write(
        &tools,
        r#"[{"type":"function","function":{"name":"read_file","parameters":{"type":"object","properties":{"path":{"type":"string"}}}}}]"#,
    )
    .expect("write tools");
    let input = "Reading.\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.rs\"}}";
    let tools = tools.to_str().expect("utf-8 path");
    for chunk in ["0", "1", "5"] {
        let out = wick(
            &[
                "parse",
                "--parser",
                "qwen",
                "--tools",
                tools,
                "--chunk-size",
                chunk,
            ],
            input.as_bytes(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let got: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(got["content"], "Reading.");
        assert_eq!(got["tool_calls"][0]["name"], "read_file");
        assert_eq!(got["tool_calls"][0]["arguments"]["path"], "a.rs");
        assert!(got.get("reasoning_content").is_none());
    }
}

#[test]
fn unknown_parser_is_an_error_listing_the_names() {
    let out = wick(&["parse", "--parser", "nope"], b"text");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    for name in [
        "hermes",
        "llama3_json",
        "mistral",
        "qwen",
        "deepseek",
        "auto",
    ] {
        assert!(err.contains(name), "{err}");
    }
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn invalid_utf8_on_stdin_is_an_error() {
    let out = wick(&["parse", "--parser", "hermes"], b"ok \xff\xfe bad");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.starts_with("error: ") && err.contains("UTF-8"), "{err}");
}

#[test]
fn unreadable_or_malformed_tools_file_is_an_error() {
    let out = wick(
        &[
            "parse",
            "--parser",
            "qwen",
            "--tools",
            "/nonexistent/tools.json",
        ],
        b"x",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).starts_with("error: "));
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"not\": \"a list\"}").expect("write");
    let out = wick(
        &[
            "parse",
            "--parser",
            "qwen",
            "--tools",
            bad.to_str().expect("path"),
        ],
        b"x",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("tools"), "{}", stderr(&out));
}

#[test]
fn bad_batch_line_gets_an_error_object_in_place_and_a_failing_exit() {
    let input = "{\"parser\":\"hermes\",\"input\":\"a\"}\nnot json\n{\"parser\":\"zzz\",\"input\":\"b\"}\n{\"parser\":\"auto\",\"input\":\"c\"}\n";
    let out = wick(&["parse", "--batch"], input.as_bytes());
    assert!(!out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout.clone())
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["content"], "a");
    assert!(lines[1]["error"].is_string());
    assert!(lines[2]["error"]
        .as_str()
        .is_some_and(|e| e.contains("hermes")));
    assert_eq!(lines[3]["content"], "c");
    assert!(stderr(&out).contains("2 of 4 batch lines failed"));
}

/// The parser each test model's own chat template (and vocabulary) calls for.
#[test]
fn detects_the_parser_from_the_test_models_templates() {
    let cases = [
        (common::QWEN05, Some("qwen")),
        (common::QWEN15, Some("qwen")),
        (common::SMOLLM2, None),
    ];
    for (file, expected) in cases {
        let gguf = wick::gguf::Gguf::open(&common::test_model(file)).expect("GGUF opens");
        let template = gguf
            .get_str("tokenizer.chat_template")
            .expect("chat template");
        // Only the special tokens matter for detection; plain pieces cannot be markers.
        let tokens = gguf
            .get_str_array("tokenizer.ggml.tokens")
            .expect("vocabulary");
        let specials: Vec<&str> = tokens
            .into_iter()
            .filter(|t| t.starts_with(['<', '[']) && t.len() < 32)
            .collect();
        let got = wick_parsers::detect_parser(template, &specials);
        assert_eq!(got.as_ref().map(|d| d.parser), expected, "{file}: {got:?}");
    }
}
