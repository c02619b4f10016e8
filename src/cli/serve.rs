//! `wick serve`: binds the OpenAI-compatible server at once (answering 503 while the model
//! loads in the background), then serves until Ctrl-C/SIGTERM and shuts down gracefully.
//! This is the composition root of the server: it builds the `server::Backend` from the
//! engine, tokenizer, chat template and tool-call parser.

use super::{ModelArgs, RuntimeArgs};
use crate::api::Tool;
use crate::engine::{
    threads, DraftModel, EngineError, EngineOptions, EngineStats, EventReceiver, GenerationRequest,
    Handle, SpeculativeMode,
};
use crate::gguf::Gguf;
use crate::models::ResolvedModel;
use crate::server::{self, AppState, Backend, CallParser, ParseEvent, ServerConfig};
use crate::template::fim::FimStyle;
use crate::template::normalize::map_content;
use crate::template::{ChatTemplate, TemplateError};
use crate::tokenizer::compat::check_same_tokenizer;
use crate::tokenizer::{Literals, Tokenizer};
use crate::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use wick_parsers::{ParserSpec, ToolParser};

/// Boxed so the `Command` enum stays small (clippy::large_enum_variant).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub serve: Box<ServeArgs>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    /// Address to bind (loopback by default: exposing the server is an explicit choice).
    #[arg(long, env = "WICK_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// A small model of the same tokenizer that drafts tokens for speculative decoding
    /// (a models.toml id, a path or a hub reference, like the model). Refused at load when
    /// its tokenizer differs from the model's.
    #[arg(long, env = "WICK_DRAFT_MODEL")]
    pub draft_model: Option<String>,
    /// Port to bind; 0 picks a free one (the address is printed on stderr).
    #[arg(long, env = "WICK_PORT", default_value_t = 8000)]
    pub port: u16,
    /// Tool-call parser: a parser name, or `auto` (default: from models.toml, else detected
    /// from the chat template).
    #[arg(long, env = "WICK_TOOL_PARSER")]
    pub tool_parser: Option<String>,
    /// Sequences generated at once. Their KV memory grows with the tokens they hold, so
    /// idle slots cost nothing (docs/server.md).
    #[arg(long, env = "WICK_PARALLEL", default_value_t = 4)]
    pub parallel: usize,
    /// Prompt tokens prefilled per step while no other sequence decodes.
    #[arg(long, env = "WICK_PREFILL_CHUNK", default_value_t = EngineOptions::default().prefill_chunk)]
    pub prefill_chunk: usize,
    /// Prompt tokens prefilled per step while other sequences decode (each step also runs
    /// their next tokens): smaller keeps streams smooth while a long prompt is admitted,
    /// larger finishes that prompt sooner.
    #[arg(long, env = "WICK_PREFILL_CHUNK_DECODING", default_value_t = EngineOptions::default().prefill_chunk_decoding)]
    pub prefill_chunk_decoding: usize,
    /// MiB of KV kept from finished requests for prompt-prefix reuse (least recently used
    /// dropped first); 0 turns prefix reuse off.
    #[arg(long, env = "WICK_CACHE_RAM", default_value_t = EngineOptions::default().cache_bytes >> 20)]
    pub cache_ram: usize,
    /// Events a stream may leave unread; a client that falls further behind is cancelled
    /// and its slot freed.
    #[arg(long, env = "WICK_STREAM_BUFFER", default_value_t = EngineOptions::default().event_buffer)]
    pub stream_buffer: usize,
    /// Requests that may wait for a free sequence; more get 429.
    #[arg(long, env = "WICK_MAX_QUEUE", default_value_t = 16)]
    pub max_queue: usize,
    /// Require `Authorization: Bearer KEY` on /v1.
    #[arg(long, env = "WICK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The model id served on the API (default: the models.toml id or the file stem).
    #[arg(long, env = "WICK_SERVED_MODEL_NAME")]
    pub served_model_name: Option<String>,
    /// Origins allowed by CORS, comma-separated (`*` for any). CORS is off by default.
    #[arg(long, env = "WICK_CORS", value_delimiter = ',')]
    pub cors: Vec<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "WICK_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// When the tool parser finds no call but another parser reads one (or the output is
    /// JSON naming a declared tool), answer with those calls instead of plain content.
    /// Every such response is logged and counted in `wick_tool_parser_mismatch_total`
    /// with or without this flag.
    #[arg(long, env = "WICK_TOOL_PARSER_FALLBACK")]
    pub tool_parser_fallback: bool,
    /// Responses kept in memory for `previous_response_id` on `/v1/responses` (least
    /// recently used evicted first; 0 keeps none).
    #[arg(long, env = "WICK_RESPONSES_STORE", default_value_t = 256)]
    pub responses_store: usize,
    /// `auto`: a model's `<think>…</think>` is returned as reasoning (`reasoning_content`,
    /// thinking blocks, reasoning items), never as content; `none`: the raw text.
    #[arg(long, env = "WICK_REASONING_FORMAT", default_value = "auto")]
    pub reasoning_format: crate::server::reasoning::ReasoningFormat,
    /// Seconds a connection may take to send a whole request head; also how long an idle
    /// keep-alive connection stays open waiting for its next request.
    #[arg(long, env = "WICK_HEADER_READ_TIMEOUT", default_value_t = 15)]
    pub header_read_timeout: u64,
    /// Seconds a request body may take to arrive in full (408 after that).
    #[arg(long, env = "WICK_BODY_READ_TIMEOUT", default_value_t = 60)]
    pub body_read_timeout: u64,
    /// Open connections at most; more wait until one closes.
    #[arg(long, env = "WICK_MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,
    /// Tokenize special-token text inside message content (`<|im_start|>` in a user
    /// message) as special tokens, as llama-server and vLLM do. Off by default: content is
    /// text, so a client cannot forge turns.
    #[arg(long, env = "WICK_PARSE_SPECIAL_IN_CONTENT")]
    pub parse_special_in_content: bool,
}

