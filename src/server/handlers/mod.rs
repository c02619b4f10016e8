//! Route handlers: one file per endpoint family. Shared helpers for running a generation.

pub mod chat;
pub mod completions;
pub mod info;
pub mod messages;
pub mod responses;
pub mod turn;

use crate::engine::{EngineError, Usage};
use crate::Error;

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
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Inference(format!("prompt preparation failed: {e}")))?
}

pub fn api_usage(u: Usage) -> crate::api::Usage {
    crate::api::Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        total_tokens: u.prompt_tokens + u.completion_tokens,
    }
}
