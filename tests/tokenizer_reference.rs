//! The tokenizer against llama.cpp's reference vectors (tests/reference/*.json, copied from
//! the shared reference set) on the real GGUF files, and `wick tokenize` end to end.

mod common;

use anyhow::{Context, Result};
use serde_json::Value;
use std::process::Command;
use wick::gguf::Gguf;
use wick::tokenizer::{Detokenizer, Tokenizer};

struct Case {
    reference: &'static str,
    model: &'static str,
}

const QWEN: Case = Case {
    reference: "reference/qwen2.5-coder-0.5b-instruct.json",
    model: common::QWEN05,
};
const SMOLLM: Case = Case {
    reference: "reference/smollm2-135m-instruct.json",
    model: common::SMOLLM2,
};

fn load(case: &Case) -> Result<(Tokenizer, Value)> {
    let gguf = Gguf::open(&common::test_model(case.model))?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let text = std::fs::read_to_string(common::test_data(case.reference))?;
    Ok((tokenizer, serde_json::from_str(&text)?))
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_u64())
                .map(|x| x as u32)
                .collect()
        })
        .unwrap_or_default()
}

/// Every reference string, with and without special-token parsing; returns the mismatches.
fn string_mismatches(tok: &Tokenizer, reference: &Value) -> Result<Vec<String>> {
    let mut bad = Vec::new();
    let cases = reference["tokenizer"]
        .as_array()
        .context("no tokenizer cases")?;
    assert!(cases.len() >= 30, "reference has {} strings", cases.len());
    for c in cases {
        let text = c["text"].as_str().context("text")?;
        for (parse_special, key) in [(true, "ids"), (false, "ids_no_special")] {
            let got = tok.encode(text, false, parse_special)?;
            let want = ids(&c[key]);
            if got != want {
                bad.push(format!("{text:?} ({key}): got {got:?}, want {want:?}"));
            }
        }
    }
    Ok(bad)
}

fn check_strings(case: &Case) -> Result<()> {
    let (tok, reference) = load(case)?;
    let bad = string_mismatches(&tok, &reference)?;
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
    Ok(())
}

fn check_prompts(case: &Case) -> Result<()> {
    let (tok, reference) = load(case)?;
    let prompts = reference["prompts"].as_array().context("no prompts")?;
    assert!(prompts.len() >= 6);
    for p in prompts {
        let name = p["name"].as_str().unwrap_or("?");
        let prompt = p["prompt"].as_str().context("prompt")?;
        let want = ids(&p["prompt_ids"]);
        assert_eq!(tok.encode(prompt, true, true)?, want, "prompt {name}");
        assert_eq!(tok.decode(&want, false), prompt, "decode of prompt {name}");
    }
    Ok(())
}

