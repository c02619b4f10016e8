//! End to end for the dialects coding agents speak besides Chat Completions: Anthropic
//! Messages (`/v1/messages`, Claude Code) and OpenAI Responses (`/v1/responses`, Codex
//! CLI), on `wick serve --port 0` with the real Qwen2.5-Coder 0.5B on loopback. One
//! server for the file; greedy decoding and few tokens. Where the small model would be
//! unreliable the request constrains it (`tool_choice`), so each check is about wick.

mod common;

use common::server::{wait_ready, Server};
use serde_json::{json, Value};

/// Anthropic's clients send the key as `x-api-key`; OpenAI's as a bearer token.
async fn anthropic(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    mut body: Value,
) -> (u16, Value) {
    with_model(&mut body);
    let resp = client
        .post(format!("{base}{path}"))
        .header("x-api-key", "sk-test")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

async fn openai(
    client: &reqwest::Client,
    base: &str,
    mut body: Value,
) -> (u16, Value, Option<String>) {
    with_model(&mut body);
    let resp = client
        .post(format!("{base}/v1/responses"))
        .bearer_auth("sk-test")
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let header = resp
        .headers()
        .get("x-wick-ignored-tools")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, resp.json().await.expect("JSON body"), header)
}

/// Both APIs require `model`: the served one, unless the test names another.
fn with_model(body: &mut Value) {
    if let Some(o) = body.as_object_mut() {
        o.entry("model").or_insert(json!(MODEL));
    }
}

const MODEL: &str = "qwen2.5-coder-0.5b-instruct";

/// An SSE body as (event name, data) pairs; every frame must name its event and the name
/// must equal the data's `type`.
async fn named_events(resp: reqwest::Response) -> Vec<(String, Value)> {
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.expect("body");
    assert!(
        !text.contains("[DONE]"),
        "these dialects end without [DONE]: {text}"
    );
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let (name, data) = f
                .split_once('\n')
                .unwrap_or_else(|| panic!("frame without data: {f}"));
            let name = name.strip_prefix("event: ").expect("event line").to_owned();
            let data: Value =
                serde_json::from_str(data.strip_prefix("data: ").expect("data line")).unwrap();
            assert_eq!(data["type"], name.as_str(), "{f}");
            (name, data)
        })
        .collect()
}

