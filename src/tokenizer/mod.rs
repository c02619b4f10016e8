//! Tokenizer built from GGUF metadata (tokenizers crate), plus the incremental detokenizer.
//! Must not depend on candle tensors or the server.
//! (Being written: see the engine issue. The signatures below are the seam.)

use crate::gguf::Gguf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TokenizerError {
    #[error("unsupported tokenizer: {0}")]
    Unsupported(String),
    #[error("cannot build the tokenizer from GGUF metadata: {0}")]
    Build(String),
    #[error("tokenization failed: {0}")]
    Encode(String),
}

pub struct Tokenizer {}

impl Tokenizer {
    pub fn from_gguf(_gguf: &Gguf) -> Result<Self, TokenizerError> {
        unimplemented!("being written")
    }
    /// Special-token text (`<|im_start|>`) becomes the special token when `parse_special`;
    /// BOS is prepended when the GGUF says so and `add_special` is set.
    pub fn encode(
        &self,
        _text: &str,
        _add_special: bool,
        _parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        unimplemented!("being written")
    }
    /// Decodes ids to text; control tokens are dropped when `skip_special`.
    pub fn decode(&self, _ids: &[u32], _skip_special: bool) -> String {
        unimplemented!("being written")
    }
    /// The raw bytes a token stands for (byte-level BPE decoded; may be part of a UTF-8 char).
    pub fn token_bytes(&self, _id: u32) -> &[u8] {
        unimplemented!("being written")
    }
    pub fn token_to_id(&self, _text: &str) -> Option<u32> {
        unimplemented!("being written")
    }
    pub fn vocab_size(&self) -> usize {
        unimplemented!("being written")
    }
    pub fn bos_id(&self) -> Option<u32> {
        unimplemented!("being written")
    }
    pub fn eos_id(&self) -> Option<u32> {
        unimplemented!("being written")
    }
    /// Every end-of-generation id (for Qwen: <|im_end|>, <|endoftext|>, FIM pad/file sep…).
    pub fn eog_ids(&self) -> &[u32] {
        unimplemented!("being written")
    }
    /// Control and user-defined tokens, as (id, text).
    pub fn special_tokens(&self) -> Vec<(u32, &str)> {
        unimplemented!("being written")
    }
    pub fn is_control(&self, _id: u32) -> bool {
        unimplemented!("being written")
    }
}
