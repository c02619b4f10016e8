//! Helpers shared by the integration tests: where the test models are, the wick binary,
//! and `wick serve` as a child process (`server`).
#![allow(dead_code)] // each test crate uses a different subset

pub mod greedy;
pub mod server;

use std::path::PathBuf;

pub const QWEN05: &str = "qwen2.5-coder-0.5b-instruct.gguf";
pub const QWEN15: &str = "qwen2.5-coder-1.5b-instruct.gguf";
pub const SMOLLM2: &str = "smollm2-135m-instruct-q4_1.gguf";

/// The directory holding the test models: `$WICK_TEST_MODELS_DIR`, else the default wick
/// models directory (where `scripts/fetch-test-models` puts them).
pub fn test_models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WICK_TEST_MODELS_DIR") {
        return PathBuf::from(d);
    }
    dirs::cache_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("wick")
        .join("models")
}

/// Path of a test model; panics with the fix when it is missing (tests never skip silently).
pub fn test_model(file: &str) -> PathBuf {
    let p = test_models_dir().join(file);
    assert!(
        p.exists(),
        "test model {} is missing: run scripts/fetch-test-models (or set WICK_TEST_MODELS_DIR)",
        p.display()
    );
    p
}

/// The `wick` binary built for this test run.
pub fn wick_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wick"))
}

/// A file under the repo's tests/ directory.
pub fn test_data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(rel)
}
