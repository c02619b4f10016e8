//! HTTP behaviour through `server::router` with `tower::ServiceExt::oneshot`, no socket:
//! every validation and error path, auth, limits, SSE framing, tool calls and forcing,
//! FIM and cancellation. The model side is `ScriptedBackend`, a small engine stand-in that
//! "generates" a fixed reply token by token (one char per token) through the same event
//! channel, constraint and cancellation rules as the real engine; the real engine is
//! exercised end to end in tests/server_e2e.rs.

use axum::body::{to_bytes, Body};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::channel;
use tower::ServiceExt;
use wick::api::Tool;
use wick::engine::EventReceiver;
use wick::engine::{EngineError, Event, FinishReason, GenerationRequest, Usage};
use wick::server::{AppState, Backend, CallParser, ParseEvent, ServerConfig};

const MODEL: &str = "test-model";

/// A `<tool_call>{json}</tool_call>` reader, enough to check how the server uses parsers.
struct TagParser {
    buf: String,
}

impl CallParser for TagParser {
    fn push(&mut self, text: &str, out: &mut Vec<ParseEvent>) {
        self.buf.push_str(text);
        loop {
            match self.buf.find("<tool_call>") {
                Some(0) => {
                    let Some(end) = self.buf.find("</tool_call>") else {
                        return;
                    };
                    let block: String = self.buf.drain(..end + "</tool_call>".len()).collect();
                    let inner = &block["<tool_call>".len()..block.len() - "</tool_call>".len()];
                    match serde_json::from_str::<Value>(inner.trim()) {
                        Ok(v) if v["name"].is_string() => out.push(ParseEvent::Call {
                            name: v["name"].as_str().unwrap_or_default().to_owned(),
                            arguments: v["arguments"].to_string(),
                        }),
                        _ => {
                            out.push(ParseEvent::Content(block));
                            out.push(ParseEvent::Rejected {
                                reason: "bad json".into(),
                            });
                        }
                    }
                }
                Some(i) => {
                    let text: String = self.buf.drain(..i).collect();
                    out.push(ParseEvent::Content(text));
                }
                None => {
                    // Hold back a possible partial marker.
                    let keep = (1.."<tool_call>".len())
                        .rev()
                        .find(|&n| self.buf.ends_with(&"<tool_call>"[..n]))
                        .unwrap_or(0);
                    let cut = self.buf.len() - keep;
                    if cut > 0 {
                        let text: String = self.buf.drain(..cut).collect();
                        out.push(ParseEvent::Content(text));
                    }
                    return;
                }
            }
        }
    }
    fn finish(&mut self, out: &mut Vec<ParseEvent>) {
        if !self.buf.is_empty() {
            if self.buf.starts_with("<tool_call>") {
                out.push(ParseEvent::Rejected {
                    reason: "truncated".into(),
                });
            }
            out.push(ParseEvent::Content(std::mem::take(&mut self.buf)));
        }
    }
}

#[derive(Default)]
struct Seen {
    prompt: Mutex<String>,
    encoded: AtomicUsize,
    cancelled: AtomicBool,
    submitted: AtomicUsize,
}

/// Replies with `reply`, one char per token, honouring max_tokens, stop strings and the
/// constraint; stops when the receiver is dropped.
struct ScriptedBackend {
    reply: String,
    ctx: usize,
    queue_full: bool,
    /// `has_room()` says no: the admission check before any work.
    no_room: bool,
    fail_after: Option<usize>,
    token_delay_ms: u64,
    seen: Arc<Seen>,
}

impl ScriptedBackend {
    fn new(reply: &str) -> Self {
        ScriptedBackend {
            reply: reply.to_owned(),
            ctx: 4096,
            queue_full: false,
            no_room: false,
            fail_after: None,
            token_delay_ms: 0,
            seen: Arc::new(Seen::default()),
        }
    }
}

