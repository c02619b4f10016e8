//! Anthropic Messages wire types (`POST /v1/messages`, `/v1/messages/count_tokens`):
//! serde only, no logic. Content blocks stay raw JSON: the adapter checks each one and
//! names the block it cannot use. Unknown fields land in `extra`.

use serde::Deserialize;
use serde_json::{Map, Value};

/// `system`: a string or a list of text blocks.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum System {
    Text(String),
    Blocks(Vec<Value>),
}

/// A message's `content`: a string or a list of blocks.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<Value>),
}

#[derive(Debug, Clone, Deserialize)]
pub struct InputMessage {
    pub role: String,
    pub content: Content,
}

/// A tool the model may call (`input_schema` is a JSON Schema object).
#[derive(Debug, Clone, Deserialize)]
pub struct ToolDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub input_schema: Option<Value>,
    /// `custom` (or absent) for client tools; Anthropic's own server tools have other types.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `tool_choice`: `{"type": "auto"|"any"|"none"}` or `{"type": "tool", "name": …}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub disable_parallel_tool_use: Option<bool>,
}

/// `POST /v1/messages`; `count_tokens` takes the same body without `max_tokens`.
#[derive(Debug, Clone, Deserialize)]
pub struct MessagesRequest {
    #[serde(default)]
    pub model: Option<String>,
    /// Required by `/v1/messages` (checked there, so the error can say so).
    #[serde(default)]
    pub max_tokens: Option<i64>,
    pub messages: Vec<InputMessage>,
    #[serde(default)]
    pub system: Option<System>,
    #[serde(default)]
    pub tools: Option<Vec<ToolDef>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub top_k: Option<i64>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// `{"type": "enabled", "budget_tokens": N}` or `{"type": "disabled"}`.
    #[serde(default)]
    pub thinking: Option<Value>,
    /// `{"effort": …}` is accepted as a hint; other keys are refused.
    #[serde(default)]
    pub output_config: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
