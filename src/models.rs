//! models.toml registry, model references and downloads.
//! (Being written: see the models issue. `resolve` is the seam every command uses.)

use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelsError {
    #[error("unknown model '{0}': not a file, not a models.toml id, not owner/repo:file.gguf")]
    Unknown(String),
    #[error("{0}")]
    Other(String),
}

/// A model reference resolved to a file on disk.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub path: PathBuf,
    /// The id served on the API: the models.toml id, or the file stem for a path.
    pub id: String,
}

/// The models directory: `--models-dir`, else `$WICK_MODELS_DIR`, else the platform cache.
pub fn models_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_owned();
    }
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("wick")
        .join("models")
}

/// Resolves `--model` (path, models.toml id, or `owner/repo:file.gguf`), downloading on
/// first use. Temporary version: paths and `<dir>/<id>.gguf` only.
pub fn resolve(
    reference: &str,
    models_dir_flag: Option<&Path>,
) -> Result<ResolvedModel, ModelsError> {
    let p = Path::new(reference);
    if p.extension().is_some_and(|e| e == "gguf") || p.exists() {
        let id = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| reference.to_owned());
        return Ok(ResolvedModel {
            path: p.to_owned(),
            id,
        });
    }
    let candidate = models_dir(models_dir_flag).join(format!("{reference}.gguf"));
    if candidate.exists() {
        return Ok(ResolvedModel {
            path: candidate,
            id: reference.to_owned(),
        });
    }
    Err(ModelsError::Unknown(reference.to_owned()))
}
