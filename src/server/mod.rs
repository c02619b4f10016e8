//! The OpenAI-compatible HTTP server (axum): `/v1/chat/completions`, `/v1/completions`,
//! `/v1/models`, `/health`, `/metrics`.
//! Input: HTTP requests. Output: OpenAI JSON responses and SSE streams.
//! Depends on api, engine types, the `Backend` seam, error; never on model internals or
//! worker state (the engine is reached only through `Backend`).

pub mod assemble;
pub mod auth;
pub mod backend;
pub mod blocks;
pub mod dialect;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod json_constraint;
pub mod listen;
pub mod logprobs;
pub mod metrics;
pub mod mismatch;
pub mod reasoning;
pub mod respond;
pub mod router;
pub mod sse;
pub mod state;
pub mod tool_choice;
pub mod validate;

pub use backend::{Backend, CallParser, ParseEvent};
pub use extract::Json;
pub use router::router;
pub use state::{AppState, ServerConfig};
