//! A debug hook for comparing the forward pass with another implementation tensor by
//! tensor: while `capture` runs a closure, every intermediate the decoder records is
//! copied out under llama.cpp's tensor names (`attn_norm-3`, `kq_soft_max-3`, ...), so an
//! eval-callback dump of llama.cpp can be matched name by name. Off, `record` costs one
//! thread-local read. Used by tests and examples only; no model state lives here.

use candle_core::Tensor;
use std::cell::RefCell;

thread_local! {
    static SINK: RefCell<Option<Vec<(String, Tensor)>>> = const { RefCell::new(None) };
}

/// Runs `f` and returns what it returned plus every tensor recorded on this thread
/// meanwhile, in recording order.
pub fn capture<R>(f: impl FnOnce() -> R) -> (R, Vec<(String, Tensor)>) {
    SINK.with(|s| *s.borrow_mut() = Some(Vec::new()));
    let r = f();
    let got = SINK.with(|s| s.borrow_mut().take()).unwrap_or_default();
    (r, got)
}

/// Records `t` under `name()` when a capture is running; the name is built only then.
pub(crate) fn record(name: impl FnOnce() -> String, t: &Tensor) {
    SINK.with(|s| {
        if let Some(v) = s.borrow_mut().as_mut() {
            v.push((name(), t.clone()));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn records_only_inside_capture() {
        let t = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        record(|| panic!("a name is built only while capturing"), &t);
        let ((), got) = capture(|| record(|| "x-0".to_owned(), &t));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "x-0");
        record(|| panic!("capture has ended"), &t);
    }
}
