//! `wick probe` end to end on the 0.5B Qwen2.5-Coder model: it recommends a parser that
//! really reads the model's calls, and `--parser mistral` fails with an explanation.

mod common;

use serde_json::Value;
use std::process::{Command, Output};

fn probe(extra: &[&str]) -> Output {
    let model = common::test_model(common::QWEN05);
    let mut cmd = Command::new(common::wick_bin());
    cmd.arg("probe")
        .arg("--model")
        .arg(&model)
        .args(["--max-tokens", "64"])
        .args(extra);
    cmd.output().expect("wick runs")
}

#[test]
fn recommends_the_parser_that_reads_the_models_calls() {
    let out = probe(&["--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON report on stdout");
    assert_eq!(report["version"], 1);
    let best = report["recommended"]
        .as_str()
        .expect("a parser is recommended");
    let totals = &report["totals"];
    let best_correct = totals[best]["correct"].as_u64().unwrap_or(0);
    assert!(
        best_correct > 0,
        "the recommended parser reads calls: {totals}"
    );
    assert_eq!(totals[best]["false"], 0, "{totals}");
    // No parser without false calls reads more correct calls than the recommended one.
    for (name, t) in totals.as_object().into_iter().flatten() {
        if t["false"] == 0 {
            assert!(
                t["correct"].as_u64().unwrap_or(0) <= best_correct,
                "{name} beats {best}: {totals}"
            );
        }
    }
    // The probe's cells agree with what the parser returned on the raw output.
    for prompt in report["prompts"].as_array().into_iter().flatten() {
        let cell = &prompt["results"][best];
        assert_eq!(
            cell["calls"],
            cell["tool_calls"].as_array().map_or(0, Vec::len)
        );
    }
    // The Qwen template teaches `<tool_call>` blocks; the model answers in JSON without them.
    assert!(
        report["detected"]["parser"].is_string(),
        "{}",
        report["detected"]
    );
    assert_ne!(best, "mistral");
}

#[test]
fn parser_that_reads_nothing_fails_and_explains() {
    let out = probe(&["--parser", "mistral"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mistral must not pass: {stdout}");
    let line = stderr.lines().last().unwrap_or_default();
    assert!(
        line.starts_with("error: parser 'mistral' is not the best match"),
        "stderr: {stderr}"
    );
    assert!(line.contains("Use --tool-parser"), "{line}");
    // The table explains itself: one row per prompt, the verdict, and the parser named.
    for id in [
        "single",
        "two_calls",
        "nested",
        "no_args",
        "no_tool",
        "correct",
        "false",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(id)),
            "row {id} missing:\n{stdout}"
        );
    }
    assert!(stdout.contains("recommended: "), "{stdout}");
    assert!(
        stdout.contains("parser 'mistral' (--parser): NOT a best match"),
        "{stdout}"
    );
    // Raw model output and the file path are printed as they are; the rest fits 100 columns.
    for l in stdout
        .lines()
        .filter(|l| !l.starts_with("  | ") && !l.starts_with("file "))
    {
        assert!(l.chars().count() <= 100, "wider than 100 columns: {l}");
    }
}

#[test]
fn unknown_parser_is_a_one_line_error() {
    let out = probe(&["--parser", "nope"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown tool parser 'nope'"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
