//! Chat templates rendered byte-for-byte as Hugging Face's `apply_chat_template` renders them
//! with Python jinja2, and fill-in-the-middle prompts. Input: a template (the GGUF's
//! `tokenizer.chat_template`, or an override file) and an OpenAI chat-completions request
//! body. Output: the prompt text. Files: `env.rs` (minijinja set up like HF's jinja2),
//! `pyjson.rs` (Python `json.dumps`/`repr`), `normalize.rs` (OpenAI request → template
//! variables), `clock.rs` (`strftime_now`), `fim.rs` (FIM prompts). Must not depend on the
//! engine, the model or the server.

mod clock;
mod env;
pub mod fim;
pub mod normalize;
mod pyjson;

pub use clock::Clock;
pub use fim::FimStyle;
pub use normalize::{ArgumentsForm, Conventions};

use crate::gguf::Gguf;
use minijinja::{Environment, ErrorKind};
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Rendered prompts longer than this stop with [`TemplateError::TooMuchWork`]. It is far above
/// any context window (32k tokens are ~130 KB of text) and bounds a hostile template.
pub const MAX_OUTPUT_BYTES: usize = 8 << 20;

/// GGUF metadata key of the embedded template.
const GGUF_TEMPLATE_KEY: &str = "tokenizer.chat_template";

#[derive(Debug, Error)]
pub enum TemplateError {
    /// The template does not parse (checked at load time).
    #[error("chat template syntax error at line {line}: {message}")]
    Parse { line: usize, message: String },
    /// The template called `raise_exception(message)`; the message is the template's own.
    #[error("{0}")]
    Raised(String),
    /// Rendering failed (a Python-level error such as adding a string to `None`).
    #[error("chat template error: {0}")]
    Render(String),
    /// The request cannot be turned into template variables.
    #[error("{0}")]
    InvalidRequest(String),
    /// The model has no chat template and no override was given.
    #[error("the model has no chat template (no 'tokenizer.chat_template' in the GGUF); pass --chat-template FILE")]
    Missing,
    /// models.toml names an override that is not in `chat_templates/`.
    #[error("models.toml names chat template override '{0}', which is not in chat_templates/")]
    UnknownOverride(String),
    /// The template ran out of fuel or produced more than [`MAX_OUTPUT_BYTES`].
    #[error("chat template stopped: {0}")]
    TooMuchWork(String),
    #[error("cannot read chat template {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A parsed chat template, ready to render requests. Cheap to share behind an `Arc`; rendering
/// takes `&self`.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
    conventions: Conventions,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("conventions", &self.conventions)
            .finish()
    }
}

impl ChatTemplate {
    /// The override file when given (`--chat-template`, or the models.toml entry's file under
    /// `chat_templates/`), else the GGUF's `tokenizer.chat_template`; bos/eos text from the
    /// GGUF vocabulary.
    pub fn from_gguf(
        gguf: &Gguf,
        override_path: Option<&Path>,
    ) -> Result<ChatTemplate, TemplateError> {
        ChatTemplate::for_model(gguf, override_path, None)
    }

    /// The template for a model, by precedence: `--chat-template FILE`, else the models.toml
    /// entry's override (a file of `chat_templates/`, compiled into the binary), else the
    /// GGUF's own template.
    pub fn for_model(
        gguf: &Gguf,
        override_path: Option<&Path>,
        registry_override: Option<&str>,
    ) -> Result<ChatTemplate, TemplateError> {
        let source = match (override_path, registry_override) {
            (Some(path), _) => read_template_file(path)?,
            (None, Some(name)) => builtin_override(name)
                .ok_or_else(|| TemplateError::UnknownOverride(name.to_owned()))?
                .to_owned(),
            (None, None) => gguf
                .get_str(GGUF_TEMPLATE_KEY)
                .ok_or(TemplateError::Missing)?
                .to_owned(),
        };
        let bos = special_token_text(gguf, "tokenizer.ggml.bos_token_id");
        let eos = special_token_text(gguf, "tokenizer.ggml.eos_token_id");
        ChatTemplate::from_source(source, bos, eos)
    }

