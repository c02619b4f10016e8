//! CPU thread count for inference. candle's CPU kernels use two process-wide pools, each
//! created on first use: the rayon pool (sized by `RAYON_NUM_THREADS`, used by the f32
//! matmul and elementwise ops) and candle's own barrier pool for quantized matmuls (sized
//! by `CANDLE_NUM_THREADS`, falling back to `RAYON_NUM_THREADS`). Both default to the
//! number of physical cores (`candle_core::utils::get_num_threads`). wick's own quantized
//! matmul kernels (`model::cpu`, which do almost all of the CPU work) run on a third pool
//! sized the same way. `--threads N` sets both variables before the model is loaded, so
//! every pool gets N threads. The worker itself is one thread that hands each op to them.
//! Must be called before any candle op runs; later calls have no effect on built pools.

/// Sizes candle's CPU thread pools to `n` threads (`None` keeps candle's default).
pub fn configure(n: Option<usize>) {
    if let Some(n) = n.filter(|&n| n > 0) {
        // Set once at startup, before any other thread reads the environment.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
    }
}

/// The thread count candle will use (after `configure`).
pub fn current() -> usize {
    candle_core::utils::get_num_threads()
}
