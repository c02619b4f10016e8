//! End to end: `wick serve --port 0` with the real Qwen2.5-Coder 0.5B on loopback, spoken to
//! over HTTP as an OpenAI client would. One server for the whole file (loading the model
//! is the slow part); scenarios run in order with greedy decoding and few tokens.

mod common;

use common::server::{wait_ready, Server};
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

/// The id the server serves (the file stem of the model).
const MODEL: &str = "qwen2.5-coder-0.5b-instruct";

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let resp = client.post(url).json(&body).send().await.expect("request");
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.expect("JSON body");
    (status, v)
}

/// Reads a whole SSE response into its JSON events; asserts the `[DONE]` terminator.
async fn sse(client: &reqwest::Client, url: String, body: Value) -> Vec<Value> {
    let resp = client.post(url).json(&body).send().await.expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.expect("body");
    assert!(text.ends_with("data: [DONE]\n\n"), "no [DONE]: {text}");
    text.split("\n\n")
        .filter(|f| !f.is_empty() && *f != "data: [DONE]")
        .map(|f| serde_json::from_str(f.trim_start_matches("data: ")).expect("JSON event"))
        .collect()
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}}])
}

fn code_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "read_file", "description": "Read a file",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}},
        {"type": "function", "function": {"name": "run_tests", "description": "Run the test suite",
            "parameters": {"type": "object", "properties": {"filter": {"type": "string"}}}}}
    ])
}

fn weather_question() -> Value {
    json!([{"role": "user", "content": "What is the weather in Paris in celsius?"}])
}

fn arguments(call: &Value) -> Value {
    let text = call["function"]["arguments"]
        .as_str()
        .expect("arguments is a JSON string");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("arguments are not JSON ({e}): {text}"))
}

#[tokio::test]
async fn serves_the_openai_api_end_to_end() {
    let server = Server::start(
        &common::test_model(common::QWEN05),
        &["--ctx-size", "2048", "--tool-parser", "qwen"],
    );
    let client = reqwest::Client::new();
    let base = server.base.clone();
    wait_ready(&client, &base).await;
    let chat_url = format!("{base}/v1/chat/completions");

    // Plain chat, non-streaming: content and usage.
    let (status, v) = post(
        &client,
        chat_url.clone(),
        json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello."}],
        "temperature": 0, "max_tokens": 8}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let content = v["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    assert!(!content.is_empty(), "{v}");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 5);
    assert!((1..=8).contains(&v["usage"]["completion_tokens"].as_u64().unwrap()));

    // Streaming with usage.
    let events = sse(
        &client,
        chat_url.clone(),
        json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count to three."}],
        "temperature": 0, "max_tokens": 6, "stream": true,
        "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(!streamed.is_empty());
    let usage = &events.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 6, "{usage}");

    // A tool call (the 0.5B answers this with a bare JSON object; the qwen parser reads it).
    let (status, v) = post(
        &client,
        chat_url.clone(),
        json!({
        "model": MODEL,
        "messages": weather_question(), "tools": weather_tools(),
        "temperature": 0, "max_tokens": 60}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(arguments(call)["city"], "Paris");

    // The round trip: the call goes back as an assistant message with null content, the
    // result as a tool message; the model answers in text.
    let (status, v) = post(&client, chat_url.clone(), json!({
        "model": MODEL,
        "messages": [
            {"role": "user", "content": "What is the weather in Paris in celsius?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "{\"temperature\": 18, \"sky\": \"cloudy\"}"}],
        "tools": weather_tools(), "temperature": 0, "max_tokens": 30})).await;
    assert_eq!(status, 200, "{v}");
    let answer = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(!answer.is_empty(), "{v}");

    // The same call, streamed as tool-call deltas.
    let events = sse(
        &client,
        chat_url.clone(),
        json!({
        "model": MODEL,
        "messages": weather_question(), "tools": weather_tools(),
        "temperature": 0, "max_tokens": 60, "stream": true}),
    )
    .await;
    let deltas: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].get(0))
        .collect();
    assert!(!deltas.is_empty(), "{events:?}");
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    let args: String = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&args).unwrap()["city"],
        "Paris"
    );
    let finish = events
        .iter()
        .find_map(|e| e["choices"][0]["finish_reason"].as_str());
    assert_eq!(finish, Some("tool_calls"));

    // A named tool_choice forces that call even for a message that asks for none.
    let (status, v) = post(
        &client,
        chat_url.clone(),
        json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Show me the main source file."}],
        "tools": code_tools(), "temperature": 0, "max_tokens": 40,
        "tool_choice": {"type": "function", "function": {"name": "read_file"}}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "read_file", "{v}");
    assert!(arguments(call).is_object());
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

    // `required` picks one of the declared functions.
    let (status, v) = post(
        &client,
        chat_url.clone(),
        json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hello!"}],
        "tools": code_tools(), "temperature": 0, "max_tokens": 40, "tool_choice": "required"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let calls = v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .expect("a call");
    assert_eq!(calls.len(), 1);
    let name = calls[0]["function"]["name"].as_str().unwrap();
    assert!(["read_file", "run_tests"].contains(&name), "{name}");
    assert!(arguments(&calls[0]).is_object());

    // Fill-in-the-middle with a suffix.
    let (status, v) = post(
        &client,
        format!("{base}/v1/completions"),
        json!({
        "model": MODEL,
        "prompt": "def add(a, b):\n    return ", "suffix": "\n\nprint(add(1, 2))\n",
        "temperature": 0, "max_tokens": 8}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let text = v["choices"][0]["text"].as_str().unwrap();
    assert!(text.contains('a') && text.contains('b'), "{text:?}");

    // A client that drops its stream frees the slot: the next request is served at once.
    let resp = client
        .post(chat_url.clone())
        .json(
            &json!({"model": MODEL, "messages": [{"role": "user", "content": "Write a long story."}],
            "temperature": 0, "max_tokens": 1000, "stream": true}),
        )
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let first = body.next().await.expect("a first chunk").unwrap();
    assert!(first.starts_with(b"data: "));
    drop(body);
    // The slot is freed and the cancellation counted (read from /metrics, not timed).
    let mut metrics = String::new();
    for _ in 0..600 {
        metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains("wick_active_sequences 0")
            && metrics.contains("wick_requests_cancelled_total 1")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metrics.contains("wick_active_sequences 0"),
        "the dropped stream kept its slot: {metrics}"
    );
    assert!(
        metrics.contains("wick_requests_cancelled_total 1"),
        "{metrics}"
    );
    let (status, v) = post(
        &client,
        chat_url.clone(),
        json!({"model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "max_tokens": 2}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(metrics.contains("wick_tool_calls_total"), "{metrics}");
}
