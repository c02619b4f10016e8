//! Token → raw bytes, precomputed once at load into one flat table so the engine and the
//! detokenizer can look a token up per step without allocating.
//! Input: the `Vocab`. Output: `Pieces`. Pure data; no tokenizers, no candle.
//!
//! GPT-2 byte-level BPE stores each byte as a printable char (space is `Ġ`, newline `Ċ`), so a
//! normal token's bytes are its text mapped back through that table. SentencePiece tokens are
//! UTF-8 with `▁` for space, and its byte tokens `<0xXX>` stand for one byte. Control,
//! unknown and user-defined tokens stand for their text as is. Unused tokens (and byte tokens
//! of a byte-level vocabulary) have no bytes, as in llama.cpp's `token_to_piece`.

use super::vocab::{attr, Vocab};

pub(crate) struct Pieces {
    bytes: Vec<u8>,
    /// `offsets[id]..offsets[id + 1]` is the piece of token `id`.
    offsets: Vec<u32>,
}

/// How normal tokens spell their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spelling {
    /// GPT-2 byte-level chars (`Ġ` for space).
    ByteLevel,
    /// SentencePiece: UTF-8 text with `▁` for space; byte tokens are `<0xXX>`.
    SentencePiece,
}

impl Pieces {
    pub fn new(vocab: &Vocab, spelling: Spelling) -> Self {
        let unmap = char_to_byte_table();
        let total: usize = vocab.texts.iter().map(String::len).sum();
        let mut bytes = Vec::with_capacity(total);
        let mut offsets = Vec::with_capacity(vocab.len() + 1);
        offsets.push(0);
        for (text, &a) in vocab.texts.iter().zip(&vocab.attrs) {
            if a & (attr::CONTROL | attr::UNKNOWN | attr::USER_DEFINED) != 0 {
                bytes.extend_from_slice(text.as_bytes());
            } else if spelling == Spelling::SentencePiece {
                if a & attr::NORMAL != 0 {
                    bytes.extend_from_slice(text.replace('\u{2581}', " ").as_bytes());
                } else if a & attr::BYTE != 0 {
                    bytes.extend(parse_byte_token(text));
                }
            } else if a & attr::NORMAL != 0 {
                for c in text.chars() {
                    match unmap.get(c as usize).copied().flatten() {
                        Some(b) => bytes.push(b),
                        // Not a byte-level char (a malformed vocabulary): keep the text rather
                        // than lose it.
                        None => {
                            let mut buf = [0u8; 4];
                            bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                }
            }
            offsets.push(bytes.len() as u32);
        }
        Pieces { bytes, offsets }
    }

    pub fn get(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.bytes[a as usize..b as usize],
            _ => &[],
        }
    }
}

fn is_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// `<0x0A>` → 0x0A.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// The GPT-2 `bytes_to_unicode` mapping: printable Latin-1 bytes map to themselves, the other
/// 68 bytes to U+0100 onwards in byte order.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        table[b as usize] = if is_printable(b) {
            b as char
        } else {
            let c = char::from_u32(next).unwrap_or('\u{FFFD}'); // 256..324: always valid
            next += 1;
            c
        };
    }
    table
}

/// Inverse of `byte_to_char`, indexed by code point (all mapped chars are below U+0144).
fn char_to_byte_table() -> Vec<Option<u8>> {
    let mut table = vec![None; 0x144];
    for (b, c) in byte_to_char_table().iter().enumerate() {
        table[*c as usize] = Some(b as u8);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_map_is_a_bijection_with_gpt2_landmarks() {
        let map = byte_to_char_table();
        assert_eq!(map[b' ' as usize], 'Ġ');
        assert_eq!(map[b'\n' as usize], 'Ċ');
        assert_eq!(map[b'a' as usize], 'a');
        let unmap = char_to_byte_table();
        for b in 0..=255u8 {
            assert_eq!(unmap[map[b as usize] as usize], Some(b));
        }
    }
}
