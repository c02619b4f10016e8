//! Rope frequencies beyond the plain `theta_i = pos * base^(-2i/d)`: linear position
//! scaling (`rope.scaling.type = linear`, `rope.scaling.factor`) and per-pair frequency
//! factors (`rope_freqs.weight`, written by the converter for Llama 3.1/3.2's "llama3" rope
//! scaling). Computed as ggml's `ggml_rope_cache_init` + `rope_yarn` do with yarn off:
//! `theta = freq_scale * (theta_base / factor_i)`, so wick's tables equal llama.cpp's.
//! Any other scaling type (yarn, longrope, ...) is refused by name.
//! Input: GGUF metadata and the optional factors tensor. Output: `RopeFreqs`.

use super::check::unsupported;
use super::ggml_ops;
use super::ModelError;
use crate::gguf::Gguf;

/// Everything that decides the rope angles of one layer.
#[derive(Debug, Clone)]
pub(crate) struct RopeFreqs {
    pub base: f32,
    /// `1 / rope.scaling.factor` for linear scaling, else 1.
    pub freq_scale: f32,
    /// One divisor per rotated pair (`rope_freqs.weight`), or none.
    pub factors: Option<Vec<f32>>,
}

impl RopeFreqs {
    pub fn plain(base: f32) -> Self {
        RopeFreqs {
            base,
            freq_scale: 1.0,
            factors: None,
        }
    }
}

/// `freq_scale` as llama.cpp derives it: the scaling type defaults to linear, a missing
/// factor means 1, and type `none` never scales.
pub(crate) fn freq_scale(gguf: &Gguf, arch: &str) -> Result<f32, ModelError> {
    let key = |k: &str| format!("{arch}.{k}");
    let kind = gguf.get_str(&key("rope.scaling.type")).unwrap_or("linear");
    let factor = gguf
        .get_f64(&key("rope.scaling.factor"))
        .or_else(|| gguf.get_f64(&key("rope.scale_linear")))
        .unwrap_or(0.0) as f32;
    match kind {
        "none" => Ok(1.0),
        "linear" if factor == 0.0 => Ok(1.0),
        "linear" => Ok(1.0 / factor),
        other => Err(unsupported(
            arch,
            &key("rope.scaling.type"),
            &format!("rope scaling type {other:?} (wick implements none and linear)"),
        )),
    }
}

/// Reads `rope_freqs.weight` when the file has it: `half` factors, one per rotated pair.
pub(crate) fn factors(
    gguf: &mut Gguf,
    arch: &str,
    half: usize,
) -> Result<Option<Vec<f32>>, ModelError> {
    const NAME: &str = "rope_freqs.weight";
    if !gguf.has_tensor(NAME) {
        return Ok(None);
    }
    let t = gguf.tensor(NAME, &candle_core::Device::Cpu)?;
    let v: Vec<f32> = t
        .dequantize(&candle_core::Device::Cpu)?
        .flatten_all()?
        .to_vec1()?;
    if v.len() != half {
        return Err(unsupported(
            arch,
            NAME,
            &format!("rope factors tensor of {} values for {half} pairs", v.len()),
        ));
    }
    Ok(Some(v))
}

/// cos/sin of position `pos` for each pair, as `ggml_rope_cache_init`: the base angle
/// starts at `pos` and is multiplied by `theta_scale` once per pair in f32; each pair's
/// angle is `freq_scale * (theta / factor)`; cos/sin are libm's `cosf`/`sinf`. With no
/// factors and `freq_scale` 1 this is exactly `ggml_ops::rope_row`.
pub(crate) fn rope_row(
    pos: usize,
    theta_scale: f32,
    freqs: &RopeFreqs,
    cos: &mut [f32],
    sin: &mut [f32],
) {
    if freqs.factors.is_none() && freqs.freq_scale == 1.0 {
        return ggml_ops::rope_row(pos, theta_scale, cos, sin);
    }
    let mut theta = pos as f32;
    for (i, (c, s)) in cos.iter_mut().zip(sin.iter_mut()).enumerate() {
        let ff = freqs.factors.as_ref().map_or(1.0, |f| f[i]);
        let angle = freqs.freq_scale * (theta / ff);
        *c = angle.cos();
        *s = angle.sin();
        theta *= theta_scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_divide_each_pairs_angle() {
        let plain = RopeFreqs::plain(10_000.0);
        let scaled = RopeFreqs {
            factors: Some(vec![1.0, 4.0]),
            ..plain.clone()
        };
        let ts = super::super::ggml_ops::rope_theta_scale(10_000.0, 4);
        let (mut c0, mut s0, mut c1, mut s1) = ([0f32; 2], [0f32; 2], [0f32; 2], [0f32; 2]);
        rope_row(7, ts, &plain, &mut c0, &mut s0);
        rope_row(7, ts, &scaled, &mut c1, &mut s1);
        assert_eq!((c0[0], s0[0]), (c1[0], s1[0]));
        let theta = 7.0f32 * ts;
        assert_eq!(c1[1], (theta / 4.0).cos());
        assert_ne!(c0[1], c1[1]);
        // Without factors or scaling, the same bits as the plain ggml table.
        let (mut c2, mut s2) = ([0f32; 2], [0f32; 2]);
        super::super::ggml_ops::rope_row(7, ts, &mut c2, &mut s2);
        assert_eq!((c0, s0), (c2, s2));
    }
}
