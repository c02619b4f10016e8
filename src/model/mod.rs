//! Model architectures: GGUF weights → a forward pass with a KV cache per sequence.
//! Weights are immutable and shared (`Model: Send + Sync`); each sequence owns a `KvCache`.
//! Must not depend on tokenizers, templates, the engine or the server.
//! (Being written: see the engine issue. The signatures below are the seam.)

use crate::gguf::Gguf;
use candle_core::{Device, Tensor};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("unsupported architecture '{found}' (supported: {supported})")]
    UnsupportedArchitecture { found: String, supported: String },
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error("the sequence would exceed the KV cache ({needed} > {capacity} tokens)")]
    CacheFull { needed: usize, capacity: usize },
    #[error("{0}")]
    Candle(String),
}

impl From<candle_core::Error> for ModelError {
    fn from(e: candle_core::Error) -> Self {
        ModelError::Candle(e.to_string())
    }
}

/// What the rest of wick needs to know about a loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub architecture: String,
    pub name: Option<String>,
    /// The context length the model was trained for (from GGUF metadata).
    pub train_ctx: usize,
    pub vocab_size: usize,
}

/// The per-sequence KV cache: preallocated for `capacity` tokens, never grows.
pub struct KvCache {
    // Filled in by the model implementation.
}

impl KvCache {
    /// Tokens currently cached.
    pub fn len(&self) -> usize {
        unimplemented!("being written")
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn capacity(&self) -> usize {
        unimplemented!("being written")
    }
    /// Forget everything after the first `len` tokens (prefix reuse).
    pub fn truncate(&mut self, _len: usize) {
        unimplemented!("being written")
    }
}

pub trait Model: Send + Sync {
    fn info(&self) -> &ModelInfo;
    fn new_cache(&self, capacity: usize) -> Result<KvCache, ModelError>;
    /// Runs `tokens` at positions `cache.len()..`, appends their K/V to `cache`, and returns
    /// the logits of the last token as an f32 tensor of shape `[vocab]`.
    fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, ModelError>;
}

/// Loads the architecture named by `general.architecture`.
pub fn load(_gguf: &mut Gguf, _device: &Device) -> Result<Box<dyn Model>, ModelError> {
    unimplemented!("being written")
}
