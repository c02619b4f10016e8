//! SwiGLU on the CPU: `ggml_ops::swiglu` (ggml's `silu(g) * u` on ggml's exp), bit for bit,
//! eight values at a time, straight from the gate and up tensors' storage, and split over
//! the kernel pool when long (prefill). The reference is one scalar exp per value on one
//! thread, after copying both inputs out: ~1.5% of a speculative verification while the
//! other thread waited.
//! Input: the gate and up projections, same shape. Output: a new f32 tensor of it.

use super::pool;
use crate::model::ggml_ops;
use candle_core::{DType, Storage, Tensor};
use std::sync::Mutex;

/// Values per work item (long enough to dwarf handing it out).
const CHUNK: usize = 16 * 1024;

pub(crate) fn swiglu(g: &Tensor, u: &Tensor) -> candle_core::Result<Tensor> {
    if g.shape() != u.shape() {
        candle_core::bail!("swiglu: gate {:?} and up {:?} differ", g.shape(), u.shape());
    }
    let (g, u) = (
        g.to_dtype(DType::F32)?.contiguous()?,
        u.to_dtype(DType::F32)?.contiguous()?,
    );
    let n = g.elem_count();
    let mut out = vec![0f32; n];
    {
        let (gs, gl) = g.storage_and_layout();
        let (us, ul) = u.storage_and_layout();
        let (Storage::Cpu(gc), Storage::Cpu(uc)) = (&*gs, &*us) else {
            candle_core::bail!("swiglu: input is not on the CPU");
        };
        let gv = &gc.as_slice::<f32>()?[gl.start_offset()..][..n];
        let uv = &uc.as_slice::<f32>()?[ul.start_offset()..][..n];
        let parts: Vec<Mutex<&mut [f32]>> = out.chunks_mut(CHUNK).map(Mutex::new).collect();
        pool::pool().run(parts.len(), &|items| {
            for i in items {
                let mut o = parts[i].lock().unwrap_or_else(|e| e.into_inner());
                let r = i * CHUNK..(i * CHUNK + o.len());
                apply(&gv[r.clone()], &uv[r], &mut o);
            }
        });
    }
    Tensor::from_vec(out, g.shape(), g.device())
}

fn apply(g: &[f32], u: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::dot::avx2::available() {
        // SAFETY: AVX2/FMA/F16C checked; the three slices have the same length.
        unsafe { avx2::swiglu(g, u, out) };
        return;
    }
    ggml_ops::swiglu(g, u, out);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use crate::model::cpu::attention::avx2::expf8;
    use crate::model::ggml_ops;
    use std::arch::x86_64::*;

    /// `x / (1 + exp(0 - x)) * v`: the same correctly rounded operations in the same order
    /// as the scalar form, on `expf8` (bit for bit `ggml_ops::expf`).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn swiglu(g: &[f32], u: &[f32], out: &mut [f32]) {
        debug_assert!(g.len() == out.len() && u.len() == out.len());
        let full = out.len() / 8 * 8;
        let one = _mm256_set1_ps(1.0);
        for i in (0..full).step_by(8) {
            let x = _mm256_loadu_ps(g.as_ptr().add(i));
            let e = expf8(_mm256_sub_ps(_mm256_setzero_ps(), x));
            let silu = _mm256_div_ps(x, _mm256_add_ps(one, e));
            let y = _mm256_mul_ps(silu, _mm256_loadu_ps(u.as_ptr().add(i)));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
        }
        ggml_ops::swiglu(&g[full..], &u[full..], &mut out[full..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn equals_the_reference_bit_for_bit() -> candle_core::Result<()> {
        // Gate values across exp's whole range (saturating at both ends), a length that
        // is not a multiple of 8, and more than one work item.
        let n = 2 * CHUNK + 13;
        let g: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 20_001) as f32 * 0.02 - 200.0)
            .collect();
        let u: Vec<f32> = (0..n)
            .map(|i| ((i * 104_729) % 997) as f32 * 0.01 - 5.0)
            .collect();
        let mut want = vec![0f32; n];
        ggml_ops::swiglu(&g, &u, &mut want);
        let (gt, ut) = (
            Tensor::from_vec(g, (1, n), &Device::Cpu)?,
            Tensor::from_vec(u, (1, n), &Device::Cpu)?,
        );
        let got = swiglu(&gt, &ut)?.flatten_all()?.to_vec1::<f32>()?;
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want));
        assert!(swiglu(&gt, &ut.narrow(1, 0, 8)?).is_err());
        Ok(())
    }
}
