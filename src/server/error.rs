//! `impl IntoResponse for Error`: every HTTP error is the OpenAI shape
//! `{"error":{"message","type","param","code"}}` with the status from `Error::shape()`.

use crate::api::{ErrorBody, ErrorDetail};
use crate::Error;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

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

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.shape().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::info!(error = %self, status = status.as_u16(), "request rejected");
        }
        (status, axum::Json(error_body(&self))).into_response()
    }
}
