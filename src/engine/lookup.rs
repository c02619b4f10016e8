//! Prompt-lookup drafting (n-gram speculation): propose the tokens that followed the most
//! recent earlier occurrence of the sequence's last few tokens. Coding assistants repeat
//! their prompt (whole-file edits, search/replace blocks, quoted code), so these guesses are
//! often right, and the model checks them all in one batched forward pass.
//! Input: the sequence's tokens so far (prompt + generated). Output: draft tokens.
//! Must not depend on the model or the sampler: verification lives in the worker.
//!
//! The draft length adapts: it grows while whole drafts are accepted and shrinks to just
//! past what was accepted when one is rejected. Within that bound the measured costs
//! decide (`spec_costs::best_length`): each n-gram length keeps its own acceptance
//! estimate (a 4-token match in a file being rewritten is right far more often than a
//! 2-token match in prose), and a length whose drafts do not pay on this machine stops
//! drafting, with a pause that doubles while it keeps not paying and one short probe
//! after each, so free-form text costs almost nothing.

use super::spec_costs::{best_length, Payoff, SpecCosts};

/// Longest and shortest n-gram matched against the history.
const MAX_NGRAM: usize = 4;
const MIN_NGRAM: usize = 2;
/// Draft length bounds. A verification of `k` drafts runs `k + 1` rows through the model;
/// past ~15 rows the batch costs more than the likely accepted run saves (and, for weight
/// types without wick's own kernels, 16 rows switch to a dense GEMM whose sums differ).
const MIN_DRAFT: usize = 2;
const MAX_DRAFT: usize = 14;
const FIRST_DRAFT: usize = 4;
/// How far back the history is searched (bounded work per step on long prompts).
const MAX_SEARCH: usize = 16_384;
/// The longest pause (matches skipped) of an n-gram length whose drafts do not pay.
const MAX_PAUSE: usize = 256;

#[derive(Debug, Clone)]
pub(crate) struct LookupDrafter {
    draft_len: usize,
    /// Per n-gram length (index `n - MIN_NGRAM`): what its drafts earned.
    by_ngram: [Payoff; MAX_NGRAM - MIN_NGRAM + 1],
    /// The n-gram length of the draft being verified, and where in the history it was
    /// copied from.
    pending: Option<(usize, usize)>,
    /// Where the history holds the token expected after the last draft's accepted part:
    /// when the model did produce it, the next draft copies on from the same place.
    follow: Option<usize>,
}

/// How many of at most `cap` tokens to draft from a match whose length has earned
/// `payoff` (its pauses count matches).
fn want(payoff: &mut Payoff, costs: &SpecCosts, cap: usize) -> usize {
    if costs.always {
        return cap;
    }
    if payoff.skip_paused() {
        return 0;
    }
    if payoff.take_probe() {
        return cap.min(MIN_DRAFT);
    }
    // Until a plain step and a verification are timed, the adaptive length alone.
    let (Some(step), Some(row)) = (costs.step.get(), costs.row.get()) else {
        return cap;
    };
    payoff.settle(best_length(payoff.acceptance(), step, 0.0, row, cap))
}

impl Default for LookupDrafter {
    fn default() -> Self {
        LookupDrafter {
            draft_len: FIRST_DRAFT,
            // A prior worth a couple of drafts: longer matches start out more trusted.
            by_ngram: std::array::from_fn(|i| {
                Payoff::new((i + MIN_NGRAM - 1) as f32, 1.0, MAX_PAUSE)
            }),
            pending: None,
            follow: None,
        }
    }
}

impl LookupDrafter {
    /// Fills `out` with up to `limit` draft tokens to follow `history`, or leaves it empty
    /// (no match, drafting does not pay now, or `limit == 0`).
    pub fn propose(
        &mut self,
        history: &[u32],
        limit: usize,
        costs: &SpecCosts,
        out: &mut Vec<u32>,
    ) {
        out.clear();
        let cap = self.draft_len.min(limit);
        if cap == 0 {
            return;
        }
        // A copy in progress goes on from where it was (the most recent match of the last
        // few tokens is often an earlier repeat of them, with another continuation).
        let followed = self.follow.take().and_then(|f| {
            let last = *history.last()?;
            (f + 1 < history.len() && history[f] == last).then_some((f + 1, MAX_NGRAM))
        });
        let Some((start, n)) = followed.or_else(|| find_continuation(history)) else {
            return;
        };
        let want = want(&mut self.by_ngram[n - MIN_NGRAM], costs, cap);
        if want == 0 {
            return;
        }
        let end = (start + want).min(history.len());
        out.extend_from_slice(&history[start..end]);
        self.pending = Some((n, start));
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
        if let Some((n, start)) = self.pending.take() {
            self.by_ngram[n - MIN_NGRAM].feedback(proposed, accepted);
            self.follow = Some(start + accepted);
        }
    }
}

