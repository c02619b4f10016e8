//! Paces prefill against decode. While some sequences decode, each step also runs a chunk
//! of a waiting prompt; the chunk is sized so that the step takes about `SLOWDOWN` times a
//! decode-only step, from the times of recent steps (a prompt token costs more the longer
//! its context, and more on a slower machine, so no fixed chunk fits every case).
//! Input: the duration and shape of each step. Output: the prefill budget of the next one.
//! Must not depend on the model or the server.

/// A step that carries prefill may take this many times a decode-only step: the decoding
/// streams' inter-token latency while a long prompt is admitted stays within ~3x idle.
const SLOWDOWN: f64 = 2.5;

/// Weight of the newest sample in the moving averages.
const ALPHA: f64 = 0.3;

/// Prompt tokens of the first mixed step, before any has been timed.
const FIRST_BUDGET: usize = 8;

#[derive(Debug, Default)]
pub(crate) struct Pacer {
    /// Seconds of a step with decode rows only (moving average; 0 = none seen yet).
    decode_step: f64,
    /// Seconds one prompt token adds to a step that also decodes (0 = none seen yet).
    per_token: f64,
}

impl Pacer {
    /// Prompt tokens the next step may run beside its decode rows, at most `max`.
    pub fn budget(&self, max: usize) -> usize {
        if self.decode_step <= 0.0 || self.per_token <= 0.0 {
            return FIRST_BUDGET.min(max).max(1);
        }
        let n = (SLOWDOWN - 1.0) * self.decode_step / self.per_token;
        (n as usize).clamp(1, max.max(1))
    }

    /// Books a step that ran `decode_rows` decode tokens and `prefill` prompt tokens in
    /// `secs` seconds. Steps without decode rows say nothing about the pace.
    pub fn record(&mut self, decode_rows: usize, prefill: usize, secs: f64) {
        if decode_rows == 0 || !secs.is_finite() || secs <= 0.0 {
            return;
        }
        if prefill == 0 {
            self.decode_step = ema(self.decode_step, secs);
        } else if self.decode_step > 0.0 {
            // What the prompt tokens added; never below a tenth of the step (noise on a
            // busy machine must not read as free tokens).
            let added = (secs - self.decode_step).max(secs / 10.0);
            self.per_token = ema(self.per_token, added / prefill as f64);
        }
    }
}

fn ema(avg: f64, x: f64) -> f64 {
    if avg <= 0.0 {
        x
    } else {
        avg + ALPHA * (x - avg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_the_chunk_from_measured_step_times() {
        let mut p = Pacer::default();
        assert_eq!(p.budget(512), FIRST_BUDGET);
        assert_eq!(p.budget(3), 3);
        p.record(3, 0, 0.050); // decode-only steps: 50 ms
        p.record(0, 512, 3.0); // prefill alone: ignored
        p.record(3, 10, 0.150); // 10 prompt tokens added 100 ms
                                // (2.5 - 1) * 50 ms / 10 ms per token
        assert_eq!(p.budget(512), 7);
        assert_eq!(p.budget(4), 4);
        // Longer contexts make prompt tokens dearer: the budget shrinks.
        for _ in 0..20 {
            p.record(3, 7, 0.050 + 7.0 * 0.020);
        }
        assert_eq!(p.budget(512), 3);
        // Never zero.
        p.record(3, 1, 100.0);
        assert_eq!(p.budget(512), 1);
    }
}
