//! Request validation: OpenAI request types → plans the handlers execute. Every field is
//! either honoured or refused with a 400 naming it; nothing is silently dropped.
//! Input: `api::ChatRequest` / `api::CompletionRequest`. Output: `ChatPlan` /
//! `CompletionPlan` (sampling, limits, stop rules, tool mode). No I/O, no model access.

use crate::api::{ChatRequest, CompletionRequest, Prompt, Stop, StreamOptions, Tool, ToolChoice};
use crate::engine::{EngineError, SamplingParams, MAX_TOP_LOGPROBS};
use crate::Error;
use serde_json::{Map, Value};

mod messages;
mod tools;

pub use messages::{messages, MAX_MESSAGES};
pub use tools::{tools, MAX_SCHEMA_DEPTH, MAX_TOOLS, MAX_TOOLS_BYTES};

/// Fields clients send that change nothing about generation here; accepted and ignored.
const HARMLESS_FIELDS: &[&str] = &["metadata", "store", "service_tier", "prompt_cache_key"];
/// At most this many stop strings, each at most `MAX_STOP_BYTES` long: the engine checks
/// the end of the output against every one of them after each token.
pub const MAX_STOP_STRINGS: usize = 16;
pub const MAX_STOP_BYTES: usize = 256;

/// What the model may do with the declared tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolMode {
    /// No tools, or `tool_choice: "none"`: output is plain content.
    Off,
    /// The model decides; calls are parsed from its output.
    Auto,
    /// The answer must be a call to one of these functions (`required`, or one name).
    Forced(Vec<String>),
}

/// Settings shared by chat and text completions.
#[derive(Debug, Clone)]
pub struct Common {
    pub stream: bool,
    pub include_usage: bool,
    pub sampling: SamplingParams,
    /// `None`: as many as the context allows (or the server default).
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    /// `Some(k)`: return each token's logprob and its `k` most likely alternatives.
    pub logprobs: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ChatPlan {
    pub common: Common,
    pub tools: Vec<Tool>,
    pub tool_mode: ToolMode,
    /// `parallel_tool_calls: false` → at most one call.
    pub max_calls: Option<usize>,
    pub json_object: bool,
}

#[derive(Debug, Clone)]
pub struct CompletionPlan {
    pub common: Common,
    pub prompt: String,
    pub suffix: Option<String>,
}

fn unsupported(param: &str, message: impl Into<String>) -> Error {
    Error::invalid(message, Some(param), "unsupported_parameter")
}

fn invalid_value(param: &str, message: impl Into<String>) -> Error {
    Error::invalid(message, Some(param), "invalid_value")
}

/// The requested model must be the one served. `model` is required, as OpenAI requires it.
pub fn check_model(model: Option<&str>, served: &str) -> Result<(), Error> {
    match model {
        None => Err(Error::invalid(
            "missing required parameter 'model'",
            Some("model"),
            "missing_required_parameter",
        )),
        Some(m) if m != served => Err(Error::ModelNotFound(m.to_owned())),
        Some(_) => Ok(()),
    }
}

/// Refuses the first field of `obj` that is not in `allowed`, naming it under `prefix`
/// (`messages[0].foo`): nothing a client sends is silently dropped, at any depth.
pub(crate) fn reject_unknown(
    prefix: &str,
    obj: &Map<String, Value>,
    allowed: &[&str],
) -> Result<(), Error> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => {
            let param = format!("{prefix}.{k}");
            Err(unsupported(
                &param,
                format!("parameter '{param}' is not supported by this server"),
            ))
        }
        None => Ok(()),
    }
}

fn reject_extra(extra: &Map<String, Value>) -> Result<(), Error> {
    match extra
        .keys()
        .find(|k| !HARMLESS_FIELDS.contains(&k.as_str()))
    {
        Some(k) => Err(unsupported(
            k,
            format!("parameter '{k}' is not supported by this server"),
        )),
        None => Ok(()),
    }
}

