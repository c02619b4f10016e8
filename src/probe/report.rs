//! The probe report: the data a probe run produced, printed as a table that fits in 100
//! columns, or as a stable JSON document (`--json`; fields documented in docs/probe.md).
//!
//! Input: `Report` (filled by `probe::run`). Output: text or `serde_json::Value`.
//! Formatting only: no model, no parser crate.

use super::cases::ProbeCase;
use super::score::{Cell, Recommendation, Totals};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Bumped only when a JSON field changes meaning or disappears (adding fields keeps it).
pub const JSON_VERSION: u32 = 1;

/// The parser the template implies, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub parser: String,
    pub evidence: String,
}

/// The call format the template itself renders for an assistant tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFormat {
    pub text: String,
    /// Parsers that read exactly the rendered call (name and arguments) from it, leaving no
    /// text over.
    pub read_by: Vec<&'static str>,
}

/// One probe prompt: what the model said and what every parser made of it.
#[derive(Debug, Clone)]
pub struct PromptResult {
    pub case: &'static ProbeCase,
    pub output: String,
    pub finish_reason: &'static str,
    pub completion_tokens: usize,
    /// One per parser, in `Report::parsers` order.
    pub cells: Vec<Cell>,
}

/// The parser being checked (exit status depends on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnderTest {
    pub parser: String,
    /// `--parser` or `models.toml`.
    pub source: &'static str,
    pub best_match: bool,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub model_id: String,
    pub model_path: String,
    pub max_tokens: usize,
    pub detection: Option<Detection>,
    pub template_format: Option<TemplateFormat>,
    pub parsers: Vec<&'static str>,
    pub prompts: Vec<PromptResult>,
    /// One per parser, in `parsers` order.
    pub totals: Vec<Totals>,
    pub recommendation: Recommendation,
    pub under_test: Option<UnderTest>,
}

impl Report {
    pub fn expected_calls(&self) -> usize {
        self.prompts.iter().map(|p| p.case.expected.len()).sum()
    }

    fn totals_of(&self, parser: &str) -> Option<&Totals> {
        let i = self.parsers.iter().position(|p| *p == parser)?;
        self.totals.get(i)
    }

    /// Prompts that expect calls where no parser read all of them: their raw output is shown.
    pub fn unread_prompts(&self) -> impl Iterator<Item = &PromptResult> {
        self.prompts.iter().filter(|p| {
            p.case.expects_calls() && !p.cells.iter().any(|c| c.missed == 0 && c.false_calls == 0)
        })
    }
}

const LABEL_WIDTH: usize = 11;
/// The text report fits a 100-column terminal.
const WIDTH: usize = 100;

fn cell_text(c: &Cell) -> String {
    let mark = match c.verdict() {
        "ok" => '✓',
        "false" => '✗',
        _ => '·',
    };
    let mut s = format!("{mark} {}/{}/{}", c.calls, c.declared, c.valid);
    if c.leftover > 0 {
        let _ = write!(s, " +{}", c.leftover);
    }
    if c.rejected > 0 {
        s.push('!');
    }
    s
}

fn row(out: &mut String, label: &str, cells: &[String], width: usize) {
    let _ = write!(out, "{label:<LABEL_WIDTH$}");
    for c in cells {
        let _ = write!(out, "{c:<width$}");
    }
    let trimmed = out.trim_end_matches(' ').len();
    out.truncate(trimmed);
    out.push('\n');
}

/// The human-readable report.
pub fn to_text(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "model      {}", r.model_id);
    let _ = writeln!(out, "file       {}", r.model_path);
    match &r.detection {
        Some(d) => {
            let _ = writeln!(
                out,
                "template   implies parser '{}': {}",
                d.parser, d.evidence
            );
        }
        None => {
            let _ = writeln!(
                out,
                "template   implies no parser (no tool-call marker found)"
            );
        }
    }
    match &r.template_format {
        Some(f) => {
            let _ = writeln!(
                out,
                "           renders an assistant call as: {}",
                one_line(&f.text, 56)
            );
        }
        None => {
            let _ = writeln!(out, "           renders no assistant tool calls");
        }
    }
    let _ = writeln!(
        out,
        "\n{} prompts, greedy, at most {} tokens each. Cell: ✓ all expected calls read, · some missed,",
        r.prompts.len(),
        r.max_tokens
    );
    out.push_str(
        "✗ a false call; then calls found/declared names/schema-valid arguments, +N characters\n\
         left as text, ! the parser rejected a call-like construct.\n\n",
    );
    matrix(&mut out, r);
    out.push('\n');
    recommendation_text(&mut out, r);
    raw_outputs(&mut out, r);
    out
}

