//! One assistant turn for the dialect adapters (Anthropic Messages, OpenAI Responses).
//! An adapter translates its request into an OpenAI chat-completions body; the turn then
//! runs exactly the chat path's stages on it (validate → forced call opening and decoding
//! constraint for `tool_choice` → template → tokenize → submit → tool-call parser) and
//! hands back the assistant-message `Delta`s and how the turn ended. The adapter only
//! translates those back into its own wire shape.
//!
//! Stop sequences are matched here rather than in the engine, because Anthropic reports
//! *which* sequence ended the turn: the engine only says "stop". A match closes the event
//! channel, which cancels the generation within one token.

use super::blocking;
use crate::engine::stop::StopStrings;
use crate::engine::{EngineError, Event, FinishReason, GenerationRequest};
use crate::server::assemble::{Assembler, Delta};
use crate::server::extract::from_value;
use crate::server::reasoning;
use crate::server::respond;
use crate::server::respond::Finished;
use crate::server::state::AppState;
use crate::server::tool_choice::forcing;
use crate::server::validate::{self, budget, ChatPlan};
use crate::Error;
use serde_json::Value;

/// How a turn ended, in terms every dialect can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The model ended its answer (end-of-generation token or a completed forced call).
    Stop,
    /// The token budget or the context ran out.
    Length,
    /// One of the request's stop sequences; the sequence itself is not in the output.
    StopSequence(String),
}

#[derive(Debug, Clone)]
pub struct TurnEnd {
    pub reason: EndReason,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// Prompt tokens whose KV was reused from an earlier request.
    pub cached_tokens: usize,
    /// Tool calls in the answer.
    pub calls: usize,
}

/// A running turn: feed `begin` once, then call `next` until it returns the end.
pub struct Turn {
    state: AppState,
    pub plan: ChatPlan,
    assembler: Assembler,
    /// Forced call markup: fed to the parser before the output / after a completed one.
    prefix: String,
    close: &'static str,
    rx: crate::engine::EventReceiver,
    stops: Option<StopWatch>,
    prompt_tokens: usize,
    /// Tokens received so far (the usage when a stop sequence cancels the generation).
    tokens: usize,
}

impl Turn {
    /// Validates, renders and submits an OpenAI chat body; `stop` are the stop sequences.
    /// `prompt_param` is the request field that holds the prompt (named by context errors).
    pub async fn start(
        state: &AppState,
        body: Value,
        stop: Vec<String>,
        prompt_param: &'static str,
    ) -> Result<Turn, Error> {
        let backend = state.backend()?;
        let plan = validate::chat(
            &from_value(body.clone())?,
            &state.config().model_id,
            &state.config().default_sampling,
        )?;
        respond::admit(&backend, prompt_param)?;
        let forced = forcing(&plan.tool_mode, plan.json_object, backend.parser_name())?;
        let (prefix, close, constraint) = match forced {
            Some(f) => (f.prefix, f.close, Some(f.constraint)),
            None => (String::new(), "", None),
        };
        let b = backend.clone();
        let forced_prefix = prefix.clone();
        // One render: the ids (message content as text), and the text whose end says
        // whether the template opened a `<think>` block.
        let (prompt_ids, rendered) =
            blocking(move || b.prepare_chat(&body, &forced_prefix)).await?;
        let (parser, think) =
            reasoning::parser_for(&backend, &plan, state.config().reasoning_format, &rendered);
        // A forced call replaces the answer; otherwise an opened `<think>` starts it.
        let prefix = if prefix.is_empty() {
            think.to_owned()
        } else {
            prefix
        };
        let prompt_tokens = prompt_ids.len();
        // Anthropic's `max_tokens` and Responses' `max_output_tokens` are caps, and agents
        // send large ones (Claude Code: 32000): the answer may use what the context has
        // left, and ends with `max_tokens` / `incomplete` when that runs out.
        let room = backend.ctx_size().saturating_sub(prompt_tokens).max(1);
        let max_tokens = budget(
            plan.common.max_tokens.map(|n| n.min(room)),
            state.config().default_max_tokens,
            prompt_tokens,
            backend.ctx_size(),
            prompt_param,
        )?;
        let rx = backend
            .submit(GenerationRequest {
                prompt_ids,
                sampling: plan.common.sampling.clone(),
                max_tokens,
                stop_strings: plan.common.stop.clone(),
                stop_ids: Vec::new(),
                logprobs: None,
                constraint,
            })
            .map_err(|e| Error::engine(e, prompt_param))?;
        let assembler = Assembler::new(parser, plan.max_calls);
        Ok(Turn {
            state: state.clone(),
            plan,
            assembler,
            prefix,
            close,
            rx,
            stops: (!stop.is_empty()).then(|| StopWatch::new(stop)),
            prompt_tokens,
            tokens: 0,
        })
    }

