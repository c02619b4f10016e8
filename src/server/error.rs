//! Errors on the wire. `Error::shape()` (src/error.rs) is the one mapping from an error to
//! its status, type, param and code; this file only renders that shape, in the dialect of
//! the route that failed:
//! - OpenAI (`/v1/chat/completions`, `/v1/completions`, `/v1/responses`, everything else):
//!   `{"error":{"message","type","param","code"}}`;
//! - Anthropic (`/v1/messages`): `{"type":"error","error":{"type","message"}}`.

use crate::api::{ErrorBody, ErrorDetail};
use crate::Error;
use axum::http::StatusCode;
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
    /// By request path (with or without the `/v1` prefix a nested router strips).
    pub fn of_path(path: &str) -> Dialect {
        let path = path.strip_prefix("/v1").unwrap_or(path);
        if path == "/messages" || path.starts_with("/messages/") {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        }
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

/// The HTTP response for an error in `dialect`'s shape. Logs it once.
pub fn error_response(err: &Error, dialect: Dialect) -> Response {
    let status =
        StatusCode::from_u16(err.shape().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::error!(error = %err, "request failed");
    } else {
        tracing::info!(error = %err, status = status.as_u16(), "request rejected");
    }
    (status, axum::Json(error_json(err, dialect))).into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        error_response(&self, Dialect::OpenAi)
    }
}

/// An `Error` answered in Anthropic's shape (the Messages handlers return it).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_shape_in_each_dialect() {
        for (err, status, kind) in [
            (Error::QueueFull, 429, "rate_limit_error"),
            (Error::Loading, 503, "overloaded_error"),
            (Error::Unauthorized, 401, "authentication_error"),
            (Error::ModelNotFound("x".into()), 404, "not_found_error"),
            (
                Error::invalid("bad", Some("a"), "invalid_value"),
                400,
                "invalid_request_error",
            ),
            (
                Error::PayloadTooLarge { limit: 1 },
                413,
                "request_too_large",
            ),
        ] {
            let anthropic = error_json(&err, Dialect::Anthropic);
            assert_eq!(anthropic["type"], "error");
            assert_eq!(anthropic["error"]["type"], kind, "{err}");
            assert_eq!(anthropic["error"]["message"], err.to_string());
            assert_eq!(
                error_response(&err, Dialect::Anthropic).status().as_u16(),
                status
            );
            let openai = error_json(&err, Dialect::OpenAi);
            assert_eq!(openai["error"]["message"], err.to_string());
        }
        assert_eq!(
            Dialect::of_path("/v1/messages/count_tokens"),
            Dialect::Anthropic
        );
        assert_eq!(Dialect::of_path("/messages"), Dialect::Anthropic);
        assert_eq!(Dialect::of_path("/v1/responses"), Dialect::OpenAi);
    }
}
