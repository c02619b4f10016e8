//! Download progress: an indicatif bar when stderr is a terminal, otherwise a log line
//! every few seconds (CI logs, `wick serve` under a supervisor), or nothing.
//!
//! Input: byte counts from the transfer loops. Output: stderr only. Knows nothing about
//! HTTP or files.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar if stderr is a terminal, else log lines.
    Auto,
    /// Log lines only.
    Lines,
    /// Nothing but the one-line notes (fallbacks, verification results).
    Quiet,
}

/// Seconds between two log lines when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Reports one transfer.
pub struct Transfer {
    label: String,
    total: Option<u64>,
    done: u64,
    bar: Option<ProgressBar>,
    lines: bool,
    last_line: Instant,
}

impl ProgressMode {
    /// Starts reporting a transfer of `total` bytes (if known), `done` of which are already
    /// there (a resumed download).
    pub fn start(self, label: &str, total: Option<u64>, done: u64) -> Transfer {
        let terminal = std::io::stderr().is_terminal();
        let bar = (self == ProgressMode::Auto && terminal).then(|| {
            let bar = match total {
                Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
                None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            };
            let style = if total.is_some() {
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
            } else {
                ProgressStyle::with_template("{msg} {bytes} {bytes_per_sec}")
            };
            // The templates are constants; a bad one would only lose the styling.
            if let Ok(style) = style {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.to_owned());
            bar.set_position(done);
            bar
        });
        let lines = bar.is_none() && self != ProgressMode::Quiet;
        if lines {
            eprintln!(
                "{label}: starting at {}{}",
                human(done),
                total
                    .map(|t| format!(" of {}", human(t)))
                    .unwrap_or_default()
            );
        }
        Transfer {
            label: label.to_owned(),
            total,
            done,
            bar,
            lines,
            last_line: Instant::now(),
        }
    }
}

impl Transfer {
    pub fn inc(&mut self, n: u64) {
        self.done += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
        } else if self.lines && self.last_line.elapsed() >= LOG_EVERY {
            self.last_line = Instant::now();
            eprintln!("{}: {}", self.label, self.status());
        }
    }

    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.lines || self.bar.is_some() {
            eprintln!("{}: done, {}", self.label, human(self.done));
        }
    }

    fn status(&self) -> String {
        match self.total {
            Some(t) if t > 0 => format!(
                "{} of {} ({}%)",
                human(self.done),
                human(t),
                self.done * 100 / t
            ),
            _ => human(self.done),
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        // An interrupted transfer must not leave a half-drawn bar over the error line.
        if let Some(bar) = &self.bar {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

/// Bytes in binary units, one decimal: "93.8 MiB".
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn formats_sizes() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(98_362_432), "93.8 MiB");
        assert_eq!(human(1_117_320_768), "1.0 GiB");
    }
}