fn weather_tools() -> Value {
    json!([{"name": "get_weather", "description": "Get the current weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "get_time", "description": "Get the current time in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

fn weather() -> Value {
    json!([{"role": "user", "content": "What is the weather in Paris?"}])
}

#[tokio::test]
async fn serves_anthropic_messages_and_openai_responses() {
    let server = Server::start(
        &common::test_model(common::QWEN05),
        &[
            "--ctx-size",
            "2048",
            "--tool-parser",
            "qwen",
            "--api-key",
            "sk-test",
        ],
    );
    let client = reqwest::Client::new();
    let base = server.base.clone();
    wait_ready(&client, &base).await;
    messages_text(&client, &base).await;
    messages_stream(&client, &base).await;
    messages_tools(&client, &base).await;
    messages_errors(&client, &base).await;
    responses_text_and_stream(&client, &base).await;
    responses_calls_and_store(&client, &base).await;
}

async fn messages_text(client: &reqwest::Client, base: &str) {
    let (s, v) = anthropic(
        client,
        base,
        "/v1/messages",
        json!({"max_tokens": 8, "temperature": 0,
        "system": "You are terse.", "messages": [{"role": "user", "content": "Say hello."}]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["type"].as_str(), v["role"].as_str()),
        (Some("message"), Some("assistant"))
    );
    assert!(v["id"].as_str().unwrap().starts_with("msg_"), "{v}");
    assert_eq!(v["content"][0]["type"], "text", "{v}");
    assert!(!v["content"][0]["text"].as_str().unwrap().is_empty());
    let out = v["usage"]["output_tokens"].as_u64().unwrap();
    assert!((1..=8).contains(&out), "{v}");
    let reason = v["stop_reason"].as_str().unwrap();
    assert!(
        (reason == "end_turn" && out < 8) || (reason == "max_tokens" && out == 8),
        "{v}"
    );

    // count_tokens agrees with the prompt the real request used.
    let (s, count) = anthropic(client, base, "/v1/messages/count_tokens",
        json!({"system": "You are terse.", "messages": [{"role": "user", "content": "Say hello."}]}))
    .await;
    assert_eq!(s, 200, "{count}");
    assert_eq!(count["input_tokens"], v["usage"]["input_tokens"]);

    // A stop sequence is named; its text is not in the output.
    let (_, v) = anthropic(client, base, "/v1/messages", json!({"max_tokens": 40, "temperature": 0,
        "stop_sequences": [" "], "messages": [{"role": "user", "content": "Write one sentence about cats."}]}))
    .await;
    assert_eq!(v["stop_reason"], "stop_sequence", "{v}");
    assert_eq!(v["stop_sequence"], " ");
    assert!(
        !v["content"][0]["text"].as_str().unwrap().contains(' '),
        "{v}"
    );
}

async fn messages_stream(client: &reqwest::Client, base: &str) {
    let resp = client
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", "sk-test")
        .json(
            &json!({"model": MODEL, "max_tokens": 6, "temperature": 0, "stream": true,
            "messages": [{"role": "user", "content": "Count to five."}]}),
        )
        .send()
        .await
        .unwrap();
    let events = named_events(resp).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let n = names.len();
    assert_eq!(
        &names[..3],
        ["message_start", "ping", "content_block_start"],
        "{names:?}"
    );
    assert_eq!(
        &names[n - 3..],
        ["content_block_stop", "message_delta", "message_stop"],
        "{names:?}"
    );
    assert!(
        names[3..n - 3].iter().all(|x| *x == "content_block_delta"),
        "{names:?}"
    );
    let text: String = events
        .iter()
        .filter_map(|(_, e)| e["delta"]["text"].as_str())
        .collect();
    assert!(!text.is_empty());
    let delta = &events[n - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "max_tokens", "{delta}");
    assert_eq!(delta["usage"]["output_tokens"], 6);
    assert!(
        events[0].1["message"]["usage"]["input_tokens"]
            .as_u64()
            .unwrap()
            > 5
    );
}

async fn messages_tools(client: &reqwest::Client, base: &str) {
    // tool_choice any: the call is forced in decoding.
    let (s, v) = anthropic(
        client,
        base,
        "/v1/messages",
        json!({"max_tokens": 60, "temperature": 0,
        "tools": weather_tools(), "tool_choice": {"type": "any"}, "messages": weather()}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let uses: Vec<&Value> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    assert_eq!(uses.len(), 1, "{v}");
    assert!(uses[0]["input"].is_object() && uses[0]["id"].as_str().unwrap().starts_with("toolu_"));

    // tool_choice tool, streamed: input_json_delta fragments add up to the input.
    let resp = client
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", "sk-test")
        .json(
            &json!({"model": MODEL, "max_tokens": 60, "temperature": 0, "stream": true, "tools": weather_tools(),
            "tool_choice": {"type": "tool", "name": "get_time"}, "messages": weather()}),
        )
        .send()
        .await
        .unwrap();
    let events = named_events(resp).await;
    let start = events
        .iter()
        .find(|(n, e)| n == "content_block_start" && e["content_block"]["type"] == "tool_use")
        .expect("a tool_use block starts");
    assert_eq!(start.1["content_block"]["name"], "get_time");
    let json_text: String = events
        .iter()
        .filter(|(_, e)| e["delta"]["type"] == "input_json_delta")
        .map(|(_, e)| e["delta"]["partial_json"].as_str().unwrap())
        .collect();
    let input: Value = serde_json::from_str(&json_text).expect("partial_json adds up to JSON");
    assert!(input.is_object());
    let delta = events.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "tool_use");

    // The tool_result round trip; `none` keeps the answer text whatever the model prefers.
    let id = uses[0]["id"].as_str().unwrap();
    let follow = json!([weather()[0], {"role": "assistant", "content": v["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "18 degrees, sunny"}]}]);
    let (s, r) = anthropic(
        client,
        base,
        "/v1/messages",
        json!({"max_tokens": 20, "temperature": 0,
        "tools": weather_tools(), "tool_choice": {"type": "none"}, "messages": follow}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["content"][0]["type"], "text", "{r}");
}

async fn messages_errors(client: &reqwest::Client, base: &str) {
    let shape = |v: &Value, kind: &str| {
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"].is_string(), "{v}");
    };
    let (s, v) = anthropic(client, base, "/v1/messages", json!({"messages": weather()})).await;
    assert_eq!(s, 400);
    shape(&v, "invalid_request_error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens"));
    let (s, v) = anthropic(
        client,
        base,
        "/v1/messages",
        json!({"max_tokens": 5, "messages": [{"role": "user",
        "content": [{"type": "text", "text": "?"}, {"type": "document", "source": {}}]}]}),
    )
    .await;
    assert_eq!(s, 400);
    shape(&v, "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages[0].content[1]"),
        "{v}"
    );
    let (s, v) = anthropic(
        client,
        base,
        "/v1/messages",
        json!({"model": "claude-x", "max_tokens": 5, "messages": weather()}),
    )
    .await;
    assert_eq!(s, 404);
    shape(&v, "not_found_error");
    let (s, v) = anthropic(client, base, "/v1/messages", json!("not an object")).await;
    assert_eq!(s, 400);
    shape(&v, "invalid_request_error");
    let resp = client
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", "wrong")
        .json(&json!({"model": MODEL, "max_tokens": 5, "messages": weather()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    shape(&resp.json().await.unwrap(), "authentication_error");
}

async fn responses_text_and_stream(client: &reqwest::Client, base: &str) {
    let (s, v, _) = openai(
        client,
        base,
        json!({"input": "Say hello.", "instructions": "You are terse.",
        "temperature": 0, "max_output_tokens": 3}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "incomplete", "{v}");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(v["usage"]["output_tokens"], 3);

    let resp = client
        .post(format!("{base}/v1/responses"))
        .bearer_auth("sk-test")
        .json(&json!({"model": MODEL, "input": [{"role": "user", "content": [{"type": "input_text", "text": "Count to five."}]}],
            "temperature": 0, "max_output_tokens": 6, "stream": true}))
        .send()
        .await
        .unwrap();
    let events = named_events(resp).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let n = names.len();
    assert_eq!(
        &names[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ],
        "{names:?}"
    );
    assert_eq!(
        &names[n - 4..],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.incomplete"
        ],
        "{names:?}"
    );
    for (i, (_, e)) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i, "{e}");
    }
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, e)| e["delta"].as_str().unwrap())
        .collect();
    let last = &events[n - 1].1["response"];
    assert_eq!(last["output"][0]["content"][0]["text"], deltas.as_str());
    assert_eq!(events[n - 4].1["text"], deltas.as_str());
}

async fn responses_calls_and_store(client: &reqwest::Client, base: &str) {
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Get the weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"type": "local_shell"}, {"type": "web_search"}]);
    let (s, first, ignored) = openai(
        client,
        base,
        json!({"input": "What is the weather in Paris?",
        "tools": tools, "tool_choice": "required", "temperature": 0, "max_output_tokens": 60}),
    )
    .await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(ignored.as_deref(), Some("local_shell, web_search"));
    assert_eq!(first["status"], "completed", "{first}");
    let call = first["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "function_call")
        .unwrap_or_else(|| panic!("no function_call: {first}"));
    assert_eq!(call["name"], "get_weather");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert!(args.is_object());

    // The follow-up carries only the tool output; the stored response supplies the rest.
    let (s, second, _) = openai(client, base, json!({"previous_response_id": first["id"],
        "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "18 degrees"}],
        "tools": tools, "tool_choice": "none", "temperature": 0, "max_output_tokens": 20})).await;
    assert_eq!(s, 200, "{second}");
    assert_eq!(second["output"][0]["type"], "message", "{second}");
    // The same conversation sent in full renders the same prompt.
    let (_, full, _) = openai(client, base, json!({"input": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"type": "function_call", "call_id": call["call_id"], "name": "get_weather", "arguments": call["arguments"]},
            {"type": "function_call_output", "call_id": call["call_id"], "output": "18 degrees"}],
        "tools": tools, "tool_choice": "none", "temperature": 0, "max_output_tokens": 20})).await;
    assert_eq!(
        second["usage"]["input_tokens"], full["usage"]["input_tokens"],
        "the stored turn is in the prompt: {second} {full}"
    );
    let (s, v, _) = openai(
        client,
        base,
        json!({"previous_response_id": "resp_nope", "input": "hi"}),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"]["code"], "previous_response_not_found");
    assert_eq!(v["error"]["param"], "previous_response_id");

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("wick_responses_ignored_tools_total{type=\"local_shell\"} 3"),
        "{metrics}"
    );
}