fn matrix(out: &mut String, r: &Report) {
    let mut grid: Vec<(String, Vec<String>)> = Vec::new();
    grid.push((
        "prompt".into(),
        r.parsers.iter().map(|p| p.to_string()).collect(),
    ));
    for p in &r.prompts {
        grid.push((p.case.id.into(), p.cells.iter().map(cell_text).collect()));
    }
    let expected = r.expected_calls();
    grid.push((
        "correct".into(),
        r.totals
            .iter()
            .map(|t| format!("{}/{expected}", t.correct))
            .collect(),
    ));
    grid.push((
        "false".into(),
        r.totals.iter().map(|t| t.false_calls.to_string()).collect(),
    ));
    if let Some(f) = &r.template_format {
        grid.push((
            "template".into(),
            r.parsers
                .iter()
                .map(|p| if f.read_by.contains(p) { "reads" } else { "-" }.to_string())
                .collect(),
        ));
    }
    let width = grid
        .iter()
        .flat_map(|(_, cells)| cells.iter().map(|c| c.chars().count()))
        .max()
        .unwrap_or(0)
        + 1;
    for (i, (label, cells)) in grid.iter().enumerate() {
        row(out, label, cells, width);
        if i == 0 || i == r.prompts.len() {
            let _ = writeln!(
                out,
                "{}",
                "-".repeat(LABEL_WIDTH + width * r.parsers.len() - 2)
            );
        }
    }
}

/// Appends `text` as lines of at most `WIDTH` columns; continuation lines get `indent`.
fn wrapped(out: &mut String, text: &str, indent: &str) {
    let mut col = 0;
    for (i, word) in text.split(' ').enumerate() {
        let len = word.chars().count();
        if i > 0 && col + 1 + len > WIDTH {
            out.push('\n');
            out.push_str(indent);
            col = indent.len();
        } else if i > 0 {
            out.push(' ');
            col += 1;
        }
        out.push_str(word);
        col += len;
    }
    out.push('\n');
}

fn recommendation_text(out: &mut String, r: &Report) {
    let mut para = String::new();
    recommendation_paragraphs(&mut para, r);
    for line in para.lines() {
        let indent = if line.starts_with("  ") { "    " } else { "  " };
        wrapped(out, line, indent);
    }
}

fn recommendation_paragraphs(out: &mut String, r: &Report) {
    let expected = r.expected_calls();
    let rec = &r.recommendation;
    match rec.parser {
        None => {
            let _ = writeln!(
                out,
                "recommended: none. No parser reads a single correct call from this model's output."
            );
        }
        Some(best) => {
            let t = r.totals_of(best).cloned().unwrap_or_default();
            let _ = write!(
                out,
                "recommended: {best} (reads {} of {expected} expected calls, {} false)",
                t.correct, t.false_calls
            );
            if !rec.ties.is_empty() {
                let _ = write!(
                    out,
                    "; equally good: {}; {best} is chosen because {}",
                    rec.ties.join(", "),
                    tie_break_reason(r, best)
                );
            }
            out.push('\n');
            if rec.with_false_calls {
                out.push_str(
                    "  every parser that reads calls also reads a false one: the model calls \
                     tools badly; see the problems below.\n",
                );
            }
            if let Some(d) = &r.detection {
                if d.parser != best && !rec.ties.iter().any(|t| *t == d.parser) {
                    let dt = r.totals_of(&d.parser).cloned().unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "  the template implies '{}', but the model does not answer in that format \
                         ('{}' reads {} of {expected}).",
                        d.parser, d.parser, dt.correct
                    );
                }
            }
        }
    }
    if let Some(u) = &r.under_test {
        let t = r.totals_of(&u.parser).cloned().unwrap_or_default();
        let verdict = if u.best_match {
            "a best match"
        } else {
            "NOT a best match"
        };
        let _ = writeln!(
            out,
            "{} '{}' ({}): {verdict}: reads {} of {expected} expected calls, {} false, {} rejected constructs.",
            if u.source == "--parser" { "parser" } else { "configured parser" },
            u.parser,
            u.source,
            t.correct,
            t.false_calls,
            t.rejected
        );
    }
    problems(out, r);
}

