//! Incremental UTF-8 assembly of token bytes: a byte-level BPE token may hold part of a
//! character, so bytes are buffered until they form whole characters, and only complete
//! text is emitted. Invalid sequences become U+FFFD, as a lossy decode would give.
//! Input: each token's raw bytes. Output: the text completed by it (appended to a String).
//! Must not depend on the tokenizer, the model or tensors.

#[derive(Debug, Default)]
pub struct Utf8Stream {
    /// Bytes of an incomplete character (at most 3).
    partial: Vec<u8>,
}

impl Utf8Stream {
    /// Appends the text that `bytes` completes to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        if self.partial.is_empty() {
            self.decode(bytes, out);
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(bytes);
            self.decode(&buf, out);
            if self.partial.is_empty() {
                // Keep the allocation for the next partial character.
                buf.clear();
                self.partial = buf;
            }
        }
    }

    /// End of stream: an unfinished character becomes U+FFFD.
    pub fn finish(&mut self, out: &mut String) {
        if !self.partial.is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
            self.partial.clear();
        }
    }

    pub fn reset(&mut self) {
        self.partial.clear();
    }

    fn decode(&mut self, mut bytes: &[u8], out: &mut String) {
        loop {
            match std::str::from_utf8(bytes) {
                Ok(s) => {
                    out.push_str(s);
                    return;
                }
                Err(e) => {
                    let (good, rest) = bytes.split_at(e.valid_up_to());
                    // from_utf8 said these bytes are valid.
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        None => {
                            // An incomplete character at the end: wait for more bytes.
                            self.partial.extend_from_slice(rest);
                            return;
                        }
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            bytes = &rest[n..];
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&[u8]]) -> Vec<String> {
        let mut u = Utf8Stream::default();
        let mut v: Vec<String> = pieces
            .iter()
            .map(|p| {
                let mut s = String::new();
                u.push(p, &mut s);
                s
            })
            .collect();
        let mut tail = String::new();
        u.finish(&mut tail);
        v.push(tail);
        v
    }

    #[test]
    fn never_splits_a_character() {
        let e = "é".as_bytes(); // c3 a9
        let crab = "🦀".as_bytes(); // 4 bytes
        let cases: &[(&[&[u8]], &[&str])] = &[
            (&[b"ab", b"c"], &["ab", "c", ""]),
            (&[&e[..1], &e[1..]], &["", "é", ""]),
            (
                &[&crab[..1], &crab[1..3], &crab[3..], b"x"],
                &["", "", "🦀", "x", ""],
            ),
            (&[b"a", &crab[..2]], &["a", "", "\u{fffd}"]),
            (&[b"\xff", b"ok"], &["\u{fffd}", "ok", ""]),
            (&[&e[..1], b"x"], &["", "\u{fffd}x", ""]),
        ];
        for (pieces, want) in cases {
            assert_eq!(run(pieces), *want, "{pieces:?}");
        }
    }
}