fn check_special_ids(case: &Case) -> Result<()> {
    let (tok, reference) = load(case)?;
    let model = &reference["model"];
    assert_eq!(tok.eog_ids(), ids(&model["eog_ids"]).as_slice(), "eog_ids");
    assert_eq!(
        tok.vocab_size() as u64,
        model["n_vocab"].as_u64().context("n_vocab")?
    );
    assert_eq!(tok.bos_id().map(u64::from), model["bos_id"].as_u64());
    assert_eq!(tok.eos_id().map(u64::from), model["eos_id"].as_u64());
    assert_eq!(
        tok.add_bos(),
        model["add_bos"].as_bool().context("add_bos")?
    );
    let want: Vec<(u32, String)> = model["special_tokens"]
        .as_object()
        .context("special_tokens")?
        .iter()
        .map(|(id, text)| {
            (
                id.parse().unwrap_or(u32::MAX),
                text.as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let mut want = want;
    want.sort();
    let got: Vec<(u32, String)> = tok
        .special_tokens()
        .into_iter()
        .map(|(id, t)| (id, t.to_owned()))
        .collect();
    assert_eq!(got, want, "special tokens as llama.cpp types them");
    Ok(())
}

#[test]
fn qwen_strings_match_llama_cpp() -> Result<()> {
    check_strings(&QWEN)
}

#[test]
fn smollm2_strings_match_llama_cpp() -> Result<()> {
    check_strings(&SMOLLM)
}

#[test]
fn qwen_prompts_match_llama_cpp_and_decode_back() -> Result<()> {
    check_prompts(&QWEN)
}

#[test]
fn smollm2_prompts_match_llama_cpp_and_decode_back() -> Result<()> {
    check_prompts(&SMOLLM)
}

#[test]
fn qwen_special_and_eog_ids_match_llama_cpp() -> Result<()> {
    check_special_ids(&QWEN)
}

#[test]
fn smollm2_special_and_eog_ids_match_llama_cpp() -> Result<()> {
    check_special_ids(&SMOLLM)
}

#[test]
fn streaming_detokenizer_equals_decode_on_every_reference_text() -> Result<()> {
    for case in [&QWEN, &SMOLLM] {
        let (tok, reference) = load(case)?;
        let mut texts: Vec<&str> = Vec::new();
        for c in reference["tokenizer"].as_array().context("cases")? {
            texts.extend(c["text"].as_str());
        }
        for p in reference["prompts"].as_array().context("prompts")? {
            texts.extend(p["prompt"].as_str());
            texts.extend(p["generated_text"].as_str());
        }
        let mut d = Detokenizer::new();
        for text in texts {
            let ids = tok.encode(text, false, true)?;
            let mut streamed = String::new();
            for &id in &ids {
                d.push_into(&tok, id, &mut streamed);
            }
            d.finish_into(&mut streamed);
            assert_eq!(streamed, tok.decode(&ids, true), "{text:?}");
        }
    }
    Ok(())
}

#[test]
fn control_tokens_stream_no_text_but_tool_call_tags_do() -> Result<()> {
    let (tok, _) = load(&QWEN)?;
    let ids = tok.encode("<|im_start|>a<tool_call>b<|im_end|>", false, true)?;
    let mut d = Detokenizer::new();
    let pieces: Vec<String> = ids.iter().map(|&id| d.push(&tok, id).to_owned()).collect();
    assert_eq!(pieces.concat(), "a<tool_call>b");
    assert_eq!(
        pieces.first().map(String::as_str),
        Some(""),
        "<|im_start|> is silent"
    );
    assert!(tok.is_control(151645) && !tok.is_control(151657));
    Ok(())
}

#[test]
fn token_bytes_are_raw_bytes_of_byte_level_tokens() -> Result<()> {
    let (tok, _) = load(&QWEN)?;
    let space_fn = tok.encode(" fn", false, false)?;
    assert_eq!(space_fn.len(), 1);
    assert_eq!(tok.token_bytes(space_fn[0]), b" fn");
    // An emoji that Qwen splits: its token bytes concatenate to the UTF-8 encoding.
    let ids = tok.encode("👍🏽", false, false)?;
    let joined: Vec<u8> = ids
        .iter()
        .flat_map(|&id| tok.token_bytes(id).to_vec())
        .collect();
    assert_eq!(joined, "👍🏽".as_bytes());
    assert_eq!(tok.token_bytes(151645), b"<|im_end|>");
    assert_eq!(tok.token_bytes(u32::MAX), b"");
    Ok(())
}

#[test]
fn any_text_round_trips_through_encode_and_decode() -> Result<()> {
    use proptest::test_runner::{Config, TestRunner};
    let (tok, _) = load(&QWEN)?;
    let mut runner = TestRunner::new(Config {
        cases: 300,
        ..Config::default()
    });
    // Any Unicode, plus runs biased towards what code and chat prompts contain.
    let strategy = proptest::string::string_regex(
        "(\\PC|[ \t\r\n]|<\\|im_(start|end)\\|>|<tool_call>|[0-9]+|'s|\u{1F600}|\u{200D}){0,40}",
    )?;
    runner
        .run(&strategy, |text| {
            for parse_special in [false, true] {
                let ids = tok
                    .encode(&text, false, parse_special)
                    .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                proptest::prop_assert_eq!(tok.decode(&ids, false), text.clone());
            }
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

// ---- `wick tokenize` ----

fn wick(args: &[&str]) -> std::process::Output {
    Command::new(common::wick_bin())
        .args(args)
        .output()
        .expect("the wick binary runs")
}

#[test]
fn cli_tokenize_prints_reference_ids() -> Result<()> {
    let model = common::test_model(common::QWEN05);
    let model = model.to_str().context("utf-8 path")?;
    let out = wick(&[
        "tokenize",
        "--model",
        model,
        "--text",
        "<|im_start|>user\nhi<|im_end|>\n",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(ids(&v["ids"]), [151644, 872, 198, 6023, 151645, 198]);

    // stdin when there is no --text
    let mut child = Command::new(common::wick_bin())
        .args(["tokenize", "--model", model])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all("Hello, world!".as_bytes())?;
    }
    let out = child.wait_with_output()?;
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(ids(&v["ids"]), [9707, 11, 1879, 0]);
    Ok(())
}

fn assert_one_line_error(out: &std::process::Output, what: &str) {
    assert!(
        !out.status.success(),
        "{what}: exit status {:?}",
        out.status
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: stderr {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{what}: {stderr:?}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr:?}");
}

#[test]
fn cli_tokenize_rejects_bad_model_files_with_one_error_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("missing.gguf");
    let out = wick(&[
        "tokenize",
        "--model",
        missing.to_str().context("path")?,
        "--text",
        "x",
    ]);
    assert_one_line_error(&out, "missing file");

    let not_gguf = dir.path().join("notes.gguf");
    std::fs::write(&not_gguf, "this is not a GGUF file\n")?;
    let out = wick(&[
        "tokenize",
        "--model",
        not_gguf.to_str().context("path")?,
        "--text",
        "x",
    ]);
    assert_one_line_error(&out, "not a GGUF file");

    // Truncated copies of a real model: cut in the metadata, and cut in the tensor data.
    let src = std::fs::read(common::test_model(common::SMOLLM2))?;
    for cut in [64usize, 1 << 20, src.len() / 2] {
        let path = dir.path().join(format!("truncated-{cut}.gguf"));
        std::fs::write(&path, &src[..cut])?;
        let out = wick(&[
            "tokenize",
            "--model",
            path.to_str().context("path")?,
            "--text",
            "x",
        ]);
        assert_one_line_error(&out, &format!("truncated at {cut} bytes"));
    }
    Ok(())
}

// ---- hand-made GGUF files: what the tokenizer accepts and how it refuses ----

/// Writes a GGUF v3 file with the given metadata and no tensors.
mod gguf_writer {
    pub enum V<'a> {
        Str(&'a str),
        Bool(bool),
        U32(u32),
        Strs(&'a [&'a str]),
        I32s(&'a [i32]),
        F32s(&'a [f32]),
    }

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }

    pub fn write(path: &std::path::Path, kvs: &[(&str, V)]) -> std::io::Result<()> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(3u32.to_le_bytes());
        out.extend(0u64.to_le_bytes()); // tensors
        out.extend((kvs.len() as u64).to_le_bytes());
        for (key, value) in kvs {
            string(&mut out, key);
            match value {
                V::Str(s) => {
                    out.extend(8u32.to_le_bytes());
                    string(&mut out, s);
                }
                V::Bool(b) => {
                    out.extend(7u32.to_le_bytes());
                    out.push(*b as u8);
                }
                V::U32(x) => {
                    out.extend(4u32.to_le_bytes());
                    out.extend(x.to_le_bytes());
                }
                V::Strs(items) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(8u32.to_le_bytes());
                    out.extend((items.len() as u64).to_le_bytes());
                    for s in *items {
                        string(&mut out, s);
                    }
                }
                V::F32s(items) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(6u32.to_le_bytes());
                    out.extend((items.len() as u64).to_le_bytes());
                    for x in *items {
                        out.extend(x.to_le_bytes());
                    }
                }
                V::I32s(items) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(5u32.to_le_bytes());
                    out.extend((items.len() as u64).to_le_bytes());
                    for x in *items {
                        out.extend(x.to_le_bytes());
                    }
                }
            }
        }
        while out.len() % 32 != 0 {
            out.push(0);
        }
        std::fs::write(path, out)
    }
}

use gguf_writer::V;

const TINY_TOKENS: &[&str] = &[
    "a",
    "b",
    "ab",
    "Ġ",
    "Ġab",
    "<|im_end|>",
    "<tool_call>",
    "<|fim_pad|>",
];
const TINY_TYPES: &[i32] = &[1, 1, 1, 1, 1, 3, 4, 3];

fn tiny(dir: &std::path::Path, model: &str, pre: Option<&str>, merges: &[&str]) -> Result<Gguf> {
    let path = dir.join(format!(
        "tiny-{model}-{}-{}.gguf",
        pre.unwrap_or("none"),
        merges.join("_").replace(' ', "-")
    ));
    let mut kvs = vec![
        ("general.architecture", V::Str("qwen2")),
        ("tokenizer.ggml.model", V::Str(model)),
        ("tokenizer.ggml.tokens", V::Strs(TINY_TOKENS)),
        ("tokenizer.ggml.token_type", V::I32s(TINY_TYPES)),
        ("tokenizer.ggml.merges", V::Strs(merges)),
        ("tokenizer.ggml.eos_token_id", V::U32(5)),
        ("tokenizer.ggml.add_bos_token", V::Bool(false)),
    ];
    if let Some(pre) = pre {
        kvs.push(("tokenizer.ggml.pre", V::Str(pre)));
    }
    gguf_writer::write(&path, &kvs)?;
    Ok(Gguf::open(&path)?)
}

#[test]
fn builds_a_tiny_bpe_vocabulary_from_gguf_metadata() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let tok = Tokenizer::from_gguf(&tiny(dir.path(), "gpt2", Some("qwen2"), &["a b", "Ġ ab"])?)?;
    assert_eq!(tok.encode("ab ab<|im_end|>", true, true)?, [2, 4, 5]);
    // Control text is plain text without parse_special (its chars are not in this vocab, and
    // are dropped as llama.cpp drops them); user-defined tokens are matched regardless.
    assert_eq!(tok.encode("ab<|im_end|>", true, false)?, [2]);
    assert_eq!(tok.encode("ab<tool_call>", true, false)?, [2, 6]);
    assert_eq!(
        tok.decode(&[2, 4, 5, 6], false),
        "ab ab<|im_end|><tool_call>"
    );
    assert_eq!(tok.decode(&[2, 4, 5, 6], true), "ab ab<tool_call>");
    assert_eq!(
        tok.eog_ids(),
        [5, 7],
        "eos and the FIM pad found by its text"
    );
    assert_eq!(tok.fim_ids().pad, Some(7));
    // No tokenizer.ggml.pre: llama.cpp's default pre-tokenizer, with a warning.
    let tok = Tokenizer::from_gguf(&tiny(dir.path(), "gpt2", None, &["a b", "Ġ ab"])?)?;
    assert_eq!(tok.encode("ab ab", false, true)?, [2, 4]);
    Ok(())
}

#[test]
fn refuses_unsupported_tokenizers_by_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cases: &[(&str, Option<&str>, &[&str], &str)] = &[
        ("llama", Some("default"), &["a b"], "scores"),
        ("t5", Some("default"), &["a b"], "'t5'"),
        ("bert", Some("default"), &["a b"], "'bert'"),
        ("gpt2", Some("no-such-pre"), &["a b"], "'no-such-pre'"),
        ("gpt2", Some("qwen2"), &["a c"], "merge"),
        ("gpt2", Some("qwen2"), &["ab"], "malformed merge"),
    ];
    for (model, pre, merges, want) in cases {
        let gguf = tiny(dir.path(), model, *pre, merges)?;
        match Tokenizer::from_gguf(&gguf) {
            Ok(_) => panic!("{model}/{pre:?}/{merges:?} was accepted"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(want), "{model}/{pre:?}: {msg}");
            }
        }
    }
    Ok(())
}

