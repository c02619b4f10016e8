//! A stand-in for `candle_core::quantized::GgmlDType`, for the NEON check (see half.rs).

pub mod quantized {
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum GgmlDType {
        F32,
        Q4_0,
        Q4_1,
        Q5_0,
        Q8_0,
        Q4K,
        Q5K,
        Q6K,
        Q8K,
    }
}
