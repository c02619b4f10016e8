//! Route handlers: one file per endpoint family. Shared helpers for running a generation.

pub mod chat;
pub mod completions;
pub mod info;
pub mod messages;
pub mod responses;
pub mod turn;

use super::backend::Backend;
use super::state::AppState;
use crate::engine::{EngineError, Event, FinishReason, GenerationRequest, Usage};
use crate::Error;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn response_id(prefix: &str) -> String {
    format!("{prefix}-{}", &super::assemble::call_id()[5..])
}

/// Runs CPU work (template rendering, tokenization) off the async workers.
pub async fn blocking<T, F>(f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::Engine(EngineError::Inference(format!(
            "prompt preparation failed: {e}"
        )))
    })?
}

/// Submits a generation; queue full and context errors come back at once.
pub fn submit(
    backend: &Arc<dyn Backend>,
    request: GenerationRequest,
) -> Result<UnboundedReceiver<Event>, Error> {
    backend.submit(request).map_err(|e| match e {
        EngineError::ContextLengthExceeded {
            prompt_tokens,
            max_tokens,
            ctx,
        } => Error::ContextLengthExceeded {
            prompt_tokens,
            max_tokens,
            ctx,
        },
        other => Error::Engine(other),
    })
}

/// How a generation ended, for the response and the metrics.
#[derive(Debug, Clone)]
pub struct Finished {
    pub reason: FinishReason,
    pub usage: Usage,
    /// Output the engine held back until the end; it follows the last token.
    pub tail: String,
}

/// Records a finished generation in the metrics.
pub fn record(state: &AppState, event: Event) -> Option<Finished> {
    if let Event::Done {
        finish_reason,
        usage,
        time_to_first_token,
        decode_tokens_per_second,
        text,
    } = event
    {
        state.metrics().record_generation(
            usage.prompt_tokens,
            usage.completion_tokens,
            time_to_first_token,
            decode_tokens_per_second,
        );
        return Some(Finished {
            reason: finish_reason,
            usage,
            tail: text,
        });
    }
    None
}

pub fn api_usage(u: Usage) -> crate::api::Usage {
    crate::api::Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens + u.completion_tokens,
    }
}
