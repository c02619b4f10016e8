//! The `wick parse --batch` protocol on the parser crate alone (no model, no server):
//! one JSON request per stdin line `{"parser","input","tools"?,"chunk_size"?}`, one result
//! per stdout line. Lets `check.py --batch` run against the crate while the `wick` binary
//! is being built: `cargo run -p wick-parsers --example parse_batch`.

use serde_json::{json, Value};
use std::io::{BufRead, Write};
use wick_parsers::{parse_chunked, ToolSpec};

fn answer(line: &str) -> Result<Value, String> {
    let req: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let name = req["parser"].as_str().ok_or("no parser")?;
    let input = req["input"].as_str().ok_or("no input")?;
    let tools = match req.get("tools") {
        Some(t) if !t.is_null() => ToolSpec::from_openai(t).map_err(|e| e.to_string())?,
        _ => Vec::new(),
    };
    let chunk = req.get("chunk_size").and_then(Value::as_u64).unwrap_or(0) as usize;
    let result = parse_chunked(name, input, &tools, chunk).map_err(|e| e.to_string())?;
    Ok(result.to_json())
}

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let v = answer(&line).unwrap_or_else(|e| json!({ "error": e }));
        if writeln!(out, "{v}").is_err() {
            return;
        }
    }
    let _ = out.flush();
}
