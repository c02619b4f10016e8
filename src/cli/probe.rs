//! `wick probe`: loads a model, runs the tool-call probe (`crate::probe`) and prints the
//! matrix (or `--json`). Exits non-zero when the parser under test is not a best match, or
//! when no parser reads the model's calls, so it can gate a CI job.

use crate::cli::{ModelArgs, RuntimeArgs};
use crate::engine::{threads, EngineOptions, Handle};
use crate::gguf::Gguf;
use crate::probe::{report, run};
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// The tool parser to check; the exit status is non-zero when another parser reads this
    /// model's calls better.
    #[arg(long, alias = "tool-parser")]
    pub parser: Option<String>,
    /// Print the JSON report instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Tokens generated per probe prompt (greedy).
    #[arg(long, default_value_t = 96)]
    pub max_tokens: usize,
}

/// Context for the probe prompts: the tool list and a short answer fit well inside it.
const DEFAULT_CTX: usize = 2048;

pub fn run(args: Args) -> crate::Result<()> {
    // A misspelt parser name fails before the model loads.
    if let Some(p) = &args.parser {
        crate::probe::parsing::check_name(p)?;
    }
    threads::configure(args.runtime.threads);
    let resolved = crate::models::resolve(&args.model.model, args.model.models_dir.as_deref())?;
    // The parser under test: the flag, else the one models.toml configures for this model.
    let under_test = match (args.parser, resolved.entry.as_ref()) {
        (Some(p), _) => Some((p, "--parser")),
        (None, Some(entry)) => entry.tool_parser.clone().map(|p| (p, "models.toml")),
        (None, None) => None,
    };
    let mut gguf = Gguf::open(&resolved.path)?;
    let template = ChatTemplate::for_model(
        &gguf,
        args.model.chat_template.as_deref(),
        resolved.chat_template_override(),
    )?;
    let tokenizer = Arc::new(Tokenizer::from_gguf(&gguf)?);
    let device = crate::model::device_from_str(&args.runtime.device)?;
    let model = crate::model::load_with(&mut gguf, &device, &args.runtime.load_options())?;
    drop(gguf);
    let engine = Handle::start(
        model,
        tokenizer.clone(),
        EngineOptions {
            parallel: 1,
            max_queue: 1,
            ctx_size: args.runtime.ctx_size.unwrap_or(DEFAULT_CTX),
            speculative: args.runtime.speculative_mode(false),
            ..EngineOptions::default()
        },
    )?;
    let setup = run::Setup {
        model_id: resolved.id.clone(),
        model_path: resolved.path.display().to_string(),
        template: &template,
        template_source: template.source(),
        tokenizer: &tokenizer,
        engine: &engine,
    };
    let opts = run::Options {
        max_tokens: args.max_tokens,
        under_test,
    };
    let result = run::run(&setup, &opts);
    engine.shutdown();
    let report = result?;
    if args.json {
        println!("{:#}", report::to_json(&report));
    } else {
        print!("{}", report::to_text(&report));
    }
    Ok(run::verdict(&report)?)
}
