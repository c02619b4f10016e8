//! Speculative decoding, the per-sequence half: draft tokens that were already run through
//! the model (with the logits row that follows each) wait here until the sampler confirms
//! or refutes them.
//!
//! Exactness: the worker samples every token from the model's own logits, exactly as plain
//! decoding would, and a draft token only saves the forward pass when the sampled token
//! *equals* it. With greedy decoding the output is therefore token for token the same as
//! without drafts (the verification rows are computed bit-identically to one-token steps,
//! `Model::forward_verify`). With sampling, a draft is a point mass, and "sample from p,
//! keep the draft iff the sample equals it" is the standard speculative rejection rule for
//! a point-mass draft: the kept token is always a sample of p, so the output distribution
//! is unchanged (tested statistically in `tests/speculative.rs`).
//! Must not depend on the server.

use super::handle::StatCounters;
use super::lookup::LookupDrafter;
use candle_core::Tensor;
use std::collections::VecDeque;

/// `wick serve --speculative`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpeculativeMode {
    Off,
    /// Prompt lookup (n-gram) drafting.
    #[default]
    Lookup,
}

impl SpeculativeMode {
    pub const NAMES: &'static [&'static str] = &["off", "lookup"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(SpeculativeMode::Off),
            "lookup" => Some(SpeculativeMode::Lookup),
            _ => None,
        }
    }
}

/// Where a sequence stands with its current draft.
#[derive(Default)]
pub(crate) struct Speculation {
    pub drafter: LookupDrafter,
    /// Draft tokens in the KV cache but not yet confirmed, each with the logits that
    /// follow it, oldest first.
    pending: VecDeque<(u32, Tensor)>,
    proposed: usize,
    accepted: usize,
}

/// What the sampled token did to the draft.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No draft pending: the token needs a forward pass.
    NoDraft,
    /// The token equals the next draft token: here are the logits that follow it.
    Accepted,
    /// The token differs: this many unconfirmed tokens must leave the KV cache, and the
    /// token needs a forward pass.
    Rejected { discard: usize },
}

impl Speculation {
    /// Records a verified draft: `drafts[j]` is followed by `rows[j]`.
    pub fn start(&mut self, drafts: &[u32], rows: Vec<Tensor>) {
        debug_assert_eq!(drafts.len(), rows.len());
        self.pending = drafts.iter().copied().zip(rows).collect();
        self.proposed = drafts.len();
        self.accepted = 0;
    }

    /// Checks the token just sampled against the draft. On `Accepted`, `logits` is set to
    /// the row that follows it. Reports finished drafts to the drafter and `counters`.
    pub fn check(
        &mut self,
        id: u32,
        logits: &mut Option<Tensor>,
        counters: &StatCounters,
    ) -> Verdict {
        let Some((draft, _)) = self.pending.front() else {
            return Verdict::NoDraft;
        };
        if *draft == id {
            let (_, row) = self.pending.pop_front().expect("front exists");
            *logits = Some(row);
            self.accepted += 1;
            if self.pending.is_empty() {
                self.close(counters);
            }
            return Verdict::Accepted;
        }
        let discard = self.discard(counters);
        Verdict::Rejected { discard }
    }

    /// Unconfirmed draft tokens now in the KV cache.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Drops the unconfirmed tokens (the sequence ended or a token refuted them) and
    /// returns how many must leave the KV cache.
    pub fn discard(&mut self, counters: &StatCounters) -> usize {
        let n = self.pending.len();
        self.pending.clear();
        self.close(counters);
        n
    }

    fn close(&mut self, counters: &StatCounters) {
        if self.proposed > 0 {
            self.drafter.feedback(self.proposed, self.accepted);
            StatCounters::add(&counters.spec_draft_tokens, self.proposed as u64);
            StatCounters::add(&counters.spec_accepted_tokens, self.accepted as u64);
        }
        self.proposed = 0;
        self.accepted = 0;
    }
}
