//! `wick serve` as a child process for the end-to-end tests: started on a free port, its
//! address read from its stderr, killed when the test ends.

use serde_json::Value;
use std::io::{BufRead, BufReader, Lines};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a model may take to load (debug builds on 2 cores are slow).
const LOAD_DEADLINE: Duration = Duration::from_secs(300);
const POLL_EVERY: Duration = Duration::from_millis(200);

/// A running `wick serve`, killed on drop so a failing test leaves no server behind.
pub struct Server {
    child: Child,
    /// The URL the server printed, e.g. `http://127.0.0.1:40123`.
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `wick serve --port 0 ARGS… --model MODEL`, returned once it listens; the model may
    /// still be loading (see [`wait_ready`]).
    pub fn start(model: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(bin_under_test())
            .args(["serve", "--port", "0"])
            .args(args)
            .arg("--model")
            .arg(model)
            .env("RUST_LOG", "warn")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn wick serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
        // The guard exists before the wait so a panic while reading still kills the child.
        let mut server = Server {
            child,
            base: String::new(),
        };
        server.base = listening_address(&mut lines);
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        server
    }
}

/// `$WICK_BIN` runs the tests against another build of wick (e.g. a release binary);
/// by default, the one cargo built for this test run.
fn bin_under_test() -> PathBuf {
    std::env::var_os("WICK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(super::wick_bin)
}

/// Reads stderr up to `wick: listening on URL`; if the server exits first, panics with
/// what it printed (usually the reason).
fn listening_address(lines: &mut Lines<BufReader<ChildStderr>>) -> String {
    let mut printed = Vec::new();
    for line in lines {
        let line = line.expect("read wick serve's stderr");
        if let Some(url) = line.strip_prefix("wick: listening on ") {
            return url.trim().to_owned();
        }
        printed.push(line);
    }
    panic!(
        "wick serve exited before printing its address; its stderr:\n{}",
        printed.join("\n")
    );
}

/// Waits for `/health` to answer 200. Panics with the health body if the model failed to
/// load, or if the server answers anything else or is still loading at the deadline.
pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    match settled_health(client, base).await {
        (200, _) => {}
        (503, body) => panic!("the model failed to load: {body}"),
        (status, body) => panic!("server never became ready: {status} {body}"),
    }
}

/// `/health` once the load has ended, loaded or failed: (status, body). For tests that
/// expect the load to fail; the others want [`wait_ready`].
pub async fn settled_health(client: &reqwest::Client, base: &str) -> (u16, Value) {
    let deadline = Instant::now() + LOAD_DEADLINE;
    loop {
        match health(client, base).await {
            Ok((status, body)) if !still_loading(status, &body) => return (status, body),
            _ if Instant::now() < deadline => tokio::time::sleep(POLL_EVERY).await,
            last => panic!("server never became ready in {LOAD_DEADLINE:?}: last /health {last:?}"),
        }
    }
}

async fn health(client: &reqwest::Client, base: &str) -> reqwest::Result<(u16, Value)> {
    let resp = client.get(format!("{base}/health")).send().await?;
    let status = resp.status().as_u16();
    // A body that is not JSON reads as null: the status alone then decides.
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// A 503 means "still loading" unless the body says the load failed.
fn still_loading(status: u16, body: &Value) -> bool {
    status == 503 && body["error"]["code"] != "model_load_failed"
}
