//! Shared server state: the settings, the metrics, and the model's lifecycle. The server
//! binds before the model is loaded; until `set_ready` it answers 503 (`model_loading`).
//! Must not depend on axum.

use super::backend::Backend;
use super::dialect::store::ResponseStore;
use super::metrics::{Gauges, Metrics};
use crate::engine::SamplingParams;
use crate::Error;
use std::sync::{Arc, RwLock};

/// Settings of the HTTP side, resolved once by `wick serve`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The id served on the API (`model` in requests and `/v1/models`).
    pub model_id: String,
    /// When set, `/v1` requires `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Origins allowed by CORS; empty = CORS off.
    pub cors_origins: Vec<String>,
    /// `max_tokens` when a request gives none (`None`: the rest of the context).
    pub default_max_tokens: Option<usize>,
    /// Sampling for fields a request leaves out (models.toml, else OpenAI's defaults).
    pub default_sampling: SamplingParams,
    /// `--tool-parser-fallback`: when the active parser misses calls another parser reads,
    /// answer with those calls.
    pub tool_parser_fallback: bool,
    /// `--responses-store N`: responses kept for `previous_response_id` (0: none).
    pub responses_store: usize,
    /// `--reasoning-format`: `<think>` blocks as reasoning (auto) or raw content (none).
    pub reasoning_format: super::reasoning::ReasoningFormat,
}

impl ServerConfig {
    pub fn new(model_id: impl Into<String>) -> Self {
        ServerConfig {
            model_id: model_id.into(),
            api_key: None,
            max_body_bytes: 16 * 1024 * 1024,
            cors_origins: Vec::new(),
            default_max_tokens: None,
            default_sampling: super::validate::openai_sampling(),
            tool_parser_fallback: false,
            responses_store: 256,
            reasoning_format: super::reasoning::ReasoningFormat::Auto,
        }
    }
}

enum Phase {
    Loading,
    Ready(Arc<dyn Backend>),
    Failed(String),
}

struct Shared {
    config: ServerConfig,
    metrics: Metrics,
    phase: RwLock<Phase>,
    created: u64,
    responses: ResponseStore,
}

/// Cheap to clone; every handler gets one.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Shared>,
}

impl AppState {
    /// A server whose model is still loading.
    pub fn loading(config: ServerConfig) -> Self {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        AppState {
            inner: Arc::new(Shared {
                responses: ResponseStore::new(config.responses_store),
                config,
                metrics: Metrics::default(),
                phase: RwLock::new(Phase::Loading),
                created,
            }),
        }
    }

    /// A server with a loaded model.
    pub fn ready(config: ServerConfig, backend: Arc<dyn Backend>) -> Self {
        let s = Self::loading(config);
        s.set_ready(backend);
        s
    }

    pub fn set_ready(&self, backend: Arc<dyn Backend>) {
        *self.inner.phase.write().unwrap_or_else(|e| e.into_inner()) = Phase::Ready(backend);
    }

    /// Loading failed: requests keep getting 503 with this message.
    pub fn set_failed(&self, message: String) {
        *self.inner.phase.write().unwrap_or_else(|e| e.into_inner()) = Phase::Failed(message);
    }

    /// The loaded model, or `Loading` (503).
    pub fn backend(&self) -> Result<Arc<dyn Backend>, Error> {
        match &*self.inner.phase.read().unwrap_or_else(|e| e.into_inner()) {
            Phase::Ready(b) => Ok(b.clone()),
            Phase::Loading => Err(Error::Loading),
            Phase::Failed(m) => Err(Error::LoadFailed(m.clone())),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Stored Responses-API conversations (`previous_response_id`).
    pub fn responses(&self) -> &ResponseStore {
        &self.inner.responses
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Unix time the server started (the `created` of the model card).
    pub fn created(&self) -> u64 {
        self.inner.created
    }

    pub fn gauges(&self) -> Gauges {
        match self.backend() {
            Ok(b) => Gauges {
                loaded: true,
                queue_depth: b.queue_depth(),
                active: b.active(),
                engine: engine_figures(b.engine_stats()),
            },
            Err(_) => Gauges::default(),
        }
    }
}

fn engine_figures(s: crate::engine::EngineStats) -> crate::server::metrics::EngineFigures {
    crate::server::metrics::EngineFigures {
        prefix_lookups: s.prefix_lookups,
        prefix_hits: s.prefix_hits,
        prefix_tokens_reused: s.prefix_tokens_reused,
        prefix_cache_bytes: s.prefix_cache_bytes,
        active_kv_bytes: s.active_kv_bytes,
        cancelled_queued: s.cancelled_queued,
        cancelled_prefill: s.cancelled_prefill,
        cancelled_slow_reader: s.cancelled_slow_reader,
        spec_draft_tokens: s.spec_draft_tokens,
        spec_accepted_tokens: s.spec_accepted_tokens,
        spec_model_draft_tokens: s.spec_model_draft_tokens,
        spec_model_accepted_tokens: s.spec_model_accepted_tokens,
    }
}
