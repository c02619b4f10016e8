//! Typed access to a GGUF file: metadata by key and quantized tensors by name.
//! Input: a path. Output: `Gguf` (metadata + tensor reader). Depends on candle's gguf reader
//! only; knows nothing about tokenizers, templates or the server.

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::QTensor;
use candle_core::Device;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use thiserror::Error;

mod header;

#[derive(Debug, Error)]
pub enum GgufError {
    #[error("model file not found: {0}")]
    NotFound(PathBuf),
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid GGUF file: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: metadata key '{key}' is missing or has the wrong type")]
    MissingKey { path: PathBuf, key: String },
    #[error("{path}: tensor '{name}' cannot be read (truncated file?): {reason}")]
    Tensor {
        path: PathBuf,
        name: String,
        reason: String,
    },
}

/// Reads a GGUF header (metadata and tensor table) from `reader`, whose whole length is
/// `file_len`. A malformed or hostile file is an error, never a panic or a huge allocation:
/// `header::check` bounds every length by what is left of the file before candle reads it,
/// and every tensor must fit in the file, with overflow-checked sizes.
pub fn read_content<R: Read + Seek>(reader: &mut R, file_len: u64) -> Result<Content, String> {
    header::check(reader, file_len)?;
    let content = Content::read(reader).map_err(|e| e.to_string())?;
    check_tensor_extents(&content, file_len)?;
    Ok(content)
}

/// A truncated download must fail at open with a clear message, not mid-load; a tensor
/// whose size overflows is refused, not wrapped around.
fn check_tensor_extents(content: &Content, file_len: u64) -> Result<(), String> {
    for (name, info) in &content.tensor_infos {
        let dtype = info.ggml_dtype;
        let (block, size) = (dtype.block_size() as u64, dtype.type_size() as u64);
        let bytes = info
            .shape
            .dims()
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
            .filter(|elems| *elems % block == 0)
            .and_then(|elems| (elems / block).checked_mul(size));
        let end = bytes.and_then(|b| {
            content
                .tensor_data_offset
                .checked_add(info.offset)?
                .checked_add(b)
        });
        match end {
            Some(end) if end <= file_len => {}
            Some(end) => {
                return Err(format!(
                "tensor '{name}' ends at byte {end} but the file has {file_len} bytes (truncated?)"
            ))
            }
            None => {
                return Err(format!(
                    "tensor '{name}' has an impossible size (shape {:?}, type {dtype:?})",
                    info.shape.dims()
                ))
            }
        }
    }
    Ok(())
}

/// An opened GGUF file. Metadata is parsed eagerly; tensors are read on demand.
pub struct Gguf {
    pub path: PathBuf,
    pub content: Content,
    reader: BufReader<File>,
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        if !path.exists() {
            return Err(GgufError::NotFound(path.to_owned()));
        }
        let file = File::open(path).map_err(|source| GgufError::Open {
            path: path.to_owned(),
            source,
        })?;
        let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut reader = BufReader::new(file);
        let content = read_content(&mut reader, file_len).map_err(|reason| GgufError::Invalid {
            path: path.to_owned(),
            reason,
        })?;
        Ok(Gguf {
            path: path.to_owned(),
            content,
            reader,
        })
    }

    pub fn value(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn missing(&self, key: &str) -> GgufError {
        GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_owned(),
        }
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.value(key)? {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        }
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        match self.value(key)? {
            Value::U8(v) => Some(*v as u64),
            Value::U16(v) => Some(*v as u64),
            Value::U32(v) => Some(*v as u64),
            Value::U64(v) => Some(*v),
            Value::I8(v) if *v >= 0 => Some(*v as u64),
            Value::I16(v) if *v >= 0 => Some(*v as u64),
            Value::I32(v) if *v >= 0 => Some(*v as u64),
            Value::I64(v) if *v >= 0 => Some(*v as u64),
            _ => None,
        }
    }

    pub fn get_f64(&self, key: &str) -> Option<f64> {
        match self.value(key)? {
            Value::F32(v) => Some(*v as f64),
            Value::F64(v) => Some(*v),
            _ => self.get_u64(key).map(|v| v as f64),
        }
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.value(key)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn get_array(&self, key: &str) -> Option<&[Value]> {
        match self.value(key)? {
            Value::Array(a) => Some(a.as_slice()),
            _ => None,
        }
    }

    pub fn get_str_array(&self, key: &str) -> Option<Vec<&str>> {
        self.get_array(key)?
            .iter()
            .map(|v| match v {
                Value::String(s) => Some(s.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn get_i64_array(&self, key: &str) -> Option<Vec<i64>> {
        self.get_array(key)?
            .iter()
            .map(|v| match v {
                Value::I8(x) => Some(*x as i64),
                Value::I16(x) => Some(*x as i64),
                Value::I32(x) => Some(*x as i64),
                Value::I64(x) => Some(*x),
                Value::U8(x) => Some(*x as i64),
                Value::U16(x) => Some(*x as i64),
                Value::U32(x) => Some(*x as i64),
                Value::U64(x) => Some(*x as i64),
                _ => None,
            })
            .collect()
    }

    pub fn require_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get_str(key).ok_or_else(|| self.missing(key))
    }

    pub fn require_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get_u64(key).ok_or_else(|| self.missing(key))
    }

    pub fn require_f64(&self, key: &str) -> Result<f64, GgufError> {
        self.get_f64(key).ok_or_else(|| self.missing(key))
    }

    /// `general.architecture`, e.g. "qwen2" or "llama".
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.require_str("general.architecture")
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    pub fn tensor(&mut self, name: &str, device: &Device) -> Result<QTensor, GgufError> {
        self.content
            .tensor(&mut self.reader, name, device)
            .map_err(|e| GgufError::Tensor {
                path: self.path.clone(),
                name: name.to_owned(),
                reason: e.to_string(),
            })
    }
}
