//! `--model` resolution order (path, models.toml id, `owner/repo:file.gguf`), the
//! registry override, and the one-line errors of `wick pull` / `wick models` for bad
//! input. Offline mode proves that nothing here touches the network.

use std::path::Path;
use std::process::Command;
use wick::config::{HubConfig, ModelsConfig};
use wick::models::{Models, ModelsError, ProgressMode};

mod common;

const REGISTRY: &str = r#"
[models."tiny-coder"]
arch = "qwen2"
file = "tiny-coder.gguf"
tool_parser = "hermes"
ctx_size = 4096
sampling = { temperature = 0.3 }
hf = { repo = "acme/tiny-GGUF", file = "tiny-q4.gguf" }

[models."cwd-coder"]
arch = "qwen2"
hf = { repo = "acme/cwd-GGUF", file = "cwd.gguf" }

[models."tiny-coder-moe"]
arch = "deepseek2"
hf = { repo = "acme/moe-GGUF", file = "moe.gguf" }
"#;

/// Offline models over a temporary directory with REGISTRY.
fn offline(dir: &Path) -> Models {
    let registry = dir.join("models.toml");
    std::fs::write(&registry, REGISTRY).unwrap();
    let config = ModelsConfig {
        dir: dir.to_owned(),
        registry_file: Some(registry),
        hub: HubConfig {
            endpoint: "http://127.0.0.1:1".into(),
            token: None,
            offline: true,
            pypi_index: "http://127.0.0.1:1/simple".into(),
        },
    };
    Models::new(config)
        .unwrap()
        .with_progress(ProgressMode::Quiet)
}

#[test]
fn resolves_a_path_then_an_id_then_a_hub_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let m = offline(tmp.path());

    // A path to an existing file; an entry whose file it is comes along.
    let path = tmp.path().join("tiny-coder.gguf");
    std::fs::write(&path, b"gguf").unwrap();
    let r = m.resolve(path.to_str().unwrap()).unwrap();
    assert_eq!(
        (r.path.as_path(), r.id.as_str()),
        (path.as_path(), "tiny-coder")
    );
    assert_eq!(r.entry.as_ref().map(|e| e.id.as_str()), Some("tiny-coder"));

    // The id, found in the models directory; the entry carries serve's settings.
    let r = m.resolve("tiny-coder").unwrap();
    assert_eq!(r.path, path);
    let e = r.entry.unwrap();
    assert_eq!(
        (e.tool_parser.as_deref(), e.ctx_size, e.sampling.temperature),
        (Some("hermes"), Some(4096), Some(0.3))
    );

    // owner/repo:file, stored under owner/repo/ in the models directory; the entry that
    // lists this hub file comes along, the id is the file stem.
    let hub_file = tmp.path().join("acme/tiny-GGUF/tiny-q4.gguf");
    std::fs::create_dir_all(hub_file.parent().unwrap()).unwrap();
    std::fs::write(&hub_file, b"gguf").unwrap();
    let r = m.resolve("acme/tiny-GGUF:tiny-q4.gguf").unwrap();
    assert_eq!(
        (r.path.as_path(), r.id.as_str()),
        (hub_file.as_path(), "tiny-q4")
    );
    assert_eq!(r.entry.map(|e| e.id), Some("tiny-coder".to_owned()));
}

#[test]
fn an_existing_path_wins_over_an_id_of_the_same_name() {
    let tmp = tempfile::tempdir().unwrap();
    let m = offline(tmp.path());
    // A relative path that is also an id: the file in the working directory is used. The id
    // is used by no other test, which run in parallel in this working directory.
    let cwd_file = Path::new("cwd-coder");
    assert!(!cwd_file.exists(), "test needs a clean working directory");
    std::fs::write(cwd_file, b"local").unwrap();
    let r = m.resolve("cwd-coder");
    std::fs::remove_file(cwd_file).unwrap();
    assert_eq!(r.unwrap().path, cwd_file);
}

#[test]
fn bad_references_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let m = offline(tmp.path());

    let err = m.resolve("tiny-codr").unwrap_err();
    assert!(
        err.to_string().contains("did you mean: tiny-coder"),
        "{err}"
    );

    let err = m.resolve("/no/such/model.gguf").unwrap_err();
    assert!(matches!(err, ModelsError::FileNotFound(_)), "{err}");

    let err = m.resolve("tiny-coder-moe").unwrap_err();
    assert_eq!(
        err.to_string(),
        "model 'tiny-coder-moe' has architecture 'deepseek2', which wick cannot run yet (supported: qwen2, llama, qwen3, qwen3moe, gemma3, starcoder2)"
    );

    // Offline with nothing on disk names the file and the variable.
    let err = m.resolve("tiny-coder").unwrap_err();
    assert!(matches!(err, ModelsError::Offline { .. }), "{err}");

    let path = tmp.path().join("x.gguf");
    std::fs::write(&path, b"x").unwrap();
    assert!(matches!(
        m.pull(path.to_str().unwrap()),
        Err(ModelsError::NotPullable(_))
    ));
}

/// Runs wick; returns (success, stdout, stderr).
fn wick(args: &[&str], models_dir: &Path) -> (bool, String, String) {
    let out = Command::new(common::wick_bin())
        .args(args)
        .env("WICK_MODELS_DIR", models_dir)
        .env("HF_HUB_OFFLINE", "1")
        .env_remove("WICK_MODELS_TOML")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cli_reports_bad_input_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[models.a]\narch = \"llama\"\nsha256 = 12\n").unwrap();

    let (ok, _, err) = wick(
        &["models", "--models-toml", bad.to_str().unwrap()],
        tmp.path(),
    );
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("error: {}:3: ", bad.display())),
        "{err}"
    );

    let (ok, _, err) = wick(&["pull", "qwen2.5-coder-0.5b"], tmp.path());
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("did you mean: qwen2.5-coder-0.5b-instruct"),
        "{err}"
    );

    let (ok, _, err) = wick(&["pull", "deepseek-coder-v2-lite-instruct"], tmp.path());
    assert!(!ok && err.contains("cannot run yet"), "{err}");

    let (ok, _, err) = wick(&["pull", "smollm2-135m-instruct"], tmp.path());
    assert!(!ok && err.contains("HF_HUB_OFFLINE"), "{err}");
}

#[test]
fn cli_lists_models_with_their_disk_state() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("smollm2-135m-instruct-q4_1.gguf.partial"),
        b"half",
    )
    .unwrap();
    let (ok, out, err) = wick(&["models"], tmp.path());
    assert!(ok, "{err}");
    let header = out.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("ARCH") && header.contains("TOOL PARSER"),
        "{out}"
    );
    let row = |id: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("{id}: {out}"))
            .to_owned()
    };
    let smol = row("smollm2-135m-instruct");
    assert!(
        smol.contains("llama") && smol.contains("93.8 MiB") && smol.contains("partial"),
        "{smol}"
    );
    let qwen = row("qwen2.5-coder-0.5b-instruct");
    assert!(qwen.contains(" no ") && qwen.contains("qwen"), "{qwen}");
    assert!(row("deepseek-coder-v2-lite-instruct").contains("(unsupported)"));
    assert!(!row("qwen3-coder-30b-a3b-instruct").contains("(unsupported)"));
    assert!(row("gemma3-270m").contains("gemma3"));

    let (ok, out, _) = wick(&["models", "--json"], tmp.path());
    assert!(ok);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], "qwen2.5-coder-0.5b-instruct");
    assert_eq!(first["on_disk"], "no");
}
