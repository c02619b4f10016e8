//! Chat templates must render byte-for-byte as Hugging Face renders them with Python jinja2.
//! The goldens under tests/templates/goldens/ were made by tests/templates/gen_goldens.py
//! from the requests in tests/templates/cases.json; the real templates come from the cache
//! filled by tests/templates/fetch_templates.sh, and the test models' templates from the GGUF
//! files themselves.

mod common;

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use wick::gguf::Gguf;
use wick::template::{ChatTemplate, Clock, TemplateError};

fn templates_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WICK_TEMPLATES_DIR") {
        return PathBuf::from(d);
    }
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("wick")
        .join("templates")
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn cases() -> Vec<serde_json::Value> {
    read_json(&common::test_data("templates/cases.json"))
        .as_array()
        .cloned()
        .expect("cases.json is an array")
}

fn goldens() -> Vec<(String, serde_json::Value)> {
    let dir = common::test_data("templates/goldens");
    let mut out: Vec<(String, serde_json::Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let id = p
                .file_stem()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            (id, read_json(&p))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Where two texts first differ, with a little context, for readable failures.
fn first_difference(got: &str, want: &str) -> String {
    let at = got
        .char_indices()
        .zip(want.chars())
        .find(|((_, g), w)| g != w)
        .map(|((i, _), _)| i)
        .unwrap_or(got.len().min(want.len()));
    let from = got[..at]
        .char_indices()
        .rev()
        .nth(40)
        .map(|(i, _)| i)
        .unwrap_or(0);
    let wfrom = want
        .char_indices()
        .map(|(i, _)| i)
        .take_while(|i| *i <= from)
        .last()
        .unwrap_or(0);
    let clip = |s: &str, start: usize| s[start..].chars().take(100).collect::<String>();
    format!(
        "first difference at byte {at} (got {} bytes, want {})\n  got:  {:?}\n  want: {:?}",
        got.len(),
        want.len(),
        clip(got, from),
        clip(want, wfrom)
    )
}

/// Python failures wick does not reproduce, each with its reason. Only these may render
/// where jinja2 raised; every other golden error must be an error in wick too.
const KNOWN_DEVIATIONS: &[(&str, &str)] = &[(
    "TypeError: 'NoneType' object is not iterable",
    "minijinja iterates `none` as an empty sequence (`{% for t in tools %}` with no tools)",
)];

/// Renders every case of one golden and returns a description of each mismatch.
fn check_golden(id: &str, template: &ChatTemplate, golden: &serde_json::Value) -> Vec<String> {
    let mut failures = Vec::new();
    let cases = cases();
    let expected = golden["cases"].as_array().expect("golden cases");
    assert_eq!(
        expected.len(),
        cases.len(),
        "{id}: golden is stale, rerun gen_goldens.py"
    );
    for (case, want) in cases.iter().zip(expected) {
        let name = case["name"].as_str().expect("case name");
        assert_eq!(want["name"].as_str(), Some(name), "{id}: golden is stale");
        let add_generation_prompt = case
            .get("add_generation_prompt")
            .and_then(|v| v.as_bool())
            .unwrap_or(true);
        let got = template.render_with(&case["request"], add_generation_prompt);
        match (&got, want.get("prompt"), want.get("error")) {
            (Ok(got), Some(w), _) if w.as_str() == Some(got.as_str()) => {}
            (Ok(got), Some(w), _) => failures.push(format!(
                "{id}/{name}: {}",
                first_difference(got, w.as_str().unwrap_or_default())
            )),
            (Err(TemplateError::Raised(m)), None, Some(e))
                if e["kind"] == "raised" && e["message"].as_str() == Some(m.as_str()) => {}
            (Err(TemplateError::Render(_)), None, Some(e)) if e["kind"] == "render" => {}
            (Ok(_), None, Some(e))
                if KNOWN_DEVIATIONS
                    .iter()
                    .any(|(m, _)| e["message"].as_str() == Some(*m)) => {}
            _ => failures.push(format!("{id}/{name}: got {got:?}, want {want}")),
        }
    }
    failures
}

#[test]
fn renders_real_templates_like_jinja2() {
    let dir = templates_dir();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (id, golden) in goldens() {
        let origin = golden["template"].as_str().expect("template origin");
        if origin.starts_with("gguf:") {
            continue;
        }
        let path = dir.join(origin);
        let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: run tests/templates/fetch_templates.sh (or set WICK_TEMPLATES_DIR)",
                path.display()
            )
        });
        assert_eq!(
            Some(sha256_hex(&source).as_str()),
            golden["sha256"].as_str(),
            "{id}: template changed"
        );
        let clock = Clock::Fixed(golden["now"].as_i64().expect("now"));
        let bos = golden["bos_token"].as_str().expect("bos");
        let eos = golden["eos_token"].as_str().expect("eos");
        let template = ChatTemplate::with_clock(source, bos, eos, clock)
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        failures.extend(check_golden(&id, &template, &golden));
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} real-template goldens found");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn renders_test_model_templates_like_jinja2() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (id, golden) in goldens() {
        let Some(file) = golden["template"]
            .as_str()
            .and_then(|t| t.strip_prefix("gguf:"))
        else {
            continue;
        };
        let gguf = Gguf::open(&common::test_model(file)).expect("test model opens");
        let template = ChatTemplate::from_gguf(&gguf, None).unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(
            Some(sha256_hex(template.source()).as_str()),
            golden["sha256"].as_str(),
            "{id}"
        );
        assert_eq!(
            Some(template.bos_token()),
            golden["bos_token"].as_str(),
            "{id}: bos text"
        );
        assert_eq!(
            Some(template.eos_token()),
            golden["eos_token"].as_str(),
            "{id}: eos text"
        );
        failures.extend(check_golden(&id, &template, &golden));
        checked += 1;
    }
    assert_eq!(checked, 2, "expected goldens for both test models");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn renders_llama_cpp_reference_prompts_byte_identical() {
    let refs = read_json(&common::test_data("templates/reference_chat.json"));
    let refs = refs.as_array().expect("array");
    assert!(refs.len() >= 6);
    for r in refs {
        let file = r["model"].as_str().expect("model");
        let gguf = Gguf::open(&common::test_model(file)).expect("test model opens");
        let template = ChatTemplate::from_gguf(&gguf, None).expect("template");
        let got = template.render(&r["request"]).expect("renders");
        let want = r["prompt"].as_str().expect("prompt");
        assert!(
            got == want,
            "{file}/{}: {}",
            r["name"],
            first_difference(&got, want)
        );
    }
}

