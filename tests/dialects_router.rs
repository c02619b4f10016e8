//! Reasoning through every dialect, via `server::router` and `oneshot` (no socket): a
//! thinking model's `<think>…</think>` comes back as `reasoning_content` (Chat
//! Completions, whole and streamed), a `thinking` block (Messages) and a reasoning item
//! (Responses), never as content; `--reasoning-format none` keeps it raw; a template that
//! opens the block itself is read right; `chat_template_kwargs` reaches the template; the
//! Anthropic error shapes for a full queue and a loading model. The test models do not
//! think, so the model side is a scripted backend that replies with fixed text, one char
//! per token, through the real parser (`wick_parsers` qwen) and the real router.

use axum::body::{to_bytes, Body};
use axum::http::Request;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::mpsc::{channel, Receiver};
use tower::ServiceExt;
use wick::api::Tool;
use wick::engine::{EngineError, Event, FinishReason, GenerationRequest, Usage};
use wick::server::reasoning::ReasoningFormat;
use wick::server::{AppState, Backend, CallParser, ParseEvent, ServerConfig};

const MODEL: &str = "thinker";

/// The real `qwen` parser in the server's terms.
struct Qwen {
    inner: Box<dyn wick_parsers::ToolParser>,
    events: Vec<wick_parsers::Event>,
}

impl Qwen {
    fn drain(&mut self, out: &mut Vec<ParseEvent>) {
        use wick_parsers::Event as P;
        for ev in self.events.drain(..) {
            out.push(match ev {
                P::Content(t) => ParseEvent::Content(t),
                P::Reasoning(t) => ParseEvent::Reasoning(t),
                P::CallStart { id, name, .. } => ParseEvent::CallStart { id: Some(id), name },
                P::CallArgs { fragment, .. } => ParseEvent::CallArguments(fragment),
                P::CallEnd { .. } => continue,
                P::Rejected(r) => ParseEvent::Rejected {
                    reason: r.to_string(),
                },
            });
        }
    }
}

impl CallParser for Qwen {
    fn push(&mut self, text: &str, out: &mut Vec<ParseEvent>) {
        self.inner.push(text, &mut self.events);
        self.drain(out);
    }
    fn finish(&mut self, out: &mut Vec<ParseEvent>) {
        self.inner.finish(&mut self.events);
        self.drain(out);
    }
}

/// Replies with `reply`, one char per token, after `stall` (a long prefill); queue full
/// when `full`.
struct Thinker {
    reply: String,
    full: bool,
    stall: std::time::Duration,
}

