//! One assistant turn: the stages before the engine (`prepare`, shared with Chat
//! Completions) and, for the dialect adapters (Anthropic Messages, OpenAI Responses), the
//! output side. An adapter translates its request into an OpenAI chat-completions body;
//! `Turn::start` runs exactly the chat path's stages on it (validate → forced call opening
//! and decoding constraint for `tool_choice` → template → tokenize) and hands back the
//! engine request. The generation then runs in `server::respond`'s loop, like every other
//! endpoint's; the adapter's `Shape` feeds the output to the `Turn` (stop sequences →
//! tool-call parser → content blocks) and only translates the blocks into its wire shape.
//!
//! Stop sequences are matched here rather than in the engine, because Anthropic reports
//! *which* sequence ended the turn: the engine only says "stop". A match ends the answer
//! (`Shape::ended`): the loop stops the generation within one token.

use super::blocking;
use crate::engine::stop::StopStrings;
use crate::engine::{FinishReason, GenerationRequest};
use crate::server::assemble::{Assembler, Delta};
use crate::server::blocks::{BlockEvent, BlockList, Blocks};
use crate::server::extract::from_value;
use crate::server::reasoning;
use crate::server::respond::{self, Finished};
use crate::server::state::AppState;
use crate::server::tool_choice::forcing;
use crate::server::validate::{self, budget, ChatPlan, ToolMode};
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

/// A chat request made ready to run: its plan, the engine request, and the tool-call
/// parser with the forced call markup around the output.
pub struct Prepared {
    pub plan: ChatPlan,
    pub request: GenerationRequest,
    pub assembler: Assembler,
    /// Fed to the parser before the output: the forced call opening, or the `<think>`
    /// the template opened.
    pub prefix: String,
    /// Fed after a forced call the constraint completed.
    pub close: &'static str,
}

/// The chat path's stages before the engine, for every dialect: validate → admission →
/// forced call opening and decoding constraint for `tool_choice` → template → tokenize →
/// token budget. `cap_max_tokens`: the request's max tokens is a cap (Anthropic, Responses)
/// cut to what the context has left, rather than an error when it does not fit.
pub async fn prepare(
    state: &AppState,
    body: Value,
    prompt_param: &'static str,
    cap_max_tokens: bool,
) -> Result<Prepared, Error> {
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
    // One render: the ids (message content as text), and the text whose end says whether
    // the template opened a `<think>` block.
    let (prompt_ids, rendered) = blocking(move || b.prepare_chat(&body, &forced_prefix)).await?;
    // Reasoning (`<think>`) is split from content; a forced call replaces the answer,
    // otherwise an opened `<think>` starts it.
    let (parser, think) =
        reasoning::parser_for(&backend, &plan, state.config().reasoning_format, &rendered);
    let prefix = if prefix.is_empty() {
        think.to_owned()
    } else {
        prefix
    };
    let prompt_tokens = prompt_ids.len();
    let room = backend.ctx_size().saturating_sub(prompt_tokens).max(1);
    let asked = match plan.common.max_tokens {
        Some(n) if cap_max_tokens => Some(n.min(room)),
        other => other,
    };
    let max_tokens = budget(
        asked,
        state.config().default_max_tokens,
        prompt_tokens,
        backend.ctx_size(),
        prompt_param,
    )?;
    let request = GenerationRequest {
        prompt_ids,
        sampling: plan.common.sampling.clone(),
        max_tokens,
        stop_strings: plan.common.stop.clone(),
        stop_ids: Vec::new(),
        logprobs: plan.common.logprobs,
        constraint,
    };
    let assembler = Assembler::new(parser, plan.max_calls);
    Ok(Prepared {
        plan,
        request,
        assembler,
        prefix,
        close,
    })
}

/// The output side of one turn: the model's text in, content blocks out. Call `begin`
/// once, `push` per token's text (until `stopped`), then `finish`.
pub struct Turn {
    state: AppState,
    assembler: Assembler,
    /// Forced call markup: fed to the parser before the output / after a completed one.
    prefix: String,
    close: &'static str,
    stops: Option<StopWatch>,
    /// The stop sequence that ended the answer, once one matched.
    stopped: Option<String>,
    prompt_tokens: usize,
    deltas: Vec<Delta>,
    blocks: Blocks,
    /// The block events of the last call (sent as they come when streaming).
    pub events: Vec<BlockEvent>,
    /// Every block so far, with its whole text.
    pub list: BlockList,
}

