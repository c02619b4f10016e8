//! The fixed set of probe requests: one tool list shared by every prompt, and prompts that
//! each exercise one thing a tool-call parser must read (one call, two calls, nested
//! arguments, a call with no arguments) plus one that needs no tool at all.
//!
//! Output: OpenAI chat-completions bodies (`messages` + `tools`) for the template, and the
//! calls each prompt expects, for scoring. Fixed on purpose: results stay comparable across
//! models, parsers and wick versions. Depends on serde_json only.

use serde_json::{json, Value};

/// One probe prompt and what a correct answer calls.
#[derive(Debug, Clone)]
pub struct ProbeCase {
    /// Stable id, used in the table and the JSON report.
    pub id: &'static str,
    /// What the prompt tests, in a few words.
    pub tests: &'static str,
    pub user: &'static str,
    /// Tool names a correct answer calls, in any order (a multiset); empty = no call.
    pub expected: &'static [&'static str],
}

impl ProbeCase {
    pub fn expects_calls(&self) -> bool {
        !self.expected.is_empty()
    }

    /// The chat request body the template renders.
    pub fn request(&self) -> Value {
        json!({
            "messages": [{"role": "user", "content": self.user}],
            "tools": tools(),
        })
    }
}

pub const CASES: &[ProbeCase] = &[
    ProbeCase {
        id: "single",
        tests: "one call",
        user: "What is the weather in Paris right now? Answer in celsius.",
        expected: &["get_weather"],
    },
    ProbeCase {
        id: "two_calls",
        tests: "two calls in one answer",
        user: "Read the two files src/main.rs and Cargo.toml.",
        expected: &["read_file", "read_file"],
    },
    ProbeCase {
        id: "nested",
        tests: "nested object and array arguments",
        user: "Open an issue titled \"Crash on startup\" with the labels bug and urgent, \
               assigned to Alice from the core team.",
        expected: &["create_issue"],
    },
    ProbeCase {
        id: "no_args",
        tests: "a call with no arguments",
        user: "List the open pull requests.",
        expected: &["list_pull_requests"],
    },
    ProbeCase {
        id: "no_tool",
        tests: "a question that needs no tool",
        user: "What does the acronym HTTP stand for? Answer in one sentence.",
        expected: &[],
    },
];

/// The tools every probe prompt declares (OpenAI tool objects).
pub fn tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. Paris"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                },
                "required": ["city"]
            }
        }},
        {"type": "function", "function": {
            "name": "read_file",
            "description": "Read a file of the repository.",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string", "description": "Path relative to the repository root"}},
                "required": ["path"],
                "additionalProperties": false
            }
        }},
        {"type": "function", "function": {
            "name": "create_issue",
            "description": "Open an issue in the bug tracker.",
            "parameters": {
                "type": "object",
                "properties": {
                    "title": {"type": "string"},
                    "labels": {"type": "array", "items": {"type": "string"}},
                    "assignee": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "team": {"type": "string"}},
                        "required": ["name"]
                    }
                },
                "required": ["title"]
            }
        }},
        {"type": "function", "function": {
            "name": "list_pull_requests",
            "description": "List the open pull requests of the repository.",
            "parameters": {"type": "object", "properties": {}}
        }}
    ])
}

/// A conversation in which the assistant already made a call: rendering it shows the call
/// format the template itself teaches (the "template's own format" row of the report).
pub fn round_trip_request(with_call: bool) -> Value {
    let mut messages = vec![json!({"role": "user", "content": CASES[0].user})];
    if with_call {
        messages.push(json!({
            "role": "assistant",
            "content": "",
            "tool_calls": [{
                "id": "call_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}
            }]
        }));
    }
    json!({"messages": messages, "tools": tools()})
}

/// The arguments of the round-trip call, for checking what parsers read from it.
pub fn round_trip_arguments() -> Value {
    json!({"city": "Paris", "unit": "celsius"})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_expected_tool_is_declared() {
        let tools = tools();
        let names: Vec<&str> = tools
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["function"]["name"].as_str())
            .collect();
        for case in CASES {
            for want in case.expected {
                assert!(names.contains(want), "{}: {want} not declared", case.id);
            }
        }
        let ids: std::collections::HashSet<_> = CASES.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), CASES.len(), "case ids are unique");
        assert!(
            CASES.iter().any(|c| !c.expects_calls()),
            "a no-tool prompt exists"
        );
    }
}