pub fn run(args: Args) -> crate::Result<()> {
    let args = *args.serve;
    init_logging();
    if args.parallel == 0 {
        return Err(Error::Usage("--parallel must be at least 1".into()));
    }
    for (flag, v) in [
        ("--prefill-chunk", args.prefill_chunk),
        ("--prefill-chunk-decoding", args.prefill_chunk_decoding),
        ("--stream-buffer", args.stream_buffer),
    ] {
        if v == 0 {
            return Err(Error::Usage(format!("{flag} must be at least 1")));
        }
    }
    let resolved = crate::models::resolve(&args.model.model, args.model.models_dir.as_deref())?;
    resolve_draft(&args, &resolved)?;
    let state = AppState::loading(server_config(&args, &resolved));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    runtime.block_on(serve(args, resolved, state))
}

/// The HTTP side's settings from the flags and the models.toml entry.
pub fn server_config(args: &ServeArgs, resolved: &ResolvedModel) -> ServerConfig {
    let model_id = args
        .served_model_name
        .clone()
        .unwrap_or_else(|| resolved.id.clone());
    let mut config = ServerConfig::new(model_id);
    config.tool_parser_fallback = args.tool_parser_fallback;
    config.responses_store = args.responses_store;
    config.reasoning_format = args.reasoning_format;
    config.api_key = args.api_key.clone().filter(|k| !k.is_empty());
    config.max_body_bytes = args.max_body_bytes;
    config.cors_origins = args
        .cors
        .iter()
        .filter(|o| !o.is_empty())
        .cloned()
        .collect();
    if let Some(entry) = &resolved.entry {
        let s = &entry.sampling;
        let d = &mut config.default_sampling;
        d.temperature = s.temperature.unwrap_or(d.temperature);
        d.top_p = s.top_p.unwrap_or(d.top_p);
        d.top_k = s.top_k.or(d.top_k);
        d.repetition_penalty = s.repetition_penalty.unwrap_or(d.repetition_penalty);
    }
    config
}

