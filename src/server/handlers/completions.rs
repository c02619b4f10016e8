//! `POST /v1/completions`: raw text completion, or fill-in-the-middle when `suffix` is
//! given (built with the model's FIM tokens). The prompt is tokenized with special-token
//! text parsed, so raw FIM prompts as editors send them work. Output is never trimmed.
//! The event loop is `server::respond`'s; this file is the completions wire format.

use super::{api_usage, blocking, now, response_id};
use crate::api::{Completion, CompletionChoice, CompletionRequest};
use crate::engine::{FinishReason, GenerationRequest, TokenLogprob};
use crate::server::extract::Json;
use crate::server::logprobs::CompletionLogprobs;
use crate::server::respond::{self, Finished, Run, Shape};
use crate::server::sse;
use crate::server::state::AppState;
use crate::server::validate::{self, budget};
use crate::Error;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

/// The request field that holds the prompt, named by context errors.
const PROMPT_PARAM: &str = "prompt";

pub async fn completions(
    State(state): State<AppState>,
    Json(req): Json<CompletionRequest>,
) -> Result<Response, Error> {
    let backend = state.backend()?;
    let plan = validate::completion(
        &req,
        &state.config().model_id,
        &state.config().default_sampling,
    )?;
    respond::admit(&backend, PROMPT_PARAM)?;
    let (prompt, stop_ids) = match &plan.suffix {
        Some(suffix) => backend.fim_prompt(&plan.prompt, suffix).ok_or_else(|| {
            Error::invalid(
                "this model has no fill-in-the-middle tokens, so 'suffix' is not supported",
                Some("suffix"),
                "unsupported_parameter",
            )
        })?,
        None => (plan.prompt.clone(), Vec::new()),
    };
    let b = backend.clone();
    let prompt_ids = blocking(move || b.encode(&prompt)).await?;
    let max_tokens = budget(
        plan.common.max_tokens,
        None,
        prompt_ids.len(),
        backend.ctx_size(),
        PROMPT_PARAM,
    )?;
    let id = response_id("cmpl");
    let shape = CompletionShape {
        id: id.clone(),
        created: now(),
        model: state.config().model_id.clone(),
        include_usage: plan.common.include_usage,
        stream: plan.common.stream,
        text: String::new(),
        logprobs: plan.common.logprobs.map(|_| CompletionLogprobs::default()),
    };
    let run = Run {
        request: GenerationRequest {
            prompt_ids,
            sampling: plan.common.sampling.clone(),
            max_tokens,
            stop_strings: plan.common.stop.clone(),
            stop_ids,
            logprobs: plan.common.logprobs,
            constraint: None,
        },
        shape: Box::new(shape),
        stream: plan.common.stream,
        prompt_param: PROMPT_PARAM,
        id,
    };
    respond::respond(state, &backend, run).await
}

struct CompletionShape {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    stream: bool,
    /// Non-streaming: the text so far.
    text: String,
    /// With `logprobs`: all tokens' (whole) or those not yet sent (streaming).
    logprobs: Option<CompletionLogprobs>,
}

impl CompletionShape {
    fn completion(&self, text: String, finish: Option<&'static str>) -> Completion {
        Completion {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            choices: vec![CompletionChoice {
                index: 0,
                text,
                logprobs: None,
                finish_reason: finish,
            }],
            usage: None,
        }
    }

    /// The logprobs object for the tokens pushed since the last call.
    fn take_logprobs(&mut self) -> Option<serde_json::Value> {
        self.logprobs.as_mut().map(CompletionLogprobs::take)
    }

    /// A stream chunk (with the logprobs of its tokens): `usage: null` on every chunk
    /// when usage was asked for.
    fn chunk(&mut self, text: String, finish: Option<&'static str>) -> Bytes {
        let mut chunk = self.completion(text, finish);
        chunk.choices[0].logprobs = self.take_logprobs();
        chunk.usage = self.include_usage.then_some(None);
        sse::frame(&chunk)
    }
}

fn reason(f: &Finished) -> &'static str {
    match f.reason {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

impl Shape for CompletionShape {
    fn open(&mut self, _out: &mut Vec<Bytes>) {}

    fn logprobs(&mut self, tokens: Vec<TokenLogprob>) {
        if let Some(l) = &mut self.logprobs {
            tokens.iter().for_each(|t| l.push(t));
        }
    }

    fn text(&mut self, text: &str, out: &mut Vec<Bytes>) {
        // Tokens without text (held back) keep their logprobs for the next chunk.
        if text.is_empty() {
            return;
        }
        if self.stream {
            out.push(self.chunk(text.to_owned(), None));
        } else {
            self.text.push_str(text);
        }
    }

    fn finish(&mut self, done: &Finished, out: &mut Vec<Bytes>) {
        if !self.stream {
            self.text.push_str(&done.tail);
            return;
        }
        out.push(self.chunk(done.tail.clone(), Some(reason(done))));
        if self.include_usage {
            let mut usage = self.completion(String::new(), None);
            usage.choices.clear();
            usage.usage = Some(Some(api_usage(done.usage)));
            out.push(sse::frame(&usage));
        }
    }

    fn body(self: Box<Self>, done: &Finished) -> Response {
        let mut this = *self;
        let text = std::mem::take(&mut this.text);
        let mut body = this.completion(text, Some(reason(done)));
        body.choices[0].logprobs = this.take_logprobs();
        body.usage = Some(Some(api_usage(done.usage)));
        axum::Json(body).into_response()
    }
}