#[test]
fn override_file_replaces_the_gguf_template() {
    let gguf = Gguf::open(&common::test_model(common::SMOLLM2)).expect("test model opens");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.jinja");
    std::fs::write(
        &path,
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}\n",
    )
    .expect("write");
    let template = ChatTemplate::from_gguf(&gguf, Some(&path)).expect("override loads");
    let got =
        template.render(&serde_json::json!({"messages": [{"role": "user", "content": "hi"}]}));
    assert_eq!(got.expect("renders"), "<|im_start|>[user]hi");

    let missing = ChatTemplate::from_gguf(&gguf, Some(&dir.path().join("nope.jinja")));
    assert!(
        matches!(missing, Err(TemplateError::Read { .. })),
        "{missing:?}"
    );
    std::fs::write(
        &path,
        "{% for m in messages %}\n{{ m.content }\n{% endfor %}",
    )
    .expect("write");
    let broken = ChatTemplate::from_gguf(&gguf, Some(&path));
    assert!(
        matches!(broken, Err(TemplateError::Parse { line: 2, .. })),
        "{broken:?}"
    );
}

/// Runs `wick render` with `args`, feeding `stdin`; returns (exit ok, stdout, stderr).
fn wick_render(args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(common::wick_bin())
        .arg("render")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wick runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wick exits");
    (
        out.status.success(),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

#[test]
fn render_command_prints_the_prompt_exactly() {
    let refs = read_json(&common::test_data("templates/reference_chat.json"));
    let r = refs
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "chat_tools"))
        .expect("chat_tools reference");
    let model = common::test_model(r["model"].as_str().expect("model"));
    let model = model.to_str().expect("utf-8 path");
    let body = r["request"].to_string();
    let want = r["prompt"].as_str().expect("prompt");

    let (ok, stdout, stderr) = wick_render(&["--model", model], &body);
    assert!(ok, "stdin request failed: {stderr}");
    assert_eq!(stdout, want, "prompt from stdin");

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("request.json");
    std::fs::write(&file, &body).expect("write request");
    let file = file.to_str().expect("utf-8 path");
    let (ok, stdout, stderr) = wick_render(&["--model", model, "--request", file], "");
    assert!(ok, "--request failed: {stderr}");
    assert_eq!(stdout, want, "prompt from --request");
}

#[test]
fn render_command_fails_with_one_line_errors() {
    let model = common::test_model(common::QWEN05);
    let model = model.to_str().expect("utf-8 path");
    let dir = tempfile::tempdir().expect("tempdir");
    let raising = dir.path().join("raising.jinja");
    std::fs::write(
        &raising,
        "{{ raise_exception('Only user and assistant roles are supported!') }}",
    )
    .expect("write template");
    let raising = raising.to_str().expect("utf-8 path");
    let user = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let cases: [(&[&str], &str, &str); 4] = [
        (&["--model", model], "{not json", "not valid JSON"),
        (
            &["--model", model],
            r#"{"messages":"hi"}"#,
            "`messages` must be an array",
        ),
        (
            &["--model", model, "--chat-template", raising],
            user,
            "Only user and assistant roles are supported!",
        ),
        (
            &["--model", model, "--request", "/nonexistent/request.json"],
            "",
            "cannot read request file",
        ),
    ];
    for (args, stdin, want) in cases {
        let (ok, stdout, stderr) = wick_render(args, stdin);
        assert!(!ok, "{args:?} succeeded: {stdout}");
        assert!(stdout.is_empty(), "{args:?} printed {stdout:?}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(want),
            "{args:?}: {stderr}"
        );
    }
}
