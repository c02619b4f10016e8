//! Stop rules for one request: end-of-generation ids, stop strings, `max_tokens` and the
//! context size. Stop strings are matched on the decoded text stream: text that could still
//! turn into a stop string is held back, and the stop string itself is never emitted, even
//! when it spans several tokens.
//! Input: each sampled id and its newly decoded text. Output: the text that is now safe to
//! emit, and whether (and why) generation ends.
//! Must not depend on the model, tensors or the tokenizer type.

use super::FinishReason;

/// Holds back text that may be the start of a stop string.
#[derive(Debug, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    /// Text not yet emitted: always shorter than the longest stop string.
    pending: String,
}

impl StopStrings {
    /// Empty stop strings are ignored (they would match everywhere).
    pub fn new(stops: Vec<String>) -> Self {
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        StopStrings {
            stops,
            pending: String::new(),
        }
    }

    /// Feeds newly decoded text. Appends what may be emitted to `out` and returns true when a
    /// stop string was completed (then `out` ends just before it and the rest is dropped).
    pub fn push(&mut self, text: &str, out: &mut String) -> bool {
        if self.stops.is_empty() {
            out.push_str(text);
            return false;
        }
        self.pending.push_str(text);
        // Earliest complete match: it must end in the new text, since `pending` held none.
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.pending.find(s.as_str()))
            .min()
        {
            out.push_str(&self.pending[..at]);
            self.pending.clear();
            return true;
        }
        let hold = self.held_suffix_len();
        let emit = self.pending.len() - hold;
        out.push_str(&self.pending[..emit]);
        self.pending.drain(..emit);
        false
    }

    /// End of generation for another reason: the held-back text is real output.
    pub fn flush(&mut self, out: &mut String) {
        out.push_str(&self.pending);
        self.pending.clear();
    }

    /// Length of the longest suffix of `pending` that is a proper prefix of a stop string.
    fn held_suffix_len(&self) -> usize {
        let p = self.pending.as_str();
        let mut best = 0;
        for s in &self.stops {
            let max = (s.len() - 1).min(p.len());
            for k in (best + 1..=max).rev() {
                let start = p.len() - k;
                if p.is_char_boundary(start) && s.as_bytes().starts_with(&p.as_bytes()[start..]) {
                    best = k;
                    break;
                }
            }
        }
        best
    }
}

/// Token-level stop rules, checked before any text is decoded.
#[derive(Debug, Clone, Default)]
pub struct StopIds {
    ids: Vec<u32>,
}

impl StopIds {
    pub fn new(eog: &[u32], extra: &[u32]) -> Self {
        let mut ids: Vec<u32> = eog.iter().chain(extra).copied().collect();
        ids.sort_unstable();
        ids.dedup();
        StopIds { ids }
    }

    pub fn contains(&self, id: u32) -> bool {
        self.ids.binary_search(&id).is_ok()
    }
}

/// Why a request must end after `generated` tokens with `seq_len` tokens in its context,
/// not counting stop ids or strings. `None` means it may continue.
pub fn length_limit(
    generated: usize,
    max_tokens: usize,
    seq_len: usize,
    ctx: usize,
) -> Option<FinishReason> {
    (generated >= max_tokens || seq_len >= ctx).then_some(FinishReason::Length)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds chunks; returns (emitted text per chunk joined, stopped?).
    fn run(stops: &[&str], chunks: &[&str]) -> (String, bool) {
        let mut s = StopStrings::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for c in chunks {
            if s.push(c, &mut out) {
                return (out, true);
            }
        }
        s.flush(&mut out);
        (out, false)
    }

    #[test]
    fn stop_strings_across_token_boundaries() {
        let cases: &[(&[&str], &[&str], &str, bool)] = &[
            (&["</s>"], &["hello", " world"], "hello world", false),
            (&["</s>"], &["hel", "lo<", "/", "s>tail"], "hello", true),
            (&["STOP"], &["aSTOPb"], "a", true),
            (&["ab", "b"], &["xa", "b"], "x", true),
            // a held prefix that turns out not to be a stop is emitted later
            (&["<end>"], &["a<e", "nx", "y"], "a<enxy", false),
            // held back at the end of generation is still output
            (&["<end>"], &["a<en"], "a<en", false),
            // multi-byte characters
            (&["é!"], &["café", "!", "x"], "caf", true),
            (&["→"], &["a→b"], "a", true),
            (&[], &["x", "y"], "xy", false),
            (&[""], &["x"], "x", false),
            // earliest match wins among several stop strings
            (&["cd", "bcx"], &["ab", "cd"], "ab", true),
        ];
        for (stops, chunks, want, stopped) in cases {
            assert_eq!(
                run(stops, chunks),
                (want.to_string(), *stopped),
                "{stops:?} {chunks:?}"
            );
        }
    }

    #[test]
    fn every_split_gives_the_same_result() {
        let text = "fn main() {}\n<|user|>more";
        let stops = ["<|user|>"];
        let want = run(&stops, &[text]);
        assert_eq!(want, ("fn main() {}\n".to_string(), true));
        let idx: Vec<usize> = text.char_indices().map(|(i, _)| i).skip(1).collect();
        for &a in &idx {
            for &b in idx.iter().filter(|&&b| b > a) {
                let chunks = [&text[..a], &text[a..b], &text[b..]];
                assert_eq!(run(&stops, &chunks), want, "split at {a},{b}");
            }
        }
    }

    #[test]
    fn never_emits_a_prefix_it_may_need_to_drop() {
        let mut s = StopStrings::new(vec!["\n\n".into()]);
        let mut out = String::new();
        assert!(!s.push("a\n", &mut out));
        assert_eq!(out, "a");
        assert!(s.push("\nb", &mut out));
        assert_eq!(out, "a");
    }

    #[test]
    fn stop_ids_and_length_limits() {
        let ids = StopIds::new(&[151645, 151643], &[7]);
        assert!(ids.contains(7) && ids.contains(151643) && !ids.contains(8));
        assert_eq!(length_limit(3, 3, 10, 100), Some(FinishReason::Length));
        assert_eq!(length_limit(2, 3, 100, 100), Some(FinishReason::Length));
        assert_eq!(length_limit(2, 3, 99, 100), None);
    }
}
