//! What speculative decoding costs on this machine, and the draft length that pays most.
//! Both drafters (prompt lookup and the draft model) verify their drafts the same way: one
//! pass of the target over the next token and `k` draft tokens. Whether that beats plain
//! decoding depends on the hardware (on a small CPU every verified row costs a fair share
//! of a one-token step; on a GPU almost nothing) and on how often drafts are right, so
//! the worker measures the costs and each drafter estimates its own acceptance.
//! Must not depend on the model or the server.

/// Measured wall times (seconds, moving averages): a plain one-token step of the target,
/// one draft-model token, each verified row beyond the first, what draft-model drafting
/// really yielded (seconds per token, drafting and verification included: the check on
/// the cost model, whose parts can each be measured a little low), and one token of the
/// draft model's catch-up on text it has not seen. Shared by the slots: they depend on
/// the hardware and the models, not on the request.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SpecCosts {
    pub step: Ema,
    pub draft: Ema,
    pub row: Ema,
    pub draft_yield: Ema,
    pub sync: Ema,
    /// Draft whatever the costs (`EngineOptions::draft_always`).
    pub always: bool,
}

/// An exponential moving average; empty until the first sample.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Ema(Option<f64>);

impl Ema {
    pub fn add(&mut self, x: f64) {
        if x.is_finite() && x >= 0.0 {
            self.0 = Some(self.0.map_or(x, |m| m * 0.8 + x * 0.2));
        }
    }

    pub fn get(self) -> Option<f64> {
        self.0
    }
}

/// How the draft model gets in step with a sequence before drafting
/// (`SpecCosts::draft_catch_up`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CatchUp {
    /// Run every token it has not seen (a new prompt, text that prompt lookup drafted).
    Full,
    /// Start over on the sequence's last `CATCH_UP_WINDOW` tokens: drafts from a short
    /// context, for a small fixed cost.
    Window,
    /// Catching up would cost more than drafting has been saving: no model draft now.
    Skip,
}

/// The tokens a `CatchUp::Window` restart runs.
pub(crate) const CATCH_UP_WINDOW: usize = 32;
/// A lag the draft model always runs (its steady state: the token about to run, and the
/// one sampled after a verification).
pub(crate) const STEADY_LAG: usize = 2;
/// Tokens ahead over which a catch-up must pay for itself.
const MAX_HORIZON: usize = 512;

impl SpecCosts {
    /// How the draft model, `lag` tokens behind the sequence, should get in step when at
    /// most `horizon` tokens remain to generate. Each token of catch-up costs a draft-model
    /// row (`sync`), while drafting saves `step - draft_yield` per token generated (as
    /// measured, and negative on a small CPU, where a draft token costs ~0.4 of a target
    /// step). So a catch-up runs when the measured saving over the horizon covers it, or
    /// it costs no more than one plain step (a nearly synced draft model keeps probing).
    /// Until the costs are known it restarts on a short window, which measures them
    /// cheaply: a full catch-up of a 2,000-token prompt takes the 0.5B draft model ~6 s on
    /// 2 CPUs, and text that prompt lookup drafted costs the same per token.
    pub fn draft_catch_up(&self, lag: usize, horizon: usize) -> CatchUp {
        if self.always || lag <= STEADY_LAG {
            return CatchUp::Full;
        }
        let (Some(sync), Some(yielded), Some(step)) =
            (self.sync.get(), self.draft_yield.get(), self.step.get())
        else {
            return if lag <= CATCH_UP_WINDOW {
                CatchUp::Full
            } else {
                CatchUp::Window
            };
        };
        let budget = step.max((step - yielded) * horizon.min(MAX_HORIZON) as f64);
        if lag as f64 * sync <= budget {
            CatchUp::Full
        } else if lag > CATCH_UP_WINDOW && CATCH_UP_WINDOW as f64 * sync <= budget {
            CatchUp::Window
        } else {
            CatchUp::Skip
        }
    }
}

/// The draft length `k` in `0..=cap` with the most expected tokens per second, when each
/// draft token is accepted with probability `p` (given the ones before it were) and costs
/// `per_token` seconds to make: a verification yields 1 + p + … + p^k tokens for
/// `step + k * (per_token + row)` seconds. 0 means plain decoding is faster.
pub(crate) fn best_length(p: f64, step: f64, per_token: f64, row: f64, cap: usize) -> usize {
    let p = p.clamp(0.0, 0.99);
    let mut best = (0, 1.0 / step);
    let mut expected = 1.0f64;
    let mut pk = 1.0f64;
    for k in 1..=cap {
        pk *= p;
        expected += pk;
        let speed = expected / (step + k as f64 * (per_token + row));
        if speed > best.1 {
            best = (k, speed);
        }
    }
    best.0
}

/// What one drafter's drafts have earned, and its pause where they do not pay: draft
/// tokens accepted and drafts cut short by a rejection (decayed, recent drafts weigh
/// more: the text changes from prose to code and back), so `acceptance` estimates the
/// chance that a draft token is right given the ones before it were. A pause (in
/// proposals skipped) doubles up to a maximum while drafting keeps not paying, and one
/// short probe after each measures again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Payoff {
    pub accepted: f32,
    pub rejected: f32,
    pub paused: usize,
    pub next_pause: usize,
    max_pause: usize,
    pub probe: bool,
}

