//! `wick generate`: one generation without a server. Loads the model and tokenizer, encodes
//! the prompt (special-token text parsed, BOS when the GGUF says so; with `--chat` the text
//! becomes one user message rendered through the model's chat template), runs it through
//! the same engine the server uses, and streams the text to stdout, or prints one JSON
//! object with `--json`: `{"prompt_ids":[...],"ids":[...],"text":"...","finish_reason":...}`.

use crate::cli::{ModelArgs, RuntimeArgs};
use crate::engine::{threads, EngineOptions, GenerationRequest, Handle, SamplingParams};
use crate::gguf::Gguf;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// Context size when neither `--ctx-size` nor a smaller training context says otherwise:
/// keeps the KV cache small (a 0.5B Qwen needs about 12 MiB per 1k tokens in f32).
pub const DEFAULT_CTX: usize = 4096;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// The prompt text (raw; special-token text such as <|im_start|> is parsed).
    #[arg(
        long,
        conflicts_with = "prompt_file",
        required_unless_present = "prompt_file"
    )]
    pub prompt: Option<String>,
    /// Read the prompt from this file.
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// Wrap the prompt as one user message through the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Most tokens to generate (fewer if the context fills up).
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// 0 means greedy (argmax).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Seed for sampling (same seed, same output).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Divides positive (multiplies negative) logits of already generated tokens.
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Stop before this string (repeatable); it is not printed.
    #[arg(long)]
    pub stop: Vec<String>,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> Result<()> {
    check_sampling(&args)?;
    let prompt_text = match (&args.prompt, &args.prompt_file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .map_err(|e| Error::io(format!("cannot read {}", f.display()), e))?,
        (None, None) => return Err(Error::Usage("give --prompt or --prompt-file".into())),
    };
    threads::configure(args.runtime.threads);
    let resolved = crate::models::resolve(&args.model.model, args.model.models_dir.as_deref())?;
    let mut gguf = Gguf::open(&resolved.path)?;
    let tokenizer = Arc::new(Tokenizer::from_gguf(&gguf)?);
    let prompt_text = if args.chat {
        chat_prompt(
            &gguf,
            &args.model,
            resolved.chat_template_override(),
            &prompt_text,
        )?
    } else {
        prompt_text
    };
    // A template that writes the BOS text itself must not get a second BOS from encode.
    let bos_in_text = args.chat
        && tokenizer
            .bos_id()
            .and_then(|b| tokenizer.token_text(b))
            .is_some_and(|bos| !bos.is_empty() && prompt_text.starts_with(bos));
    let prompt_ids = tokenizer.encode(&prompt_text, !bos_in_text, true)?;
    let device = crate::model::device_from_str(&args.runtime.device)?;
    let model = crate::model::load_with(&mut gguf, &device, &args.runtime.load_options())?;
    drop(gguf);
    let train_ctx = model.info().train_ctx;
    let ctx = args
        .runtime
        .ctx_size
        .unwrap_or_else(|| DEFAULT_CTX.min(train_ctx.max(1)));
    if prompt_ids.len() >= ctx {
        return Err(crate::engine::EngineError::ContextLengthExceeded {
            prompt_tokens: prompt_ids.len(),
            max_tokens: args.max_tokens,
            ctx,
        }
        .into());
    }
    // The CLI generates as much as fits rather than refusing a long max_tokens.
    let max_tokens = args.max_tokens.min(ctx - prompt_ids.len());
    let handle = Handle::start(
        model,
        tokenizer,
        EngineOptions {
            parallel: 1,
            max_queue: 1,
            ctx_size: ctx,
            speculative: args.runtime.speculative_mode(false),
            ..EngineOptions::default()
        },
    )?;
    let req = GenerationRequest {
        prompt_ids: prompt_ids.clone(),
        sampling: sampling(&args),
        max_tokens,
        stop_strings: args.stop.clone(),
        stop_ids: Vec::new(),
        logprobs: None,
        constraint: None,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_err = None;
    let generation = handle.generate_blocking(req, |text| {
        if !args.json && write_err.is_none() && !text.is_empty() {
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                write_err = Some(e);
            }
        }
    });
    handle.shutdown();
    let generation = generation?;
    if let Some(e) = write_err {
        return Err(Error::io("cannot write to stdout", e));
    }
    if args.json {
        let v = serde_json::json!({
            "prompt_ids": prompt_ids,
            "ids": generation.ids,
            "text": generation.text,
            "finish_reason": generation.finish_reason.as_str(),
        });
        writeln!(out, "{v}").map_err(|e| Error::io("cannot write to stdout", e))?;
    }
    tracing::info!(
        prompt_tokens = generation.usage.prompt_tokens,
        completion_tokens = generation.usage.completion_tokens,
        ttft_s = generation.time_to_first_token,
        decode_tok_s = generation.decode_tokens_per_second,
        "generated"
    );
    Ok(())
}

fn sampling(args: &Args) -> SamplingParams {
    SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        seed: args.seed,
        repetition_penalty: args.repetition_penalty,
        presence_penalty: args.presence_penalty,
        frequency_penalty: args.frequency_penalty,
    }
}

/// Out-of-range sampling flags are usage errors, not silent clamps.
fn check_sampling(args: &Args) -> Result<()> {
    let checks: [(&str, f32, bool); 6] = [
        ("--temperature", args.temperature, args.temperature >= 0.0),
        ("--top-p", args.top_p, (0.0..=1.0).contains(&args.top_p)),
        ("--min-p", args.min_p, (0.0..=1.0).contains(&args.min_p)),
        (
            "--repetition-penalty",
            args.repetition_penalty,
            args.repetition_penalty > 0.0,
        ),
        (
            "--presence-penalty",
            args.presence_penalty,
            args.presence_penalty.is_finite(),
        ),
        (
            "--frequency-penalty",
            args.frequency_penalty,
            args.frequency_penalty.is_finite(),
        ),
    ];
    for (flag, value, ok) in checks {
        if !ok || value.is_nan() {
            return Err(Error::Usage(format!("invalid value {value} for {flag}")));
        }
    }
    Ok(())
}

/// `--chat`: the prompt as one user message through the model's chat template (or
/// `--chat-template`), with the generation prompt added.
fn chat_prompt(
    gguf: &Gguf,
    model: &ModelArgs,
    registry_override: Option<&str>,
    text: &str,
) -> Result<String> {
    let template = crate::template::ChatTemplate::for_model(
        gguf,
        model.chat_template.as_deref(),
        registry_override,
    )?;
    let request = serde_json::json!({ "messages": [{ "role": "user", "content": text }] });
    Ok(template.render(&request)?)
}
