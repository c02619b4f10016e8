//! `wick render --model M [--request FILE]`: applies the model's chat template (or
//! `--chat-template FILE`) to an OpenAI chat-completions request body read from FILE or stdin,
//! with the generation prompt added, and prints the prompt exactly (no added newline).

use crate::cli::ModelArgs;
use crate::gguf::Gguf;
use crate::template::ChatTemplate;
use std::io::{Read, Write};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A JSON chat-completions request body (default: read from stdin).
    #[arg(long)]
    pub request: Option<PathBuf>,
}

pub fn run(args: Args) -> crate::Result<()> {
    let body = read_request(args.request.as_deref())?;
    let request: serde_json::Value = serde_json::from_str(&body).map_err(|e| {
        crate::Error::invalid(
            format!("the request is not valid JSON: {e}"),
            None,
            "invalid_json",
        )
    })?;
    let resolved = crate::models::resolve(&args.model.model, args.model.models_dir.as_deref())?;
    let gguf = Gguf::open(&resolved.path)?;
    let template = ChatTemplate::for_model(
        &gguf,
        args.model.chat_template.as_deref(),
        resolved.chat_template_override(),
    )?;
    let prompt = template.render(&request)?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(prompt.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| crate::Error::io("writing the prompt to stdout", e))
}

fn read_request(path: Option<&std::path::Path>) -> crate::Result<String> {
    match path {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| crate::Error::io(format!("cannot read request file {}", p.display()), e)),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| crate::Error::io("cannot read the request from stdin", e))?;
            Ok(s)
        }
    }
}
