//! The per-sequence KV cache: one preallocated K and V buffer per layer, sized once for the
//! sequence's capacity and never grown. `truncate` forgets a suffix so a slot can reuse a
//! shared prompt prefix. Knows nothing about any architecture beyond the buffer shapes.

use super::ModelError;
use candle_core::{DType, Device, Tensor};

/// K/V for one sequence. Buffers are `[n_kv_head, capacity, head_dim]` per layer; only the
/// first `len` positions hold data.
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: usize,
    capacity: usize,
}

/// The buffer shape a model asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KvShape {
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl KvCache {
    pub(crate) fn new(
        shape: KvShape,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let dims = (shape.kv_heads, capacity, shape.head_dim);
        let mut k = Vec::with_capacity(shape.layers);
        let mut v = Vec::with_capacity(shape.layers);
        for _ in 0..shape.layers {
            k.push(Tensor::zeros(dims, dtype, device)?);
            v.push(Tensor::zeros(dims, dtype, device)?);
        }
        Ok(KvCache {
            k,
            v,
            len: 0,
            capacity,
        })
    }

    /// Tokens currently cached.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forget everything after the first `len` tokens (prefix reuse). A longer `len` than
    /// what is cached changes nothing: the cache cannot invent positions.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Fails before any work when `n` more tokens would not fit.
    pub(crate) fn check_room(&self, n: usize) -> Result<(), ModelError> {
        let needed = self.len + n;
        if needed > self.capacity {
            return Err(ModelError::CacheFull {
                needed,
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    /// Writes `k`/`v` (`[n_kv_head, n, head_dim]`, contiguous) at positions `len..len+n` of
    /// `layer` and returns views of all cached positions `0..len+n`. The length itself moves
    /// on only in `advance`, once every layer has been written.
    pub(crate) fn append(
        &self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor), ModelError> {
        let n = k.dim(1)?;
        let (kb, vb) = (&self.k[layer], &self.v[layer]);
        kb.slice_set(&k.to_dtype(kb.dtype())?, 1, self.len)?;
        vb.slice_set(&v.to_dtype(vb.dtype())?, 1, self.len)?;
        let total = self.len + n;
        Ok((kb.narrow(1, 0, total)?, vb.narrow(1, 0, total)?))
    }

    /// Layer `layer`'s first `total` positions as f32 on the host, for the CPU attention:
    /// K transposed to `[kv_heads, head_dim, total]` into `k_t`, V as
    /// `[kv_heads, total, head_dim]` into `v_out` (both resized; the caller reuses them so a
    /// decode step allocates nothing here). One pass over the cache memory (candle's dtype
    /// conversion of the strided view plus a transpose copy cost several, every layer of
    /// every decode step).
    pub(crate) fn host_f32(
        &self,
        layer: usize,
        total: usize,
        k_t: &mut Vec<f32>,
        v_out: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        let (kv, cap, hd) = self.k[layer].dims3()?;
        let (k_storage, k_layout) = self.k[layer].storage_and_layout();
        let (v_storage, v_layout) = self.v[layer].storage_and_layout();
        if k_layout.start_offset() != 0 || v_layout.start_offset() != 0 {
            return Err(ModelError::Candle("KV cache tensor is a view".into()));
        }
        let k = host_values(&k_storage)?;
        let v = host_values(&v_storage)?;
        k_t.resize(kv * hd * total, 0.0);
        v_out.resize(kv * total * hd, 0.0);
        for h in 0..kv {
            for j in 0..total {
                let src = (h * cap + j) * hd;
                let dst = &mut v_out[(h * total + j) * hd..(h * total + j + 1) * hd];
                v.read(src, dst);
                let kt = &mut k_t[h * hd * total..(h + 1) * hd * total];
                k.read_strided(src, hd, kt, j, total);
            }
        }
        Ok(())
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

/// A cache tensor's values on the host, in its stored dtype.
enum HostValues<'a> {
    F16(&'a [half::f16]),
    F32(&'a [f32]),
}

impl HostValues<'_> {
    fn read(&self, src: usize, dst: &mut [f32]) {
        match self {
            HostValues::F16(v) => {
                let n = dst.len();
                for (d, x) in dst.iter_mut().zip(&v[src..src + n]) {
                    *d = x.to_f32();
                }
            }
            HostValues::F32(v) => {
                let n = dst.len();
                dst.copy_from_slice(&v[src..src + n]);
            }
        }
    }

    /// Values `src..src + n` into `dst[d * stride + col]` for `d < n`.
    fn read_strided(&self, src: usize, n: usize, dst: &mut [f32], col: usize, stride: usize) {
        for d in 0..n {
            dst[d * stride + col] = match self {
                HostValues::F16(v) => v[src + d].to_f32(),
                HostValues::F32(v) => v[src + d],
            };
        }
    }
}

fn host_values(storage: &candle_core::Storage) -> Result<HostValues<'_>, ModelError> {
    match storage {
        candle_core::Storage::Cpu(candle_core::CpuStorage::F16(v)) => Ok(HostValues::F16(v)),
        candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) => Ok(HostValues::F32(v)),
        _ => Err(ModelError::Candle(
            "KV cache must be f16 or f32 on the CPU".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(cap: usize) -> KvCache {
        let shape = KvShape {
            layers: 2,
            kv_heads: 1,
            head_dim: 2,
        };
        KvCache::new(shape, cap, DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn appends_and_truncates_without_growing() {
        let mut c = cache(4);
        let k = Tensor::new(&[[[1f32, 2.], [3., 4.]]], &Device::Cpu).unwrap();
        for layer in 0..2 {
            let (kk, _) = c.append(layer, &k, &k).unwrap();
            assert_eq!(kk.dims(), &[1, 2, 2]);
        }
        c.advance(2);
        assert_eq!(c.len(), 2);
        c.truncate(1);
        assert_eq!(c.len(), 1);
        c.truncate(3);
        assert_eq!(c.len(), 1);
        let (kk, _) = c.append(0, &k, &k).unwrap();
        let got: Vec<f32> = kk.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, vec![1., 2., 1., 2., 3., 4.]);
        assert_eq!(c.capacity(), 4);
    }

    #[test]
    fn rejects_tokens_past_capacity() {
        let mut c = cache(3);
        c.advance(2);
        assert!(c.check_room(1).is_ok());
        assert!(matches!(
            c.check_room(2),
            Err(ModelError::CacheFull {
                needed: 4,
                capacity: 3
            })
        ));
    }
}