fn check_n(n: Option<i64>) -> Result<(), Error> {
    match n {
        None | Some(1) => Ok(()),
        Some(n) if n < 1 => Err(invalid_value("n", format!("n must be at least 1, got {n}"))),
        Some(_) => Err(unsupported(
            "n",
            "n > 1 is not supported: send one request per choice",
        )),
    }
}

fn check_logit_bias(bias: Option<&Map<String, Value>>) -> Result<(), Error> {
    match bias {
        Some(b) if !b.is_empty() => Err(unsupported("logit_bias", "logit_bias is not supported")),
        _ => Ok(()),
    }
}

fn range(param: &str, v: Option<f64>, lo: f64, hi: f64) -> Result<Option<f32>, Error> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) => Err(invalid_value(
            param,
            format!("{param} must be between {lo} and {hi}, got {x}"),
        )),
        Some(x) => Ok(Some(x as f32)),
        None => Ok(None),
    }
}

/// Sampling fields shared by both endpoints, checked against their OpenAI ranges.
#[derive(Debug, Clone, Copy, Default)]
pub struct SamplingFields {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub seed: Option<i64>,
}

/// The request's sampling fields over `base` (the model's defaults from models.toml, else
/// OpenAI's: temperature 1).
pub fn sampling(f: SamplingFields, base: &SamplingParams) -> Result<SamplingParams, Error> {
    let mut s = base.clone();
    if let Some(t) = range("temperature", f.temperature, 0.0, 2.0)? {
        s.temperature = t;
    }
    if let Some(p) = range("top_p", f.top_p, 0.0, 1.0)? {
        if p == 0.0 {
            return Err(invalid_value("top_p", "top_p must be greater than 0"));
        }
        s.top_p = p;
    }
    match f.top_k {
        Some(k) if k < 0 => return Err(invalid_value("top_k", "top_k must be 0 (off) or more")),
        Some(0) | None => {}
        Some(k) => s.top_k = Some(k as usize),
    }
    if let Some(p) = range("min_p", f.min_p, 0.0, 1.0)? {
        s.min_p = p;
    }
    if let Some(r) = range("repetition_penalty", f.repetition_penalty, 0.0, 10.0)? {
        if r == 0.0 {
            return Err(invalid_value(
                "repetition_penalty",
                "repetition_penalty must be > 0",
            ));
        }
        s.repetition_penalty = r;
    }
    if let Some(p) = range("presence_penalty", f.presence_penalty, -2.0, 2.0)? {
        s.presence_penalty = p;
    }
    if let Some(p) = range("frequency_penalty", f.frequency_penalty, -2.0, 2.0)? {
        s.frequency_penalty = p;
    }
    // Any 64-bit pattern is a valid seed; negative seeds are reinterpreted, not refused.
    s.seed = f.seed.map(|x| x as u64);
    Ok(s)
}

fn max_tokens(param: &str, v: Option<i64>) -> Result<Option<usize>, Error> {
    match v {
        Some(n) if n < 1 => Err(Error::invalid(
            format!("{param} must be at least 1, got {n}"),
            Some(param),
            "invalid_value",
        )),
        // Huge values are kept: the context check turns them into context_length_exceeded.
        Some(n) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        None => Ok(None),
    }
}