impl Turn {
    /// Validates and renders an OpenAI chat body; `stop` are the stop sequences.
    /// `prompt_param` is the request field that holds the prompt (named by context errors).
    /// Returns the turn and the engine request to run for it.
    pub async fn start(
        state: &AppState,
        body: Value,
        stop: Vec<String>,
        prompt_param: &'static str,
    ) -> Result<(Turn, GenerationRequest), Error> {
        // Anthropic's `max_tokens` and Responses' `max_output_tokens` are caps, and agents
        // send large ones (Claude Code: 32000): the answer may use what the context has
        // left, and ends with `max_tokens` / `incomplete` when that runs out.
        let p = prepare(state, body, prompt_param, true).await?;
        let prompt_tokens = p.request.prompt_ids.len();
        let turn = Turn {
            state: state.clone(),
            assembler: p.assembler,
            prefix: p.prefix,
            close: p.close,
            stops: (!stop.is_empty()).then(|| StopWatch::new(stop)),
            stopped: None,
            prompt_tokens,
            deltas: Vec::new(),
            // With a tool parser active, text is trimmed (the chat path's contract).
            blocks: Blocks::new(p.plan.tool_mode != ToolMode::Off),
            events: Vec::new(),
            list: BlockList::default(),
        };
        Ok((turn, p.request))
    }

    /// Tokens in the rendered prompt (forced call opening included).
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// Feeds the forced call opening, if any, to the parser.
    pub fn begin(&mut self) {
        self.events.clear();
        if !self.prefix.is_empty() {
            let prefix = std::mem::take(&mut self.prefix);
            self.assembler.push(&prefix, &mut self.deltas);
        }
        self.fold(false);
    }

    /// One token's text. Once a stop sequence matched, the rest is ignored.
    pub fn push(&mut self, text: &str) {
        self.events.clear();
        if self.stopped.is_none() {
            self.stopped = self.feed(text);
        }
        self.fold(false);
    }

    /// True once a stop sequence ended the answer.
    pub fn stopped(&self) -> bool {
        self.stopped.is_some()
    }

    /// The generation ended: the output the engine held back, the forced call's closing
    /// markup, the last block events, and how the turn ended.
    pub fn finish(&mut self, done: &Finished) -> TurnEnd {
        self.events.clear();
        if self.stopped.is_none() {
            self.stopped = self.feed(&done.tail);
        }
        let reason = if let Some(s) = self.stopped.clone() {
            EndReason::StopSequence(s)
        } else {
            if let Some(w) = &mut self.stops {
                let mut rest = String::new();
                w.inner.flush(&mut rest);
                self.assembler.push(&rest, &mut self.deltas);
            }
            match done.reason {
                FinishReason::Length => EndReason::Length,
                FinishReason::Stop | FinishReason::Cancelled => {
                    // The constraint completed the forced call: add its closing markup.
                    if !self.close.is_empty() {
                        self.assembler.push(self.close, &mut self.deltas);
                    }
                    EndReason::Stop
                }
            }
        };
        self.assembler.finish(&mut self.deltas);
        self.state
            .metrics()
            .record_tool_calls(self.assembler.calls(), self.assembler.rejected());
        self.fold(true);
        TurnEnd {
            reason,
            prompt_tokens: done.usage.prompt_tokens,
            completion_tokens: done.usage.completion_tokens,
            cached_tokens: done.usage.cached_tokens,
            calls: self.assembler.calls(),
        }
    }

    /// Passes text through the stop sequences to the parser; `Some` when one matched.
    fn feed(&mut self, text: &str) -> Option<String> {
        let Some(w) = &mut self.stops else {
            self.assembler.push(text, &mut self.deltas);
            return None;
        };
        let mut safe = String::new();
        let matched = w.push(text, &mut safe);
        self.assembler.push(&safe, &mut self.deltas);
        matched
    }

    /// Moves new deltas through the block state machine into `events` and `list`.
    fn fold(&mut self, end: bool) {
        for d in self.deltas.drain(..) {
            self.blocks.push(d, &mut self.events);
        }
        if end {
            self.blocks.finish(&mut self.events);
        }
        for e in &self.events {
            self.list.apply(e.clone());
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
