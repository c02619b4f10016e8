//! Prompt-lookup drafting (n-gram speculation): propose the tokens that followed the most
//! recent earlier occurrence of the sequence's last few tokens. Coding assistants repeat
//! their prompt (whole-file edits, search/replace blocks, quoted code), so these guesses are
//! often right, and the model checks them all in one batched forward pass.
//! Input: the sequence's tokens so far (prompt + generated). Output: draft tokens.
//! Must not depend on the model or the sampler: verification lives in the worker.
//!
//! The draft length adapts: it grows while whole drafts are accepted and shrinks to just
//! past what was accepted when one is rejected. When drafts keep failing, drafting pauses
//! for a number of steps that doubles each time it does not pay, so free-form text (where
//! lookups rarely hit) pays almost nothing.

/// Longest and shortest n-gram matched against the history.
const MAX_NGRAM: usize = 4;
const MIN_NGRAM: usize = 2;
/// Draft length bounds. A verification of `k` drafts runs `k + 1` rows through the model;
/// past ~15 rows the batch costs more than the likely accepted run saves (and, for weight
/// types without wick's own kernels, 16 rows switch to a dense GEMM whose sums differ).
const MIN_DRAFT: usize = 2;
const MAX_DRAFT: usize = 14;
/// How far back the history is searched (bounded work per step on long prompts).
const MAX_SEARCH: usize = 16_384;
/// Acceptance below this fraction of proposed tokens (over the recent window) pauses
/// drafting; the pause doubles up to `MAX_PAUSE` steps while it keeps not paying.
/// Measured (0.5B, 2 threads): a verification of ~4 rows costs ~2.2 one-token steps, so
/// drafts pay only from ~40% acceptance; at 0.2 a counting prompt (23% accepted) decoded
/// at 20 tok/s against 28.6 without drafting. The window is short so a request that does
/// not pay stops drafting within a few steps.
const MIN_ACCEPT_RATE: f32 = 0.5;
const WINDOW: usize = 16;
const MAX_PAUSE: usize = 256;

#[derive(Debug, Clone)]
pub(crate) struct LookupDrafter {
    draft_len: usize,
    /// Proposed and accepted tokens over the recent window (decayed by halving).
    recent_proposed: usize,
    recent_accepted: usize,
    /// Steps left without drafting, and the next pause length.
    paused: usize,
    next_pause: usize,
}

impl Default for LookupDrafter {
    fn default() -> Self {
        LookupDrafter {
            draft_len: 4,
            recent_proposed: 0,
            recent_accepted: 0,
            paused: 0,
            next_pause: 8,
        }
    }
}

impl LookupDrafter {
    /// Fills `out` with up to `limit` draft tokens to follow `history`, or leaves it empty
    /// (no match, drafting paused, or `limit == 0`).
    pub fn propose(&mut self, history: &[u32], limit: usize, out: &mut Vec<u32>) {
        out.clear();
        if self.paused > 0 {
            self.paused -= 1;
            return;
        }
        let want = self.draft_len.min(limit);
        if want == 0 {
            return;
        }
        if let Some(start) = find_continuation(history) {
            let end = (start + want).min(history.len());
            out.extend_from_slice(&history[start..end]);
        }
    }

    /// Reports how many of `proposed` draft tokens the model accepted.
    pub fn feedback(&mut self, proposed: usize, accepted: usize) {
        if proposed == 0 {
            return;
        }
        self.draft_len = if accepted == proposed {
            (self.draft_len * 2).min(MAX_DRAFT)
        } else {
            (accepted + 1).clamp(MIN_DRAFT, MAX_DRAFT)
        };
        self.recent_proposed += proposed;
        self.recent_accepted += accepted;
        if self.recent_proposed >= WINDOW {
            let rate = self.recent_accepted as f32 / self.recent_proposed as f32;
            if rate < MIN_ACCEPT_RATE {
                self.paused = self.next_pause;
                self.next_pause = (self.next_pause * 2).min(MAX_PAUSE);
            } else {
                self.next_pause = 8;
            }
            self.recent_proposed /= 2;
            self.recent_accepted /= 2;
        }
    }
}

/// Where the continuation of the longest recent n-gram match starts: for `n` from
/// `MAX_NGRAM` down to `MIN_NGRAM`, the most recent earlier occurrence of the last `n`
/// tokens, and the index just after it. `None` when nothing matches or the match has no
/// continuation.
fn find_continuation(history: &[u32]) -> Option<usize> {
    let len = history.len();
    for n in (MIN_NGRAM..=MAX_NGRAM).rev() {
        if len <= n {
            continue;
        }
        let tail = &history[len - n..];
        let lo = len.saturating_sub(MAX_SEARCH);
        // Occurrences ending before the tail itself, newest first.
        let mut start = len - n;
        while start > lo {
            start -= 1;
            if history[start..start + n] == *tail && start + n < len {
                return Some(start + n);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposes_what_followed_the_last_ngram() {
        // "a b c d e ... a b c" -> propose "d e".
        let h = [1, 2, 3, 4, 5, 9, 9, 1, 2, 3];
        let mut d = LookupDrafter::default();
        let mut out = Vec::new();
        d.propose(&h, 2, &mut out);
        assert_eq!(out, vec![4, 5]);
    }

    #[test]
    fn prefers_the_longest_and_most_recent_match() {
        // The 2-gram (7, 3) occurs twice; the 3-gram (6, 7, 3) only once, earlier.
        let h = [6, 7, 3, 10, 0, 7, 3, 11, 0, 6, 7, 3];
        assert_eq!(find_continuation(&h), Some(3));
        let h = [7, 3, 10, 0, 7, 3, 11, 0, 7, 3];
        // The 3-gram (0, 7, 3) occurred at 3 -> its continuation 11 is at index 6.
        assert_eq!(find_continuation(&h), Some(6));
    }

    #[test]
    fn no_match_and_short_history_give_nothing() {
        let mut d = LookupDrafter::default();
        let mut out = vec![42];
        d.propose(&[1, 2, 3, 4, 5], 8, &mut out);
        assert!(out.is_empty());
        d.propose(&[1], 8, &mut out);
        assert!(out.is_empty());
        d.propose(&[], 8, &mut out);
        assert!(out.is_empty());
        // A limit of 0 (e.g. max_tokens reached) proposes nothing.
        d.propose(&[1, 2, 3, 1, 2], 0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn draft_length_grows_on_acceptance_and_shrinks_on_rejection() {
        let mut d = LookupDrafter::default();
        assert_eq!(d.draft_len, 4);
        d.feedback(4, 4);
        assert_eq!(d.draft_len, 8);
        d.feedback(8, 8);
        d.feedback(14, 14);
        assert_eq!(d.draft_len, MAX_DRAFT);
        d.feedback(14, 5);
        assert_eq!(d.draft_len, 6);
        d.feedback(6, 0);
        assert_eq!(d.draft_len, MIN_DRAFT);
    }

    #[test]
    fn drafting_pauses_when_it_does_not_pay() {
        let h: Vec<u32> = [1, 2, 3].repeat(10);
        let mut d = LookupDrafter::default();
        let mut out = Vec::new();
        for _ in 0..20 {
            d.feedback(2, 0);
        }
        assert!(
            d.paused > 0,
            "drafting should pause after a run of rejections"
        );
        let pause = d.paused;
        for _ in 0..pause {
            d.propose(&h, 8, &mut out);
            assert!(out.is_empty());
        }
        d.propose(&h, 8, &mut out);
        assert!(!out.is_empty(), "drafting resumes after the pause");
    }
}
