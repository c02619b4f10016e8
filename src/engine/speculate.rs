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
//!
//! A draft model's tokens are drawn from its own distribution q (kept with each pending
//! token); for those the worker applies the general rule instead (accept with
//! min(1, p/q), else resample from norm(max(0, p - q)), `Sampler::sample_against_draft`),
//! which keeps more drafts than "sample and compare". Greedy requests and constrained
//! ones use "sample and compare", which is exact for any draft.
//! Must not depend on the server.

use super::draft::DraftLength;
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
    /// A draft model proposes every draft (`--draft-model`).
    Draft,
    /// Prompt lookup when it finds a match, else the draft model (the default with
    /// `--draft-model`): a lookup draft costs nothing to make, a model draft a step of
    /// the draft model per token.
    LookupDraft,
}

impl SpeculativeMode {
    pub const NAMES: &'static [&'static str] = &["off", "lookup", "draft", "lookup+draft"];

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(SpeculativeMode::Off),
            "lookup" => Some(SpeculativeMode::Lookup),
            "draft" => Some(SpeculativeMode::Draft),
            "lookup+draft" => Some(SpeculativeMode::LookupDraft),
            _ => None,
        }
    }

    pub fn uses_lookup(self) -> bool {
        matches!(self, SpeculativeMode::Lookup | SpeculativeMode::LookupDraft)
    }

    pub fn uses_draft_model(self) -> bool {
        matches!(self, SpeculativeMode::Draft | SpeculativeMode::LookupDraft)
    }
}

/// Which drafter made the pending draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Method {
    #[default]
    Lookup,
    Draft,
}

/// Where a sequence stands with its current draft.
#[derive(Default)]
pub(crate) struct Speculation {
    pub drafter: LookupDrafter,
    pub draft_len: DraftLength,
    method: Method,
    /// Draft tokens in the KV cache but not yet confirmed, each with the logits that
    /// follow it, oldest first.
    pending: VecDeque<(u32, Tensor)>,
    /// For a sampled draft-model draft: the distribution each pending token was drawn
    /// from, in the same order.
    dists: VecDeque<Vec<(u32, f32)>>,
    proposed: usize,
    accepted: usize,
    /// Seconds the pending draft took to make and verify.
    spent: f64,
    /// A finished draft-model draft's seconds per token it yielded, for the worker.
    yielded: Option<f64>,
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
    /// `dists` is empty, or holds the distribution each draft token was drawn from.
    /// `spent`: seconds it took to make and verify.
    pub fn start(
        &mut self,
        method: Method,
        drafts: &[u32],
        rows: Vec<Tensor>,
        dists: Vec<Vec<(u32, f32)>>,
        spent: f64,
    ) {
        debug_assert_eq!(drafts.len(), rows.len());
        debug_assert!(dists.is_empty() || dists.len() == drafts.len());
        self.method = method;
        self.pending = drafts.iter().copied().zip(rows).collect();
        self.dists = dists.into();
        self.proposed = drafts.len();
        self.accepted = 0;
        self.spent = spent;
    }

    /// Seconds per token of the last finished draft-model draft (its accepted tokens and
    /// the one sampled after them), once.
    pub fn take_yield(&mut self) -> Option<f64> {
        self.yielded.take()
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
            self.dists.pop_front();
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

    /// The next draft token and the distribution it was drawn from, when the draft was
    /// sampled from a known distribution.
    pub fn next_sampled_draft(&self) -> Option<(u32, &[(u32, f32)])> {
        let (id, _) = self.pending.front()?;
        Some((*id, self.dists.front()?.as_slice()))
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
        self.dists.clear();
        self.close(counters);
        n
    }

    fn close(&mut self, counters: &StatCounters) {
        if self.proposed > 0 {
            let (proposed, accepted) = match self.method {
                Method::Lookup => {
                    self.drafter.feedback(self.proposed, self.accepted);
                    (&counters.spec_draft_tokens, &counters.spec_accepted_tokens)
                }
                Method::Draft => {
                    self.draft_len.feedback(self.proposed, self.accepted);
                    self.yielded = Some(self.spent / (self.accepted + 1) as f64);
                    (
                        &counters.spec_model_draft_tokens,
                        &counters.spec_model_accepted_tokens,
                    )
                }
            };
            StatCounters::add(proposed, self.proposed as u64);
            StatCounters::add(accepted, self.accepted as u64);
        }
        self.proposed = 0;
        self.accepted = 0;
    }
}
