//! API-key check for `/v1`: with `--api-key`/`WICK_API_KEY` set, a request needs
//! `Authorization: Bearer <key>` or `x-api-key: <key>` (what Anthropic's clients send),
//! else 401 in the OpenAI shape (Anthropic's on the Messages routes). `/health` and `/metrics`
//! stay open (probes and scrapers carry no key).

use super::error::{error_response, Dialect};
use super::state::AppState;
use crate::Error;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

/// Compares without an early exit, so response time does not reveal a matching prefix.
fn same_key(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, b) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ b);
    }
    diff == 0
}

pub fn authorized(header: Option<&str>, key: &str) -> bool {
    header
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .is_some_and(|given| same_key(given.trim().as_bytes(), key.as_bytes()))
}

pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.config().api_key {
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let x_api_key = req.headers().get("x-api-key").and_then(|v| v.to_str().ok());
        let by_x_api_key = x_api_key.is_some_and(|k| same_key(k.trim().as_bytes(), key.as_bytes()));
        if !authorized(header, key) && !by_x_api_key {
            return error_response(&Error::Unauthorized, Dialect::of_path(req.uri().path()));
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_bearer_tokens() {
        assert!(authorized(Some("Bearer sk-1"), "sk-1"));
        assert!(authorized(Some("bearer sk-1"), "sk-1"));
        for bad in [
            None,
            Some("sk-1"),
            Some("Bearer sk-12"),
            Some("Bearer sk-"),
            Some("Basic sk-1"),
            Some("Bearer "),
        ] {
            assert!(!authorized(bad, "sk-1"), "{bad:?}");
        }
    }
}
