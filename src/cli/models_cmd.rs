//! `wick models`: the models.toml entries as a table (id, architecture, size, on disk or
//! not, tool parser), or as JSON lines with `--json`. Never touches the network.

use crate::config::ModelsConfig;
use crate::models::{human, partial_path, ModelEntry, Models};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where models are stored (default: the platform cache dir, e.g. ~/.cache/wick/models).
    #[arg(long, env = "WICK_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// A models.toml that replaces the built-in registry.
    #[arg(long, env = "WICK_MODELS_TOML")]
    pub models_toml: Option<PathBuf>,
    /// One JSON object per model instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One row of the listing.
struct Row<'a> {
    entry: &'a ModelEntry,
    path: PathBuf,
    on_disk: &'static str,
}

pub fn run(args: Args) -> crate::Result<()> {
    let models = Models::new(ModelsConfig::resolve(
        args.models_dir.as_deref(),
        args.models_toml.as_deref(),
    ))?;
    let rows: Vec<Row> = models
        .registry
        .entries
        .iter()
        .map(|entry| {
            let path = models.local_path(entry);
            let on_disk = disk_state(entry, &path);
            Row {
                entry,
                path,
                on_disk,
            }
        })
        .collect();
    if args.json {
        for r in &rows {
            println!("{}", json_row(r));
        }
    } else {
        print!("{}", table(&rows));
        println!("models directory: {}", models.config.dir.display());
    }
    Ok(())
}

/// "yes" (right size when known), "partial" (an unfinished download), or "no".
fn disk_state(entry: &ModelEntry, path: &std::path::Path) -> &'static str {
    match std::fs::metadata(path) {
        Ok(m) if entry.size.is_none_or(|s| s == m.len()) => "yes",
        _ if partial_path(path).exists() => "partial",
        _ => "no",
    }
}

fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let arch = if r.entry.is_supported() {
                r.entry.arch.clone()
            } else {
                format!("{} (unsupported)", r.entry.arch)
            };
            [
                r.entry.id.clone(),
                arch,
                r.entry.size.map(human).unwrap_or_else(|| "?".into()),
                r.on_disk.to_owned(),
                r.entry.tool_parser.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = ["ID", "ARCH", "SIZE", "ON DISK", "TOOL PARSER"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&cells) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn json_row(r: &Row) -> serde_json::Value {
    serde_json::json!({
        "id": r.entry.id,
        "arch": r.entry.arch,
        "supported": r.entry.is_supported(),
        "size": r.entry.size,
        "on_disk": r.on_disk,
        "path": r.path,
        "tool_parser": r.entry.tool_parser,
        "description": r.entry.description,
    })
}
