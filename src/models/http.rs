//! HTTP transfers for model files: a HEAD probe that reads the hub's LFS sha256, and a
//! resumable, verified download into a `.partial` file.
//!
//! Why ureq and not hf-hub's downloader: hf-hub 0.4 writes into its own blob cache
//! layout and has no checksum step; wick needs the file under its own name in the
//! models directory, Range resume of that file, a sha256 check before the rename, and
//! its own progress display. hf-hub still supplies the hub conventions (resolve URLs,
//! token location), see `fetch.rs` and `config.rs`.
//!
//! Input: URLs, an optional bearer token, the expected sha256. Output: a verified file at
//! the `.partial` path (the caller renames it), or a typed error. A mismatching file is
//! deleted; an interrupted one is kept for the next resume.

use super::progress::ProgressMode;
use super::ModelsError;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Transfer buffer (reused for the whole download).
const CHUNK: usize = 256 * 1024;
/// Attempts per download: a dropped connection resumes from where it stopped.
const ATTEMPTS: usize = 4;

/// What a HEAD of a resolve URL says about the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remote {
    /// The LFS sha256 (`x-linked-etag`, else an `ETag` that is 64 hex digits).
    pub sha256: Option<String>,
    pub size: Option<u64>,
}

/// One download request.
pub struct Download<'a> {
    pub url: &'a str,
    pub token: Option<&'a str>,
    /// Where the bytes go; `<partial>.sha256` remembers what they must hash to, so that a
    /// resume never appends to bytes of another file.
    pub partial: &'a Path,
    pub sha256: &'a str,
    pub size: Option<u64>,
    /// Names the model in progress lines and errors.
    pub label: &'a str,
    pub progress: ProgressMode,
}

pub struct Http {
    agent: ureq::Agent,
    /// For the probe: the hub answers a resolve URL of an LFS file with a redirect that
    /// carries the sha256, and the CDN behind it does not.
    no_redirect: ureq::Agent,
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Http {
    pub fn new() -> Self {
        let builder = || {
            ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(15))
                .timeout_read(Duration::from_secs(60))
                .user_agent(concat!("wick/", env!("CARGO_PKG_VERSION")))
                .try_proxy_from_env(true)
        };
        Http {
            agent: builder().build(),
            no_redirect: builder().redirects(0).build(),
        }
    }

    /// HEAD `url` without following redirects.
    pub fn probe(&self, url: &str, token: Option<&str>) -> Result<Remote, ModelsError> {
        let resp = with_token(self.no_redirect.head(url), token)
            .call()
            .map_err(|e| request_error(url, e))?;
        let header = |name: &str| resp.header(name).map(str::to_owned);
        let sha256 = header("x-linked-etag")
            .or_else(|| header("etag"))
            .map(|e| {
                e.trim_start_matches("W/")
                    .trim_matches('"')
                    .to_ascii_lowercase()
            })
            .filter(|e| is_sha256(e));
        let size = header("x-linked-size")
            .or_else(|| header("content-length"))
            .and_then(|s| s.trim().parse().ok());
        Ok(Remote { sha256, size })
    }

