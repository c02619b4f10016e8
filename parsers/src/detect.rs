//! Choosing a parser from the model: reads a chat template (and the vocabulary's special
//! tokens) and names the parser it calls for, with the marker found as evidence.
//!
//! The template is asked first, in order of specificity (Qwen3-Coder XML and Qwen's
//! "# Tools" header before plain `<tool_call>`, which would also match Qwen templates).
//! When the template shows no tool markup, special tokens of the vocabulary are asked
//! (`[TOOL_CALLS]`, `<｜tool▁calls▁begin｜>`, `<|python_tag|>`, `<tool_call>`). Detection only
//! ranks candidates for `wick probe` and the startup log; it never changes what a parser
//! accepts. `auto` is never detected: it is the fallback.

use crate::{deepseek, hermes, llama3_json, markers, mistral, qwen, Evidence, ParserSpec};

/// The parser a model calls for, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// A name in [`crate::PARSERS`].
    pub parser: &'static str,
    /// The marker that decided it.
    pub evidence: Evidence,
}

/// Template checks, most specific first.
const ORDER: &[&ParserSpec] = &[
    &qwen::SPEC,
    &deepseek::SPEC,
    &mistral::SPEC,
    &llama3_json::SPEC,
    &hermes::SPEC,
];

/// Vocabulary tokens that name a format on their own.
const TOKENS: &[(&str, &ParserSpec)] = &[
    (markers::mistral::TOOL_CALLS, &mistral::SPEC),
    (markers::deepseek::BEGIN, &deepseek::SPEC),
    (markers::llama3_json::PYTHON_TAG, &llama3_json::SPEC),
    (markers::hermes::TOOL_CALL, &hermes::SPEC),
];

/// Names the parser `template` (and `special_tokens`) call for; `None` when the model shows
/// no tool-call format (e.g. SmolLM2).
pub fn detect_parser(template: &str, special_tokens: &[&str]) -> Option<Detection> {
    for spec in ORDER {
        if let Some(marker) = (spec.detect)(template) {
            return Some(Detection {
                parser: spec.name,
                evidence: Evidence {
                    marker,
                    source: "template",
                },
            });
        }
    }
    TOKENS.iter().find_map(|&(token, spec)| {
        special_tokens.contains(&token).then_some(Detection {
            parser: spec.name,
            evidence: Evidence {
                marker: token,
                source: "vocabulary",
            },
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Short excerpts written for these tests: the lines that tell each family's template
    // apart (real templates: ggml-org/llama.cpp models/templates and the model repos).
    const QWEN25: &str = "{%- if tools %}{{- '<|im_start|>system\\n' }}{{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}{%- for tool in tools %}{{- tool | tojson }}{%- endfor %}{{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call><|im_end|>\\n\" }}";
    const QWEN3: &str = "{%- if tools %}{{- \"# Tools\\n\\nYou may call one or more functions to assist with the user query.\" }}{%- endif %}{%- if reasoning_content %}{{- '<|im_start|>assistant\\n<think>\\n' + reasoning_content.strip('\\n') + '\\n</think>\\n\\n' }}{%- endif %}{{- '<tool_call>\\n{\"name\": \"' }}";
    const QWEN3_CODER: &str = "{{- \"\\n\\nIf you choose to call a function ONLY reply in the following format with NO suffix:\\n\\n<tool_call>\\n<function=example_function_name>\\n<parameter=example_parameter_1>\\nvalue_1\\n</parameter>\\n</function>\\n</tool_call>\" }}";
    const LLAMA31: &str = "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}{%- if builtin_tools is defined or tools is not none %}{{- \"Environment: ipython\\n\" }}{%- endif %}{{- '<|python_tag|>' + tool_call.name + '.call(' }}";
    const LLAMA32: &str = "{{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}{{- \"Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\\n\\n\" }}{{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.' }}";
    const MISTRAL_V3: &str = "{%- if loop.last and tools is not none %}{{- \"[AVAILABLE_TOOLS] [\" }}{%- endif %}{{- \"[TOOL_CALLS] [\" }}{%- for tool_call in message.tool_calls %}";
    const MISTRAL_TEKKEN: &str = "{{- \"[AVAILABLE_TOOLS]\" + tools|tojson + \"[/AVAILABLE_TOOLS]\" }}{{- \"[TOOL_CALLS][\" }}{{- \"[TOOL_RESULTS]{\\\"content\\\": \" + message.content|string }}";
    const MISTRAL_NEMO: &str = "{%- elif message.tool_calls is defined and message.tool_calls is not none %}{{- \"[TOOL_CALLS][\" }}{%- for tool_call in message.tool_calls %}{{- ', \"id\": \"' + tool_call.id + '\"}' }}";
    const DEEPSEEK_V3: &str = "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}";
    const DEEPSEEK_V31: &str = "{{'<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>'+ tool['function']['name'] + '<｜tool▁sep｜>' + tool['function']['arguments'] + '<｜tool▁call▁end｜>'}}{%- if thinking %}{{'<think>'}}{%- endif %}";
    const DEEPSEEK_R1: &str = "{% set content = content.split('</think>')[-1] %}{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] }}{{'<｜Assistant｜><think>\\n'}}";
    const HERMES2PRO: &str = "{{- '<|im_start|>system\\n' }}{{- \"You are a function calling AI model. You are provided with function signatures within <tools></tools> XML tags. \" }}{{- \"For each function call return a json object with function name and arguments within <tool_call></tool_call> XML tags as follows:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-dict>}\\n</tool_call>\" }}";
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";

    #[test]
    fn names_the_parser_each_real_template_family_calls_for() {
        let cases = [
            (QWEN25, Some(("qwen", "# Tools"))),
            (QWEN3, Some(("qwen", "# Tools"))),
            (QWEN3_CODER, Some(("qwen", "<function="))),
            (LLAMA31, Some(("llama3_json", "<|python_tag|>"))),
            (LLAMA32, Some(("llama3_json", "\"parameters\""))),
            (MISTRAL_V3, Some(("mistral", "[TOOL_CALLS]"))),
            (MISTRAL_TEKKEN, Some(("mistral", "[TOOL_CALLS]"))),
            (MISTRAL_NEMO, Some(("mistral", "[TOOL_CALLS]"))),
            (DEEPSEEK_V3, Some(("deepseek", "<｜tool▁calls▁begin｜>"))),
            (DEEPSEEK_V31, Some(("deepseek", "<｜tool▁calls▁begin｜>"))),
            (DEEPSEEK_R1, Some(("deepseek", "<｜tool▁calls▁begin｜>"))),
            (HERMES2PRO, Some(("hermes", "<tool_call>"))),
            (SMOLLM2, None),
        ];
        for (template, expected) in cases {
            let got = detect_parser(template, &[]);
            let got = got.as_ref().map(|d| (d.parser, d.evidence.marker));
            assert_eq!(got, expected, "{template}");
        }
    }

    #[test]
    fn falls_back_to_special_tokens_of_the_vocabulary() {
        let d = detect_parser(SMOLLM2, &["<|im_start|>", "[TOOL_CALLS]"]).expect("detected");
        assert_eq!((d.parser, d.evidence.source), ("mistral", "vocabulary"));
        assert_eq!(
            detect_parser(SMOLLM2, &["<|im_start|>", "<|im_end|>"]),
            None
        );
        // The template wins over the vocabulary.
        let d = detect_parser(QWEN25, &["[TOOL_CALLS]"]).expect("detected");
        assert_eq!((d.parser, d.evidence.source), ("qwen", "template"));
    }
}
