//! Scoring: what one parser read from one probe output, and which parser reads the model best.
//!
//! Input: a parser's result on a generated output (`Parsed`), the declared tools and the
//! calls the prompt expects. Output: a `Cell` per (prompt, parser), `Totals` per parser, and
//! a `Recommendation`. Pure functions over data: no model, no parser crate.
//!
//! The rules, stated once:
//! - a call is *declared* when its name is one of the request's tools, and *valid* when it is
//!   declared and its arguments pass the tool's JSON schema;
//! - a call is *correct* when it is valid and names a tool the prompt expects (each expected
//!   call counts once: a repeated call is not two correct ones);
//! - a call is *false* when its name is undeclared, its arguments fail the schema, or the
//!   prompt needs no tool at all. A valid call to a tool the prompt did not ask for is neither
//!   (it is the model's choice, not the parser's mistake) and is shown as "extra";
//! - the recommended parser reads the most correct calls with no false ones. When every parser
//!   that reads calls also reads a false one, the most correct minus false wins. Ties go to
//!   the parser that reads the template's own call format, then to the parser the template
//!   implies, then to a specific parser over `auto` (a broader parser turns more text into
//!   calls), then to registry order.

use super::cases::ProbeCase;
use super::schema;
use serde_json::Value;

/// One tool call as a parser returned it.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    pub arguments: Value,
}

/// A parser's whole result on one output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub calls: Vec<Call>,
    /// Content left over after the calls (trimmed; `None` when nothing is left).
    pub content: Option<String>,
    /// Call-like constructs the parser saw and rejected (kept as content).
    pub rejected: usize,
}

/// What one parser made of one probe output.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub parser: &'static str,
    pub calls: usize,
    pub declared: usize,
    pub valid: usize,
    pub correct: usize,
    pub false_calls: usize,
    /// Valid calls to tools the prompt did not ask for.
    pub extra: usize,
    /// Expected calls not read.
    pub missed: usize,
    /// Characters of content left over.
    pub leftover: usize,
    pub rejected: usize,
    /// Why calls were false, one line each (`read_file: $.path: missing …`).
    pub problems: Vec<String>,
    pub parsed: Parsed,
}

impl Cell {
    /// `ok` (every expected call read, nothing false), `false` or `miss`.
    pub fn verdict(&self) -> &'static str {
        if self.false_calls > 0 {
            "false"
        } else if self.missed > 0 {
            "miss"
        } else {
            "ok"
        }
    }
}

/// Finds a declared tool's `function` object by name.
fn find_tool<'a>(tools: &'a Value, name: &str) -> Option<&'a Value> {
    tools
        .as_array()?
        .iter()
        .map(|t| t.get("function").unwrap_or(t))
        .find(|f| f.get("name").and_then(Value::as_str) == Some(name))
}

/// Scores one parser's result against one prompt.
pub fn score(parser: &'static str, case: &ProbeCase, tools: &Value, parsed: Parsed) -> Cell {
    let mut cell = Cell {
        parser,
        calls: parsed.calls.len(),
        declared: 0,
        valid: 0,
        correct: 0,
        false_calls: 0,
        extra: 0,
        missed: 0,
        leftover: parsed.content.as_deref().map_or(0, |c| c.chars().count()),
        rejected: parsed.rejected,
        problems: Vec::new(),
        parsed: Parsed::default(),
    };
    let mut wanted: Vec<&str> = case.expected.to_vec();
    for call in &parsed.calls {
        let Some(tool) = find_tool(tools, &call.name) else {
            cell.false_calls += 1;
            cell.problems
                .push(format!("{}: not a declared tool", call.name));
            continue;
        };
        cell.declared += 1;
        let violations = schema::validate_arguments(tool.get("parameters"), &call.arguments);
        if let Some(first) = violations.first() {
            cell.false_calls += 1;
            cell.problems.push(format!("{}: {first}", call.name));
            continue;
        }
        cell.valid += 1;
        if !case.expects_calls() {
            cell.false_calls += 1;
            cell.problems.push(format!(
                "{}: called on a prompt that needs no tool",
                call.name
            ));
        } else if let Some(i) = wanted.iter().position(|w| *w == call.name) {
            wanted.swap_remove(i);
            cell.correct += 1;
        } else {
            cell.extra += 1;
        }
    }
    cell.missed = wanted.len();
    cell.parsed = parsed;
    cell
}