#[test]
fn sentencepiece_vocabulary_merges_by_score_like_llama_cpp() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tiny-spm.gguf");
    // ids:           0        1      2       3         4    5    6    7     8      9     10
    let tokens = [
        "<unk>", "<s>", "</s>", "<0x0A>", "▁", "h", "i", "▁h", "hi", "▁hi", "<0xC3>",
    ];
    let types = [2, 3, 3, 6, 1, 1, 1, 1, 1, 1, 6];
    // "▁h" outscores "hi", so "▁hi" is reached through "▁h" + "i".
    let scores = [0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -2.0, -0.5, -0.8, -0.1, 0.0];
    gguf_writer::write(
        &path,
        &[
            ("general.architecture", V::Str("llama")),
            ("tokenizer.ggml.model", V::Str("llama")),
            ("tokenizer.ggml.tokens", V::Strs(&tokens)),
            ("tokenizer.ggml.token_type", V::I32s(&types)),
            ("tokenizer.ggml.scores", V::F32s(&scores)),
        ],
    )?;
    let tok = Tokenizer::from_gguf(&Gguf::open(&path)?)?;
    // Defaults for SentencePiece: BOS 1 added, EOS 2, a space before the text.
    assert!(tok.add_bos());
    assert_eq!(tok.encode("hi", true, true)?, [1, 9]);
    assert_eq!(tok.encode("hi hi\n", false, true)?, [9, 9, 3]);
    // "ih": no pair is a piece, so each char stays a token. "é" (C3 A9) is not a piece: its
    // bytes fall back to <0xC3>, and to <unk> for the missing <0xA9> (llama.cpp would abort).
    assert_eq!(tok.encode("ih", false, true)?, [4, 6, 5]);
    assert_eq!(tok.encode("é", false, true)?, [4, 10, 0]);
    // A space also goes after a special token.
    assert_eq!(tok.encode("<s>hi", false, true)?, [1, 9]);
    assert_eq!(tok.encode("hi</s>hi", false, true)?, [9, 2, 9]);
    assert_eq!(tok.eog_ids(), [2]);
    // Decoding drops the space encode added, and <0x0A> is a newline.
    assert_eq!(tok.decode(&[9, 9, 3], true), "hi hi\n");
    assert_eq!(tok.decode(&[1, 9], false), "<s> hi");
    assert_eq!(tok.token_bytes(3), b"\n");
    assert_eq!(tok.token_bytes(9), b" hi");
    Ok(())
}
