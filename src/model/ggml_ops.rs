//! Bit-exact reproductions of the f32 kernels that llama.cpp's CPU backend (ggml, x86 with
//! AVX-512) runs between the quantized matmuls: RMSNorm, the rope table and rotation, the
//! attention softmax, SwiGLU, and the f16 dot products of attention in both of ggml's
//! summation orders. Why bit-exact: every quantized matmul rounds its input to 8 bits per
//! block first, so a 1-ulp difference upstream flips some of those roundings and comes out
//! as a 1e-4 relative difference; over 30 layers that grew to 0.3 nats of logprob drift
//! against llama.cpp (measured, see tests/model_reference.rs). Each function names the ggml
//! routine it follows. Pure functions on slices: no tensors, no model types.

/// `ggml_compute_forward_rms_norm_f32` followed by the weight `ggml_mul`: the sum of squares
/// in f64 (each square rounded to f32 first), then `x * scale * w` in f32, left to right.
pub(crate) fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// cos/sin of rope position `pos` for each of `half` pairs, as `ggml_rope_cache_init`
/// computes them: the angle starts at `pos` and is multiplied by `theta_scale` once per pair
/// in f32 (not `pos * base^(-2i/d)`, which rounds differently), and cos/sin are libm's
/// `cosf`/`sinf`, which Rust's f32 methods call too.
pub(crate) fn rope_row(pos: usize, theta_scale: f32, cos: &mut [f32], sin: &mut [f32]) {
    let mut theta = pos as f32;
    for (c, s) in cos.iter_mut().zip(sin.iter_mut()) {
        *c = theta.cos();
        *s = theta.sin();
        theta *= theta_scale;
    }
}

/// `powf(freq_base, -2.0f/n_dims)`, the per-pair angle factor of ggml's rope.
pub(crate) fn rope_theta_scale(base: f32, n_dims: usize) -> f32 {
    base.powf(-2.0 / n_dims as f32)
}

/// One rotated pair as ggml's `rotate_pairs` compiles (GCC contracts it into FMAs; checked
/// bit for bit against llama.cpp's rope output).
#[inline]
pub(crate) fn rotate(x0: f32, x1: f32, cos: f32, sin: f32) -> (f32, f32) {
    (x0.mul_add(cos, -(x1 * sin)), x0.mul_add(sin, x1 * cos))
}

fn f32c(bits: u32) -> f32 {
    f32::from_bits(bits)
}

/// `ggml_v_expf` (AVX-512): ARM's optimized-routines exp, within 1.5 ulp of the true value
/// but not equal to libm's `expf`, so softmax and SiLU must use it to agree with ggml.
#[inline]
pub(crate) fn expf(x: f32) -> f32 {
    let r = f32c(0x4b40_0000); // 0x1.8p23: rounds to an integer in the mantissa
    let z = x.mul_add(f32c(0x3fb8_aa3b), r); // x * log2(e) + r
    let n = z - r;
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let b = (-n).mul_add(f32c(0x35bf_be8e), (-n).mul_add(f32c(0x3f31_7200), x));
    let u = b * b;
    let j = f32c(0x3c07_2010)
        .mul_add(b, f32c(0x3d2b_9f17))
        .mul_add(u, f32c(0x3e2a_af33).mul_add(b, f32c(0x3eff_fedb)))
        .mul_add(u, f32c(0x3f7f_fff6).mul_add(b, 1.0));
    // `_mm512_scalef_ps(j, n)`: j * 2^n rounded once; f64 holds the product exactly, and
    // 2^n (|n| <= 192) is built from its exponent bits.
    let pow2 = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    (f64::from(j) * pow2) as f32
}

/// `ggml_vec_swiglu_f32`: `silu(g) * u` with `silu(x) = x / (1 + exp(0 - x))` on ggml's exp.
/// (ggml runs the last `len % 16` elements through libm instead; every model dimension we
/// load is a multiple of 16.)
pub(crate) fn swiglu(g: &[f32], u: &[f32], out: &mut [f32]) {
    for ((o, &x), &v) in out.iter_mut().zip(g).zip(u) {
        *o = x / (1.0 + expf(0.0 - x)) * v;
    }
}