    /// Parses `source`; a syntax error names the line.
    pub fn from_source(
        source: String,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<ChatTemplate, TemplateError> {
        ChatTemplate::with_clock(source, bos_token, eos_token, Clock::System)
    }

    /// As [`ChatTemplate::from_source`], with `strftime_now` reading `clock` (a fixed clock
    /// makes renders reproducible).
    pub fn with_clock(
        source: String,
        bos_token: &str,
        eos_token: &str,
        clock: Clock,
    ) -> Result<ChatTemplate, TemplateError> {
        let env = env::build(&source, clock).map_err(|e| TemplateError::Parse {
            line: e.line().unwrap_or(0),
            message: e
                .detail()
                .map(str::to_owned)
                .unwrap_or_else(|| e.kind().to_string()),
        })?;
        Ok(ChatTemplate {
            env,
            conventions: Conventions::detect(&source),
            source,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// How requests are adapted to this template (see `normalize`).
    pub fn conventions(&self) -> Conventions {
        self.conventions
    }

    /// The prompt for a chat-completions request body, with the generation prompt added.
    pub fn render(&self, request: &serde_json::Value) -> Result<String, TemplateError> {
        self.render_with(request, true)
    }

    /// The prompt for a chat-completions request body (uses `messages`, `tools`,
    /// `tool_choice`).
    pub fn render_with(
        &self,
        request: &serde_json::Value,
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let prepared = normalize::normalize(request, self.conventions)?;
        // `chat_template_kwargs` (vLLM, llama.cpp): extra template variables, such as
        // Qwen3's `enable_thinking`. They never replace the variables set here.
        let kwargs = request
            .get("chat_template_kwargs")
            .filter(|v| v.is_object())
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        self.render_context(
            &prepared.messages,
            &prepared.tools,
            add_generation_prompt,
            &kwargs,
        )
    }

    /// Renders already-normalized `messages` and `tools` (`null` for none) with the variables
    /// HF passes.
    pub fn render_prepared(
        &self,
        messages: &serde_json::Value,
        tools: &serde_json::Value,
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        let none = serde_json::Value::Null;
        self.render_context(messages, tools, add_generation_prompt, &none)
    }

    /// `render_prepared` plus extra variables (`kwargs`: an object, or null for none).
    fn render_context(
        &self,
        messages: &serde_json::Value,
        tools: &serde_json::Value,
        add_generation_prompt: bool,
        kwargs: &serde_json::Value,
    ) -> Result<String, TemplateError> {
        let extra = match kwargs {
            serde_json::Value::Object(_) => minijinja::Value::from(minijinja::value::Serde(kwargs)),
            _ => minijinja::context! {},
        };
        let ctx = minijinja::context! {
            messages => minijinja::Value::from(minijinja::value::Serde(messages)),
            tools => minijinja::Value::from(minijinja::value::Serde(tools)),
            documents => minijinja::Value::from(()),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            ..extra
        };
        let template = self
            .env
            .get_template(env::TEMPLATE_NAME)
            .map_err(|e| TemplateError::Render(e.to_string()))?;
        let mut out = CappedWriter {
            buf: Vec::new(),
            cap: MAX_OUTPUT_BYTES,
        };
        template
            .render_captured_to(ctx, &mut out)
            .map_err(|e| classify(&e))?;
        String::from_utf8(out.buf).map_err(|e| TemplateError::Render(e.to_string()))
    }
}

fn read_template_file(path: &Path) -> Result<String, TemplateError> {
    std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The token text at the id stored under `id_key`, or `""` when the GGUF lacks either (HF
/// renders a missing special token as empty text too).
fn special_token_text<'a>(gguf: &'a Gguf, id_key: &str) -> &'a str {
    let Some(id) = gguf.get_u64(id_key) else {
        return "";
    };
    let Some(tokens) = gguf.get_array("tokenizer.ggml.tokens") else {
        return "";
    };
    match usize::try_from(id).ok().and_then(|i| tokens.get(i)) {
        Some(candle_core::quantized::gguf_file::Value::String(s)) => s.as_str(),
        _ => "",
    }
}

/// Maps a minijinja error to ours: the template's own `raise_exception` message, a work
/// limit, or a render error with its line.
fn classify(err: &minijinja::Error) -> TemplateError {
    let mut cause: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = cause {
        if let Some(raised) = e.downcast_ref::<env::Raised>() {
            return TemplateError::Raised(raised.0.clone());
        }
        cause = e.source();
    }
    match err.kind() {
        ErrorKind::OutOfFuel => TemplateError::TooMuchWork(format!(
            "used more than {} units of work (endless loop or ever-growing strings?)",
            env::FUEL
        )),
        ErrorKind::WriteFailure => {
            TemplateError::TooMuchWork(format!("output longer than {MAX_OUTPUT_BYTES} bytes"))
        }
        _ => {
            let detail = err
                .detail()
                .map(str::to_owned)
                .unwrap_or_else(|| err.kind().to_string());
            match err.line() {
                Some(line) => TemplateError::Render(format!("{detail} (line {line})")),
                None => TemplateError::Render(detail),
            }
        }
    }
}

/// Collects output and fails once it passes `cap` bytes.
struct CappedWriter {
    buf: Vec<u8>,
    cap: usize,
}

impl Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            return Err(std::io::Error::other("chat template output limit reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The overrides shipped in `chat_templates/`, compiled in so that an installed binary needs
/// no checkout. models.toml names them by file name.
const BUILTIN_OVERRIDES: &[(&str, &str)] = &[(
    "chatml.jinja",
    include_str!("../../chat_templates/chatml.jinja"),
)];

fn builtin_override(name: &str) -> Option<&'static str> {
    BUILTIN_OVERRIDES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, source)| *source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Instant;

    fn tpl(source: &str) -> Result<ChatTemplate, TemplateError> {
        ChatTemplate::from_source(source.to_owned(), "<s>", "</s>")
    }

    const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    #[test]
    fn renders_a_request_with_generation_prompt() {
        let t = tpl(CHATML).unwrap();
        let req = json!({"messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(
            t.render(&req).unwrap(),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render_with(&req, false).unwrap(),
            "<|im_start|>user\nhi<|im_end|>\n"
        );
    }

    #[test]
    fn bundled_chatml_override_renders_like_jinja2() {
        let source = include_str!("../../chat_templates/chatml.jinja");
        let t = tpl(source).unwrap();
        let req = json!({"messages": [
            {"role": "system", "content": "S"}, {"role": "user", "content": "U"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "a", "type": "function",
                "function": {"name": "f", "arguments": "{\"x\": \"é\"}"}}]},
            {"role": "tool", "tool_call_id": "a", "content": "R"}]});
        // Rendered by tests/templates/gen_goldens.py's HF environment.
        let want = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"x\": \"é\"}}\n</tool_call><|im_end|>\n<|im_start|>tool\nR<|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(t.render(&req).unwrap(), want);
    }

    #[test]
    fn names_the_line_of_a_syntax_error() {
        match tpl("line one\n{% if x %}\nno end") {
            Err(TemplateError::Parse { line, .. }) => assert!(line >= 2, "line {line}"),
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn raise_exception_becomes_the_error_message() {
        let t = tpl("{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with a user') }}{% endif %}").unwrap();
        let err = t
            .render(&json!({"messages": [{"role": "assistant", "content": "x"}]}))
            .unwrap_err();
        assert!(
            matches!(&err, TemplateError::Raised(m) if m == "Conversation must start with a user"),
            "{err:?}"
        );
    }

    #[test]
    fn stops_hostile_templates_quickly() {
        let cases = [
            "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
            "{% for a in range(10000) %}{% for b in range(10000) %}xxxxxxxxxxxxxxxx{% endfor %}{% endfor %}",
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            "{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
        ];
        for src in cases {
            let t = tpl(src).unwrap();
            let start = Instant::now();
            let err = t.render(&json!({"messages": []})).unwrap_err();
            assert!(
                matches!(
                    err,
                    TemplateError::TooMuchWork(_) | TemplateError::Render(_)
                ),
                "{src}: {err:?}"
            );
            assert!(
                start.elapsed().as_secs() < 10,
                "{src} took {:?}",
                start.elapsed()
            );
        }
    }

    #[test]
    fn python_type_errors_are_render_errors() {
        let t = tpl("{{ messages[0].content + 1 }}").unwrap();
        let err = t.render(&json!({"messages": [{"role": "user", "content": "x"}]}));
        assert!(matches!(err, Err(TemplateError::Render(_))), "{err:?}");
    }

    #[test]
    fn long_conversations_fit_in_the_fuel_budget() {
        let tools: Vec<_> = (0..64)
            .map(|i| json!({"type": "function", "function": {"name": format!("tool_{i}"), "description": "d",
                "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}}))
            .collect();
        let messages: Vec<_> = (0..1000)
            .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": "some text"}))
            .collect();
        let t = tpl(CHATML_WITH_TOOLS).unwrap();
        let out = t
            .render(&json!({"messages": messages, "tools": tools}))
            .unwrap();
        assert!(out.contains("tool_63"));
    }

    /// A tool-aware ChatML template shaped like Qwen2.5's (loops over tools and messages).
    const CHATML_WITH_TOOLS: &str = "{%- if tools %}<|im_start|>system\n# Tools\n<tools>{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools><|im_end|>\n{% endif %}{% for message in messages %}{% if message.role == 'user' or (message.role == 'assistant' and not message.tool_calls) %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    #[test]
    fn builtin_overrides_are_valid_templates() {
        for (name, source) in BUILTIN_OVERRIDES {
            let t = ChatTemplate::from_source(source.to_string(), "", "")
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let out = t
                .render(&serde_json::json!({"messages": [{"role": "user", "content": "hi"}]}))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(out.contains("hi"), "{name}: {out}");
        }
        assert!(builtin_override("no-such.jinja").is_none());
    }
}
