//! `wick parse`: runs a tool-call parser on raw model output from stdin and prints the
//! merged result as one JSON object (contract: shared `parsers/README.md`, "`wick parse`").
//!
//! Inputs: stdin (UTF-8), `--parser`, `--tools FILE`, `--chunk-size N`, or `--batch`
//! (JSON Lines requests). Output: result objects on stdout. Depends only on the
//! `wick-parsers` crate; no model is loaded.
//!
//! Batch mode answers every line, in order: a line that is not a valid request gets
//! `{"error": "…"}` in its place so the answers stay aligned, and the command then exits
//! non-zero with `error: N of M batch lines failed`.

use crate::{Error, Result};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::PathBuf;
use wick_parsers::{by_name, parse_chunked, ToolSpec};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The parser: hermes, llama3_json, mistral, qwen, deepseek or auto.
    #[arg(long, required_unless_present = "batch")]
    pub parser: Option<String>,
    /// A JSON array of OpenAI tool objects (validates markerless calls, types XML values).
    #[arg(long, conflicts_with = "batch")]
    pub tools: Option<PathBuf>,
    /// Feed the streaming parser N characters at a time (0: all at once).
    #[arg(long, default_value_t = 0, conflicts_with = "batch")]
    pub chunk_size: usize,
    /// Read one JSON request per stdin line {"parser","input","tools"?,"chunk_size"?}.
    #[arg(long)]
    pub batch: bool,
}

pub fn run(args: Args) -> Result<()> {
    let input = read_stdin()?;
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    if args.batch {
        return batch(&input, &mut stdout);
    }
    let name = args.parser.as_deref().unwrap_or_default();
    by_name(name).map_err(parsers_error)?;
    let tools = match &args.tools {
        Some(path) => read_tools(path)?,
        None => Vec::new(),
    };
    let result = parse_chunked(name, &input, &tools, args.chunk_size).map_err(parsers_error)?;
    writeln!(stdout, "{}", result.to_json()).map_err(|e| Error::io("writing stdout", e))?;
    stdout.flush().map_err(|e| Error::io("writing stdout", e))
}

fn parsers_error(e: wick_parsers::Error) -> Error {
    Error::Usage(e.to_string())
}

fn read_stdin() -> Result<String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("reading stdin", e))?;
    String::from_utf8(bytes).map_err(|e| {
        Error::Usage(format!(
            "stdin is not valid UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

fn read_tools(path: &PathBuf) -> Result<Vec<ToolSpec>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading tools file {}", path.display()), e))?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Usage(format!("tools file {}: not JSON: {e}", path.display())))?;
    ToolSpec::from_openai(&value)
        .map_err(|e| Error::Usage(format!("tools file {}: {e}", path.display())))
}

/// One request line → one result object.
fn batch_line(line: &str) -> std::result::Result<Value, String> {
    let req: Value = serde_json::from_str(line).map_err(|e| format!("request is not JSON: {e}"))?;
    let name = req
        .get("parser")
        .and_then(Value::as_str)
        .ok_or("request has no \"parser\" string")?;
    let input = req
        .get("input")
        .and_then(Value::as_str)
        .ok_or("request has no \"input\" string")?;
    let tools = match req.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(t) => ToolSpec::from_openai(t).map_err(|e| e.to_string())?,
    };
    let chunk = match req.get("chunk_size") {
        None | Some(Value::Null) => 0,
        Some(n) => n
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or("\"chunk_size\" must be a non-negative integer")?,
    };
    let result = parse_chunked(name, input, &tools, chunk).map_err(|e| e.to_string())?;
    Ok(result.to_json())
}

fn batch(input: &str, out: &mut impl Write) -> Result<()> {
    let (mut total, mut failed) = (0, 0);
    for line in input.lines().filter(|l| !l.trim().is_empty()) {
        total += 1;
        let answer = batch_line(line).unwrap_or_else(|msg| {
            failed += 1;
            serde_json::json!({ "error": msg })
        });
        writeln!(out, "{answer}").map_err(|e| Error::io("writing stdout", e))?;
    }
    out.flush().map_err(|e| Error::io("writing stdout", e))?;
    if failed > 0 {
        return Err(Error::Usage(format!(
            "{failed} of {total} batch lines failed"
        )));
    }
    Ok(())
}