fn stop_strings(stop: Option<&Stop>) -> Result<Vec<String>, Error> {
    let list = match stop {
        None => return Ok(Vec::new()),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    if list.len() > MAX_STOP_STRINGS {
        return Err(invalid_value(
            "stop",
            format!("at most {MAX_STOP_STRINGS} stop strings are supported"),
        ));
    }
    if list.iter().any(String::is_empty) {
        return Err(invalid_value("stop", "stop strings must not be empty"));
    }
    if list.iter().any(|s| s.len() > MAX_STOP_BYTES) {
        return Err(invalid_value(
            "stop",
            format!("stop strings are limited to {MAX_STOP_BYTES} bytes each"),
        ));
    }
    Ok(list)
}

fn stream_flags(
    stream: Option<bool>,
    options: Option<&StreamOptions>,
) -> Result<(bool, bool), Error> {
    let stream = stream.unwrap_or(false);
    let Some(o) = options else {
        return Ok((stream, false));
    };
    if !stream {
        return Err(invalid_value(
            "stream_options",
            "stream_options is only allowed when stream is true",
        ));
    }
    if let Some(k) = o.extra.keys().next() {
        return Err(unsupported(
            &format!("stream_options.{k}"),
            format!("stream_options.{k} is not supported"),
        ));
    }
    Ok((stream, o.include_usage.unwrap_or(false)))
}

fn tool_mode(choice: Option<&ToolChoice>, tools: &[Tool]) -> Result<ToolMode, Error> {
    let names = || {
        tools
            .iter()
            .map(|t| t.function.name.clone())
            .collect::<Vec<_>>()
    };
    let need_tools = |what: &str| {
        if tools.is_empty() {
            Err(invalid_value(
                "tool_choice",
                format!("tool_choice '{what}' needs a non-empty 'tools' list"),
            ))
        } else {
            Ok(())
        }
    };
    match choice {
        None => Ok(if tools.is_empty() { ToolMode::Off } else { ToolMode::Auto }),
        Some(ToolChoice::Mode(m)) => match m.as_str() {
            "none" => Ok(ToolMode::Off),
            "auto" => Ok(if tools.is_empty() { ToolMode::Off } else { ToolMode::Auto }),
            "required" => need_tools("required").map(|_| ToolMode::Forced(names())),
            other => Err(invalid_value(
                "tool_choice",
                format!("tool_choice must be 'none', 'auto', 'required' or a named function, got '{other}'"),
            )),
        },
        Some(ToolChoice::Named(n)) => {
            reject_unknown("tool_choice", &n.extra, &["type", "function"])?;
            reject_unknown("tool_choice.function", &n.function.extra, &["name"])?;
            if n.kind != "function" {
                return Err(unsupported("tool_choice.type", "only tool_choice type 'function' is supported"));
            }
            let name = &n.function.name;
            if !tools.iter().any(|t| &t.function.name == name) {
                return Err(invalid_value(
                    "tool_choice.function.name",
                    format!("tool_choice names '{name}', which is not in 'tools'"),
                ));
            }
            Ok(ToolMode::Forced(vec![name.clone()]))
        }
    }
}

fn json_object_format(format: Option<&Value>) -> Result<bool, Error> {
    let Some(f) = format.filter(|v| !v.is_null()) else {
        return Ok(false);
    };
    let obj = f.as_object().ok_or_else(|| {
        Error::invalid(
            "response_format must be an object",
            Some("response_format"),
            "invalid_type",
        )
    })?;
    let kind = obj.get("type").and_then(Value::as_str);
    if matches!(kind, Some("text" | "json_object")) {
        reject_unknown("response_format", obj, &["type"])?;
    }
    match kind {
        Some("text") => Ok(false),
        Some("json_object") => Ok(true),
        Some(other) => Err(unsupported(
            "response_format.type",
            format!(
                "response_format type '{other}' is not supported (use 'text' or 'json_object')"
            ),
        )),
        None => Err(invalid_value(
            "response_format",
            "response_format needs a 'type'",
        )),
    }
}

/// OpenAI's defaults, for a model without its own: temperature 1, no truncation.
pub fn openai_sampling() -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        ..SamplingParams::default()
    }
}

