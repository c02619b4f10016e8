//! The marker texts of every tool-call format, in one place: the parser files, the shared
//! scanner (`scan.rs`), fences and detection all read them from here, so none of them
//! imports another for a constant. Grouped by the parser whose format defines them.

/// Markers of the `hermes` format.
pub mod hermes {
    pub const TOOL_CALL: &str = "<tool_call>";
    pub const TOOL_CALL_END: &str = "</tool_call>";
    pub const TOOLS: &str = "<tools>";
    pub const TOOLS_END: &str = "</tools>";
    /// One call as Hermes-style templates write it (also read by `qwen` and `auto`).
    pub const CALL: crate::CallSyntax = crate::CallSyntax {
        open: "<tool_call>\n{\"name\": ",
        before_arguments: ", \"arguments\": ",
        close: "}\n</tool_call>",
    };
}

/// Markers of the `mistral` format.
pub mod mistral {
    pub const TOOL_CALLS: &str = "[TOOL_CALLS]";
    pub const CALL_ID: &str = "[CALL_ID]";
    pub const ARGS: &str = "[ARGS]";
    /// The pre-v11 call list.
    pub const CALL: crate::CallSyntax = crate::CallSyntax {
        open: "[TOOL_CALLS][{\"name\": ",
        before_arguments: ", \"arguments\": ",
        close: "}]",
    };
}

/// Markers of the `llama3_json` format.
pub mod llama3_json {
    pub const PYTHON_TAG: &str = "<|python_tag|>";
    /// JSON after the `<|python_tag|>` marker.
    pub const CALL: crate::CallSyntax = crate::CallSyntax {
        open: "<|python_tag|>{\"name\": ",
        before_arguments: ", \"parameters\": ",
        close: "}",
    };
}

/// Markers of the `qwen` format.
pub mod qwen {
    pub const FUNCTION: &str = "✿FUNCTION✿";
    pub const ARGS: &str = "✿ARGS✿";
    pub const XML_FUNCTION: &str = "<function=";
    pub const XML_FUNCTION_END: &str = "</function>";
    pub const XML_PARAM: &str = "<parameter=";
    pub const XML_PARAM_END: &str = "</parameter>";
}

/// Markers of the `deepseek` format.
pub mod deepseek {
    pub const BEGIN: &str = "<｜tool▁calls▁begin｜>";
    pub const END: &str = "<｜tool▁calls▁end｜>";
    pub const CALL: &str = "<｜tool▁call▁begin｜>";
    pub const CALL_END: &str = "<｜tool▁call▁end｜>";
    pub const SEP: &str = "<｜tool▁sep｜>";
}

/// Markdown code fences, which every parser that reads bare JSON looks inside.
pub mod fence {
    pub const FENCE: &str = "```";
}
