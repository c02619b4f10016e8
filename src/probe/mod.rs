//! `wick probe`: checks which tool-call parser matches a model, before and while serving.
//!
//! Before serving (`probe::run`, called by `wick probe`): render a fixed set of tool prompts
//! (`cases`) through the model's chat template, generate greedily, run every parser on every
//! output, score each (prompt, parser) cell against the declared tools' JSON schemas
//! (`score`, `schema`) and recommend a parser (`report` prints it). While serving
//! (`live::mismatch`): tell when the active parser found no call in text another parser reads.
//! Depends on template, tokenizer, model and the parsers crate; must not depend on the server
//! or the engine's worker internals.

pub mod cases;
pub mod live;
pub mod parsing;
pub mod report;
pub mod run;
pub mod schema;
pub mod score;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error("unknown tool parser '{name}' (known: {known})")]
    UnknownParser { name: String, known: String },
    #[error(
        "parser '{parser}' is not the best match for this model: it reads {correct} of {expected} \
         expected calls ({false_calls} false); '{best}' reads {best_correct} ({best_false} false). \
         Use --tool-parser {best}"
    )]
    NotBestMatch {
        parser: String,
        correct: usize,
        false_calls: usize,
        best: String,
        best_correct: usize,
        best_false: usize,
        expected: usize,
    },
    #[error(transparent)]
    Parsers(#[from] wick_parsers::Error),
    #[error("no tool-call parser reads a correct call from this model's output (see the raw outputs above)")]
    NoParserReadsCalls,
}