pub fn chat(
    req: &ChatRequest,
    served_model: &str,
    base: &SamplingParams,
) -> Result<ChatPlan, Error> {
    check_model(req.model.as_deref(), served_model)?;
    reject_extra(&req.extra)?;
    check_n(req.n)?;
    check_logit_bias(req.logit_bias.as_ref())?;
    let logprobs = chat_logprobs(req.logprobs, req.top_logprobs)?;
    messages(&req.messages)?;
    let tool_list = req.tools.clone().unwrap_or_default();
    tools(&tool_list)?;
    let tool_mode = tool_mode(req.tool_choice.as_ref(), &tool_list)?;
    let json_object = json_object_format(req.response_format.as_ref())?;
    if json_object && tool_mode != ToolMode::Off {
        return Err(invalid_value(
            "response_format",
            "response_format json_object cannot be combined with tools (set tool_choice to 'none')",
        ));
    }
    let (stream, include_usage) = stream_flags(req.stream, req.stream_options.as_ref())?;
    // max_completion_tokens is the newer name; it wins when both are given.
    let limit = match req.max_completion_tokens {
        Some(_) => max_tokens("max_completion_tokens", req.max_completion_tokens)?,
        None => max_tokens("max_tokens", req.max_tokens)?,
    };
    let sampling = sampling(
        SamplingFields {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            min_p: req.min_p,
            repetition_penalty: req.repetition_penalty,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            seed: req.seed,
        },
        base,
    )?;
    let max_calls = match (req.parallel_tool_calls, &tool_mode) {
        (_, ToolMode::Forced(_)) | (Some(false), _) => Some(1),
        _ => None,
    };
    Ok(ChatPlan {
        common: Common {
            stream,
            include_usage,
            sampling,
            max_tokens: limit,
            stop: stop_strings(req.stop.as_ref())?,
            logprobs,
        },
        tools: tool_list,
        tool_mode,
        max_calls,
        json_object,
    })
}

/// A count of alternatives per token: 0..=20 (OpenAI's chat limit; its legacy completions
/// stop at 5, llama-server and vLLM accept 20 there too, and so does wick).
fn top_count(param: &str, n: i64) -> Result<usize, Error> {
    match usize::try_from(n) {
        Ok(k) if k <= MAX_TOP_LOGPROBS => Ok(k),
        _ => Err(invalid_value(
            param,
            format!("{param} must be between 0 and {MAX_TOP_LOGPROBS}, got {n}"),
        )),
    }
}

/// Chat's `logprobs: true` (with `top_logprobs` alternatives, 0 by default); as OpenAI,
/// `top_logprobs` without `logprobs: true` is an error rather than ignored.
fn chat_logprobs(logprobs: Option<bool>, top: Option<i64>) -> Result<Option<usize>, Error> {
    match (logprobs, top) {
        (Some(true), top) => Ok(Some(top_count("top_logprobs", top.unwrap_or(0))?)),
        (_, None) => Ok(None),
        (_, Some(_)) => Err(invalid_value(
            "top_logprobs",
            "top_logprobs requires logprobs to be true",
        )),
    }
}

fn prompt_text(prompt: &Prompt) -> Result<String, Error> {
    match prompt {
        Prompt::Text(s) => Ok(s.clone()),
        Prompt::Texts(v) if v.len() == 1 => Ok(v[0].clone()),
        Prompt::Texts(_) => Err(unsupported(
            "prompt",
            "a list of several prompts is not supported: send one request per prompt",
        )),
        Prompt::Tokens(_) | Prompt::TokenLists(_) => Err(unsupported(
            "prompt",
            "token-id prompts are not supported: send text",
        )),
    }
}

