//! OpenAI Responses wire types (`POST /v1/responses`): serde only, no logic. Input items
//! and tools stay raw JSON: the adapter checks each one and names what it cannot use.
//! Unknown fields land in `extra`.

use serde::Deserialize;
use serde_json::{Map, Value};

/// `input`: a string (one user message) or a list of items.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<Value>),
}

/// `text`: the output format (`{"format": {"type": "text"|"json_object"|"json_schema"}}`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TextConfig {
    #[serde(default)]
    pub format: Option<Value>,
    /// `low`/`medium`/`high`: a hint for reasoning models; accepted, no effect here.
    #[serde(default)]
    pub verbosity: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub input: Input,
    #[serde(default)]
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub max_output_tokens: Option<i64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub text: Option<TextConfig>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// Keep the response for `previous_response_id` (OpenAI's default is true).
    #[serde(default)]
    pub store: Option<bool>,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    /// `{"effort": …, "summary": …}`: accepted; a model that thinks returns its reasoning.
    #[serde(default)]
    pub reasoning: Option<Value>,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
