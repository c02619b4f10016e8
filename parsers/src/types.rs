//! The data types parsers exchange: events out, tool specs in, rejections.
//! No logic beyond reading an OpenAI tools list.

use serde_json::{Map, Value};

/// What a parser emits while it reads.
///
/// A tool call is emitted once its construct is complete and valid — never retracted — as
/// `CallStart` (index, id, name), then `CallArgs` fragments whose concatenation is the
/// arguments as a JSON string (the OpenAI `function.arguments` delta), then `CallEnd` with
/// the parsed arguments. Indexes count from 0 in order of appearance.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Text outside call markup, in order (not trimmed: the merge trims).
    Content(String),
    /// Text of a leading `<think>` block (not trimmed).
    Reasoning(String),
    /// A tool call begins.
    CallStart {
        /// Position of the call in the output, from 0.
        index: usize,
        /// `call_…`, or the model's own id where the format carries one.
        id: String,
        /// The function name.
        name: String,
    },
    /// A fragment of the call's arguments JSON string.
    CallArgs {
        /// The call this fragment belongs to.
        index: usize,
        /// Appended in order, the fragments form the arguments JSON string.
        fragment: String,
    },
    /// The call is complete; its arguments as a JSON object.
    CallEnd {
        /// The call that ended.
        index: usize,
        /// The parsed arguments (what the fragments encode).
        arguments: Map<String, Value>,
    },
    /// Text began like a call but failed; its text went to `Content` verbatim.
    Rejected(Rejection),
}

/// A merged tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// `call_…` (generated), or the model's own id where the format carries one (Mistral
    /// `[CALL_ID]`).
    pub id: String,
    /// The function name.
    pub name: String,
    /// The arguments object.
    pub arguments: Map<String, Value>,
}

/// Which construct was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Construct {
    /// `<tool_call>` … `</tool_call>` (JSON or Qwen3-Coder XML).
    ToolCallTag,
    /// `<tools>` … `</tools>`.
    ToolsTag,
    /// `[TOOL_CALLS]` …
    MistralToolCalls,
    /// `<|python_tag|>` …
    PythonTag,
    /// `✿FUNCTION✿` / `✿ARGS✿`.
    QwenFunction,
    /// `<｜tool▁calls▁begin｜>` … `<｜tool▁calls▁end｜>`.
    DeepSeekSection,
    /// A ```` ``` ```` block whose body held call-shaped JSON.
    Fence,
    /// A bare JSON call object or list.
    BareJson,
}

/// Why a construct failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The output ended inside the construct.
    Truncated,
    /// Not valid JSON where JSON was required.
    InvalidJson,
    /// Valid JSON, but not a call object / call list / arguments object.
    NotACall,
    /// A markerless call named a function not in the tools list (or no list was given).
    UndeclaredName,
    /// The markup around the call does not follow the format.
    Malformed,
}

/// A construct that looked like a call but failed. Carries no text: the text is in content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    /// What was attempted.
    pub construct: Construct,
    /// Why it failed.
    pub reason: Reason,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {:?}", self.construct, self.reason)
    }
}

/// A function the request declares: its name and JSON Schema for parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// The function name.
    pub name: String,
    /// The `parameters` JSON Schema (`Value::Null` when absent).
    pub parameters: Value,
}

impl ToolSpec {
    /// Reads an OpenAI `tools` array: `[{"type":"function","function":{"name","parameters"}}]`.
    /// A bare `{"name", "parameters"}` object is accepted too.
    pub fn from_openai(tools: &Value) -> Result<Vec<ToolSpec>, crate::Error> {
        let bad = |m: String| crate::Error::InvalidTools(m);
        let list = tools
            .as_array()
            .ok_or_else(|| bad("expected a JSON array of tool objects".into()))?;
        let mut specs = Vec::with_capacity(list.len());
        for (i, tool) in list.iter().enumerate() {
            let func = tool.get("function").unwrap_or(tool);
            let name = func
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad(format!("tool {i} has no function name")))?;
            specs.push(ToolSpec {
                name: name.to_owned(),
                parameters: func.get("parameters").cloned().unwrap_or(Value::Null),
            });
        }
        Ok(specs)
    }

    /// The declared JSON Schema `type` of parameter `param`, if any.
    pub(crate) fn param_type(&self, param: &str) -> Option<&Value> {
        self.parameters.get("properties")?.get(param)?.get("type")
    }
}
