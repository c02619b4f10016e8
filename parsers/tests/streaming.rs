//! Streaming behaviour: what each push releases. Content goes out as soon as it cannot
//! start a construct; a call streams as CallStart (index, id, name), argument fragments,
//! CallEnd; failed constructs emit Rejected; reasoning streams before `</think>`.

use serde_json::Value;
use wick_parsers::{by_name, missed_calls, Construct, Event, Reason, ToolParser, ToolSpec};

fn parser(name: &str, tools: &[ToolSpec]) -> Box<dyn ToolParser> {
    (by_name(name).expect("parser").new)(tools)
}

fn push(p: &mut Box<dyn ToolParser>, text: &str) -> Vec<Event> {
    let mut out = Vec::new();
    p.push(text, &mut out);
    out
}

fn content(events: &[Event]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Content(s) => Some(s.as_str()),
            _ => None,
        })
        .collect()
}

fn tools() -> Vec<ToolSpec> {
    let v = serde_json::json!([{"type": "function", "function": {"name": "read_file"}}]);
    ToolSpec::from_openai(&v).expect("tools")
}

#[test]
fn releases_content_at_once_and_holds_only_a_possible_marker_prefix() {
    let mut p = parser("hermes", &[]);
    assert_eq!(content(&push(&mut p, "Hello ")), "Hello ");
    assert_eq!(content(&push(&mut p, "a <b> c <to")), "a <b> c ");
    assert_eq!(content(&push(&mut p, "ol")), "");
    assert_eq!(content(&push(&mut p, "bar")), "<toolbar");
}

#[test]
fn streams_a_call_as_start_then_argument_fragments_then_end() {
    let mut p = parser("hermes", &[]);
    let mut all = push(&mut p, "Sure.\n<tool_call>\n{\"name\": \"read_file\", ");
    assert_eq!(content(&all), "Sure.\n");
    assert!(!all.iter().any(|e| matches!(e, Event::CallStart { .. })));
    all.extend(push(
        &mut p,
        "\"arguments\": {\"path\": \"a\\\"b.rs\"}}\n</tool_call>",
    ));
    let mut end = Vec::new();
    p.finish(&mut end);
    all.extend(end);
    let start = all
        .iter()
        .position(|e| matches!(e, Event::CallStart { .. }))
        .expect("start");
    match &all[start] {
        Event::CallStart { index, id, name } => {
            assert_eq!((*index, name.as_str()), (0, "read_file"));
            assert!(id.starts_with("call_"));
        }
        _ => unreachable!(),
    }
    let fragments: String = all
        .iter()
        .filter_map(|e| match e {
            Event::CallArgs { index: 0, fragment } => Some(fragment.as_str()),
            _ => None,
        })
        .collect();
    let parsed: Value = serde_json::from_str(&fragments).expect("fragments form JSON");
    assert_eq!(parsed, serde_json::json!({"path": "a\"b.rs"}));
    let end = all
        .iter()
        .position(|e| matches!(e, Event::CallEnd { index: 0, .. }))
        .expect("end");
    assert!(start < end);
}

#[test]
fn emits_a_rejection_and_keeps_the_text_when_a_construct_fails() {
    let mut p = parser("mistral", &[]);
    let mut all = push(&mut p, "[TOOL_CALLS]lint[ARGS]{\"paths\": [src]}");
    p.finish(&mut all);
    assert_eq!(content(&all), "[TOOL_CALLS]lint[ARGS]{\"paths\": [src]}");
    assert!(all.iter().any(|e| matches!(
        e,
        Event::Rejected(r) if r.construct == Construct::MistralToolCalls && r.reason == Reason::InvalidJson
    )));
}

#[test]
fn streams_reasoning_before_the_think_block_closes() {
    let mut p = parser("qwen", &[]);
    let events = push(&mut p, "<think>step one, </th");
    let reasoning: String = events
        .iter()
        .filter_map(|e| match e {
            Event::Reasoning(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reasoning, "step one, ");
}

#[test]
fn holds_bare_json_only_while_it_may_be_a_declared_call() {
    let tools = tools();
    let mut p = parser("qwen", &tools);
    assert_eq!(content(&push(&mut p, "Use {")), "Use ");
    // `{x` cannot be JSON: released at once.
    assert_eq!(content(&push(&mut p, "x} or ")), "{x} or ");
    assert_eq!(content(&push(&mut p, "{\"name\": \"read_file\"")), "");
    let events = push(&mut p, ", \"arguments\": {}} done");
    assert!(events.iter().any(|e| matches!(e, Event::CallEnd { .. })));
    assert_eq!(content(&events), " done");
}

#[test]
fn missed_calls_reports_calls_the_chosen_parser_did_not_read() {
    let tools = tools();
    let text = "[TOOL_CALLS]read_file[ARGS]{\"path\": \"a\"}";
    let missed = missed_calls("hermes", text, &tools)
        .expect("known parsers")
        .expect("missed");
    assert_eq!((missed.auto_calls, missed.parser_calls), (1, 0));
    assert_eq!(
        missed_calls("mistral", text, &tools).expect("known parsers"),
        None
    );
    assert_eq!(
        missed_calls("hermes", "plain words", &tools).expect("known parsers"),
        None
    );
}

#[test]
fn unknown_parser_error_lists_every_name() {
    let err = by_name("nope").expect_err("unknown").to_string();
    for spec in wick_parsers::PARSERS {
        assert!(err.contains(spec.name), "{err}");
    }
}

#[test]
fn releases_a_call_at_its_closing_character_when_fed_one_char_at_a_time() {
    let text = "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"src/lib.rs\"}}\n</tool_call>";
    let mut p = parser("hermes", &[]);
    let mut buf = [0u8; 4];
    let mut released_at = None;
    for (i, ch) in text.chars().enumerate() {
        let events = push(&mut p, ch.encode_utf8(&mut buf));
        if events.iter().any(|e| matches!(e, Event::CallEnd { .. })) {
            released_at = Some(i);
            break;
        }
    }
    assert_eq!(released_at, Some(text.chars().count() - 1));
}