async fn serve(args: ServeArgs, model: ResolvedModel, state: AppState) -> crate::Result<()> {
    let addr = format!("{}:{}", args.host, args.port);
    let limits = connection_limits(&args)?;
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| Error::io(format!("cannot listen on {addr}"), e))?;
    let local: SocketAddr = listener
        .local_addr()
        .map_err(|e| Error::io("cannot read the bound address", e))?;
    // A fixed line that scripts and tests read (with --port 0 it is the only way to know).
    eprintln!("wick: listening on http://{local}");
    tracing::info!(model = %state.config().model_id, path = %model.path.display(), "loading the model in the background");

    let loader_state = state.clone();
    let loader = tokio::spawn(async move {
        let loading = tokio::task::spawn_blocking(move || load_backend(&args, &model));
        match loading.await {
            Ok(Ok(backend)) => {
                tracing::info!("model loaded; ready");
                loader_state.set_ready(backend);
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the model failed to load");
                loader_state.set_failed(e.to_string());
            }
            // A bug in a loader must not leave the server "loading" forever.
            Err(e) => {
                tracing::error!(error = %e, "the model loader crashed");
                loader_state.set_failed(format!("the model loader crashed: {e}"));
            }
        }
    });

    let app = server::router(state.clone());
    server::listen::serve(listener, app, limits, shutdown_signal()).await;
    tracing::info!("shutting down");
    // Stop accepting work, then let the engine drain; a still-running load is abandoned.
    loader.abort();
    Ok(())
}

