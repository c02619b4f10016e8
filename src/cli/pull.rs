//! `wick pull MODEL`: download a models.toml id or `owner/repo:file.gguf` into the models
//! directory, verified by sha256, with a progress bar on a terminal and log lines
//! otherwise. A file already there is verified again (and fetched anew if it is bad), so
//! the command is idempotent. Prints the file's path on stdout.

use crate::config::ModelsConfig;
use crate::models::{Models, ProgressMode};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A models.toml id (see `wick models`) or `owner/repo:file.gguf`.
    pub model: String,
    /// Where models are stored (default: the platform cache dir, e.g. ~/.cache/wick/models).
    #[arg(long, env = "WICK_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// A models.toml that replaces the built-in registry.
    #[arg(long, env = "WICK_MODELS_TOML")]
    pub models_toml: Option<PathBuf>,
    /// Progress as periodic log lines even on a terminal.
    #[arg(long)]
    pub no_progress_bar: bool,
}

pub fn run(args: Args) -> crate::Result<()> {
    let config = ModelsConfig::resolve(args.models_dir.as_deref(), args.models_toml.as_deref());
    let mode = if args.no_progress_bar {
        ProgressMode::Lines
    } else {
        ProgressMode::Auto
    };
    let resolved = Models::new(config)?.with_progress(mode).pull(&args.model)?;
    println!("{}", resolved.path.display());
    Ok(())
}