/// A parser's results over the whole probe set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub correct: usize,
    pub false_calls: usize,
    pub missed: usize,
    pub extra: usize,
    pub rejected: usize,
    /// Prompts whose verdict is `ok`.
    pub ok_prompts: usize,
}

pub fn totals<'a>(cells: impl Iterator<Item = &'a Cell>) -> Totals {
    let mut t = Totals::default();
    for c in cells {
        t.correct += c.correct;
        t.false_calls += c.false_calls;
        t.missed += c.missed;
        t.extra += c.extra;
        t.rejected += c.rejected;
        t.ok_prompts += usize::from(c.verdict() == "ok");
    }
    t
}

/// What the ranking knows about one parser.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub parser: &'static str,
    pub totals: Totals,
    /// Reads the call the template itself renders.
    pub reads_template_format: bool,
    /// The parser the template implies (detection).
    pub detected: bool,
    pub is_auto: bool,
}

/// The probe's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendation {
    /// `None` when no parser reads a single correct call.
    pub parser: Option<&'static str>,
    /// Parsers that score exactly as well (equally good choices, lost only on tie-breaks).
    pub ties: Vec<&'static str>,
    /// Every parser that reads calls also reads a false one.
    pub with_false_calls: bool,
}

/// The score part of the ranking: parsers with equal keys are equally good at this model.
fn merit(t: &Totals) -> (bool, i64, std::cmp::Reverse<usize>) {
    (
        t.false_calls == 0,
        t.correct as i64 - t.false_calls as i64,
        std::cmp::Reverse(t.false_calls),
    )
}

/// Whether `a` and `b` read this model equally well.
pub fn same_merit(a: &Totals, b: &Totals) -> bool {
    merit(a) == merit(b) && a.correct == b.correct
}