impl Backend for Thinker {
    fn ctx_size(&self) -> usize {
        4096
    }
    /// The prompt shows the template variables it got; `open` in the system message makes
    /// the generation prompt open a `<think>` block (as R1 distills' templates do).
    fn render_chat(&self, request: &Value) -> Result<String, wick::Error> {
        let mut s = format!("kwargs={}\n", request["chat_template_kwargs"]);
        for m in request["messages"].as_array().into_iter().flatten() {
            s.push_str(m["content"].as_str().unwrap_or(""));
            s.push('\n');
        }
        if s.contains("open") {
            s.push_str("<think>\n");
        }
        Ok(s)
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>, wick::Error> {
        Ok(text.chars().map(u32::from).collect())
    }
    fn fim_prompt(&self, _: &str, _: &str) -> Option<(String, Vec<u32>)> {
        None
    }
    fn parser_name(&self) -> &str {
        "qwen"
    }
    fn new_parser(&self, _tools: &[Tool]) -> Box<dyn CallParser> {
        let spec = wick_parsers::by_name("qwen").expect("qwen parser");
        Box::new(Qwen {
            inner: (spec.new)(&[]),
            events: Vec::new(),
        })
    }
    fn submit(&self, req: GenerationRequest) -> Result<Receiver<Event>, EngineError> {
        if self.full {
            return Err(EngineError::QueueFull);
        }
        let (tx, rx) = channel(4096);
        let reply = self.reply.clone();
        let prompt_tokens = req.prompt_ids.len();
        let stall = self.stall;
        std::thread::spawn(move || {
            std::thread::sleep(stall);
            let mut n = 0;
            for c in reply.chars() {
                n += 1;
                let _ = tx.blocking_send(Event::Token {
                    id: c as u32,
                    text: c.to_string(),
                    logprobs: Vec::new(),
                });
            }
            let _ = tx.blocking_send(Event::Done {
                finish_reason: FinishReason::Stop,
                usage: Usage {
                    prompt_tokens,
                    completion_tokens: n,
                    cached_tokens: 0,
                },
                time_to_first_token: 0.01,
                decode_tokens_per_second: 100.0,
                text: String::new(),
                logprobs: Vec::new(),
            });
        });
        Ok(rx)
    }
    fn queue_depth(&self) -> usize {
        0
    }
    fn active(&self) -> usize {
        0
    }
}

const THINKING: &str = "<think>\nThe user greets me.\n</think>\n\nHello there!";

fn app(reply: &str, format: ReasoningFormat) -> axum::Router {
    let mut config = ServerConfig::new(MODEL);
    config.reasoning_format = format;
    let backend = Thinker {
        reply: reply.to_owned(),
        full: false,
        stall: std::time::Duration::ZERO,
    };
    wick::server::router(AppState::ready(config, Arc::new(backend)))
}

async fn call(app: axum::Router, path: &str, mut body: Value) -> (u16, String) {
    // Every dialect requires `model`.
    if let Some(o) = body.as_object_mut() {
        o.entry("model").or_insert(json!(MODEL));
    }
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn json_of(app: axum::Router, path: &str, body: Value) -> Value {
    let (status, text) = call(app, path, body).await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn sse_data(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|f| f.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn hi() -> Value {
    json!([{"role": "user", "content": "hi"}])
}

#[tokio::test]
async fn chat_returns_thinking_as_reasoning_content() {
    let v = json_of(
        app(THINKING, ReasoningFormat::Auto),
        "/v1/chat/completions",
        json!({"messages": hi()}),
    )
    .await;
    let m = &v["choices"][0]["message"];
    assert_eq!(m["reasoning_content"], "The user greets me.", "{v}");
    assert_eq!(m["content"].as_str().unwrap().trim(), "Hello there!", "{v}");

    let (_, text) = call(
        app(THINKING, ReasoningFormat::Auto),
        "/v1/chat/completions",
        json!({"messages": hi(), "stream": true}),
    )
    .await;
    let chunks = sse_data(&text);
    let field = |name: &str| -> String {
        chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"][name].as_str())
            .collect()
    };
    assert_eq!(field("reasoning_content").trim(), "The user greets me.");
    assert_eq!(field("content").trim(), "Hello there!");
}

#[tokio::test]
async fn raw_format_keeps_the_tags_in_content() {
    let v = json_of(
        app(THINKING, ReasoningFormat::None),
        "/v1/chat/completions",
        json!({"messages": hi()}),
    )
    .await;
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], THINKING, "{v}");
    assert!(m.get("reasoning_content").is_none(), "{v}");
}

#[tokio::test]
async fn reads_thinking_the_template_opened() {
    let v = json_of(
        app(
            "\nI was asked.\n</think>\n\nSure.",
            ReasoningFormat::Auto,
        ),
        "/v1/chat/completions",
        json!({"messages": [{"role": "system", "content": "open"}, {"role": "user", "content": "hi"}]}),
    )
    .await;
    let m = &v["choices"][0]["message"];
    assert_eq!(m["reasoning_content"], "I was asked.", "{v}");
    assert_eq!(m["content"].as_str().unwrap().trim(), "Sure.", "{v}");
}

#[tokio::test]
async fn messages_and_responses_return_thinking_blocks_and_reasoning_items() {
    let v = json_of(
        app(THINKING, ReasoningFormat::Auto),
        "/v1/messages",
        json!({"max_tokens": 100, "messages": hi()}),
    )
    .await;
    assert_eq!(v["content"][0]["type"], "thinking", "{v}");
    assert_eq!(v["content"][0]["thinking"], "The user greets me.");
    assert_eq!(v["content"][1]["type"], "text");
    assert_eq!(
        v["content"][1]["text"].as_str().unwrap().trim(),
        "Hello there!"
    );

    let (_, text) = call(
        app(THINKING, ReasoningFormat::Auto),
        "/v1/messages",
        json!({"max_tokens": 100, "messages": hi(), "stream": true}),
    )
    .await;
    let deltas: Vec<String> = sse_data(&text)
        .iter()
        .filter_map(|e| e["delta"]["type"].as_str().map(str::to_owned))
        .collect();
    assert!(deltas.contains(&"thinking_delta".to_owned()), "{text}");

    let v = json_of(
        app(THINKING, ReasoningFormat::Auto),
        "/v1/responses",
        json!({"input": "hi"}),
    )
    .await;
    assert_eq!(v["output"][0]["type"], "reasoning", "{v}");
    assert_eq!(v["output"][0]["content"][0]["text"], "The user greets me.");
    assert_eq!(v["output"][1]["type"], "message");
}

#[tokio::test]
async fn chat_template_kwargs_reach_the_template() {
    // The scripted template echoes `chat_template_kwargs` into the prompt (one token per
    // char), so the prompt grows by exactly their JSON.
    let usage = |body: Value| async move {
        json_of(
            app("ok", ReasoningFormat::Auto),
            "/v1/chat/completions",
            body,
        )
        .await["usage"]["prompt_tokens"]
            .as_u64()
            .unwrap()
    };
    let plain = usage(json!({"messages": hi()})).await;
    let with =
        usage(json!({"messages": hi(), "chat_template_kwargs": {"enable_thinking": false}})).await;
    assert_eq!(
        with - plain,
        r#"{"enable_thinking":false}"#.len() as u64 - "null".len() as u64
    );
}

#[tokio::test]
async fn anthropic_errors_for_a_full_queue_and_a_loading_model() {
    let full = Thinker {
        reply: String::new(),
        full: true,
        stall: std::time::Duration::ZERO,
    };
    let app = wick::server::router(AppState::ready(ServerConfig::new(MODEL), Arc::new(full)));
    let (status, text) = call(
        app,
        "/v1/messages",
        json!({"max_tokens": 5, "messages": hi()}),
    )
    .await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status, 429);
    assert_eq!(
        (v["type"].as_str(), v["error"]["type"].as_str()),
        (Some("error"), Some("rate_limit_error"))
    );

    let app = wick::server::router(AppState::loading(ServerConfig::new(MODEL)));
    let (status, text) = call(
        app,
        "/v1/messages",
        json!({"max_tokens": 5, "messages": hi()}),
    )
    .await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status, 503);
    assert_eq!(v["error"]["type"], "overloaded_error", "{v}");
}

/// A long agent prompt can take minutes to prefill on a CPU: the Messages stream pings
/// while it waits (every 15 s), as Anthropic's API does, so the connection is never silent.
#[tokio::test]
async fn messages_stream_pings_while_the_prompt_is_prefilled() {
    let slow = Thinker {
        reply: "Hello".into(),
        full: false,
        stall: std::time::Duration::from_secs(16),
    };
    let app = wick::server::router(AppState::ready(ServerConfig::new(MODEL), Arc::new(slow)));
    let (status, text) = call(
        app,
        "/v1/messages",
        json!({"max_tokens": 5, "messages": hi(), "stream": true}),
    )
    .await;
    assert_eq!(status, 200);
    let kinds: Vec<String> = sse_data(&text)
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    // The opening ping, then one while the backend stalled, then the text.
    assert_eq!(
        kinds[..4],
        ["message_start", "ping", "ping", "content_block_start"],
        "{text}"
    );
    assert_eq!(kinds.last().map(String::as_str), Some("message_stop"));
}