pub fn completion(
    req: &CompletionRequest,
    served_model: &str,
    base: &SamplingParams,
) -> Result<CompletionPlan, Error> {
    check_model(req.model.as_deref(), served_model)?;
    reject_extra(&req.extra)?;
    check_n(req.n)?;
    check_logit_bias(req.logit_bias.as_ref())?;
    if req.echo == Some(true) {
        return Err(unsupported("echo", "echo is not supported"));
    }
    match req.best_of {
        None | Some(1) => {}
        Some(_) => return Err(unsupported("best_of", "best_of > 1 is not supported")),
    }
    let logprobs = match req.logprobs {
        None => None,
        Some(n) => Some(top_count("logprobs", n)?),
    };
    let prompt = prompt_text(&req.prompt)?;
    // Nothing to continue from: an empty prompt, or an empty FIM prefix with an empty
    // suffix (the FIM markup alone is not a prompt).
    if prompt.is_empty() && req.suffix.as_deref().is_none_or(str::is_empty) {
        return Err(invalid_value("prompt", "the prompt is empty"));
    }
    let (stream, include_usage) = stream_flags(req.stream, req.stream_options.as_ref())?;
    let sampling = sampling(
        SamplingFields {
            temperature: req.temperature,
            top_p: req.top_p,
            top_k: req.top_k,
            min_p: req.min_p,
            repetition_penalty: req.repetition_penalty,
            presence_penalty: req.presence_penalty,
            frequency_penalty: req.frequency_penalty,
            seed: req.seed,
        },
        base,
    )?;
    Ok(CompletionPlan {
        common: Common {
            stream,
            include_usage,
            sampling,
            // OpenAI's legacy completions default to 16 tokens; clients always send it.
            max_tokens: Some(max_tokens("max_tokens", req.max_tokens)?.unwrap_or(16)),
            stop: stop_strings(req.stop.as_ref())?,
            logprobs,
        },
        prompt,
        suffix: req.suffix.clone(),
    })
}

