//! The `wick` command line: one file per subcommand; this file only dispatches.

use clap::{Parser, Subcommand};

pub mod generate;
pub mod models_cmd;
pub mod parse;
pub mod probe;
pub mod pull;
pub mod render;
pub mod serve;
pub mod tokenize;

#[derive(Debug, Parser)]
#[command(
    name = "wick",
    version,
    about = "Local OpenAI-compatible inference server for coding models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at startup: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a model over an OpenAI-compatible HTTP API.
    Serve(serve::Args),
    /// Generate text from a prompt (one request, no server).
    Generate(generate::Args),
    /// Tokenize text with the model's own tokenizer.
    Tokenize(tokenize::Args),
    /// Render an OpenAI chat request through the model's chat template.
    Render(render::Args),
    /// Run a tool-call parser on raw model output read from stdin.
    Parse(parse::Args),
    /// Test which tool-call parser matches a model.
    Probe(probe::Args),
    /// Download a model.
    Pull(pull::Args),
    /// List the models of models.toml and what is on disk.
    Models(models_cmd::Args),
}

pub fn run() -> crate::Result<()> {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                print!("{e}");
                return Ok(());
            }
            // clap's message is multi-line; keep the first line for `error: ...`.
            let first = e
                .to_string()
                .lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ")
                .to_owned();
            return Err(crate::Error::Usage(first));
        }
    };
    match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Tokenize(a) => tokenize::run(a),
        Command::Render(a) => render::run(a),
        Command::Parse(a) => parse::run(a),
        Command::Probe(a) => probe::run(a),
        Command::Pull(a) => pull::run(a),
        Command::Models(a) => models_cmd::run(a),
    }
}

/// Flags shared by every command that loads a model.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// A models.toml id, a path to a .gguf file, or `owner/repo:file.gguf`.
    #[arg(
        long,
        env = "WICK_MODEL",
        default_value = "qwen2.5-coder-0.5b-instruct"
    )]
    pub model: String,
    /// Where models are stored (default: the platform cache dir, e.g. ~/.cache/wick/models).
    #[arg(long, env = "WICK_MODELS_DIR")]
    pub models_dir: Option<std::path::PathBuf>,
    /// A chat template file that overrides the model's own.
    #[arg(long, env = "WICK_CHAT_TEMPLATE")]
    pub chat_template: Option<std::path::PathBuf>,
}

/// Flags shared by every command that runs the model.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// cpu, cuda[:N] or metal.
    #[arg(long, env = "WICK_DEVICE", default_value = "cpu")]
    pub device: String,
    /// CPU threads for inference (default: all cores).
    #[arg(long, env = "WICK_THREADS")]
    pub threads: Option<usize>,
    /// Context size in tokens (default: the model's, capped by models.toml).
    #[arg(long, env = "WICK_CTX_SIZE")]
    pub ctx_size: Option<usize>,
    /// GPU prompt matmuls: `quantized` (candle's MMQ kernels) or `f16` (dequantize to f16,
    /// cuBLAS GEMM). Decode and the CPU are not affected.
    #[arg(long, env = "WICK_GPU_MATMUL", default_value = "quantized",
          value_parser = ["quantized", "f16"])]
    pub gpu_matmul: String,
    /// Speculative decoding: `lookup` drafts tokens from the prompt and the text so far
    /// and verifies them in one batched pass (output identical to `off`); `draft` has the
    /// `--draft-model` propose them; `lookup+draft` tries lookup first and the draft model
    /// when lookup finds nothing; `off` decodes one token per pass. Default: `lookup`, or
    /// `lookup+draft` when `--draft-model` is given.
    #[arg(long, env = "WICK_SPECULATIVE", value_parser = parse_speculative)]
    pub speculative: Option<crate::engine::SpeculativeMode>,
}

impl RuntimeArgs {
    /// `--speculative`, defaulting by whether a draft model is given.
    pub fn speculative_mode(&self, has_draft_model: bool) -> crate::engine::SpeculativeMode {
        use crate::engine::SpeculativeMode;
        self.speculative.unwrap_or(if has_draft_model {
            SpeculativeMode::LookupDraft
        } else {
            SpeculativeMode::Lookup
        })
    }

    /// The model load options these flags ask for.
    pub fn load_options(&self) -> crate::model::LoadOptions {
        let gpu_matmul = match self.gpu_matmul.as_str() {
            "f16" => crate::model::GpuMatmul::DequantizeF16,
            _ => crate::model::GpuMatmul::Quantized,
        };
        crate::model::LoadOptions {
            gpu_matmul,
            ..crate::model::LoadOptions::default()
        }
    }
}

fn parse_speculative(s: &str) -> Result<crate::engine::SpeculativeMode, String> {
    crate::engine::SpeculativeMode::parse(s).ok_or_else(|| {
        format!(
            "unknown mode '{s}' (expected one of: {})",
            crate::engine::SpeculativeMode::NAMES.join(", ")
        )
    })
}