/// Why the recommended parser won over the ones that score the same (see `score`).
fn tie_break_reason(r: &Report, best: &str) -> String {
    let reads = |p: &str| {
        r.template_format
            .as_ref()
            .is_some_and(|f| f.read_by.contains(&p))
    };
    let detected = |p: &str| r.detection.as_ref().is_some_and(|d| d.parser == p);
    let ties = &r.recommendation.ties;
    let mut why = Vec::new();
    if reads(best) && ties.iter().any(|t| !reads(t)) {
        why.push("it reads the call format the template teaches");
    }
    if detected(best) {
        why.push("the template implies it");
    }
    if ties.contains(&"auto") && best != "auto" {
        why.push("it turns less text into calls than auto");
    }
    if why.is_empty() {
        why.push("it comes first in the registry");
    }
    match why.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => why.join(""),
    }
}

/// Why calls were false, for the recommended parser and the parser under test.
fn problems(out: &mut String, r: &Report) {
    let mut shown: Vec<&str> = Vec::new();
    let names = r
        .recommendation
        .parser
        .into_iter()
        .chain(r.under_test.as_ref().map(|u| u.parser.as_str()));
    for name in names {
        if shown.contains(&name) {
            continue;
        }
        shown.push(name);
        for p in &r.prompts {
            for c in p.cells.iter().filter(|c| c.parser == name) {
                for problem in &c.problems {
                    let _ = writeln!(out, "  {name} on {}: false call: {problem}", p.case.id);
                }
            }
        }
    }
}

fn raw_outputs(out: &mut String, r: &Report) {
    for p in r.unread_prompts() {
        let header = format!(
            "no parser read the expected call on '{}' ({}; wants {}). Raw output ({} tokens, \
             finish reason {}):",
            p.case.id,
            p.case.tests,
            p.case.expected.join(", "),
            p.completion_tokens,
            p.finish_reason
        );
        out.push('\n');
        wrapped(out, &header, "  ");
        for line in p.output.lines() {
            let _ = writeln!(out, "  | {line}");
        }
    }
}

