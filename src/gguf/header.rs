//! A bounds-checking walk over a GGUF header before candle parses it. A hostile or broken
//! file must give an error, never a panic or a huge allocation, so every length and count
//! read from the file is checked against the bytes the file has left before anything is
//! skipped or read; nothing here allocates more than a key's text. It also refuses what
//! would make candle's reader panic (a `general.alignment` of 0) or overflow (tensor
//! dimensions whose product does not fit in 64 bits).
//! Layout (GGUF v1-v3): magic, version, tensor count, metadata count, the metadata
//! key/values, then the tensor infos. v1 writes lengths as u32, later versions as u64.

use std::io::{Read, Seek, SeekFrom};

const MAGIC: u32 = 0x4655_4747; // "GGUF" little-endian
/// Arrays of arrays are allowed by the format; deeper nesting is not used by any model.
const MAX_ARRAY_DEPTH: usize = 2;
/// Tensors have at most 4 dimensions (ggml's `GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// Keys are short ASCII names (`tokenizer.ggml.tokens`); 64 KiB is far above any.
const MAX_KEY_BYTES: u64 = 64 * 1024;

struct Walker<'a, R> {
    r: &'a mut R,
    len: u64,
    /// v1 files write lengths as u32.
    v1: bool,
}

type Res<T> = Result<T, String>;

fn io(e: std::io::Error) -> String {
    format!("the header is cut short ({e})")
}

impl<R: Read + Seek> Walker<'_, R> {
    fn remaining(&mut self) -> Res<u64> {
        let pos = self.r.stream_position().map_err(io)?;
        Ok(self.len.saturating_sub(pos))
    }

    fn u32(&mut self) -> Res<u32> {
        let mut b = [0; 4];
        self.r.read_exact(&mut b).map_err(io)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Res<u64> {
        let mut b = [0; 8];
        self.r.read_exact(&mut b).map_err(io)?;
        Ok(u64::from_le_bytes(b))
    }

    fn length(&mut self) -> Res<u64> {
        if self.v1 {
            self.u32().map(u64::from)
        } else {
            self.u64()
        }
    }

    /// Skips `n` bytes that must be in the file.
    fn skip(&mut self, n: u64, what: &str) -> Res<()> {
        let left = self.remaining()?;
        if n > left {
            return Err(format!(
                "{what} needs {n} bytes but the file has {left} left"
            ));
        }
        let n = i64::try_from(n).map_err(|_| format!("{what} is too long"))?;
        self.r.seek(SeekFrom::Current(n)).map_err(io)?;
        Ok(())
    }

    /// A string's length, checked against the file; the bytes are skipped.
    fn skip_string(&mut self, what: &str) -> Res<()> {
        let n = self.length()?;
        self.skip(n, what)
    }

    /// A metadata key (short; read to name errors and spot `general.alignment`).
    fn key(&mut self) -> Res<String> {
        let n = self.length()?;
        if n > MAX_KEY_BYTES.min(self.remaining()?) {
            return Err(format!("a metadata key claims {n} bytes"));
        }
        let mut buf = vec![0; n as usize];
        self.r.read_exact(&mut buf).map_err(io)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    /// Bytes of one scalar of GGUF value type `t`; `None` for strings and arrays.
    fn scalar_size(t: u32) -> Res<Option<u64>> {
        Ok(match t {
            0 | 1 | 7 => Some(1), // u8, i8, bool
            2 | 3 => Some(2),     // u16, i16
            4..=6 => Some(4),     // u32, i32, f32
            10..=12 => Some(8),   // u64, i64, f64
            8 | 9 => None,        // string, array
            other => return Err(format!("unknown metadata value type {other}")),
        })
    }

    fn value(&mut self, t: u32, key: &str, depth: usize) -> Res<()> {
        if let Some(size) = Self::scalar_size(t)? {
            return self.skip(size, key);
        }
        if t == 8 {
            return self.skip_string(key);
        }
        if depth >= MAX_ARRAY_DEPTH {
            return Err(format!("'{key}' nests arrays too deeply"));
        }
        let elem = self.u32()?;
        let count = self.length()?;
        let min = Self::scalar_size(elem)?.unwrap_or(if self.v1 { 4 } else { 8 });
        if count.saturating_mul(min) > self.remaining()? {
            return Err(format!(
                "'{key}' claims {count} elements, more than the file holds"
            ));
        }
        match Self::scalar_size(elem)? {
            Some(size) => self.skip(count * size, key),
            None => (0..count).try_for_each(|_| self.value(elem, key, depth + 1)),
        }
    }

    /// `general.alignment`: candle divides by it, llama.cpp requires a power of two.
    fn alignment(&mut self, t: u32) -> Res<()> {
        let value = match t {
            0 | 1 => {
                let mut b = [0; 1];
                self.r.read_exact(&mut b).map_err(io)?;
                u64::from(b[0])
            }
            2 | 3 => {
                let mut b = [0; 2];
                self.r.read_exact(&mut b).map_err(io)?;
                u64::from(u16::from_le_bytes(b))
            }
            4 | 5 => u64::from(self.u32()?),
            // Other types are ignored by candle (default alignment).
            _ => return self.value(t, "general.alignment", 0),
        };
        if value.is_power_of_two() {
            Ok(())
        } else {
            Err(format!("general.alignment is {value}, not a power of two"))
        }
    }

    fn tensor_info(&mut self, i: u64) -> Res<()> {
        self.skip_string("a tensor name")?;
        let dims = self.u32()?;
        if dims > MAX_DIMS {
            return Err(format!(
                "tensor {i} has {dims} dimensions (at most {MAX_DIMS})"
            ));
        }
        let mut elems: u64 = 1;
        for _ in 0..dims {
            let d = self.length()?;
            elems = elems
                .checked_mul(d)
                .ok_or_else(|| format!("tensor {i}: its dimensions overflow"))?;
        }
        self.u32()?; // type: candle refuses unknown ones
        self.u64()?; // offset: checked against the file once the data offset is known
        Ok(())
    }
}

/// Checks a GGUF header; `reader` is left where it started.
pub fn check<R: Read + Seek>(reader: &mut R, file_len: u64) -> Result<(), String> {
    let start = reader.stream_position().map_err(io)?;
    let mut w = Walker {
        r: reader,
        len: file_len,
        v1: false,
    };
    if w.u32()? != MAGIC {
        return Err("it does not start with the GGUF magic".into());
    }
    let version = w.u32()?;
    if !(1..=3).contains(&version) {
        return Err(format!("unsupported GGUF version {version}"));
    }
    w.v1 = version == 1;
    let tensors = w.length()?;
    let kvs = w.length()?;
    // Each metadata entry and tensor info takes at least 13 bytes.
    if tensors.saturating_add(kvs).saturating_mul(13) > w.remaining()? {
        return Err(format!(
            "the header claims {tensors} tensors and {kvs} metadata entries, more than the file holds"
        ));
    }
    for _ in 0..kvs {
        let key = w.key()?;
        let t = w.u32()?;
        if key == "general.alignment" {
            w.alignment(t)?;
        } else {
            w.value(t, &key, 0)?;
        }
    }
    (0..tensors).try_for_each(|i| w.tensor_info(i))?;
    reader.seek(SeekFrom::Start(start)).map_err(io)?;
    Ok(())
}
