//! The one error type of wick, and its one mapping to HTTP status and OpenAI error JSON.
//! Module errors are typed enums folded in with `#[from]`; user errors carry what a client
//! needs (param, code, token counts). The CLI prints `error: {self}` as one line.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    #[error(transparent)]
    Models(#[from] crate::models::ModelsError),
    #[error(transparent)]
    Probe(#[from] crate::probe::ProbeError),

    /// A request that is well-formed JSON but not acceptable.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
        code: &'static str,
    },
    #[error("this model's maximum context length is {ctx} tokens, but the request needs {prompt_tokens} prompt tokens plus {max_tokens} completion tokens")]
    ContextLengthExceeded {
        prompt_tokens: usize,
        max_tokens: usize,
        ctx: usize,
    },
    #[error("the model '{0}' does not exist")]
    ModelNotFound(String),
    /// `previous_response_id` names no stored response (never stored, or evicted).
    #[error("previous response with id '{0}' not found (responses are kept in memory, with store: true, up to --responses-store of them)")]
    ResponseNotFound(String),
    #[error("invalid or missing API key")]
    Unauthorized,
    #[error("the server is busy: the request queue is full, try again later")]
    QueueFull,
    #[error("the model is still loading")]
    Loading,
    /// The model failed to load; the server stays up and says why.
    #[error("the model failed to load: {0}")]
    LoadFailed(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("no route for {0}")]
    RouteNotFound(String),
    /// Bad command-line usage that clap could not catch.
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// How an error appears on the wire: status, OpenAI `type`, `param` and `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorShape {
    pub status: u16,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl ErrorShape {
    /// Anthropic's error `type` for this error (its documented table by status; 503 while
    /// loading reads as `overloaded_error`, which Anthropic's clients retry).
    pub fn anthropic_type(&self) -> &'static str {
        match self.status {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        }
    }
}

impl Error {
    pub fn invalid(message: impl Into<String>, param: Option<&str>, code: &'static str) -> Self {
        Error::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_owned),
            code,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The single place that maps errors to HTTP/OpenAI. A code, once chosen, stays stable.
    pub fn shape(&self) -> ErrorShape {
        let (status, kind, param, code): (u16, &str, Option<String>, Option<&str>) = match self {
            Error::InvalidRequest { param, code, .. } => {
                (400, "invalid_request_error", param.clone(), Some(code))
            }
            Error::ContextLengthExceeded { .. } => (
                400,
                "invalid_request_error",
                Some("messages".into()),
                Some("context_length_exceeded"),
            ),
            Error::Template(_) => (
                400,
                "invalid_request_error",
                Some("messages".into()),
                Some("template_error"),
            ),
            Error::ModelNotFound(_) => (
                404,
                "invalid_request_error",
                Some("model".into()),
                Some("model_not_found"),
            ),
            Error::ResponseNotFound(_) => (
                404,
                "invalid_request_error",
                Some("previous_response_id".into()),
                Some("previous_response_not_found"),
            ),
            Error::Unauthorized => (401, "invalid_request_error", None, Some("invalid_api_key")),
            Error::QueueFull => (429, "rate_limit_exceeded", None, Some("queue_full")),
            Error::Loading => (503, "server_error", None, Some("model_loading")),
            Error::LoadFailed(_) => (503, "server_error", None, Some("model_load_failed")),
            Error::PayloadTooLarge { .. } => (
                413,
                "invalid_request_error",
                None,
                Some("payload_too_large"),
            ),
            Error::RouteNotFound(_) => (404, "invalid_request_error", None, Some("not_found")),
            Error::Usage(_) => (400, "invalid_request_error", None, Some("invalid_request")),
            Error::Engine(e) => return e.shape(),
            Error::Probe(_) => (
                400,
                "invalid_request_error",
                None,
                Some("tool_parser_mismatch"),
            ),
            Error::Gguf(_)
            | Error::Model(_)
            | Error::Tokenizer(_)
            | Error::Models(_)
            | Error::Io { .. } => (500, "server_error", None, Some("internal_error")),
        };
        ErrorShape {
            status,
            kind,
            param,
            code: code.map(str::to_owned),
        }
    }
}
