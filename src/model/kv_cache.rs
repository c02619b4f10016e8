//! The per-sequence KV cache: one K and V buffer per layer, allocated on demand in blocks
//! of `KV_BLOCK` positions up to the sequence's limit, so an idle or short sequence costs
//! only what it holds (several slots cost no more than the tokens they use). `truncate`
//! forgets a suffix so a slot can reuse a shared prompt prefix; `copy_prefix` clones the
//! first positions into a new cache (the prefix cache keeps the original).
//! Knows nothing about any architecture beyond the buffer shapes.

use super::ModelError;
use candle_core::{DType, Device, Tensor};

/// Positions are allocated in multiples of this (a growth copies the cache, so not one by
/// one; 256 positions of Qwen2.5-0.5B are 3 MiB).
const KV_BLOCK: usize = 256;

/// K/V for one sequence. Buffers are `[n_kv_head, allocated, head_dim]` per layer (none
/// until the first `reserve`); only the first `len` positions hold data.
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: usize,
    /// Positions the buffers hold now.
    allocated: usize,
    /// The most positions this sequence may ever hold.
    capacity: usize,
    shape: KvShape,
    dtype: DType,
    device: Device,
}

/// The buffer shape a model asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KvShape {
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl KvCache {
    /// A cache of at most `capacity` positions; nothing is allocated yet.
    pub(crate) fn new(
        shape: KvShape,
        capacity: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self, ModelError> {
        Ok(KvCache {
            k: Vec::new(),
            v: Vec::new(),
            len: 0,
            allocated: 0,
            capacity,
            shape,
            dtype,
            device: device.clone(),
        })
    }

    /// A cache that stores no K/V, only counts positions: for a `Model` that keeps its
    /// state elsewhere (test doubles of the engine's model).
    pub fn positions_only(capacity: usize) -> Self {
        KvCache {
            k: Vec::new(),
            v: Vec::new(),
            len: 0,
            allocated: 0,
            capacity,
            shape: KvShape {
                layers: 0,
                kv_heads: 0,
                head_dim: 0,
            },
            dtype: DType::F16,
            device: Device::Cpu,
        }
    }

    /// Makes room for `total` positions (rounded up to a block, never past the capacity),
    /// keeping the cached ones. Callers that know a prompt's length reserve it at once so
    /// a long prefill grows the buffers once, not once per chunk.
    pub fn reserve(&mut self, total: usize) -> Result<(), ModelError> {
        if total <= self.allocated {
            return Ok(());
        }
        if total > self.capacity {
            return Err(ModelError::CacheFull {
                needed: total,
                capacity: self.capacity,
            });
        }
        let want = total.div_ceil(KV_BLOCK).saturating_mul(KV_BLOCK);
        self.realloc(want.min(self.capacity))
    }

    /// Replaces the buffers by ones of `allocated` positions holding the first `len`.
    fn realloc(&mut self, allocated: usize) -> Result<(), ModelError> {
        let s = self.shape;
        let dims = (s.kv_heads, allocated, s.head_dim);
        let mut k = Vec::with_capacity(s.layers);
        let mut v = Vec::with_capacity(s.layers);
        for layer in 0..s.layers {
            let (nk, nv) = (
                Tensor::zeros(dims, self.dtype, &self.device)?,
                Tensor::zeros(dims, self.dtype, &self.device)?,
            );
            if self.len > 0 {
                nk.slice_set(&self.k[layer].narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
                nv.slice_set(&self.v[layer].narrow(1, 0, self.len)?.contiguous()?, 1, 0)?;
            }
            k.push(nk);
            v.push(nv);
        }
        (self.k, self.v, self.allocated) = (k, v, allocated);
        Ok(())
    }

    /// A new cache holding a copy of the first `n` positions (fewer if fewer are cached).
    pub fn copy_prefix(&self, n: usize) -> Result<KvCache, ModelError> {
        let mut c = KvCache::new(self.shape, self.capacity, self.dtype, &self.device)?;
        let n = n.min(self.len);
        if n > 0 {
            c.reserve(n)?;
            for layer in 0..self.shape.layers {
                c.k[layer].slice_set(&self.k[layer].narrow(1, 0, n)?.contiguous()?, 1, 0)?;
                c.v[layer].slice_set(&self.v[layer].narrow(1, 0, n)?.contiguous()?, 1, 0)?;
            }
            c.len = n;
        }
        Ok(c)
    }

    /// Bytes the buffers take now.
    pub fn bytes(&self) -> usize {
        let s = self.shape;
        2 * s.layers * s.kv_heads * s.head_dim * self.allocated * self.dtype.size_in_bytes()
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

    /// Fails before any work when `n` more tokens would not fit; else makes room for them.
    pub(crate) fn check_room(&mut self, n: usize) -> Result<(), ModelError> {
        let needed = self.len.saturating_add(n);
        if needed > self.capacity {
            return Err(ModelError::CacheFull {
                needed,
                capacity: self.capacity,
            });
        }
        self.reserve(needed)
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
        if self.len + n > self.allocated {
            return Err(ModelError::Candle(
                "KV cache append past its reserved room".into(),
            ));
        }
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

    /// Layer `layer`'s K and V buffers as stored (`[kv_heads, stride, head_dim]` f16 on the
    /// host) passed to `f` with `stride`, for kernels that read the cache in place; `None`
    /// when the cache is not f16 on the CPU.
    pub(crate) fn with_host_f16<R>(
        &self,
        layer: usize,
        f: impl FnOnce(&[half::f16], &[half::f16], usize) -> R,
    ) -> Result<Option<R>, ModelError> {
        let (_, stride, _) = self.k[layer].dims3()?;
        let (k_storage, k_layout) = self.k[layer].storage_and_layout();
        let (v_storage, v_layout) = self.v[layer].storage_and_layout();
        if k_layout.start_offset() != 0 || v_layout.start_offset() != 0 {
            return Err(ModelError::Candle("KV cache tensor is a view".into()));
        }
        match (host_values(&k_storage)?, host_values(&v_storage)?) {
            (HostValues::F16(k), HostValues::F16(v)) => Ok(Some(f(k, v, stride))),
            _ => Ok(None),
        }
    }

    /// Marks `n` more positions as filled (after a forward pass wrote their K/V).
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

/// A cache of `len` zero positions (1 layer, 1 head, head dim 2, f32) for other modules'
/// tests.
#[cfg(test)]
pub(crate) fn test_cache(capacity: usize, len: usize) -> KvCache {
    let shape = KvShape {
        layers: 1,
        kv_heads: 1,
        head_dim: 2,
    };
    let mut c = KvCache::new(shape, capacity, DType::F32, &Device::Cpu).unwrap();
    c.check_room(len).unwrap();
    c.advance(len);
    c
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
        c.check_room(2).unwrap();
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
    fn allocates_on_demand_and_keeps_data_when_growing() {
        let mut c = cache(2 * KV_BLOCK + 3);
        assert_eq!(c.bytes(), 0, "nothing before the first token");
        c.check_room(2).unwrap();
        let k = Tensor::new(&[[[1f32, 2.], [3., 4.]]], &Device::Cpu).unwrap();
        for layer in 0..2 {
            c.append(layer, &k, &k).unwrap();
        }
        c.advance(2);
        let one_block = c.bytes();
        assert_eq!(one_block, 2 * 2 * 2 * KV_BLOCK * 4);
        // Growing past a block keeps what was cached; the last block stops at the capacity.
        c.reserve(2 * KV_BLOCK + 3).unwrap();
        assert_eq!(c.bytes(), one_block / KV_BLOCK * (2 * KV_BLOCK + 3));
        let first = k.narrow(1, 0, 1).unwrap();
        let (kk, _) = c.append(1, &first, &first).unwrap();
        let got: Vec<f32> = kk.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(got, vec![1., 2., 3., 4., 1., 2.]);
        let copy = c.copy_prefix(1).unwrap();
        assert_eq!((copy.len(), copy.capacity()), (1, c.capacity()));
        assert_eq!(copy.bytes(), one_block);
    }

    #[test]
    fn growing_keeps_every_head() {
        let shape = KvShape {
            layers: 1,
            kv_heads: 2,
            head_dim: 1,
        };
        let mut c = KvCache::new(shape, 4 * KV_BLOCK, DType::F32, &Device::Cpu).unwrap();
        c.check_room(1).unwrap();
        let kv = Tensor::new(&[[[1f32]], [[2.]]], &Device::Cpu).unwrap();
        c.append(0, &kv, &kv).unwrap();
        c.advance(1);
        c.reserve(KV_BLOCK + 1).unwrap();
        let copy = c.copy_prefix(1).unwrap();
        for cache in [&c, &copy] {
            let (mut k, mut v) = (Vec::new(), Vec::new());
            cache.host_f32(0, 1, &mut k, &mut v).unwrap();
            assert_eq!((k, v), (vec![1., 2.], vec![1., 2.]));
        }
    }

    #[test]
    fn rejects_tokens_past_capacity() {
        let mut c = cache(3);
        c.check_room(2).unwrap();
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
