//! `wick tokenize --model M [--text T] [--add-special]`: the model's own tokenization of raw
//! text (stdin when no `--text`), special-token text parsed. Like llama-server's `/tokenize`,
//! no BOS/EOS unless `--add-special` (then as the GGUF says).
//! Prints one JSON object `{"ids":[...]}` on stdout. Loads only GGUF metadata, no weights.

use crate::gguf::Gguf;
use crate::tokenizer::Tokenizer;
use std::io::{Read, Write};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: crate::cli::ModelArgs,
    /// The text to tokenize (default: all of stdin).
    #[arg(long)]
    pub text: Option<String>,
    /// Add BOS/EOS as the GGUF says (`tokenizer.ggml.add_bos_token`), as `generate` does.
    #[arg(long)]
    pub add_special: bool,
}

pub fn run(args: Args) -> crate::Result<()> {
    let resolved = crate::models::resolve(&args.model.model, args.model.models_dir.as_deref())?;
    let gguf = Gguf::open(&resolved.path)?;
    let tokenizer = Tokenizer::from_gguf(&gguf)?;
    let text = match args.text {
        Some(t) => t,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| crate::Error::io("reading the text from stdin", e))?;
            s
        }
    };
    let ids = tokenizer.encode(&text, args.add_special, true)?;
    let json = serde_json::json!({ "ids": ids });
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{json}").map_err(|e| crate::Error::io("writing to stdout", e))?;
    Ok(())
}