/// Ranks candidates (given in registry order) and picks the recommended parser.
pub fn recommend(candidates: &[Candidate]) -> Recommendation {
    let readers: Vec<(usize, &Candidate)> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| c.totals.correct > 0)
        .collect();
    let Some(best) = readers.iter().max_by(|(ia, a), (ib, b)| {
        let key = |i: usize, c: &Candidate| {
            (
                merit(&c.totals),
                c.totals.correct,
                c.reads_template_format,
                c.detected,
                !c.is_auto,
                std::cmp::Reverse(i),
            )
        };
        key(*ia, a).cmp(&key(*ib, b))
    }) else {
        return Recommendation {
            parser: None,
            ties: Vec::new(),
            with_false_calls: false,
        };
    };
    let best = best.1;
    let ties = readers
        .iter()
        .filter(|(_, c)| c.parser != best.parser && same_merit(&c.totals, &best.totals))
        .map(|(_, c)| c.parser)
        .collect();
    Recommendation {
        parser: Some(best.parser),
        ties,
        with_false_calls: best.totals.false_calls > 0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::cases::{tools, CASES};
    use super::*;
    use serde_json::json;

    fn call(name: &str, arguments: Value) -> Call {
        Call {
            name: name.into(),
            arguments,
        }
    }

    fn case(id: &str) -> &'static ProbeCase {
        CASES.iter().find(|c| c.id == id).expect("case exists")
    }

    #[test]
    fn scores_cells() {
        let tools = tools();
        struct Row {
            case: &'static str,
            calls: Vec<Call>,
            want: (usize, usize, usize, usize, usize), // declared, valid, correct, false, missed
            verdict: &'static str,
        }
        let rows = vec![
            Row {
                case: "single",
                calls: vec![call(
                    "get_weather",
                    json!({"city": "Paris", "unit": "celsius"}),
                )],
                want: (1, 1, 1, 0, 0),
                verdict: "ok",
            },
            Row {
                case: "single",
                calls: vec![],
                want: (0, 0, 0, 0, 1),
                verdict: "miss",
            },
            Row {
                case: "single",
                calls: vec![call("weather", json!({"city": "Paris"}))],
                want: (0, 0, 0, 1, 1),
                verdict: "false",
            },
            Row {
                case: "single",
                calls: vec![call("get_weather", json!({"unit": "kelvin"}))],
                want: (1, 0, 0, 1, 1),
                verdict: "false",
            },
            Row {
                case: "two_calls",
                calls: vec![call("read_file", json!({"path": "a"}))],
                want: (1, 1, 1, 0, 1),
                verdict: "miss",
            },
            Row {
                case: "two_calls",
                calls: vec![
                    call("read_file", json!({"path": "a"})),
                    call("read_file", json!({"path": "b"})),
                ],
                want: (2, 2, 2, 0, 0),
                verdict: "ok",
            },
            Row {
                case: "two_calls",
                calls: vec![call("read_file", json!({"path": "a", "mode": "r"}))],
                want: (1, 0, 0, 1, 2),
                verdict: "false",
            },
            Row {
                case: "no_args",
                calls: vec![call("list_pull_requests", json!({}))],
                want: (1, 1, 1, 0, 0),
                verdict: "ok",
            },
            Row {
                case: "no_tool",
                calls: vec![],
                want: (0, 0, 0, 0, 0),
                verdict: "ok",
            },
            Row {
                case: "no_tool",
                calls: vec![call("list_pull_requests", json!({}))],
                want: (1, 1, 0, 1, 0),
                verdict: "false",
            },
            // A valid call to another tool is the model's choice: extra, not false.
            Row {
                case: "nested",
                calls: vec![call("get_weather", json!({"city": "x"}))],
                want: (1, 1, 0, 0, 1),
                verdict: "miss",
            },
        ];
        for r in rows {
            let parsed = Parsed {
                calls: r.calls,
                content: Some("ab".into()),
                rejected: 0,
            };
            let c = score("qwen", case(r.case), &tools, parsed);
            assert_eq!(
                (c.declared, c.valid, c.correct, c.false_calls, c.missed),
                r.want,
                "{}: {c:?}",
                r.case
            );
            assert_eq!(c.verdict(), r.verdict, "{}", r.case);
            assert_eq!(c.leftover, 2);
            assert_eq!(c.problems.len(), c.false_calls);
        }
    }

    fn cand(parser: &'static str, correct: usize, false_calls: usize) -> Candidate {
        Candidate {
            parser,
            totals: Totals {
                correct,
                false_calls,
                ..Totals::default()
            },
            reads_template_format: false,
            detected: false,
            is_auto: parser == "auto",
        }
    }

    #[test]
    fn recommends_most_correct_without_false_calls() {
        // A parser with more correct calls but one false one loses to a clean one.
        let r = recommend(&[
            cand("hermes", 0, 0),
            cand("llama3_json", 5, 1),
            cand("qwen", 4, 0),
        ]);
        assert_eq!(r.parser, Some("qwen"));
        assert!(r.ties.is_empty());
        assert!(!r.with_false_calls);
    }

    #[test]
    fn ties_prefer_template_format_then_detection_then_specific() {
        let mut l = cand("llama3_json", 5, 0);
        let mut q = cand("qwen", 5, 0);
        let a = cand("auto", 5, 0);
        let r = recommend(&[l.clone(), q.clone(), a.clone()]);
        assert_eq!(r.parser, Some("llama3_json"), "registry order, auto last");
        assert_eq!(r.ties, vec!["qwen", "auto"]);
        l.detected = true;
        let r = recommend(&[l.clone(), q.clone(), a.clone()]);
        assert_eq!(r.parser, Some("llama3_json"));
        q.reads_template_format = true;
        let r = recommend(&[l, q, a]);
        assert_eq!(r.parser, Some("qwen"));
    }

    #[test]
    fn nothing_read_gives_no_recommendation() {
        let r = recommend(&[cand("hermes", 0, 0), cand("mistral", 0, 2)]);
        assert_eq!(r.parser, None);
        let r = recommend(&[cand("hermes", 2, 1), cand("qwen", 3, 3)]);
        assert_eq!(r.parser, Some("hermes"));
        assert!(r.with_false_calls);
    }
}