/// At most `max` characters on one line, with newlines shown as `\n`.
fn one_line(s: &str, max: usize) -> String {
    let flat = s.trim().replace('\n', "\\n");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn cell_json(c: &Cell) -> Value {
    json!({
        "verdict": c.verdict(),
        "calls": c.calls,
        "declared": c.declared,
        "valid": c.valid,
        "correct": c.correct,
        "false": c.false_calls,
        "extra": c.extra,
        "missed": c.missed,
        "leftover_chars": c.leftover,
        "rejected": c.rejected,
        "problems": c.problems,
        "tool_calls": c.parsed.calls.iter()
            .map(|k| json!({"name": k.name, "arguments": k.arguments}))
            .collect::<Vec<_>>(),
        "content": c.parsed.content,
    })
}

fn totals_json(t: &Totals) -> Value {
    json!({
        "correct": t.correct,
        "false": t.false_calls,
        "missed": t.missed,
        "extra": t.extra,
        "rejected": t.rejected,
        "ok_prompts": t.ok_prompts,
    })
}

/// The `--json` report (see docs/probe.md for the fields).
pub fn to_json(r: &Report) -> Value {
    let prompts: Vec<Value> = r
        .prompts
        .iter()
        .map(|p| {
            let results: serde_json::Map<String, Value> = p
                .cells
                .iter()
                .map(|c| (c.parser.to_string(), cell_json(c)))
                .collect();
            json!({
                "id": p.case.id,
                "tests": p.case.tests,
                "user": p.case.user,
                "expected": p.case.expected,
                "output": p.output,
                "finish_reason": p.finish_reason,
                "completion_tokens": p.completion_tokens,
                "results": results,
            })
        })
        .collect();
    let totals: serde_json::Map<String, Value> = r
        .parsers
        .iter()
        .zip(&r.totals)
        .map(|(p, t)| (p.to_string(), totals_json(t)))
        .collect();
    json!({
        "version": JSON_VERSION,
        "model": {"id": r.model_id, "path": r.model_path},
        "max_tokens": r.max_tokens,
        "detected": r.detection.as_ref().map(|d| json!({"parser": d.parser, "evidence": d.evidence})),
        "template_format": r.template_format.as_ref().map(|f| json!({"text": f.text, "read_by": f.read_by})),
        "parsers": r.parsers,
        "expected_calls": r.expected_calls(),
        "prompts": prompts,
        "totals": totals,
        "recommended": r.recommendation.parser,
        "equally_good": r.recommendation.ties,
        "under_test": r.under_test.as_ref().map(|u| json!({
            "parser": u.parser, "source": u.source, "best_match": u.best_match,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::super::cases::{tools, CASES};
    use super::super::score::{self, Call, Parsed};
    use super::*;

    fn sample() -> Report {
        let tools = tools();
        let parsers = vec![
            "hermes",
            "llama3_json",
            "mistral",
            "qwen",
            "deepseek",
            "auto",
        ];
        let prompts: Vec<PromptResult> = CASES
            .iter()
            .map(|case| {
                let cells = parsers
                    .iter()
                    .map(|p| {
                        let reads = matches!(*p, "qwen" | "auto") && case.id != "two_calls";
                        let calls = if reads {
                            case.expected
                                .iter()
                                .map(|n| Call { name: n.to_string(), arguments: serde_json::json!({"city": "Paris", "path": "a", "title": "t"}) })
                                .collect()
                        } else {
                            vec![]
                        };
                        let content = (!reads).then(|| "{\"name\": …}".to_string());
                        score::score(p, case, &tools, Parsed { calls, content, rejected: 0 })
                    })
                    .collect();
                PromptResult { case, output: "```json\n{\"name\": \"read_file\"}\n```".into(), finish_reason: "stop", completion_tokens: 12, cells }
            })
            .collect();
        let totals: Vec<Totals> = (0..parsers.len())
            .map(|i| score::totals(prompts.iter().map(|p| &p.cells[i])))
            .collect();
        Report {
            model_id: "m".into(),
            model_path: "/m.gguf".into(),
            max_tokens: 96,
            detection: Some(Detection {
                parser: "hermes".into(),
                evidence: "template contains <tool_call>".into(),
            }),
            template_format: Some(TemplateFormat {
                text: format!("<tool_call>\n{}\n</tool_call>", "x".repeat(200)),
                read_by: vec!["hermes", "qwen", "auto"],
            }),
            parsers,
            prompts,
            totals,
            recommendation: Recommendation {
                parser: Some("qwen"),
                ties: vec!["auto"],
                with_false_calls: false,
            },
            under_test: Some(UnderTest {
                parser: "mistral".into(),
                source: "--parser",
                best_match: false,
            }),
        }
    }

    #[test]
    fn text_fits_in_100_columns_and_explains() {
        let text = to_text(&sample());
        for line in text.lines().filter(|l| !l.starts_with("  | ")) {
            assert!(line.chars().count() <= 100, "too wide: {line}");
        }
        assert!(text.contains("recommended: qwen"), "{text}");
        assert!(text.contains("NOT a best match"), "{text}");
        assert!(text.contains("the template implies 'hermes'"), "{text}");
        // two_calls is read by nobody: its raw output is shown, and only its.
        assert!(
            text.contains("no parser read the expected call on 'two_calls'"),
            "{text}"
        );
        assert_eq!(
            text.matches("no parser read the expected call").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn json_has_documented_fields() {
        let j = to_json(&sample());
        assert_eq!(j["version"], 1);
        assert_eq!(j["recommended"], "qwen");
        assert_eq!(j["under_test"]["best_match"], false);
        assert_eq!(j["prompts"].as_array().map(Vec::len), Some(CASES.len()));
        assert_eq!(j["prompts"][0]["results"]["qwen"]["verdict"], "ok");
        assert_eq!(j["prompts"][0]["results"]["hermes"]["verdict"], "miss");
        assert_eq!(j["totals"]["qwen"]["correct"], 3);
        assert_eq!(j["expected_calls"], 5);
    }
}