impl Backend for ScriptedBackend {
    fn ctx_size(&self) -> usize {
        self.ctx
    }
    fn render_chat(&self, request: &Value) -> Result<String, wick::Error> {
        let mut s = String::new();
        for m in request["messages"].as_array().into_iter().flatten() {
            s.push_str(m["content"].as_str().unwrap_or(""));
            s.push('\n');
        }
        Ok(s)
    }
    fn encode(&self, text: &str) -> Result<Vec<u32>, wick::Error> {
        *self.seen.prompt.lock().unwrap() = text.to_owned();
        self.seen.encoded.fetch_add(1, Ordering::SeqCst);
        Ok(text.bytes().map(u32::from).collect())
    }
    fn fim_prompt(&self, prefix: &str, suffix: &str) -> Option<(String, Vec<u32>)> {
        Some((format!("<PRE>{prefix}<SUF>{suffix}<MID>"), Vec::new()))
    }
    fn parser_name(&self) -> &str {
        "hermes"
    }
    fn new_parser(&self, _tools: &[Tool]) -> Box<dyn CallParser> {
        Box::new(TagParser { buf: String::new() })
    }
    fn submit(&self, mut req: GenerationRequest) -> Result<EventReceiver, EngineError> {
        if self.queue_full {
            return Err(EngineError::QueueFull);
        }
        if req.prompt_ids.len() + req.max_tokens > self.ctx {
            return Err(EngineError::ContextLengthExceeded {
                prompt_tokens: req.prompt_ids.len(),
                max_tokens: req.max_tokens,
                ctx: self.ctx,
            });
        }
        self.seen.submitted.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = channel(4096);
        // Stop strings end the reply before them (the real engine holds them back).
        let cut = req
            .stop_strings
            .iter()
            .filter_map(|s| self.reply.find(s.as_str()))
            .min();
        let reply = self.reply[..cut.unwrap_or(self.reply.len())].to_owned();
        let (seen, delay, fail_after) = (self.seen.clone(), self.token_delay_ms, self.fail_after);
        std::thread::spawn(move || {
            let mut n = 0;
            let mut finish = FinishReason::Stop;
            for c in reply.chars() {
                if tx.is_closed() {
                    seen.cancelled.store(true, Ordering::SeqCst);
                    return;
                }
                if n == req.max_tokens {
                    finish = FinishReason::Length;
                    break;
                }
                if fail_after == Some(n) {
                    let _ = tx.blocking_send(Event::Failed(EngineError::Inference("boom".into())));
                    return;
                }
                let mut piece = [0u8; 4];
                let piece = c.encode_utf8(&mut piece).as_bytes();
                if let Some(con) = req.constraint.as_mut() {
                    if !con.allows(piece) {
                        break;
                    }
                    con.advance(piece);
                }
                n += 1;
                let _ = tx.blocking_send(Event::Token {
                    id: c as u32,
                    text: c.to_string(),
                    logprobs: Vec::new(),
                });
                if req.constraint.as_ref().is_some_and(|c| c.is_complete()) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(delay));
            }
            let _ = tx.blocking_send(Event::Done {
                finish_reason: finish,
                usage: Usage {
                    prompt_tokens: req.prompt_ids.len(),
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
    fn has_room(&self) -> bool {
        !self.no_room
    }
}

fn app_with(backend: ScriptedBackend, key: Option<&str>) -> (Router, AppState, Arc<Seen>) {
    let seen = backend.seen.clone();
    let mut config = ServerConfig::new(MODEL);
    config.api_key = key.map(str::to_owned);
    config.max_body_bytes = 1024 * 1024;
    let state = AppState::ready(config, Arc::new(backend));
    (wick::server::router(state.clone()), state, seen)
}

fn app(reply: &str) -> Router {
    app_with(ScriptedBackend::new(reply), None).0
}

fn post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

async fn send(app: Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn send_json(app: Router, req: Request<Body>) -> (StatusCode, Value) {
    let (status, text) = send(app, req).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

fn assert_error(status: StatusCode, body: &Value, want: u16, code: &str) {
    assert_eq!(status.as_u16(), want, "{body}");
    let e = &body["error"];
    assert_eq!(e["code"], code, "{body}");
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(e["type"].is_string(), "{body}");
    assert!(e.as_object().unwrap().contains_key("param"), "{body}");
}

/// The served model unless the body names one (OpenAI requires `model`).
fn with_model(mut body: Value) -> Value {
    if body.get("model").is_none() {
        body["model"] = json!(MODEL);
    }
    body
}

fn chat(body: Value) -> Request<Body> {
    post("/v1/chat/completions", with_model(body).to_string())
}

fn sse_events(text: &str) -> Vec<Value> {
    assert!(text.ends_with("data: [DONE]\n\n"), "no [DONE]: {text}");
    text.split("\n\n")
        .filter(|f| !f.is_empty() && *f != "data: [DONE]")
        .map(|f| {
            let data = f
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("bad frame {f:?}"));
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "read_file", "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}},
        {"type": "function", "function": {"name": "run_tests", "parameters": {"type": "object", "properties": {}}}}
    ])
}

#[tokio::test]
async fn health_is_503_while_loading_then_200() {
    let state = AppState::loading(ServerConfig::new(MODEL));
    let app = wick::server::router(state.clone());
    let (status, body) = send_json(
        app.clone(),
        Request::get("/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_error(status, &body, 503, "model_loading");
    let (status, body) = send_json(app.clone(), chat(json!({"messages": user("hi")}))).await;
    assert_error(status, &body, 503, "model_loading");
    state.set_ready(Arc::new(ScriptedBackend::new("ok")));
    let (status, _) = send(
        app.clone(),
        Request::get("/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    state.set_failed("bad file".into());
    let (status, body) = send_json(app, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_error(status, &body, 503, "model_load_failed");
}

#[tokio::test]
async fn lists_and_finds_the_served_model() {
    let (status, body) = send_json(
        app("x"),
        Request::get("/v1/models").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], MODEL);
    let (status, body) = send_json(
        app("x"),
        Request::get(format!("/v1/models/{MODEL}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!((status, body["id"].as_str()), (StatusCode::OK, Some(MODEL)));
    let (status, body) = send_json(
        app("x"),
        Request::get("/v1/models/gpt-4")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(status, &body, 404, "model_not_found");
    let (status, body) = send_json(
        app("x"),
        Request::get("/v2/nothing").body(Body::empty()).unwrap(),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
}

#[tokio::test]
async fn bad_requests_get_openai_errors() {
    let long = "x".repeat(5000);
    let j = |v: Value| Body::from(with_model(v).to_string());
    let cases: Vec<(Body, u16, &str)> = vec![
        (Body::from("{not json"), 400, "invalid_json"),
        (
            j(json!({"model": MODEL})),
            400,
            "missing_required_parameter",
        ),
        (j(json!({"messages": "hi"})), 400, "invalid_type"),
        (
            j(json!({"messages": user("hi"), "temperature": "warm"})),
            400,
            "invalid_type",
        ),
        (
            j(json!({"model": "nope", "messages": user("hi")})),
            404,
            "model_not_found",
        ),
        (
            j(json!({"messages": user("hi"), "max_tokens": -1})),
            400,
            "invalid_value",
        ),
        (
            j(json!({"messages": user("hi"), "max_tokens": 1_000_000_000_000u64})),
            400,
            "context_length_exceeded",
        ),
        (
            j(json!({"messages": user(&long)})),
            400,
            "context_length_exceeded",
        ),
        (
            j(json!({"messages": user("hi"), "n": 3})),
            400,
            "unsupported_parameter",
        ),
        (
            j(json!({"messages": user("hi"), "logprobs": true, "top_logprobs": 21})),
            400,
            "invalid_value",
        ),
        (
            j(
                json!({"messages": user("hi"), "tools": [{"type": "function", "function": {"description": "no name"}}]}),
            ),
            400,
            "missing_required_parameter",
        ),
        (
            j(
                json!({"messages": user("hi"), "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]}),
            ),
            400,
            "invalid_function_parameters",
        ),
        // Accepted before issue 15.
        (
            Body::from(json!({"messages": user("hi")}).to_string()),
            400,
            "missing_required_parameter",
        ),
        (
            j(json!({"messages": [{"role": "user"}]})),
            400,
            "missing_required_parameter",
        ),
        (
            j(json!({"messages": user("hi"), "stop": "s".repeat(100_000)})),
            400,
            "invalid_value",
        ),
        (
            j(json!({"messages": [{"role": "user", "content": "hi", "name2": "x"}]})),
            400,
            "unsupported_parameter",
        ),
    ];
    for (body, status, code) in cases {
        let backend = ScriptedBackend {
            ctx: 2048,
            ..ScriptedBackend::new("ok")
        };
        let (router, _, _) = app_with(backend, None);
        let (s, v) = send_json(router, post("/v1/chat/completions", body)).await;
        assert_error(s, &v, status, code);
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_and_the_server_keeps_serving() {
    let (router, _, _) = app_with(ScriptedBackend::new("ok"), None);
    let huge = vec![b' '; 100 * 1024 * 1024];
    let (status, body) = send_json(router.clone(), post("/v1/chat/completions", huge)).await;
    assert_error(status, &body, 413, "payload_too_large");
    let (status, body) = send_json(router, chat(json!({"messages": user("hi")}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn api_key_guards_v1_only() {
    let (router, _, _) = app_with(ScriptedBackend::new("ok"), Some("sk-test"));
    let models = || Request::get("/v1/models");
    let (s, v) = send_json(router.clone(), models().body(Body::empty()).unwrap()).await;
    assert_error(s, &v, 401, "invalid_api_key");
    let (s, v) = send_json(
        router.clone(),
        models()
            .header("authorization", "Bearer wrong")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(s, &v, 401, "invalid_api_key");
    let (s, _) = send(
        router.clone(),
        models()
            .header("authorization", "Bearer sk-test")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = send(router, Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn full_queue_is_429() {
    let (router, _, _) = app_with(
        ScriptedBackend {
            queue_full: true,
            ..ScriptedBackend::new("ok")
        },
        None,
    );
    let (s, v) = send_json(router, chat(json!({"messages": user("hi")}))).await;
    assert_error(s, &v, 429, "queue_full");
}

#[tokio::test]
async fn chat_returns_content_and_usage() {
    let (router, _, seen) = app_with(ScriptedBackend::new("  Hello there. END and more"), None);
    let (s, v) = send_json(
        router,
        chat(json!({"model": MODEL, "messages": user("hi"), "stop": ["END"], "temperature": 0})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"], "  Hello there. ",
        "no tools: content verbatim"
    );
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(v["usage"]["prompt_tokens"], 3);
    assert_eq!(v["usage"]["completion_tokens"], 15);
    assert_eq!(v["usage"]["total_tokens"], 18);
    assert_eq!(*seen.prompt.lock().unwrap(), "hi\n");
}

#[tokio::test]
async fn max_tokens_gives_finish_reason_length() {
    let (s, v) = send_json(
        app("abcdefgh"),
        chat(json!({"messages": user("hi"), "max_completion_tokens": 3})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["choices"][0]["message"]["content"], "abc");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn streams_chunks_with_usage_and_done() {
    let body =
        json!({"messages": user("hi"), "stream": true, "stream_options": {"include_usage": true}});
    let resp = app("Hi you").oneshot(chat(body)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
    let text = String::from_utf8(
        to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    let events = sse_events(&text);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Hi you");
    let finish = &events[events.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(finish["usage"].is_null() && finish.as_object().unwrap().contains_key("usage"));
    let last = events.last().unwrap();
    assert_eq!(last["choices"].as_array().unwrap().len(), 0);
    assert_eq!(last["usage"]["completion_tokens"], 6);
    assert!(events
        .iter()
        .all(|e| e["object"] == "chat.completion.chunk" && e["id"] == events[0]["id"]));
}

#[tokio::test]
async fn parses_tool_calls() {
    let reply = "Let me look.\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"src/main.rs\"}}\n</tool_call>";
    let (s, v) = send_json(
        app(reply),
        chat(json!({"messages": user("read main"), "tools": tools()})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Let me look.");
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "read_file");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"path": "src/main.rs"}));
}

#[tokio::test]
async fn tool_choice_none_keeps_call_text_as_content() {
    let reply = "<tool_call>{\"name\": \"run_tests\", \"arguments\": {}}</tool_call>";
    let (_, v) = send_json(
        app(reply),
        chat(json!({"messages": user("x"), "tools": tools(), "tool_choice": "none"})),
    )
    .await;
    assert_eq!(v["choices"][0]["message"]["content"], reply);
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn parallel_tool_calls_false_keeps_one_call() {
    let one = "<tool_call>{\"name\": \"run_tests\", \"arguments\": {}}</tool_call>";
    let reply = format!("{one}\n{one}");
    let (_, v) = send_json(
        app(&reply),
        chat(json!({"messages": user("x"), "tools": tools(), "parallel_tool_calls": false})),
    )
    .await;
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (_, v) = send_json(
        app(&reply),
        chat(json!({"messages": user("x"), "tools": tools()})),
    )
    .await;
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn named_tool_choice_is_forced_in_decoding() {
    // The scripted model would ramble after the object; the constraint ends it there.
    let (router, _, seen) = app_with(
        ScriptedBackend::new("{\"path\": \"a.rs\"}} and then some chatter"),
        None,
    );
    let choice = json!({"type": "function", "function": {"name": "read_file"}});
    let (s, v) = send_json(
        router,
        chat(json!({"messages": user("x"), "tools": tools(), "tool_choice": choice})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(seen
        .prompt
        .lock()
        .unwrap()
        .ends_with("<tool_call>\n{\"name\": \"read_file\", \"arguments\": "));
    let m = &v["choices"][0]["message"];
    assert_eq!(m["content"], Value::Null);
    assert_eq!(m["tool_calls"][0]["function"]["name"], "read_file");
    assert_eq!(
        m["tool_calls"][0]["function"]["arguments"],
        "{\"path\":\"a.rs\"}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
}

#[tokio::test]
async fn required_tool_choice_constrains_the_name() {
    let (router, _, seen) = app_with(
        ScriptedBackend::new("\"run_tests\", \"arguments\": {}}"),
        None,
    );
    let (_, v) = send_json(
        router,
        chat(json!({"messages": user("x"), "tools": tools(), "tool_choice": "required"})),
    )
    .await;
    assert!(seen
        .prompt
        .lock()
        .unwrap()
        .ends_with("<tool_call>\n{\"name\": "));
    assert_eq!(
        v["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
        "run_tests"
    );
    // A model that tries an undeclared name is stopped at once: no call, no fake success.
    let (_, v) = send_json(
        app("\"rm_rf\", \"arguments\": {}}"),
        chat(json!({"messages": user("x"), "tools": tools(), "tool_choice": "required"})),
    )
    .await;
    assert!(
        v["choices"][0]["message"].get("tool_calls").is_none(),
        "{v}"
    );
}

#[tokio::test]
async fn json_object_response_format_stops_at_the_object() {
    let (_, v) = send_json(
        app("{\"a\": [1, 2]} trailing"),
        chat(json!({"messages": user("x"), "response_format": {"type": "json_object"}})),
    )
    .await;
    assert_eq!(v["choices"][0]["message"]["content"], "{\"a\": [1, 2]}");
}

#[tokio::test]
async fn streams_tool_call_deltas() {
    let reply =
        "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"x\"}}\n</tool_call>";
    let body = json!({"messages": user("x"), "tools": tools(), "stream": true});
    let (s, text) = send(app(reply), chat(body)).await;
    assert_eq!(s, StatusCode::OK);
    let events = sse_events(&text);
    let calls: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert_eq!(calls[0]["index"], 0);
    assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(calls[0]["function"]["name"], "read_file");
    let args: String = calls
        .iter()
        .filter_map(|c| c["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap(),
        json!({"path": "x"})
    );
    let finish = events
        .iter()
        .find_map(|e| e["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));
}

#[tokio::test]
async fn engine_failure_mid_stream_is_an_error_event() {
    let backend = ScriptedBackend {
        fail_after: Some(2),
        ..ScriptedBackend::new("abcdef")
    };
    let (router, _, _) = app_with(backend, None);
    let (_, text) = send(router, chat(json!({"messages": user("x"), "stream": true}))).await;
    let events = sse_events(&text);
    let err = events.last().unwrap();
    assert_eq!(err["error"]["code"], "inference_failed", "{text}");
}

#[tokio::test]
async fn completions_build_fim_prompts_and_stream() {
    let (router, _, seen) = app_with(ScriptedBackend::new("    return a + b\n"), None);
    let body = json!({"model": MODEL, "prompt": "def add(a, b):\n", "suffix": "\nprint(add(1, 2))", "max_tokens": 50});
    let (s, v) = send_json(router.clone(), post("/v1/completions", body.to_string())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["object"], "text_completion");
    assert_eq!(
        v["choices"][0]["text"], "    return a + b\n",
        "leading whitespace kept"
    );
    assert_eq!(
        *seen.prompt.lock().unwrap(),
        "<PRE>def add(a, b):\n<SUF>\nprint(add(1, 2))<MID>"
    );
    assert_eq!(v["usage"]["completion_tokens"], 17);
    let body = with_model(json!({"prompt": "x", "stream": true, "max_tokens": 4, "stop": "\n"}));
    let (_, text) = send(router, post("/v1/completions", body.to_string())).await;
    let events = sse_events(&text);
    let streamed: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(streamed, "    ");
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
}

#[tokio::test]
async fn dropped_stream_cancels_generation() {
    let backend = ScriptedBackend {
        token_delay_ms: 20,
        ..ScriptedBackend::new(&"x".repeat(500))
    };
    let (router, state, seen) = app_with(backend, None);
    let resp = router
        .oneshot(chat(json!({"messages": user("x"), "stream": true})))
        .await
        .unwrap();
    let mut body = resp.into_body().into_data_stream();
    use futures::StreamExt;
    let first = body.next().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    drop(body);
    for _ in 0..100 {
        if seen.cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        seen.cancelled.load(Ordering::SeqCst),
        "the engine kept generating for a gone client"
    );
    let metrics = state.metrics().render(state.gauges());
    assert!(
        metrics.contains("wick_requests_cancelled_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn metrics_count_requests_and_tool_outcomes() {
    let reply = "<tool_call>{broken</tool_call>";
    let (router, _, _) = app_with(ScriptedBackend::new(reply), None);
    send(
        router.clone(),
        chat(json!({"messages": user("x"), "tools": tools()})),
    )
    .await;
    send(router.clone(), chat(json!({"messages": []}))).await;
    let (s, text) = send(
        router,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for line in [
        "wick_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 1",
        "wick_requests_total{route=\"/v1/chat/completions\",status=\"400\"} 1",
        "wick_tool_parse_failures_total 1",
        "wick_tool_calls_total 0",
        "wick_model_loaded 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
}

#[tokio::test]
async fn cors_is_off_by_default_and_on_for_named_origins() {
    let req = || {
        Request::get("/v1/models")
            .header("origin", "http://localhost:3000")
            .body(Body::empty())
            .unwrap()
    };
    let resp = app("x").oneshot(req()).await.unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    let mut config = ServerConfig::new(MODEL);
    config.cors_origins = vec!["http://localhost:3000".into()];
    let router = wick::server::router(AppState::ready(config, Arc::new(ScriptedBackend::new("x"))));
    let resp = router.oneshot(req()).await.unwrap();
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
}

/// The value of one metrics line (`name{labels}`), 0 when absent.
fn metric(state: &AppState, name: &str) -> f64 {
    let text = state.metrics().render(state.gauges());
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn overload_is_refused_before_the_prompt_is_rendered() {
    let backend = ScriptedBackend {
        no_room: true,
        ..ScriptedBackend::new("ok")
    };
    let (router, _, seen) = app_with(backend, None);
    for req in [
        chat(json!({"messages": user("hi")})),
        post(
            "/v1/completions",
            with_model(json!({"prompt": "x"})).to_string(),
        ),
    ] {
        let resp = router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["code"], "queue_full");
    }
    assert_eq!(
        seen.encoded.load(Ordering::SeqCst),
        0,
        "the prompt was tokenized for a request refused with 429"
    );
}

#[tokio::test]
async fn every_429_says_when_to_retry() {
    let (router, _, _) = app_with(
        ScriptedBackend {
            queue_full: true,
            ..ScriptedBackend::new("ok")
        },
        None,
    );
    let resp = router
        .oneshot(chat(json!({"messages": user("hi")})))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn wrong_method_is_a_json_405() {
    let (status, body) = send_json(
        app("x"),
        Request::get("/v1/chat/completions")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(status, &body, 405, "method_not_allowed");
    let resp = app("x")
        .oneshot(Request::delete("/v1/models").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(resp.headers().contains_key(header::ALLOW));
}

#[tokio::test]
async fn completion_context_errors_name_the_prompt() {
    let backend = ScriptedBackend {
        ctx: 64,
        ..ScriptedBackend::new("ok")
    };
    let (router, _, _) = app_with(backend, None);
    let body = with_model(json!({"prompt": "x".repeat(100)}));
    let (s, v) = send_json(router, post("/v1/completions", body.to_string())).await;
    assert_error(s, &v, 400, "context_length_exceeded");
    assert_eq!(v["error"]["param"], "prompt");
}

#[tokio::test]
async fn empty_fim_prompt_is_refused_like_an_empty_prompt() {
    for body in [json!({"prompt": ""}), json!({"prompt": "", "suffix": ""})] {
        let body = with_model(body);
        let (s, v) = send_json(app("x"), post("/v1/completions", body.to_string())).await;
        assert_error(s, &v, 400, "invalid_value");
        assert_eq!(v["error"]["param"], "prompt", "{body}");
    }
}

/// Waits (bounded) until the scripted engine saw its receiver dropped.
async fn wait_cancelled(seen: &Seen) -> bool {
    for _ in 0..200 {
        if seen.cancelled.load(Ordering::SeqCst) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

/// A non-streaming Messages or Responses request whose client gives up is cancelled and
/// counted, as chat's is.
#[tokio::test]
async fn a_client_leaving_a_dialect_request_is_counted() {
    for (path, body) in [
        (
            "/v1/messages",
            json!({"messages": user("x"), "max_tokens": 400}),
        ),
        ("/v1/responses", json!({"input": "x"})),
    ] {
        let backend = ScriptedBackend {
            token_delay_ms: 10,
            ..ScriptedBackend::new(&"x".repeat(500))
        };
        let (router, state, seen) = app_with(backend, None);
        let pending = router.oneshot(post(path, with_model(body).to_string()));
        let gave_up = tokio::time::timeout(std::time::Duration::from_millis(150), pending).await;
        assert!(
            gave_up.is_err(),
            "{path}: the reply came before the client left"
        );
        assert!(wait_cancelled(&seen).await, "{path}: generation went on");
        for _ in 0..100 {
            if metric(&state, "wick_requests_cancelled_total") >= 1.0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            metric(&state, "wick_requests_cancelled_total"),
            1.0,
            "{path}"
        );
    }
}

/// Anthropic's `stop_sequences` are matched by the server (it must name the one that
/// matched): the match stops the engine at once, and the generation is counted as
/// finished, not cancelled — streaming or not.
#[tokio::test]
async fn a_messages_stop_sequence_stops_the_engine_and_is_counted() {
    for stream in [false, true] {
        let backend = ScriptedBackend {
            token_delay_ms: 5,
            ..ScriptedBackend::new(&format!("abc END{}", "x".repeat(400)))
        };
        let (router, state, seen) = app_with(backend, None);
        let body = with_model(json!({"messages": user("x"), "max_tokens": 400,
            "stop_sequences": ["END"], "stream": stream}));
        let (s, text) = send(router, post("/v1/messages", body.to_string())).await;
        assert_eq!(s, StatusCode::OK, "{text}");
        let (end, answer) = if stream {
            let events: Vec<Value> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .map(|d| serde_json::from_str(d).unwrap())
                .collect();
            let answer: String = events
                .iter()
                .filter_map(|e| e["delta"]["text"].as_str())
                .collect();
            let end = events.into_iter().find(|e| e["type"] == "message_delta");
            (end.expect("a message_delta"), answer)
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            let end = json!({"delta": {"stop_reason": v["stop_reason"],
                "stop_sequence": v["stop_sequence"]}, "usage": v["usage"]});
            (end, v["content"][0]["text"].as_str().unwrap().to_owned())
        };
        assert_eq!(end["delta"]["stop_reason"], "stop_sequence", "{text}");
        assert_eq!(end["delta"]["stop_sequence"], "END");
        assert_eq!(end["usage"]["output_tokens"], 7, "tokens up to the match");
        assert_eq!(answer, "abc ", "the sequence is not in the answer");
        assert!(
            wait_cancelled(&seen).await,
            "the engine went on after the stop"
        );
        assert_eq!(metric(&state, "wick_requests_cancelled_total"), 0.0);
        assert_eq!(metric(&state, "wick_tokens_generated_total"), 7.0);
    }
}

#[tokio::test]
async fn a_client_leaving_a_non_streaming_request_is_counted_once() {
    let backend = ScriptedBackend {
        token_delay_ms: 10,
        ..ScriptedBackend::new(&"x".repeat(500))
    };
    let (router, state, seen) = app_with(backend, None);
    // The client gives up before the answer: hyper drops the handler's future.
    let pending = router.oneshot(chat(json!({"messages": user("x")})));
    let gave_up = tokio::time::timeout(std::time::Duration::from_millis(150), pending).await;
    assert!(gave_up.is_err(), "the reply came before the client left");
    assert!(wait_cancelled(&seen).await, "generation went on");
    // The task counts what was generated once it sees the client gone.
    for _ in 0..100 {
        if metric(&state, "wick_requests_cancelled_total") >= 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        metric(
            &state,
            "wick_requests_total{route=\"/v1/chat/completions\",status=\"499\"}"
        ),
        1.0
    );
    assert_eq!(metric(&state, "wick_requests_cancelled_total"), 1.0);
    assert!(
        metric(&state, "wick_tokens_generated_total") >= 1.0,
        "tokens generated before the cancel are not counted"
    );
}

/// Every generating endpoint runs in `server::respond`'s loop, the dialects included: a
/// stream the client leaves is cancelled and counted the same way on each.
#[tokio::test]
async fn cancelled_streams_are_counted_the_same_on_every_endpoint() {
    // The frames to read: at least two tokens' worth after each API's opening events.
    for (path, body, frames) in [
        (
            "/v1/chat/completions",
            json!({"messages": user("x"), "stream": true}),
            3,
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "stream": true, "max_tokens": 400}),
            3,
        ),
        (
            "/v1/messages",
            json!({"messages": user("x"), "stream": true, "max_tokens": 400}),
            5,
        ),
        ("/v1/responses", json!({"input": "x", "stream": true}), 6),
    ] {
        let backend = ScriptedBackend {
            token_delay_ms: 10,
            ..ScriptedBackend::new(&"x".repeat(500))
        };
        let (router, state, seen) = app_with(backend, None);
        let resp = router
            .oneshot(post(path, with_model(body).to_string()))
            .await
            .unwrap();
        let mut stream = resp.into_body().into_data_stream();
        use futures::StreamExt;
        for _ in 0..frames {
            stream.next().await.unwrap().unwrap();
        }
        drop(stream);
        assert!(wait_cancelled(&seen).await, "{path}: generation went on");
        for _ in 0..100 {
            if metric(&state, "wick_requests_cancelled_total") >= 1.0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(
            metric(&state, "wick_requests_cancelled_total"),
            1.0,
            "{path}"
        );
        assert!(
            metric(&state, "wick_tokens_generated_total") >= 2.0,
            "{path}: tokens before the cancel are not counted"
        );
    }
}
