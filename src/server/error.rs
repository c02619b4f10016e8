//! Errors on the wire. `Error::shape()` (src/error.rs) is the one mapping from an error to
//! its status, type, param and code; this file only renders that shape, in the dialect of
//! the route that failed:
//! - OpenAI (`/v1/chat/completions`, `/v1/completions`, everything else):
//!   `{"error":{"message","type","param","code"}}`;
//! - Anthropic (`/v1/messages`): `{"type":"error","error":{"type","message"}}`.
//!
//! Every 429 and 503 carries `Retry-After`. Once a stream has started, the same body goes
//! out as one SSE event (see `sse::error_frame`).

use crate::api::{ErrorBody, ErrorDetail};
use crate::Error;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Which API's error shape a route speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    #[default]
    OpenAi,
    Anthropic,
}

impl Dialect {
    /// By request path (with or without the `/v1` prefix a nested router strips): the auth
    /// layer answers before any handler, so it picks the shape by route.
    pub fn of_path(path: &str) -> Dialect {
        let path = path.strip_prefix("/v1").unwrap_or(path);
        if path == "/messages" || path.starts_with("/messages/") {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        }
    }
}

/// An `Error` answered in Anthropic's shape (what the Messages handlers return).
pub struct AnthropicError(pub Error);

impl From<Error> for AnthropicError {
    fn from(e: Error) -> Self {
        AnthropicError(e)
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        error_response(&self.0, Dialect::Anthropic)
    }
}

/// The OpenAI error body for an error (also sent as an SSE event once a stream started).
pub fn error_body(err: &Error) -> ErrorBody {
    let shape = err.shape();
    ErrorBody {
        error: ErrorDetail {
            message: err.to_string(),
            kind: shape.kind,
            param: shape.param,
            code: shape.code,
        },
    }
}

/// The error body in `dialect`'s shape.
pub fn error_json(err: &Error, dialect: Dialect) -> Value {
    match dialect {
        Dialect::OpenAi => serde_json::to_value(error_body(err)).unwrap_or(Value::Null),
        Dialect::Anthropic => json!({
            "type": "error",
            "error": {"type": err.shape().anthropic_type(), "message": err.to_string()},
        }),
    }
}

/// The HTTP response for an error in `dialect`'s shape: status, JSON body, and
/// `Retry-After` when the client should come back later. Logs it once.
pub fn error_response(err: &Error, dialect: Dialect) -> Response {
    let shape = err.shape();
    let status = StatusCode::from_u16(shape.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(error = %err, "request failed");
    } else {
        tracing::info!(error = %err, status = status.as_u16(), "request rejected");
    }
    let mut response = (status, axum::Json(error_json(err, dialect))).into_response();
    if let Some(secs) = shape.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        error_response(&self, Dialect::OpenAi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;

    #[test]
    fn renders_one_shape_in_each_dialect() {
        let err = Error::engine(EngineError::QueueFull, "messages");
        let openai = error_json(&err, Dialect::OpenAi);
        assert_eq!(openai["error"]["code"], "queue_full");
        assert_eq!(openai["error"]["type"], "rate_limit_exceeded");
        let anthropic = error_json(&err, Dialect::Anthropic);
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "rate_limit_error");
        assert_eq!(anthropic["error"]["message"], openai["error"]["message"]);
        let resp = error_response(&err, Dialect::Anthropic);
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn context_errors_name_the_prompt_field_of_their_route() {
        let exceeded = EngineError::ContextLengthExceeded {
            prompt_tokens: 10,
            max_tokens: 5,
            ctx: 12,
        };
        for field in ["messages", "prompt", "input"] {
            let shape = Error::engine(exceeded.clone(), field).shape();
            assert_eq!(shape.param.as_deref(), Some(field));
            assert_eq!(shape.code.as_deref(), Some("context_length_exceeded"));
        }
    }
}
