//! `wick generate` as users and scripts run it: `--json` greedy output against the
//! llama.cpp reference vectors, seeded sampling, stop strings and one-line errors.

mod common;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::process::{Command, Output};

fn wick(args: &[&str]) -> Result<Output> {
    Ok(Command::new(common::wick_bin()).args(args).output()?)
}

fn json_run(args: &[&str]) -> Result<Value> {
    let out = wick(args)?;
    if !out.status.success() {
        bail!(
            "wick {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// Each reference prompt through `wick generate --json --temperature 0`: prompt ids must
/// match exactly, and the first `n` generated ids too (later the greedy path may fork
/// where llama.cpp's top two log-probs differ by a few hundredths).
fn check_reference(model_file: &str, reference: &str, names: &[&str], n: usize) -> Result<()> {
    let model = common::test_model(model_file);
    let model = model.to_str().context("model path is not UTF-8")?;
    let path = common::test_data(&format!("reference/{reference}.json"));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let dir = tempfile::tempdir()?;
    for p in r["prompts"].as_array().context("no prompts")? {
        let name = p["name"].as_str().unwrap_or_default();
        if !names.contains(&name) {
            continue;
        }
        let file = dir.path().join(format!("{name}.txt"));
        std::fs::write(&file, p["prompt"].as_str().unwrap_or_default())?;
        let want = ids(&p["generated_ids"]);
        let n = n.min(want.len());
        let stops = p["finish_reason"] == "stop" && n == want.len();
        // One more token than the reference generated, so the eog token can end it.
        let max_tokens = if stops { n + 1 } else { n };
        let out = json_run(&[
            "generate",
            "--model",
            model,
            "--prompt-file",
            file.to_str().context("temp path")?,
            "--max-tokens",
            &max_tokens.to_string(),
            "--temperature",
            "0",
            "--json",
        ])?;
        assert_eq!(ids(&out["prompt_ids"]), ids(&p["prompt_ids"]), "{name}");
        assert_eq!(ids(&out["ids"])[..], want[..n], "{name}");
        let text = out["text"].as_str().context("text")?;
        let want_text = p["generated_text"].as_str().unwrap_or_default();
        if n == want.len() {
            assert_eq!(text, want_text, "{name}");
        } else {
            assert!(want_text.starts_with(text), "{name}: {text:?}");
        }
        let want_finish = if stops { "stop" } else { "length" };
        assert_eq!(out["finish_reason"].as_str(), Some(want_finish), "{name}");
    }
    Ok(())
}

#[test]
fn greedy_json_matches_reference_smollm2() -> Result<()> {
    check_reference(
        common::SMOLLM2,
        "smollm2-135m-instruct",
        &["raw_python_fib", "chat_simple", "chat_multiturn"],
        // The first 48 greedy tokens of each prompt match llama.cpp's (the CPU kernels
        // compute what ggml computes; see tests/model_reference.rs).
        48,
    )
}

#[test]
fn greedy_json_matches_reference_qwen05() -> Result<()> {
    check_reference(
        common::QWEN05,
        "qwen2.5-coder-0.5b-instruct",
        &["raw_rust_parse", "chat_tools"],
        12,
    )
}

#[test]
fn same_seed_same_output() -> Result<()> {
    let model = common::test_model(common::SMOLLM2);
    let model = model.to_str().context("model path")?;
    let run = |seed: &str| {
        json_run(&[
            "generate",
            "--model",
            model,
            "--prompt",
            "def add(a, b):",
            "--max-tokens",
            "16",
            "--temperature",
            "0.9",
            "--top-k",
            "40",
            "--seed",
            seed,
            "--json",
        ])
    };
    let (a, b) = (run("7")?, run("7")?);
    assert_eq!(a["ids"], b["ids"]);
    assert_eq!(a["text"], b["text"]);
    assert_eq!(ids(&a["ids"]).len(), 16);
    Ok(())
}

#[test]
fn streams_plain_text_and_honours_stop() -> Result<()> {
    let model = common::test_model(common::SMOLLM2);
    let model = model.to_str().context("model path")?;
    let base = [
        "generate",
        "--model",
        model,
        "--prompt",
        "def fibonacci(n):",
        "--max-tokens",
        "24",
    ];
    let json = json_run(&[&base[..], &["--json"]].concat())?;
    let text = json["text"].as_str().context("text")?.to_owned();
    let plain = wick(&base)?;
    assert!(plain.status.success());
    assert_eq!(String::from_utf8(plain.stdout)?, text);
    // Stop at the first line break: everything before it, nothing after.
    let stopped = json_run(&[&base[..], &["--json", "--stop", "\n"]].concat())?;
    let first = text.find('\n').context("a line")?;
    assert_eq!(stopped["text"].as_str(), Some(&text[..first]));
    assert_eq!(stopped["finish_reason"], "stop");
    Ok(())
}

#[test]
fn one_line_errors_for_bad_input() -> Result<()> {
    let model = common::test_model(common::SMOLLM2);
    let model = model.to_str().context("model path")?;
    let long = "word ".repeat(300);
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "generate",
                "--model",
                model,
                "--prompt",
                &long,
                "--ctx-size",
                "64",
            ],
            "context",
        ),
        (
            &[
                "generate",
                "--model",
                model,
                "--prompt-file",
                "/nonexistent/p.txt",
            ],
            "cannot read",
        ),
        (
            &[
                "generate",
                "--model",
                "/nonexistent/m.gguf",
                "--prompt",
                "x",
            ],
            "",
        ),
        (
            &[
                "generate", "--model", model, "--prompt", "x", "--top-p", "1.5",
            ],
            "--top-p",
        ),
        (&["generate", "--model", model], ""),
    ];
    for (args, needle) in cases {
        let out = wick(args)?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        let line = err.trim_end();
        assert!(
            line.starts_with("error: ") && !line.contains('\n'),
            "{args:?}: {err}"
        );
        assert!(line.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    Ok(())
}

#[test]
fn chat_flag_renders_one_user_message() -> Result<()> {
    // The reference chat_simple prompt is exactly one user message through the GGUF's own
    // template, so `--chat` with its content must give the same prompt ids and tokens.
    let model = common::test_model(common::SMOLLM2);
    let model = model.to_str().context("model path")?;
    let path = common::test_data("reference/smollm2-135m-instruct.json");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let p = r["prompts"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "chat_simple"))
        .context("chat_simple")?;
    let content = p["request"]["messages"][0]["content"]
        .as_str()
        .context("content")?;
    let out = json_run(&[
        "generate",
        "--model",
        model,
        "--chat",
        "--prompt",
        content,
        "--max-tokens",
        "4",
        "--temperature",
        "0",
        "--json",
    ])?;
    assert_eq!(ids(&out["prompt_ids"]), ids(&p["prompt_ids"]));
    assert_eq!(ids(&out["ids"])[..], ids(&p["generated_ids"])[..4]);
    Ok(())
}
