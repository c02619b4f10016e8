//! Runs the probe: renders every probe prompt through the chat template, generates greedily
//! with the engine (the same path `wick serve` uses), runs every parser on every output and
//! assembles the `Report`.
//!
//! Input: a loaded `Setup` (template, tokenizer, engine handle) and `Options`. Output:
//! `report::Report`. Loading lives in `cli/probe.rs`; this file never touches files or flags.

use super::cases::{self, ProbeCase, CASES};
use super::report::{Detection, PromptResult, Report, TemplateFormat, UnderTest};
use super::score::{self, Candidate};
use super::{parsing, ProbeError};
use crate::engine::{GenerationRequest, Handle, SamplingParams};
use crate::template::ChatTemplate;
use crate::tokenizer::Tokenizer;
use serde_json::Value;
use wick_parsers::ToolSpec;

/// What the probe runs on.
pub struct Setup<'a> {
    pub model_id: String,
    pub model_path: String,
    pub template: &'a ChatTemplate,
    /// The template's source text, for detection.
    pub template_source: &'a str,
    pub tokenizer: &'a Tokenizer,
    pub engine: &'a Handle,
}

pub struct Options {
    pub max_tokens: usize,
    /// The parser to check, and where it came from (`--parser`, `models.toml`).
    pub under_test: Option<(String, &'static str)>,
}

/// Runs the whole probe. Generation errors stop it; parser results never do.
pub fn run(setup: &Setup, opts: &Options) -> Result<Report, crate::Error> {
    let under_test = match &opts.under_test {
        Some((name, source)) => Some((parsing::check_name(name)?, *source)),
        None => None,
    };
    let tools = cases::tools();
    let specs = parsing::tool_specs(&tools)?;
    let parsers = parsing::names();
    let special: Vec<&str> = setup
        .tokenizer
        .special_tokens()
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let detection = parsing::detect(setup.template_source, &special);
    let template_format = template_format(setup, &specs, &parsers)?;

    let mut prompts = Vec::with_capacity(CASES.len());
    for case in CASES {
        prompts.push(run_case(
            setup,
            case,
            opts.max_tokens,
            &tools,
            &specs,
            &parsers,
        )?);
    }
    let totals: Vec<score::Totals> = (0..parsers.len())
        .map(|i| score::totals(prompts.iter().filter_map(|p| p.cells.get(i))))
        .collect();
    let candidates: Vec<Candidate> = parsers
        .iter()
        .zip(&totals)
        .map(|(p, t)| Candidate {
            parser: p,
            totals: t.clone(),
            reads_template_format: template_format
                .as_ref()
                .is_some_and(|f| f.read_by.contains(p)),
            detected: detection
                .as_ref()
                .is_some_and(|d: &Detection| d.parser == *p),
            is_auto: *p == "auto",
        })
        .collect();
    let recommendation = score::recommend(&candidates);
    let under_test = under_test.map(|(parser, source)| {
        let best_match = match recommendation.parser {
            Some(best) => {
                let of = |name: &str| parsers.iter().position(|p| *p == name).map(|i| &totals[i]);
                best == parser
                    || matches!((of(parser), of(best)), (Some(a), Some(b)) if score::same_merit(a, b))
            }
            None => false,
        };
        UnderTest {
            parser: parser.to_owned(),
            source,
            best_match,
        }
    });
    Ok(Report {
        model_id: setup.model_id.clone(),
        model_path: setup.model_path.clone(),
        max_tokens: opts.max_tokens,
        detection,
        template_format,
        parsers,
        prompts,
        totals,
        recommendation,
        under_test,
    })
}

fn run_case(
    setup: &Setup,
    case: &'static ProbeCase,
    max_tokens: usize,
    tools: &Value,
    specs: &[ToolSpec],
    parsers: &[&'static str],
) -> Result<PromptResult, crate::Error> {
    let prompt = setup.template.render(&case.request())?;
    let prompt_ids = setup.tokenizer.encode(&prompt, true, true)?;
    let generation = setup.engine.generate_blocking(
        GenerationRequest {
            prompt_ids,
            sampling: SamplingParams::default(), // temperature 0: greedy
            max_tokens,
            stop_strings: Vec::new(),
            stop_ids: Vec::new(),
            logprobs: None,
            constraint: None,
        },
        |_| {},
    )?;
    let mut cells = Vec::with_capacity(parsers.len());
    for parser in parsers {
        let parsed = parsing::parse(parser, &generation.text, specs)?;
        cells.push(score::score(parser, case, tools, parsed));
    }
    Ok(PromptResult {
        case,
        output: generation.text,
        finish_reason: generation.finish_reason.as_str(),
        completion_tokens: generation.usage.completion_tokens,
        cells,
    })
}

/// Renders a conversation with and without an assistant call; the difference, cut at the
/// end-of-turn token, is the call format the template teaches. `None` when the template
/// does not render tool calls.
fn template_format(
    setup: &Setup,
    specs: &[ToolSpec],
    parsers: &[&'static str],
) -> Result<Option<TemplateFormat>, crate::Error> {
    let without = setup.template.render(&cases::round_trip_request(false))?;
    let with = setup.template.render(&cases::round_trip_request(true))?;
    let common = without
        .char_indices()
        .zip(with.chars())
        .find(|((_, a), b)| a != b)
        .map_or(without.len().min(with.len()), |((i, _), _)| i);
    let eog: Vec<&str> = setup
        .tokenizer
        .special_tokens()
        .into_iter()
        .filter(|(id, _)| setup.tokenizer.eog_ids().contains(id))
        .map(|(_, t)| t)
        .collect();
    let rest = &with[common..];
    let end = eog
        .iter()
        .filter_map(|t| rest.find(t))
        .min()
        .unwrap_or(rest.len());
    let text = rest[..end].trim();
    if !text.contains("get_weather") {
        return Ok(None);
    }
    let want = cases::round_trip_arguments();
    let mut read_by = Vec::new();
    for parser in parsers {
        let p = parsing::parse(parser, text, specs)?;
        // Reading the format means consuming it: the call, with no markup left as text.
        let exact = p.calls.len() == 1
            && p.calls[0].name == "get_weather"
            && p.calls[0].arguments == want
            && p.content.is_none();
        if exact {
            read_by.push(*parser);
        }
    }
    Ok(Some(TemplateFormat {
        text: text.to_owned(),
        read_by,
    }))
}

/// The error for a parser that is not the best match, or for a model no parser reads.
pub fn verdict(report: &Report) -> Result<(), ProbeError> {
    let expected = report.expected_calls();
    let Some(best) = report.recommendation.parser else {
        return Err(ProbeError::NoParserReadsCalls);
    };
    let Some(u) = report.under_test.as_ref().filter(|u| !u.best_match) else {
        return Ok(());
    };
    let of = |name: &str| {
        report
            .parsers
            .iter()
            .position(|p| *p == name)
            .and_then(|i| report.totals.get(i))
            .cloned()
            .unwrap_or_default()
    };
    let (mine, theirs) = (of(&u.parser), of(best));
    Err(ProbeError::NotBestMatch {
        parser: u.parser.clone(),
        correct: mine.correct,
        false_calls: mine.false_calls,
        best: best.to_owned(),
        best_correct: theirs.correct,
        best_false: theirs.false_calls,
        expected,
    })
}
