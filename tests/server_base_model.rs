//! `wick serve` with models that are not chat models as-is, end to end on loopback: a base
//! model without a chat template (Gemma 3 270M base) serves completions and answers chat
//! with a 400 naming what is missing; a `--ctx-size` past what the model supports fails the
//! load once, with the flag named, instead of failing every request with a 500.

mod common;

use common::server::{settled_health, Server};
use serde_json::{json, Value};

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let resp = client.post(url).json(&body).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON body"))
}

#[tokio::test]
async fn a_base_model_without_chat_template_serves_completions_and_refuses_chat() {
    let server = Server::start(
        &common::test_model("gemma3-270m-q4_k_m.gguf"),
        &["--ctx-size", "1024"],
    );
    let client = reqwest::Client::new();
    let (status, body) = settled_health(&client, &server.base).await;
    assert_eq!(status, 200, "a model without a chat template loads: {body}");
    let model = "gemma3-270m-q4_k_m";
    let (status, body) = post(
        &client,
        format!("{}/v1/completions", server.base),
        json!({"model": model, "prompt": "def add(a, b):", "max_tokens": 4, "temperature": 0}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["usage"]["completion_tokens"], 4, "{body}");
    let (status, body) = post(
        &client,
        format!("{}/v1/chat/completions", server.base),
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "template_error", "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("no chat template"), "{msg}");
}

#[tokio::test]
async fn a_context_past_the_model_fails_the_load_naming_the_flag() {
    let model = common::test_models_dir().join("synthetic/synthetic-llama.gguf");
    assert!(model.exists(), "run scripts/fetch-test-models");
    let server = Server::start(&model, &["--ctx-size", "1000000"]);
    let client = reqwest::Client::new();
    let (status, body) = settled_health(&client, &server.base).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "model_load_failed", "{body}");
    let msg = body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("--ctx-size 1000000"), "{msg}");
}