/// Where the continuation of the longest recent n-gram match starts: for `n` from
/// `MAX_NGRAM` down to `MIN_NGRAM`, the most recent earlier occurrence of the last `n`
/// tokens: the index just after it, and `n`. `None` when nothing matches or the match has
/// no continuation.
fn find_continuation(history: &[u32]) -> Option<(usize, usize)> {
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
                return Some((start + n, n));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn untimed() -> SpecCosts {
        SpecCosts::default()
    }

    /// The 0.5B on 2 CPUs: a step ~30 ms, each verified row beyond the first ~6 ms.
    fn small_cpu() -> SpecCosts {
        let mut c = SpecCosts::default();
        c.step.add(0.030);
        c.row.add(0.006);
        c
    }

    #[test]
    fn proposes_what_followed_the_last_ngram() {
        // "a b c d e ... a b c" -> propose "d e".
        let h = [1, 2, 3, 4, 5, 9, 9, 1, 2, 3];
        let mut d = LookupDrafter::default();
        let mut out = Vec::new();
        d.propose(&h, 2, &untimed(), &mut out);
        assert_eq!(out, vec![4, 5]);
        d.propose(&h, 2, &small_cpu(), &mut out);
        assert_eq!(out, vec![4, 5], "a fresh 3-gram match pays on a small CPU");
    }

    #[test]
    fn prefers_the_longest_and_most_recent_match() {
        // The 2-gram (7, 3) occurs twice; the 3-gram (6, 7, 3) only once, earlier.
        let h = [6, 7, 3, 10, 0, 7, 3, 11, 0, 6, 7, 3];
        assert_eq!(find_continuation(&h), Some((3, 3)));
        let h = [7, 3, 10, 0, 7, 3, 11, 0, 7, 3];
        // The 3-gram (0, 7, 3) occurred at 3 -> its continuation 11 is at index 6.
        assert_eq!(find_continuation(&h), Some((6, 3)));
        // Only a 2-gram: (9, 3) at 0.
        assert_eq!(find_continuation(&[9, 3, 5, 1, 9, 3]), Some((2, 2)));
    }

    #[test]
    fn no_match_and_short_history_give_nothing() {
        let mut d = LookupDrafter::default();
        let mut out = vec![42];
        let costs = untimed();
        d.propose(&[1, 2, 3, 4, 5], 8, &costs, &mut out);
        assert!(out.is_empty());
        d.propose(&[1], 8, &costs, &mut out);
        assert!(out.is_empty());
        d.propose(&[], 8, &costs, &mut out);
        assert!(out.is_empty());
        // A limit of 0 (e.g. max_tokens reached) proposes nothing.
        d.propose(&[1, 2, 3, 1, 2], 0, &costs, &mut out);
        assert!(out.is_empty());
    }

    /// Copying a file whose lines repeat: the most recent match of the last tokens is an
    /// earlier repeat in the copy, but an accepted draft goes on from where it was copied.
    #[test]
    fn a_copy_goes_on_from_where_it_was() {
        // Source: "7 1 2 3 4 8 ... 1 2 3 4 9" (the 4-gram 1 2 3 4 twice, then 5 6).
        let mut h: Vec<u32> = vec![7, 1, 2, 3, 4, 8, 0, 1, 2, 3, 4, 9, 5, 6, 50];
        // The copy has reached the second "1 2 3 4": the newest match continues with 9.
        h.extend([7, 1, 2, 3, 4, 8, 0, 1]);
        let mut d = LookupDrafter::default();
        let mut out = Vec::new();
        d.propose(&h, 2, &untimed(), &mut out);
        assert_eq!(out, vec![2, 3], "from the newest match of (8, 0, 1)");
        let from = d.pending.unwrap().1;
        assert_eq!(from, 8);
        d.feedback(2, 2);
        h.extend([2, 3, 4]); // the two drafts and the model's next token
        d.propose(&h, 4, &untimed(), &mut out);
        assert_eq!(
            out,
            vec![9, 5, 6, 50],
            "followed on, not the newer 1 2 3 4 -> 8"
        );
        // A rejected draft token ends the copy: the next draft searches again.
        d.feedback(4, 1);
        h.extend([9, 42]);
        d.propose(&h, 4, &untimed(), &mut out);
        assert!(out.is_empty(), "(9, 42) occurs nowhere before");
    }

    #[test]
    fn draft_length_grows_on_acceptance_and_shrinks_on_rejection() {
        let mut d = LookupDrafter::default();
        assert_eq!(d.draft_len, FIRST_DRAFT);
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

    /// Prose: 2-token matches whose drafts keep failing stop drafting (with a doubling
    /// pause and a probe after it), while 4-token matches that keep being right go on.
    #[test]
    fn drafting_stops_where_it_does_not_pay_and_goes_on_where_it_does() {
        let costs = small_cpu();
        let prose: Vec<u32> = vec![5, 6, 1, 9, 9, 9, 5, 6]; // only the 2-gram (5, 6) recurs
        let code: Vec<u32> = [1, 2, 3, 4, 5, 6, 7, 8].repeat(3); // 4-gram matches
        let mut d = LookupDrafter::default();
        let mut out = Vec::new();
        let mut drafted = 0;
        for _ in 0..40 {
            d.propose(&prose, 8, &costs, &mut out);
            if !out.is_empty() {
                drafted += 1;
                d.feedback(out.len(), 0);
            }
        }
        assert!(
            (2..=6).contains(&drafted),
            "{drafted} failing prose drafts in 40 steps"
        );
        let ev = d.by_ngram[0];
        assert!(ev.paused > 0 || ev.probe, "2-gram drafting is paused");
        for _ in 0..20 {
            d.propose(&code, 8, &costs, &mut out);
            assert!(!out.is_empty(), "4-gram drafts that pay go on");
            let n = out.len();
            d.feedback(n, n);
        }
        assert_eq!(d.draft_len, MAX_DRAFT);
        assert_eq!(out.len(), 8, "as long as the limit allows");
        // Untimed (no plain step measured yet), the adaptive length alone.
        let mut fresh = LookupDrafter::default();
        fresh.propose(&code, 14, &untimed(), &mut out);
        assert_eq!(out.len(), FIRST_DRAFT);
    }
}