/// `_mm512_reduce_add_ps` as GCC expands it: halves, then quarters, then pairs.
#[inline]
pub(crate) fn reduce16(v: &[f32; 16]) -> f32 {
    let mut t8 = [0f32; 8];
    for i in 0..8 {
        t8[i] = v[i + 8] + v[i];
    }
    let mut t4 = [0f32; 4];
    for i in 0..4 {
        t4[i] = t8[i + 4] + t8[i];
    }
    (t4[0] + t4[2]) + (t4[1] + t4[3])
}

/// Softmax of one attention row in place, as `ggml_compute_forward_soft_max_f32` with
/// `ggml_vec_soft_max_f32`: `x * scale` (masked entries are already `-inf`), the max, ggml's
/// exp of `x - max` in blocks of 16 whose sums are added in f64, then a multiply by the
/// reciprocal rounded to f32. Entries past `row.len()` count as masked (ggml's KV length is
/// padded to 256 with masked entries, which add exact zeros).
pub(crate) fn softmax(row: &mut [f32], scale: f32) {
    let mut max = f32::NEG_INFINITY;
    for v in row.iter_mut() {
        *v *= scale;
        max = max.max(*v);
    }
    let mut sum = 0f64;
    for chunk in row.chunks_mut(16) {
        let mut lanes = [0f32; 16];
        for (l, v) in lanes.iter_mut().zip(chunk.iter_mut()) {
            *v = expf(*v - max);
            *l = *v;
        }
        sum += f64::from(reduce16(&lanes));
    }
    let inv = (1.0 / sum) as f32;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// The reference definitions of ggml's two summation orders, one dot at a time; `scores`
/// and `weighted_sum` compute the same sums vectorized across keys or outputs (tested).
///
/// A dot product of f16 values (given as f32) in tinyBLAS's order, which ggml uses when a
/// batch has at least two rows (prefill): 16 lanes, lane `l` summing elements `l, l+16, ...`
/// in order, then `reduce16`. Products of two f16 values are exact in f32, so a multiply
/// and an add equal ggml's FMA. A partial last block counts as zero-padded.
#[cfg(test)]
fn dot_f16_tiled(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut ca = a.chunks_exact(16);
    let mut cb = b.chunks_exact(16);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..16 {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[l] += x * y;
    }
    reduce16(&acc)
}

/// A dot product of f16 values (given as f32) in `ggml_vec_dot_f16`'s order (AVX-512),
/// which ggml uses for a one-row batch (decode): four 16-lane accumulators over blocks of
/// 64, combined as (0+2)+(1+3), then `reduce16`. A partial last block counts as
/// zero-padded (ggml's KV length is a multiple of 256).
#[cfg(test)]
fn dot_f16_vec(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [[0f32; 16]; 4];
    let mut ca = a.chunks_exact(64);
    let mut cb = b.chunks_exact(64);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for (j, acc) in acc.iter_mut().enumerate() {
            for l in 0..16 {
                acc[l] += x[16 * j + l] * y[16 * j + l];
            }
        }
    }
    for (i, (p, q)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[i / 16][i % 16] += p * q;
    }
    let mut s = [0f32; 16];
    for l in 0..16 {
        s[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    }
    reduce16(&s)
}

/// Shapes of one attention call: `t` new queries at positions `pos..pos + t` over `total`
/// cached keys (`total = pos + t`), `n_head` query heads sharing `n_kv_head` K/V heads.
pub(crate) struct AttnShape {
    pub t: usize,
    pub pos: usize,
    pub total: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    /// Keys older than this many positions before the query are masked (sliding-window
    /// layers); `usize::MAX` for none.
    pub window: usize,
}

/// llama.cpp's non-flash attention (`build_attn_mha`) on host slices:
/// `q` is `[n_head, t, head_dim]` already rounded to f16, `k_t` is K transposed,
/// `[n_kv_head, head_dim, total]`, and `v` is `[n_kv_head, total, head_dim]`, f16 values.
/// Scores use the causal mask and `1/sqrt(head_dim)`, the probabilities are rounded to f16
/// like ggml's `kq` operand, and both products sum in the order ggml uses for this batch
/// size. Query head `h` reads K/V head `h / (n_head / n_kv_head)`, as ggml broadcasts.
/// Heads run on up to `threads` scoped threads when the call is big enough to pay for
/// them. Returns `[t, n_head * head_dim]`.
pub(crate) fn attend(q: &[f32], k_t: &[f32], v: &[f32], s: &AttnShape, threads: usize) -> Vec<f32> {
    let hd = s.head_dim;
    let work = s.n_head * s.t * s.total * hd;
    let threads = if s.t == 1 || work < PARALLEL_MIN_WORK {
        1
    } else {
        threads.clamp(1, s.n_head)
    };
    let per = s.n_head.div_ceil(threads);
    let heads: Vec<Vec<f32>> = if threads == 1 {
        (0..s.n_head)
            .map(|h| attend_head(h, q, k_t, v, s))
            .collect()
    } else {
        std::thread::scope(|scope| {
            let jobs: Vec<_> = (0..s.n_head)
                .step_by(per)
                .map(|h0| {
                    scope.spawn(move || {
                        (h0..(h0 + per).min(s.n_head))
                            .map(|h| attend_head(h, q, k_t, v, s))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            jobs.into_iter()
                .flat_map(|j| j.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    };
    let mut out = vec![0f32; s.t * s.n_head * hd];
    for (h, head) in heads.iter().enumerate() {
        for (i, row) in head.chunks(hd).enumerate() {
            out[(i * s.n_head + h) * hd..(i * s.n_head + h + 1) * hd].copy_from_slice(row);
        }
    }
    out
}

/// Multiply-adds below which a prefill's `attend` stays on the calling thread. Decode
/// steps always do: measured, spawning per layer (next to candle's spinning pool) halved
/// decode speed.
const PARALLEL_MIN_WORK: usize = 1 << 20;

/// One query head of `attend`: `[t, head_dim]`.
fn attend_head(h: usize, q: &[f32], k_t: &[f32], v: &[f32], s: &AttnShape) -> Vec<f32> {
    let (hd, total) = (s.head_dim, s.total);
    let decode = s.t == 1;
    let n_lanes = if decode { 64 } else { 16 };
    let kvh = h / (s.n_head / s.n_kv_head);
    let keys_t = &k_t[kvh * hd * total..(kvh + 1) * hd * total];
    let vals = &v[kvh * total * hd..(kvh + 1) * total * hd];
    let scale = 1.0 / (hd as f32).sqrt();
    let mut out = vec![0f32; s.t * hd];
    let mut row = vec![0f32; total];
    let mut lanes = vec![0f32; n_lanes * hd.max(total)];
    for (i, o) in out.chunks_mut(hd).enumerate() {
        let qi = &q[(h * s.t + i) * hd..(h * s.t + i + 1) * hd];
        let seen = s.pos + i + 1;
        let row = &mut row[..seen];
        scores(qi, keys_t, total, decode, &mut lanes[..n_lanes * seen], row);
        row[..seen.saturating_sub(s.window)].fill(f32::NEG_INFINITY);
        softmax(row, scale);
        for r in row.iter_mut() {
            *r = half::f16::from_f32(*r).to_f32();
        }
        weighted_sum(row, vals, hd, decode, &mut lanes[..n_lanes * hd], o);
    }
    out
}

/// `out[j] = q . k_j` for the first `out.len()` keys, each summed exactly as `dot_f16_vec`
/// (`decode`) or `dot_f16_tiled` would sum it, but vectorized across keys: dimension `e`
/// adds into lane `e % 64` (`e % 16` tiled) of every key, then each key's lanes are
/// combined in the dot's order. `k_t` is `[head_dim, total]`.
fn scores(q: &[f32], k_t: &[f32], total: usize, decode: bool, lanes: &mut [f32], out: &mut [f32]) {
    let seen = out.len();
    let n_lanes = lanes.len() / seen;
    lanes.fill(0.0);
    for (e, &qe) in q.iter().enumerate() {
        let acc = &mut lanes[(e % n_lanes) * seen..(e % n_lanes + 1) * seen];
        for (a, &k) in acc.iter_mut().zip(&k_t[e * total..e * total + seen]) {
            *a += qe * k;
        }
    }
    // Combine lanes as the dot would, for all keys at once: (0+2)+(1+3) over the four
    // blocks of 16 (decode), then `reduce16`'s tree. Each step is elementwise over keys.
    let mut add_into = |dst: usize, a: usize, b: usize| {
        for j in 0..seen {
            lanes[dst * seen + j] = lanes[a * seen + j] + lanes[b * seen + j];
        }
    };
    if decode {
        for l in 0..16 {
            add_into(l, l, 32 + l);
            add_into(16 + l, 16 + l, 48 + l);
            add_into(l, l, 16 + l);
        }
    }
    for l in 0..8 {
        add_into(l, l + 8, l);
    }
    for l in 0..4 {
        add_into(l, l + 4, l);
    }
    add_into(0, 0, 2);
    add_into(1, 1, 3);
    add_into(0, 0, 1);
    out.copy_from_slice(&lanes[..seen]);
}

/// `out[d] = sum_p probs[p] * v[p][d]` with each `d` summed exactly as `dot_f16_vec`
/// (`decode`) or `dot_f16_tiled` would sum it, but vectorized across `d`: position `p`
/// adds into lane `p % 64` (`p % 16` tiled) of every output, then each output's lanes are
/// combined in the dot's order.
fn weighted_sum(
    probs: &[f32],
    v: &[f32],
    hd: usize,
    decode: bool,
    lanes: &mut [f32],
    out: &mut [f32],
) {
    let n_lanes = lanes.len() / hd;
    lanes.fill(0.0);
    for (p, (&w, vp)) in probs.iter().zip(v.chunks_exact(hd)).enumerate() {
        let acc = &mut lanes[(p % n_lanes) * hd..(p % n_lanes + 1) * hd];
        for (a, &x) in acc.iter_mut().zip(vp) {
            *a += w * x;
        }
    }
    for (d, o) in out.iter_mut().enumerate() {
        let lane = |i: usize| lanes[i * hd + d];
        let mut s = [0f32; 16];
        for (l, sl) in s.iter_mut().enumerate() {
            *sl = if decode {
                (lane(l) + lane(32 + l)) + (lane(16 + l) + lane(48 + l))
            } else {
                lane(l)
            };
        }
        *o = reduce16(&s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Inputs and outputs of these ops captured from llama.cpp's own forward pass
    /// (tests/reference/ggml_ops.json, f32 bit patterns): every op must reproduce them bit
    /// for bit.
    fn goldens() -> Value {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/ggml_ops.json");
        serde_json::from_slice(&std::fs::read(path).expect("tests/reference/ggml_ops.json"))
            .expect("valid JSON")
    }

    fn floats(v: &Value) -> Vec<f32> {
        v.as_array()
            .expect("array of bit patterns")
            .iter()
            .map(|b| f32::from_bits(b.as_u64().expect("u32") as u32))
            .collect()
    }

    fn assert_bits(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let bad = got
            .iter()
            .zip(want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            bad,
            0,
            "{what}: {bad} of {} values differ from llama.cpp",
            got.len()
        );
    }

    #[test]
    fn reproduces_llama_cpp_rms_norm_and_swiglu() {
        let g = goldens();
        let r = &g["rms_norm"];
        let x = floats(&r["x"]);
        let mut out = vec![0f32; x.len()];
        rms_norm(
            &x,
            &floats(&r["w"]),
            r["eps"].as_f64().unwrap() as f32,
            &mut out,
        );
        assert_bits(&out, &floats(&r["want"]), "rms_norm");

        let s = &g["swiglu"];
        let gate = floats(&s["g"]);
        let mut out = vec![0f32; gate.len()];
        swiglu(&gate, &floats(&s["u"]), &mut out);
        assert_bits(&out, &floats(&s["want"]), "swiglu");
    }

    #[test]
    fn reproduces_llama_cpp_rope_in_both_styles() {
        let g = goldens();
        for (key, neox) in [("rope_normal", false), ("rope_neox", true)] {
            let r = &g[key];
            let hd = r["head_dim"].as_u64().unwrap() as usize;
            let half = hd / 2;
            let ts = rope_theta_scale(r["base"].as_f64().unwrap() as f32, hd);
            let (mut cos, mut sin) = (vec![0f32; half], vec![0f32; half]);
            rope_row(r["pos"].as_u64().unwrap() as usize, ts, &mut cos, &mut sin);
            let mut x = floats(&r["x"]);
            for head in x.chunks_mut(hd) {
                for i in 0..half {
                    let (a, b) = if neox {
                        (i, i + half)
                    } else {
                        (2 * i, 2 * i + 1)
                    };
                    (head[a], head[b]) = rotate(head[a], head[b], cos[i], sin[i]);
                }
            }
            assert_bits(&x, &floats(&r["want"]), key);
        }
    }

    #[test]
    fn reproduces_llama_cpp_attention_scores_and_softmax() {
        let g = goldens();
        for (key, dot) in [
            ("kq_tiled", dot_f16_tiled as fn(&[f32], &[f32]) -> f32),
            ("kq_vec", dot_f16_vec),
        ] {
            let q = floats(&g[key]["q"]);
            let k = floats(&g[key]["k"]);
            let got: Vec<f32> = k.chunks(q.len()).map(|kj| dot(&q, kj)).collect();
            assert_bits(&got, &floats(&g[key]["want"]), key);
        }
        let s = &g["softmax"];
        let mut row = floats(&s["x"]);
        softmax(&mut row, s["scale"].as_f64().unwrap() as f32);
        assert_bits(&row, &floats(&s["want"]), "softmax");
    }

    #[test]
    fn expf_is_close_to_libm_and_saturates() {
        // Normal results only: subnormal ones keep fewer significant bits.
        for i in -1740..1760 {
            let x = i as f32 * 0.05;
            let (a, b) = (expf(x), x.exp());
            assert!(((a - b) / b).abs() < 4e-7, "{x}: {a} vs {b}");
        }
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(-200.0), 0.0);
        assert_eq!(expf(200.0), f32::INFINITY);
    }

    #[test]
    fn softmax_sums_to_one_and_ignores_masked() {
        let mut row = vec![1.0, 2.0, f32::NEG_INFINITY, 0.5];
        softmax(&mut row, 0.5);
        assert_eq!(row[2], 0.0);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(row[1] > row[0] && row[0] > row[3]);
    }

    #[test]
    fn dot_orders_agree_up_to_rounding() {
        let a: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..100).map(|i| (i as f32 * 0.11).cos()).collect();
        let exact: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y)).sum();
        for d in [dot_f16_tiled(&a, &b), dot_f16_vec(&a, &b)] {
            assert!((f64::from(d) - exact).abs() < 1e-5);
        }
    }

    #[test]
    fn vectorized_attention_sums_equal_the_reference_dots() {
        let (hd, total) = (64, 150);
        let val = |i: usize, m: f32| half::f16::from_f32(((i as f32) * m).sin()).to_f32();
        let q: Vec<f32> = (0..hd).map(|i| val(i, 0.37)).collect();
        let k: Vec<f32> = (0..total * hd).map(|i| val(i, 0.11)).collect();
        let k_t: Vec<f32> = (0..hd * total)
            .map(|i| k[(i % total) * hd + i / total])
            .collect();
        let probs: Vec<f32> = (0..total).map(|i| val(i, 0.23).abs()).collect();
        for decode in [false, true] {
            let dot = if decode { dot_f16_vec } else { dot_f16_tiled };
            let n_lanes = if decode { 64 } else { 16 };
            let mut got = vec![0f32; total];
            scores(
                &q,
                &k_t,
                total,
                decode,
                &mut vec![0f32; n_lanes * total],
                &mut got,
            );
            let want: Vec<f32> = k.chunks(hd).map(|kj| dot(&q, kj)).collect();
            assert_bits(&got, &want, "scores");
            let mut got = vec![0f32; hd];
            weighted_sum(
                &probs,
                &k,
                hd,
                decode,
                &mut vec![0f32; n_lanes * hd],
                &mut got,
            );
            let want: Vec<f32> = (0..hd)
                .map(|d| {
                    let col: Vec<f32> = (0..total).map(|p| k[p * hd + d]).collect();
                    dot(&probs, &col)
                })
                .collect();
            assert_bits(&got, &want, "weighted_sum");
        }
    }

    #[test]
    fn rms_norm_scales_to_unit_rms() {
        let x = [3.0f32, -4.0];
        let mut out = [0f32; 2];
        rms_norm(&x, &[1.0, 2.0], 0.0, &mut out);
        let r = (12.5f32).sqrt();
        assert!((out[0] - 3.0 / r).abs() < 1e-6 && (out[1] + 8.0 / r).abs() < 1e-6);
    }
}