/// The first pause after drafting was found not to pay.
pub(crate) const FIRST_PAUSE: usize = 8;

impl Payoff {
    /// `accepted`/`rejected`: a prior worth a few drafts (0/0 for none).
    pub fn new(accepted: f32, rejected: f32, max_pause: usize) -> Self {
        Payoff {
            accepted,
            rejected,
            paused: 0,
            next_pause: FIRST_PAUSE,
            max_pause,
            probe: false,
        }
    }

    /// Counts one proposal skipped while paused; false once the pause is over.
    pub fn skip_paused(&mut self) -> bool {
        let paused = self.paused > 0;
        self.paused = self.paused.saturating_sub(1);
        paused
    }

    /// Whether this proposal is the probe after a pause (once).
    pub fn take_probe(&mut self) -> bool {
        std::mem::take(&mut self.probe)
    }

    pub fn seen(&self) -> f32 {
        self.accepted + self.rejected
    }

    pub fn acceptance(&self) -> f64 {
        f64::from(self.accepted / self.seen())
    }

    /// Takes the draft length the costs chose: 0 starts the next pause, anything else
    /// ends the doubling.
    pub fn settle(&mut self, k: usize) -> usize {
        if k == 0 {
            self.pause();
        } else {
            self.next_pause = FIRST_PAUSE;
        }
        k
    }

    /// Stops drafting for the next pause (doubling), with one probe after it.
    pub fn pause(&mut self) {
        self.paused = self.next_pause;
        self.next_pause = (self.next_pause * 2).min(self.max_pause);
        self.probe = true;
    }

    pub fn feedback(&mut self, proposed: usize, accepted: usize) {
        self.accepted = self.accepted * 0.9 + accepted as f32;
        self.rejected = self.rejected * 0.9 + f32::from(u8::from(accepted < proposed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longer_drafts_pay_only_when_they_are_likely_right() {
        // A verified row at a fifth of a step (the 0.5B on 2 CPUs): a lookup draft that is
        // right 95% of the time pays for about ten tokens, one right 15% of the time for none.
        let k = best_length(0.95, 0.030, 0.0, 0.006, 14);
        assert!((6..=14).contains(&k), "{k}");
        assert_eq!(best_length(0.15, 0.030, 0.0, 0.006, 14), 0);
        // Rows that cost almost nothing (a GPU) make even weak drafts worth a token or two.
        assert!(best_length(0.3, 0.030, 0.0, 0.0003, 14) >= 1);
        // The cap holds.
        assert_eq!(best_length(0.99, 0.030, 0.0, 0.0001, 3), 3);
        assert_eq!(best_length(0.99, 0.030, 0.0, 0.0001, 0), 0);
    }

    fn measured(step: f64, yielded: f64, sync: f64) -> SpecCosts {
        let mut c = SpecCosts::default();
        c.step.add(step);
        c.draft_yield.add(yielded);
        c.sync.add(sync);
        c
    }

    #[test]
    fn the_draft_model_catches_up_only_where_drafting_pays_for_it() {
        // Nothing measured yet: a short lag runs whole, a long one restarts on a window.
        let unknown = SpecCosts::default();
        assert_eq!(unknown.draft_catch_up(20, 500), CatchUp::Full);
        assert_eq!(unknown.draft_catch_up(2_000, 500), CatchUp::Window);
        // The steady state always runs, as does everything when drafting is forced.
        let cpu = measured(0.033, 0.045, 0.003);
        assert_eq!(cpu.draft_catch_up(2, 500), CatchUp::Full);
        let forced = SpecCosts {
            always: true,
            ..cpu
        };
        assert_eq!(forced.draft_catch_up(2_000, 500), CatchUp::Full);
        // 2 CPUs (1.5B target, 0.5B draft): drafting yields tokens more slowly than plain
        // steps, so only a catch-up worth one step (11 tokens) runs; a prompt lookup
        // stretch or a new prompt leaves the draft model out.
        assert_eq!(cpu.draft_catch_up(10, 500), CatchUp::Full);
        assert_eq!(cpu.draft_catch_up(12, 500), CatchUp::Skip);
        assert_eq!(cpu.draft_catch_up(2_000, 500), CatchUp::Skip);
        // A GPU: drafting saves 2 ms a token and a catch-up token costs 0.1 ms, so a
        // 2,000-token prompt is worth catching up on for 512 tokens, not for 50, where a
        // window still is.
        let gpu = measured(0.010, 0.008, 0.0001);
        assert_eq!(gpu.draft_catch_up(2_000, 512), CatchUp::Full);
        assert_eq!(gpu.draft_catch_up(2_000, 50), CatchUp::Window);
        // Nothing left to generate: only what one step is worth.
        assert_eq!(gpu.draft_catch_up(50, 0), CatchUp::Full);
        assert_eq!(gpu.draft_catch_up(2_000, 0), CatchUp::Window);
    }

    #[test]
    fn ema_ignores_nonsense_samples() {
        let mut e = Ema::default();
        assert_eq!(e.get(), None);
        e.add(f64::NAN);
        e.add(-1.0);
        assert_eq!(e.get(), None);
        e.add(1.0);
        e.add(2.0);
        assert!((e.get().unwrap() - 1.2).abs() < 1e-12);
    }
}