    /// Tokens in the rendered prompt (forced call opening included).
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// Feeds the forced call opening, if any, to the parser.
    pub fn begin(&mut self, out: &mut Vec<Delta>) {
        if !self.prefix.is_empty() {
            let prefix = std::mem::take(&mut self.prefix);
            self.assembler.push(&prefix, out);
        }
    }

    /// Waits for the next engine event and appends the deltas it decides. `Ok(Some)` once
    /// the turn is over. Cancel-safe: only the channel receive is awaited.
    pub async fn next(&mut self, out: &mut Vec<Delta>) -> Result<Option<TurnEnd>, Error> {
        let Some(event) = self.rx.recv().await else {
            return Err(Error::from(EngineError::WorkerStopped));
        };
        match event {
            Event::Token { text, .. } => {
                self.tokens += 1;
                Ok(self.feed(&text, out).map(|s| self.end(s, None, out)))
            }
            Event::Failed(e) => Err(Error::engine(e, "messages")),
            Event::Done {
                finish_reason,
                usage,
                time_to_first_token,
                decode_tokens_per_second,
                text,
                ..
            } => {
                self.state.metrics().record_generation(
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    time_to_first_token,
                    decode_tokens_per_second,
                );
                let f = Finished {
                    reason: finish_reason,
                    usage,
                    tail: text,
                };
                if let Some(stop) = self.feed(&f.tail, out) {
                    return Ok(Some(self.end(stop, Some(f.usage), out)));
                }
                if let Some(w) = &mut self.stops {
                    let mut rest = String::new();
                    w.inner.flush(&mut rest);
                    self.assembler.push(&rest, out);
                }
                let reason = match f.reason {
                    FinishReason::Length => EndReason::Length,
                    FinishReason::Stop | FinishReason::Cancelled => {
                        // The constraint completed the forced call: add its closing markup.
                        if !self.close.is_empty() {
                            self.assembler.push(self.close, out);
                        }
                        EndReason::Stop
                    }
                };
                Ok(Some(self.end(reason, Some(f.usage), out)))
            }
        }
    }

    /// Passes text through the stop sequences to the parser; `Some` when one matched.
    fn feed(&mut self, text: &str, out: &mut Vec<Delta>) -> Option<EndReason> {
        let Some(w) = &mut self.stops else {
            self.assembler.push(text, out);
            return None;
        };
        let mut safe = String::new();
        let matched = w.push(text, &mut safe);
        self.assembler.push(&safe, out);
        matched.map(EndReason::StopSequence)
    }

    fn end(
        &mut self,
        reason: EndReason,
        usage: Option<crate::engine::Usage>,
        out: &mut Vec<Delta>,
    ) -> TurnEnd {
        if matches!(reason, EndReason::StopSequence(_)) {
            // Closing the channel cancels the generation; the slot keeps its KV for reuse.
            self.rx.close();
        }
        self.assembler.finish(out);
        self.state
            .metrics()
            .record_tool_calls(self.assembler.calls(), self.assembler.rejected());
        TurnEnd {
            reason,
            prompt_tokens: usage.map_or(self.prompt_tokens, |u| u.prompt_tokens),
            completion_tokens: usage.map_or(self.tokens, |u| u.completion_tokens),
            cached_tokens: usage.map_or(0, |u| u.cached_tokens),
            calls: self.assembler.calls(),
        }
    }
}

/// The engine's stop-string matcher, plus which string matched (it keeps the text it has
/// seen, so the match can be named).
struct StopWatch {
    inner: StopStrings,
    stops: Vec<String>,
    seen: String,
    emitted: usize,
}

impl StopWatch {
    fn new(stops: Vec<String>) -> Self {
        StopWatch {
            inner: StopStrings::new(stops.clone()),
            stops,
            seen: String::new(),
            emitted: 0,
        }
    }

    /// Appends the text that is safe to emit; returns the stop sequence once one matched.
    fn push(&mut self, text: &str, out: &mut String) -> Option<String> {
        self.seen.push_str(text);
        let before = out.len();
        let stopped = self.inner.push(text, out);
        self.emitted += out.len() - before;
        if !stopped {
            return None;
        }
        let rest = &self.seen[self.emitted..];
        self.stops
            .iter()
            .filter(|s| rest.starts_with(s.as_str()))
            .max_by_key(|s| s.len())
            .cloned()
            .or_else(|| self.stops.first().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_stop_sequence_that_matched() {
        let mut w = StopWatch::new(vec!["END".into(), "\n\nHuman:".into()]);
        let mut out = String::new();
        assert_eq!(w.push("hello \n", &mut out), None);
        assert_eq!(w.push("\nHum", &mut out), None);
        assert_eq!(w.push("an: x", &mut out).as_deref(), Some("\n\nHuman:"));
        assert_eq!(out, "hello ");
        let mut w = StopWatch::new(vec!["END".into()]);
        let mut out = String::new();
        assert_eq!(w.push("aEN", &mut out), None);
        assert_eq!(w.push("Dz", &mut out).as_deref(), Some("END"));
        assert_eq!(out, "a");
    }
}