    /// GET `url` as text (an index page), at most `limit` bytes.
    pub fn get_text(&self, url: &str, limit: u64) -> Result<String, ModelsError> {
        let resp = self
            .agent
            .get(url)
            .call()
            .map_err(|e| request_error(url, e))?;
        let mut text = String::new();
        resp.into_reader()
            .take(limit)
            .read_to_string(&mut text)
            .map_err(|e| ModelsError::Unreachable {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(text)
    }

    /// Downloads into `d.partial`, resuming what is there, and checks size and sha256.
    pub fn download(&self, d: &Download) -> Result<(), ModelsError> {
        let (mut file, mut hasher, mut have) = open_partial(d)?;
        let mut buf = vec![0u8; CHUNK];
        let mut transfer = d.progress.start(d.label, d.size, have);
        let mut last_error = String::new();
        let mut complete = false;
        for _ in 0..ATTEMPTS {
            last_error.clear();
            let mut req = with_token(self.agent.get(d.url), d.token);
            if have > 0 {
                req = req.set("Range", &format!("bytes={have}-"));
            }
            let resp = match req.call() {
                Ok(r) => r,
                // The whole file is already here; the checksum below decides.
                Err(ureq::Error::Status(416, _)) if have > 0 => {
                    complete = true;
                    break;
                }
                Err(ureq::Error::Transport(t)) if have > 0 => {
                    last_error = transport_reason(&t);
                    continue;
                }
                Err(e) => return Err(request_error(d.url, e)),
            };
            if resp.status() != 206 || range_start(resp.header("content-range")) != Some(have) {
                // The server ignored the Range (or answered another one): start over.
                file.set_len(0).map_err(|e| io_error(d, e))?;
                hasher = Sha256::new();
                have = 0;
            }
            let mut body = resp.into_reader();
            loop {
                let n = match body.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => {
                        last_error = e.to_string();
                        break;
                    }
                };
                file.write_all(&buf[..n]).map_err(|e| io_error(d, e))?;
                hasher.update(&buf[..n]);
                have += n as u64;
                transfer.inc(n as u64);
            }
            if last_error.is_empty() {
                if d.size.is_some_and(|s| have < s) {
                    last_error = "the connection closed early".into();
                    continue;
                }
                complete = true;
                break;
            }
        }
        file.sync_all().map_err(|e| io_error(d, e))?;
        drop(file);
        if !complete {
            return Err(ModelsError::Interrupted {
                label: d.label.to_owned(),
                done: have,
                total: d.size,
                reason: last_error,
            });
        }
        let got = hex::encode(hasher.finalize());
        if got != d.sha256 {
            discard(d.partial);
            return Err(ModelsError::ChecksumMismatch {
                label: d.label.to_owned(),
                expected: d.sha256.to_owned(),
                got,
            });
        }
        if let Some(size) = d.size.filter(|&s| s != have) {
            discard(d.partial);
            return Err(ModelsError::SizeMismatch {
                label: d.label.to_owned(),
                expected: size,
                got: have,
            });
        }
        transfer.finish();
        Ok(())
    }
}

/// Opens the partial file for appending, with a hasher fed with what it already holds.
/// Bytes meant for another sha256 (or too many bytes) are thrown away.
fn open_partial(d: &Download) -> Result<(File, Sha256, u64), ModelsError> {
    let marker = marker_path(d.partial);
    let same_target = std::fs::read_to_string(&marker).is_ok_and(|s| s.trim() == d.sha256);
    let existing = std::fs::metadata(d.partial).map(|m| m.len()).unwrap_or(0);
    let keep = same_target && d.size.is_none_or(|s| existing <= s);
    if !keep {
        std::fs::write(&marker, d.sha256).map_err(|e| io_error(d, e))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(d.partial)
        .map_err(|e| io_error(d, e))?;
    let mut hasher = Sha256::new();
    if !keep {
        file.set_len(0).map_err(|e| io_error(d, e))?;
        return Ok((file, hasher, 0));
    }
    let have = hash_reader(&mut file, &mut hasher).map_err(|e| io_error(d, e))?;
    Ok((file, hasher, have))
}

/// Feeds everything `r` yields into `hasher`; returns the byte count.
pub fn hash_reader(r: &mut impl Read, hasher: &mut Sha256) -> std::io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => {
                hasher.update(&buf[..k]);
                n += k as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// sha256 and size of a file on disk.
pub fn file_sha256(path: &Path) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let n = hash_reader(&mut File::open(path)?, &mut hasher)?;
    Ok((hex::encode(hasher.finalize()), n))
}

/// Moves a verified partial file to its final name (atomic within the directory).
pub fn finalize(partial: &Path, dest: &Path) -> Result<(), ModelsError> {
    std::fs::rename(partial, dest).map_err(|source| ModelsError::Io {
        context: format!("cannot rename {} to {}", partial.display(), dest.display()),
        source,
    })?;
    let _ = std::fs::remove_file(marker_path(partial));
    Ok(())
}

/// Removes a partial file and its marker (best effort: it is already unusable).
pub fn discard(partial: &Path) {
    let _ = std::fs::remove_file(partial);
    let _ = std::fs::remove_file(marker_path(partial));
}

fn marker_path(partial: &Path) -> PathBuf {
    let mut s = partial.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn with_token(req: ureq::Request, token: Option<&str>) -> ureq::Request {
    match token {
        Some(t) => req.set("Authorization", &format!("Bearer {t}")),
        None => req,
    }
}

/// `bytes START-END/TOTAL` → START.
fn range_start(h: Option<&str>) -> Option<u64> {
    h?.trim()
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn request_error(url: &str, e: ureq::Error) -> ModelsError {
    match e {
        ureq::Error::Status(status, _) => ModelsError::Http {
            url: url.to_owned(),
            status,
        },
        ureq::Error::Transport(t) => ModelsError::Unreachable {
            url: url.to_owned(),
            reason: transport_reason(&t),
        },
    }
}

/// ureq's own Display repeats the URL; the error message already names it.
fn transport_reason(t: &ureq::Transport) -> String {
    let detail = t
        .message()
        .map(str::to_owned)
        .or_else(|| std::error::Error::source(t).map(|s| s.to_string()));
    match detail {
        Some(d) => format!("{} ({d})", t.kind()),
        None => t.kind().to_string(),
    }
}

/// A write error: a full disk deletes the partial file (it cannot be finished here and
/// only takes space) and says so; anything else keeps it for a resume.
fn io_error(d: &Download, e: std::io::Error) -> ModelsError {
    let dir = d.partial.parent().unwrap_or(Path::new(".")).to_owned();
    if e.kind() == ErrorKind::StorageFull {
        discard(d.partial);
        return ModelsError::NoSpace {
            label: d.label.to_owned(),
            dir,
            needed: d.size,
        };
    }
    ModelsError::Io {
        context: format!("writing {}", d.partial.display()),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range_start() {
        assert_eq!(range_start(Some("bytes 100-199/200")), Some(100));
        assert_eq!(range_start(Some("bytes */200")), None);
        assert_eq!(range_start(None), None);
    }

    #[test]
    fn a_full_disk_deletes_the_partial_file_and_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let partial = tmp.path().join("m.gguf.partial");
        std::fs::write(&partial, b"half").unwrap();
        std::fs::write(marker_path(&partial), "x").unwrap();
        let d = Download {
            url: "http://h/f",
            token: None,
            partial: &partial,
            sha256: "x",
            size: Some(2 << 30),
            label: "m",
            progress: ProgressMode::Quiet,
        };
        let err = io_error(&d, std::io::Error::from(ErrorKind::StorageFull));
        assert!(matches!(err, ModelsError::NoSpace { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("no space left on the device of "),
            "{err}"
        );
        assert!(err.to_string().contains("(2.0 GiB needed)"), "{err}");
        assert!(!partial.exists() && !marker_path(&partial).exists());
        // Other write errors keep the partial file for a resume.
        std::fs::write(&partial, b"half").unwrap();
        let err = io_error(&d, std::io::Error::from(ErrorKind::PermissionDenied));
        assert!(matches!(err, ModelsError::Io { .. }) && partial.exists());
    }

    #[test]
    fn recognises_sha256_etags() {
        assert!(is_sha256(
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
        ));
        assert!(!is_sha256("\"abc\""));
    }
}