/// The completion budget: the request's `max_tokens`, else the server default, else the
/// rest of the context. Prompt plus budget over the context is `context_length_exceeded`,
/// naming `prompt_param` (the field that holds the prompt).
pub fn budget(
    requested: Option<usize>,
    default: Option<usize>,
    prompt_tokens: usize,
    ctx: usize,
    prompt_param: &'static str,
) -> Result<usize, Error> {
    let exceeded = |max_tokens| {
        Error::engine(
            EngineError::ContextLengthExceeded {
                prompt_tokens,
                max_tokens,
                ctx,
            },
            prompt_param,
        )
    };
    if prompt_tokens >= ctx {
        return Err(exceeded(requested.unwrap_or(1)));
    }
    let room = ctx - prompt_tokens;
    match requested {
        Some(n) if n > room => Err(exceeded(n)),
        Some(n) => Ok(n),
        None => Ok(default.map_or(room, |d| d.min(room))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::extract::parse_body;
    use serde_json::json;

    /// The served model `m` unless the body names one.
    fn with_model(mut body: Value) -> Value {
        if body.get("model").is_none() {
            body["model"] = json!("m");
        }
        body
    }

    fn chat_err(body: Value) -> (Option<String>, String) {
        let body = with_model(body);
        let req: ChatRequest = match parse_body(body.to_string().as_bytes()) {
            Ok(r) => r,
            Err(e) => panic!("did not parse: {e}"),
        };
        match chat(&req, "m", &openai_sampling()) {
            Ok(_) => panic!("accepted {body}"),
            Err(e) => {
                let s = e.shape();
                (s.param, s.code.unwrap_or_default())
            }
        }
    }

    fn chat_ok(body: Value) -> ChatPlan {
        let req: ChatRequest = parse_body(with_model(body).to_string().as_bytes()).unwrap();
        chat(&req, "m", &openai_sampling()).unwrap()
    }

    fn user() -> Value {
        json!([{"role": "user", "content": "hi"}])
    }

    fn tool(name: &str) -> Value {
        json!({"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}})
    }

    fn many_tools(n: usize) -> Value {
        Value::Array((0..n).map(|i| tool(&format!("t{i}"))).collect())
    }

    /// An object schema nesting at least `depth` levels.
    fn nested(depth: usize) -> Value {
        let mut v = json!({"type": "string"});
        for _ in 1..depth {
            v = json!({"type": "object", "properties": {"p": v}});
        }
        v
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                json!({"messages": user(), "n": 2}),
                "n",
                "unsupported_parameter",
            ),
            (json!({"messages": user(), "n": 0}), "n", "invalid_value"),
            (
                json!({"messages": user(), "top_logprobs": 2}),
                "top_logprobs",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "logprobs": false, "top_logprobs": 2}),
                "top_logprobs",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "logprobs": true, "top_logprobs": 21}),
                "top_logprobs",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "logprobs": true, "top_logprobs": -1}),
                "top_logprobs",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "logit_bias": {"1": 5}}),
                "logit_bias",
                "unsupported_parameter",
            ),
            (
                json!({"messages": user(), "frobnicate": 1}),
                "frobnicate",
                "unsupported_parameter",
            ),
            (
                json!({"messages": user(), "response_format": {"type": "json_schema"}}),
                "response_format.type",
                "unsupported_parameter",
            ),
            (
                json!({"messages": user(), "max_tokens": -5}),
                "max_tokens",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "max_completion_tokens": 0}),
                "max_completion_tokens",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "temperature": 3.0}),
                "temperature",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "top_p": 0.0}),
                "top_p",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "presence_penalty": -2.5}),
                "presence_penalty",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "stop": ["a", ""]}),
                "stop",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "stream_options": {"include_usage": true}}),
                "stream_options",
                "invalid_value",
            ),
            (json!({"messages": []}), "messages", "invalid_value"),
            (json!({"messages": ["hi"]}), "messages[0]", "invalid_type"),
            (
                json!({"messages": [{"content": "hi"}]}),
                "messages[0].role",
                "missing_required_parameter",
            ),
            (
                json!({"messages": [{"role": "wizard", "content": "hi"}]}),
                "messages[0].role",
                "invalid_value",
            ),
            (
                json!({"messages": [{"role": "user", "content": 5}]}),
                "messages[0].content",
                "invalid_type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
                "messages[0].content[0]",
                "unsupported_parameter",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}]}),
                "messages[0].tool_calls",
                "invalid_type",
            ),
            (
                json!({"messages": user(), "tools": [{"type": "function", "function": {"name": ""}}]}),
                "tools[0].function.name",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "tools": [{"type": "retrieval", "function": {"name": "a"}}]}),
                "tools[0].type",
                "unsupported_parameter",
            ),
            (
                json!({"messages": user(), "tools": [tool("a"), tool("a")]}),
                "tools[1].function.name",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "tools": [{"type": "function", "function": {"name": "a", "parameters": "x"}}]}),
                "tools[0].function.parameters",
                "invalid_function_parameters",
            ),
            (
                json!({"messages": user(), "tools": [{"type": "function", "function": {"name": "a", "parameters": {"type": "array"}}}]}),
                "tools[0].function.parameters",
                "invalid_function_parameters",
            ),
            (
                json!({"messages": user(), "tools": [{"type": "function", "function": {"name": "a", "parameters": {"type": "object", "required": "x"}}}]}),
                "tools[0].function.parameters",
                "invalid_function_parameters",
            ),
            (
                json!({"messages": user(), "tool_choice": "required"}),
                "tool_choice",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "tools": [tool("a")], "tool_choice": "sometimes"}),
                "tool_choice",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "tools": [tool("a")], "tool_choice": {"type": "function", "function": {"name": "b"}}}),
                "tool_choice.function.name",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "tools": [tool("a")], "response_format": {"type": "json_object"}}),
                "response_format",
                "invalid_value",
            ),
            // Found by the red-team pass (issue 15): each was accepted before.
            (
                json!({"model": null, "messages": user()}),
                "model",
                "missing_required_parameter",
            ),
            (
                json!({"messages": user(), "stop": "x".repeat(100_000)}),
                "stop",
                "invalid_value",
            ),
            (
                json!({"messages": [{"role": "user", "content": "hi", "colour": "red"}]}),
                "messages[0].colour",
                "unsupported_parameter",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache": 1}]}]}),
                "messages[0].content[0].cache",
                "unsupported_parameter",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "a", "arguments": "{}", "x": 1}}]}]}),
                "messages[0].tool_calls[0].function.x",
                "unsupported_parameter",
            ),
            (
                json!({"messages": [{"role": "user"}]}),
                "messages[0].content",
                "missing_required_parameter",
            ),
            (
                json!({"messages": [{"role": "user", "content": null}]}),
                "messages[0].content",
                "missing_required_parameter",
            ),
            (
                json!({"messages": [{"role": "assistant"}]}),
                "messages[0].content",
                "missing_required_parameter",
            ),
            (
                json!({"messages": user(), "tools": [{"type": "function", "function": {"name": "a"}, "x": 1}]}),
                "tools[0].x",
                "unsupported_parameter",
            ),
            (
                json!({"messages": user(), "tools": [{"type": "function", "function": {"name": "a", "examples": []}}]}),
                "tools[0].function.examples",
                "unsupported_parameter",
            ),
            (
                json!({"messages": user(), "response_format": {"type": "json_object", "schema": {}}}),
                "response_format.schema",
                "unsupported_parameter",
            ),
            (
                json!({"messages": user(), "tools": [tool("a")], "tool_choice": {"type": "function", "function": {"name": "a", "x": 1}}}),
                "tool_choice.function.x",
                "unsupported_parameter",
            ),
            (
                json!({"messages": user(), "stop": vec!["a"; 17]}),
                "stop",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "tools": many_tools(MAX_TOOLS + 1)}),
                "tools",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "tools": [{"type": "function", "function": {"name": "a", "description": "d".repeat(MAX_TOOLS_BYTES + 1)}}]}),
                "tools",
                "invalid_value",
            ),
            (
                json!({"messages": user(), "tools": [{"type": "function", "function": {"name": "a", "parameters": nested(MAX_SCHEMA_DEPTH + 1)}}]}),
                "tools[0].function.parameters",
                "invalid_function_parameters",
            ),
            (
                json!({"messages": vec![json!({"role": "user", "content": "hi"}); MAX_MESSAGES + 1]}),
                "messages",
                "invalid_value",
            ),
        ];
        for (body, param, code) in cases {
            let (p, c) = chat_err(body.clone());
            assert_eq!((p.as_deref(), c.as_str()), (Some(param), code), "{body}");
        }
    }

    #[test]
    fn unknown_model_is_not_found() {
        let req: ChatRequest = parse_body(
            json!({"model": "gpt-4", "messages": user()})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let e = chat(&req, "m", &openai_sampling()).unwrap_err();
        assert_eq!(e.shape().status, 404);
        assert_eq!(e.shape().code.as_deref(), Some("model_not_found"));
    }

    #[test]
    fn maps_tool_choice_to_modes() {
        let tools = json!([tool("a"), tool("b")]);
        assert_eq!(
            chat_ok(json!({"messages": user()})).tool_mode,
            ToolMode::Off
        );
        assert_eq!(
            chat_ok(json!({"messages": user(), "tools": tools})).tool_mode,
            ToolMode::Auto
        );
        assert_eq!(
            chat_ok(json!({"messages": user(), "tools": tools, "tool_choice": "none"})).tool_mode,
            ToolMode::Off
        );
        let req = chat_ok(json!({"messages": user(), "tools": tools, "tool_choice": "required"}));
        assert_eq!(
            req.tool_mode,
            ToolMode::Forced(vec!["a".into(), "b".into()])
        );
        assert_eq!(req.max_calls, Some(1));
        let named = json!({"type": "function", "function": {"name": "b"}});
        let req = chat_ok(json!({"messages": user(), "tools": tools, "tool_choice": named}));
        assert_eq!(req.tool_mode, ToolMode::Forced(vec!["b".into()]));
        let req =
            chat_ok(json!({"messages": user(), "tools": tools, "parallel_tool_calls": false}));
        assert_eq!(req.max_calls, Some(1));
    }

    #[test]
    fn reads_sampling_and_limits() {
        let p = chat_ok(
            json!({"messages": user(), "temperature": 0, "top_p": 0.5, "seed": 7,
            "max_tokens": 5, "max_completion_tokens": 9, "stop": "END", "presence_penalty": 1.5,
            "frequency_penalty": 0.5, "stream": true, "stream_options": {"include_usage": true},
            "response_format": {"type": "json_object"}, "user": "u", "metadata": {}}),
        );
        assert_eq!(p.common.sampling.temperature, 0.0);
        assert_eq!(p.common.sampling.top_p, 0.5);
        assert_eq!(p.common.sampling.seed, Some(7));
        assert_eq!(p.common.sampling.presence_penalty, 1.5);
        assert_eq!(p.common.max_tokens, Some(9));
        assert_eq!(p.common.stop, vec!["END".to_string()]);
        assert!(p.common.stream && p.common.include_usage && p.json_object);
        assert_eq!(p.common.logprobs, None);
        let lp = |b: Value| chat_ok(b).common.logprobs;
        assert_eq!(lp(json!({"messages": user(), "logprobs": true})), Some(0));
        let top = json!({"messages": user(), "logprobs": true, "top_logprobs": 20});
        assert_eq!(lp(top), Some(20));
        assert_eq!(lp(json!({"messages": user(), "logprobs": false})), None);
        let p = chat_ok(json!({"messages": [{"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"}]}));
        assert_eq!(p.common.sampling.temperature, 1.0);
    }

    #[test]
    fn budgets_against_the_context() {
        assert_eq!(budget(Some(10), None, 5, 100, "messages").unwrap(), 10);
        assert_eq!(budget(None, None, 5, 100, "messages").unwrap(), 95);
        assert_eq!(budget(None, Some(20), 5, 100, "messages").unwrap(), 20);
        assert_eq!(budget(None, Some(200), 5, 100, "messages").unwrap(), 95);
        for (req, prompt) in [
            (Some(96), 5),
            (Some(usize::MAX), 5),
            (None, 100),
            (Some(1), 150),
        ] {
            let e = budget(req, None, prompt, 100, "prompt").unwrap_err();
            assert_eq!(e.shape().param.as_deref(), Some("prompt"));
            assert_eq!(
                e.shape().code.as_deref(),
                Some("context_length_exceeded"),
                "{req:?} {prompt}"
            );
        }
    }

    #[test]
    fn completion_prompts() {
        let ok = |b: Value| {
            let r: CompletionRequest = parse_body(with_model(b).to_string().as_bytes()).unwrap();
            completion(&r, "m", &openai_sampling())
        };
        let p = ok(json!({"prompt": "def f(", "suffix": "\n", "max_tokens": 8})).unwrap();
        assert_eq!(
            (p.prompt.as_str(), p.suffix.as_deref(), p.common.max_tokens),
            ("def f(", Some("\n"), Some(8))
        );
        assert_eq!(
            ok(json!({"prompt": ["x"]})).unwrap().common.max_tokens,
            Some(16)
        );
        for (b, param) in [
            (json!({"prompt": ["a", "b"]}), "prompt"),
            (json!({"prompt": [1, 2]}), "prompt"),
            (json!({"prompt": "a", "echo": true}), "echo"),
            (json!({"prompt": "a", "best_of": 3}), "best_of"),
            (json!({"prompt": "a", "logprobs": 21}), "logprobs"),
            (json!({"prompt": "a", "logprobs": -1}), "logprobs"),
            (json!({"prompt": "a", "max_tokens": 0}), "max_tokens"),
            (json!({"prompt": ""}), "prompt"),
            (json!({"prompt": "", "suffix": ""}), "prompt"),
            (json!({"prompt": "a", "stop": vec!["x"; 17]}), "stop"),
        ] {
            let e = ok(b.clone()).unwrap_err();
            assert_eq!(e.shape().param.as_deref(), Some(param), "{b}");
        }
    }
}
