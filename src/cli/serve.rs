//! `wick serve`: binds the OpenAI-compatible server at once (answering 503 while the model
//! loads in the background), then serves until Ctrl-C/SIGTERM and shuts down gracefully.
//! This is the composition root of the server: it builds the `server::Backend` from the
//! engine, tokenizer, chat template and tool-call parser.

use super::{ModelArgs, RuntimeArgs};
use crate::server::{self, AppState, Backend, ServerConfig};
use crate::Error;
use std::net::SocketAddr;
use std::sync::Arc;

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
    /// Port to bind; 0 picks a free one (the address is printed on stderr).
    #[arg(long, env = "WICK_PORT", default_value_t = 8000)]
    pub port: u16,
    /// Tool-call parser: a parser name, or `auto` (default: from models.toml, else detected
    /// from the chat template).
    #[arg(long, env = "WICK_TOOL_PARSER")]
    pub tool_parser: Option<String>,
    /// Sequences generated at once.
    #[arg(long, env = "WICK_PARALLEL", default_value_t = 1)]
    pub parallel: usize,
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
}

pub fn run(args: Args) -> crate::Result<()> {
    let args = *args.serve;
    init_logging();
    if args.parallel == 0 {
        return Err(Error::Usage("--parallel must be at least 1".into()));
    }
    let resolved = crate::models::resolve(&args.model.model, args.model.models_dir.as_deref())?;
    let model_id = args
        .served_model_name
        .clone()
        .unwrap_or_else(|| resolved.id.clone());
    let mut config = ServerConfig::new(model_id);
    config.api_key = args.api_key.clone().filter(|k| !k.is_empty());
    config.max_body_bytes = args.max_body_bytes;
    config.cors_origins = args
        .cors
        .iter()
        .filter(|o| !o.is_empty())
        .cloned()
        .collect();
    let state = AppState::loading(config);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", e))?;
    runtime.block_on(serve(args, resolved, state))
}

async fn serve(
    args: ServeArgs,
    model: crate::models::ResolvedModel,
    state: AppState,
) -> crate::Result<()> {
    let addr = format!("{}:{}", args.host, args.port);
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
    let loader = tokio::task::spawn_blocking(move || match load_backend(&args, &model) {
        Ok(backend) => {
            tracing::info!("model loaded; ready");
            loader_state.set_ready(backend);
        }
        Err(e) => {
            tracing::error!(error = %e, "the model failed to load");
            loader_state.set_failed(e.to_string());
        }
    });

    let app = server::router(state.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Error::io("the server stopped", e))?;
    tracing::info!("shutting down");
    // Stop accepting work, then let the engine drain; a still-running load is abandoned.
    loader.abort();
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Another subscriber may be set already (tests); that one is kept.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
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

/// Loads the model and builds the backend the handlers use.
fn load_backend(
    _args: &ServeArgs,
    model: &crate::models::ResolvedModel,
) -> crate::Result<Arc<dyn Backend>> {
    let _gguf = crate::gguf::Gguf::open(&model.path)?;
    // The engine, tokenizer, template and parser seams are composed here once they land.
    Err(Error::Usage(
        "this build has no inference engine yet (engine, tokenizer, template and parsers are being merged)".into(),
    ))
}
