//! wick: a local OpenAI-compatible inference server for coding models.
//! Modules follow the request pipeline; see STYLE notes in README.

// Every unsafe block says why it is sound (`// SAFETY: …`); with `-D warnings` in CI a
// missing comment fails the build.
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod api;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod model;
pub mod models;
pub mod probe;
pub mod server;
pub mod template;
pub mod tokenizer;

pub use error::{Error, Result};
