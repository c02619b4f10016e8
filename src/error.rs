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
    /// An engine error; `prompt_param` names the request field that holds the prompt
    /// (`messages`, `prompt`, `input`, …), so a context error points at it.
    #[error("{source}")]
    Engine {
        source: crate::engine::EngineError,
        prompt_param: Option<&'static str>,
    },
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
    #[error("the model '{0}' does not exist")]
    ModelNotFound(String),
    /// `previous_response_id` names no stored response (never stored, or evicted).
    #[error("previous response with id '{0}' not found (responses are kept in memory, with store: true, up to --responses-store of them)")]
    ResponseNotFound(String),
    #[error("invalid or missing API key")]
    Unauthorized,
    #[error("the model is still loading")]
    Loading,
    /// The model failed to load; the server stays up and says why.
    #[error("the model failed to load: {0}")]
    LoadFailed(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("{path} does not accept {method} (use {allowed})")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: String,
    },
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

/// How an error appears on the wire: status, OpenAI `type`, `param` and `code`. Other
/// dialects (Anthropic's `{"type":"error","error":{…}}`) render the same shape with their own
/// names: see [`ErrorShape::anthropic_type`] and `server::error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorShape {
    pub status: u16,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<String>,
    /// Seconds a client should wait before retrying (`Retry-After`), on 429 and 503.
    pub retry_after: Option<u32>,
}

impl ErrorShape {
    /// Anthropic's error `type` for this status (their API names errors by status class).
    pub fn anthropic_type(&self) -> &'static str {
        match self.status {
            400 | 405 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 => "overloaded_error",
            _ => "api_error",
        }
    }
}

/// Seconds a client is told to wait after a 429 (the queue moves within a generation).
const RETRY_AFTER_BUSY: u32 = 1;
/// Seconds a client is told to wait while the model loads.
const RETRY_AFTER_LOADING: u32 = 5;

impl From<crate::engine::EngineError> for Error {
    fn from(source: crate::engine::EngineError) -> Self {
        Error::Engine {
            source,
            prompt_param: None,
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

    /// An engine error of a request whose prompt is in field `param`.
    pub fn engine(source: crate::engine::EngineError, param: &'static str) -> Self {
        Error::Engine {
            source,
            prompt_param: Some(param),
        }
    }

    /// The single place that maps errors to HTTP/OpenAI. A code, once chosen, stays stable.
    pub fn shape(&self) -> ErrorShape {
        use crate::engine::EngineError as E;
        const INVALID: &str = "invalid_request_error";
        let (status, kind, param, code): (u16, &str, Option<String>, &str) = match self {
            Error::InvalidRequest { param, code, .. } => (400, INVALID, param.clone(), code),
            Error::Template(_) => (400, INVALID, Some("messages".into()), "template_error"),
            Error::ModelNotFound(_) => (404, INVALID, Some("model".into()), "model_not_found"),
            Error::Unauthorized => (401, INVALID, None, "invalid_api_key"),
            Error::Loading => (503, "server_error", None, "model_loading"),
            Error::LoadFailed(_) => (503, "server_error", None, "model_load_failed"),
            Error::PayloadTooLarge { .. } => (413, INVALID, None, "payload_too_large"),
            Error::RouteNotFound(_) => (404, INVALID, None, "not_found"),
            Error::MethodNotAllowed { .. } => (405, INVALID, None, "method_not_allowed"),
            Error::Usage(_) => (400, INVALID, None, "invalid_request"),
            Error::Engine {
                source,
                prompt_param,
            } => {
                let prompt = Some(prompt_param.unwrap_or("prompt").to_owned());
                match source {
                    E::QueueFull => (429, "rate_limit_exceeded", None, "queue_full"),
                    E::ContextLengthExceeded { .. } => {
                        (400, INVALID, prompt, "context_length_exceeded")
                    }
                    E::EmptyPrompt => (400, INVALID, prompt, "empty_prompt"),
                    E::WorkerStopped | E::Inference(_) => {
                        (500, "server_error", None, "inference_failed")
                    }
                }
            }
            Error::ResponseNotFound(_) => (
                404,
                INVALID,
                Some("previous_response_id".into()),
                "previous_response_not_found",
            ),
            Error::Probe(_) => (400, INVALID, None, "tool_parser_mismatch"),
            Error::Gguf(_)
            | Error::Model(_)
            | Error::Tokenizer(_)
            | Error::Models(_)
            | Error::Io { .. } => (500, "server_error", None, "internal_error"),
        };
        let retry_after = match status {
            429 => Some(RETRY_AFTER_BUSY),
            503 => Some(RETRY_AFTER_LOADING),
            _ => None,
        };
        ErrorShape {
            status,
            kind,
            param,
            code: Some(code.to_owned()),
            retry_after,
        }
    }
}