fn connection_limits(args: &ServeArgs) -> crate::Result<server::listen::ConnectionLimits> {
    if args.header_read_timeout == 0 || args.body_read_timeout == 0 || args.max_connections == 0 {
        return Err(Error::Usage(
            "--header-read-timeout, --body-read-timeout and --max-connections must be at least 1"
                .into(),
        ));
    }
    Ok(server::listen::ConnectionLimits {
        header_read_timeout: std::time::Duration::from_secs(args.header_read_timeout),
        body_read_timeout: std::time::Duration::from_secs(args.body_read_timeout),
        max_connections: args.max_connections,
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Another subscriber may be set already (tests); that one is kept.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Context size when neither `--ctx-size` nor models.toml says otherwise (capped by the
/// model's training context).
const DEFAULT_CTX: usize = 4096;

/// Loads the model and builds the backend the handlers use (blocking: seconds). Public so
/// that router tests run the real engine without a socket.
pub fn load_backend(args: &ServeArgs, model: &ResolvedModel) -> crate::Result<Arc<dyn Backend>> {
    threads::configure(args.runtime.threads);
    let mut gguf = Gguf::open(&model.path)?;
    let tokenizer = Arc::new(Tokenizer::from_gguf(&gguf)?);
    // A base model without a chat template (StarCoder2, Gemma 3 base, ...) still serves
    // completions and FIM; chat requests to it get a 400 that says what is missing.
    let template = match ChatTemplate::for_model(
        &gguf,
        args.model.chat_template.as_deref(),
        model.chat_template_override(),
    ) {
        Ok(t) => Some(t),
        Err(TemplateError::Missing) => {
            tracing::warn!(
                "the model has no chat template: chat endpoints answer 400, completions work \
                 (pass --chat-template FILE to chat)"
            );
            None
        }
        Err(e) => return Err(e.into()),
    };
    let specials: Vec<&str> = tokenizer.special_tokens().iter().map(|(_, t)| *t).collect();
    let parser = pick_parser(
        args,
        model,
        template.as_ref().map_or("", |t| t.source()),
        &specials,
    )?;
    let fim = FimStyle::detect(&specials).map(|style| {
        let stop_ids = style
            .stop_tokens()
            .iter()
            .filter_map(|t| tokenizer.token_to_id(t))
            .collect();
        (style, stop_ids)
    });
    let device = device_from_str(&args.runtime.device)?;
    let loaded = crate::model::load_with(&mut gguf, &device, &args.runtime.load_options())?;
    drop(gguf);
    let train_ctx = loaded.info().train_ctx.max(1);
    let ctx = args
        .runtime
        .ctx_size
        .or(model.entry.as_ref().and_then(|e| e.ctx_size))
        .unwrap_or(DEFAULT_CTX.min(train_ctx));
    // A context the model cannot hold is refused at start, not by every request.
    loaded
        .new_cache(ctx)
        .map_err(|e| Error::Usage(format!("--ctx-size {ctx}: {e}")))?;
    tracing::info!(
        ctx,
        parser = parser.name,
        fim = fim.as_ref().map(|f| f.0.name()),
        parallel = args.parallel,
        max_queue = args.max_queue,
        prefill_chunk = args.prefill_chunk,
        prefill_chunk_decoding = args.prefill_chunk_decoding,
        cache_ram_mib = args.cache_ram,
        stream_buffer = args.stream_buffer,
        "engine settings"
    );
    let speculative = speculative_settings(args)?;
    let draft = match resolve_draft(args, model)? {
        Some(d) => {
            let mut gguf = Gguf::open(&d.path)?;
            let m = crate::model::load_with(&mut gguf, &device, &args.runtime.load_options())?;
            tracing::info!(draft = %d.path.display(), "draft model loaded");
            Some(DraftModel::new(m))
        }
        None => None,
    };
    let handle = Handle::start_with_draft(
        loaded,
        tokenizer.clone(),
        EngineOptions {
            parallel: args.parallel,
            max_queue: args.max_queue,
            ctx_size: ctx,
            prefill_chunk: args.prefill_chunk,
            prefill_chunk_decoding: args.prefill_chunk_decoding,
            cache_bytes: args.cache_ram.saturating_mul(1 << 20),
            event_buffer: args.stream_buffer,
            speculative,
            draft_always: false,
        },
        draft,
    )?;
    Ok(Arc::new(ModelBackend {
        handle,
        tokenizer,
        template,
        fim,
        parser,
        parse_special_in_content: args.parse_special_in_content,
    }))
}

/// The `--speculative` mode, checked against `--draft-model`.
fn speculative_settings(args: &ServeArgs) -> crate::Result<SpeculativeMode> {
    let mode = args.runtime.speculative_mode(args.draft_model.is_some());
    if mode.uses_draft_model() && args.draft_model.is_none() {
        return Err(Error::Usage(
            "--speculative draft and lookup+draft need --draft-model".into(),
        ));
    }
    Ok(mode)
}

/// Resolves `--draft-model` (the same resolver as the model) when the mode uses it,
/// refusing one whose tokenizer differs from the model's (a usage error naming the
/// difference). Cheap: only the two files' metadata is read.
fn resolve_draft(args: &ServeArgs, target: &ResolvedModel) -> crate::Result<Option<ResolvedModel>> {
    let Some(reference) = args.draft_model.as_deref() else {
        return Ok(None);
    };
    if !speculative_settings(args)?.uses_draft_model() {
        return Ok(None);
    }
    let draft = crate::models::resolve(reference, args.model.models_dir.as_deref())?;
    check_same_tokenizer(&Gguf::open(&target.path)?, &Gguf::open(&draft.path)?).map_err(|why| {
        Error::Usage(format!(
            "--draft-model {} cannot draft for {}: its tokenizer differs: {why}",
            draft.path.display(),
            target.path.display()
        ))
    })?;
    Ok(Some(draft))
}

/// `--tool-parser`, else the models.toml entry's, else the one the template calls for,
/// else `auto` (which reads every format).
fn pick_parser(
    args: &ServeArgs,
    model: &ResolvedModel,
    template: &str,
    specials: &[&str],
) -> crate::Result<&'static ParserSpec> {
    let chosen = args
        .tool_parser
        .clone()
        .or_else(|| model.entry.as_ref().and_then(|e| e.tool_parser.clone()));
    let name = match chosen.as_deref() {
        Some("auto") | None => match wick_parsers::detect_parser(template, specials) {
            Some(d) if chosen.is_none() => {
                tracing::info!(
                    parser = d.parser,
                    marker = d.evidence.marker,
                    "tool parser detected"
                );
                d.parser.to_owned()
            }
            _ => "auto".to_owned(),
        },
        Some(n) => n.to_owned(),
    };
    wick_parsers::by_name(&name).map_err(|e| Error::Usage(e.to_string()))
}

/// `--device cpu|cuda[:N]|metal`; a device that cannot be used is a usage error.
fn device_from_str(s: &str) -> crate::Result<candle_core::Device> {
    crate::model::device_from_str(s).map_err(|e| Error::Usage(e.to_string()))
}

/// The loaded model as the server sees it.
struct ModelBackend {
    handle: Handle,
    tokenizer: Arc<Tokenizer>,
    /// `None` for a model without a chat template (completions only).
    template: Option<ChatTemplate>,
    fim: Option<(FimStyle, Vec<u32>)>,
    parser: &'static ParserSpec,
    /// `--parse-special-in-content`: the old, forgeable tokenization of message content.
    parse_special_in_content: bool,
}

impl ModelBackend {
    fn template(&self) -> Result<&ChatTemplate, TemplateError> {
        self.template.as_ref().ok_or(TemplateError::Missing)
    }
}

impl Backend for ModelBackend {
    fn ctx_size(&self) -> usize {
        self.handle.ctx_size()
    }

    fn render_chat(&self, request: &serde_json::Value) -> crate::Result<String> {
        Ok(self.template()?.render(request)?)
    }

    fn encode(&self, text: &str) -> crate::Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text, true, true)?)
    }

    /// Message content is text: its special-token text is hidden behind placeholders
    /// while the template renders, then tokenized as plain text (tokenizer/literal.rs).
    /// The returned render keeps the placeholders (only its template-made end is read).
    fn prepare_chat(
        &self,
        request: &serde_json::Value,
        suffix: &str,
    ) -> crate::Result<(Vec<u32>, String)> {
        if self.parse_special_in_content {
            let rendered = self.render_chat(request)?;
            let ids = self.encode(&format!("{rendered}{suffix}"))?;
            return Ok((ids, rendered));
        }
        let mut literals = Literals::new(&request.to_string());
        let protected = map_content(request, |text| {
            self.tokenizer.protect_specials(text, &mut literals)
        });
        let rendered = self.template()?.render(&protected)?;
        let ids =
            self.tokenizer
                .encode_with_literals(&format!("{rendered}{suffix}"), true, &literals)?;
        Ok((ids, rendered))
    }

    fn fim_prompt(&self, prefix: &str, suffix: &str) -> Option<(String, Vec<u32>)> {
        self.fim
            .as_ref()
            .map(|(style, stop)| (style.build(prefix, suffix), stop.clone()))
    }

    fn parser_name(&self) -> &str {
        self.parser.name
    }

    fn new_parser(&self, tools: &[Tool]) -> Box<dyn CallParser> {
        let specs = server::mismatch::tool_specs(tools);
        Box::new(ParserAdapter {
            inner: (self.parser.new)(&specs),
            events: Vec::new(),
        })
    }

    fn submit(&self, request: GenerationRequest) -> Result<EventReceiver, EngineError> {
        self.handle.submit(request)
    }

    fn engine_stats(&self) -> EngineStats {
        self.handle.stats()
    }

    fn queue_depth(&self) -> usize {
        self.handle.queue_depth()
    }

    fn active(&self) -> usize {
        self.handle.active()
    }

    /// The engine's own admission rule (`Handle::submit`), read without its lock.
    fn has_room(&self) -> bool {
        let opts = self.handle.options();
        let free = opts.parallel.saturating_sub(self.handle.active());
        self.handle.queue_depth() < opts.max_queue + free
    }
}

/// Maps the parser crate's events onto the server's.
struct ParserAdapter {
    inner: Box<dyn ToolParser>,
    /// Reused between pushes.
    events: Vec<wick_parsers::Event>,
}

impl ParserAdapter {
    fn drain(&mut self, out: &mut Vec<ParseEvent>) {
        use wick_parsers::Event as P;
        for ev in self.events.drain(..) {
            out.push(match ev {
                P::Content(t) => ParseEvent::Content(t),
                P::Reasoning(t) => ParseEvent::Reasoning(t),
                P::CallStart { id, name, .. } => ParseEvent::CallStart { id: Some(id), name },
                P::CallArgs { fragment, .. } => ParseEvent::CallArguments(fragment),
                P::CallEnd { .. } => continue,
                P::Rejected(r) => ParseEvent::Rejected {
                    reason: r.to_string(),
                },
            });
        }
    }
}

impl CallParser for ParserAdapter {
    fn push(&mut self, text: &str, out: &mut Vec<ParseEvent>) {
        self.inner.push(text, &mut self.events);
        self.drain(out);
    }

    fn finish(&mut self, out: &mut Vec<ParseEvent>) {
        self.inner.finish(&mut self.events);
        self.drain(out);
    }
}
