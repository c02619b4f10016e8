//! The NEON kernels (src/model/cpu/neon.rs) against the scalar ones (dot.rs), bit for bit, on
//! random block bytes (every bit pattern of quants, high bits and scales) and quantized
//! activations. Built with plain rustc for aarch64 and the stand-ins next to this file, and
//! run under qemu-user by scripts/check-aarch64, once on a CPU with the dot-product
//! extension (sdot) and once without (widening multiplies). Not a cargo test target.
#![allow(dead_code)]
// The kernel files sit at the crate root here, as siblings, like in src/model/cpu/mod.rs.
#[path = "../../src/model/cpu/act.rs"]
mod act;
#[path = "../../src/model/cpu/dot.rs"]
mod dot;
#[path = "../../src/model/cpu/neon.rs"]
mod neon;

use act::{BlockQ8K, BlockQ8_0, BlockQ8_1};

/// The kernel table types of src/model/cpu/mod.rs, which neon.rs fills in.
type Dot<A> = unsafe fn(&[u8], &[A]) -> f32;
type Dot4<A> = unsafe fn(&[u8], [&[A]; 4]) -> [f32; 4];
type Dot8<A> = unsafe fn(&[u8], &[A], usize) -> [f32; 8];

#[derive(Clone, Copy)]
struct Kernels<A> {
    one: Dot<A>,
    four: Option<Dot4<A>>,
    eight: Option<Dot8<A>>,
}

#[derive(Clone, Copy)]
enum Kernel {
    Q8_0(Kernels<BlockQ8_0>),
    Q8_1(Kernels<BlockQ8_1>),
    Q8K(Kernels<BlockQ8K>),
}

use act::{quantize_q8_0, quantize_q8_1, quantize_q8_k};
use candle_core::quantized::GgmlDType;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn unit(&mut self) -> f32 {
        (self.next() % 20001) as f32 / 10000.0 - 1.0
    }
    fn f16(&mut self, lo: f32, hi: f32) -> [u8; 2] {
        let v = lo + (hi - lo) * (self.unit() * 0.5 + 0.5);
        half::f16::from_f32(v).to_bits().to_le_bytes()
    }
}

fn row(dt: GgmlDType, blocks: usize, r: &mut Rng) -> Vec<u8> {
    let mut w = Vec::new();
    for _ in 0..blocks {
        match dt {
            GgmlDType::Q8_0 => {
                w.extend(r.f16(-0.05, 0.05));
                w.extend((0..32).map(|_| r.byte()));
            }
            GgmlDType::Q4_0 => {
                w.extend(r.f16(-0.05, 0.05));
                w.extend((0..16).map(|_| r.byte()));
            }
            GgmlDType::Q5_0 => {
                w.extend(r.f16(-0.05, 0.05));
                w.extend((0..20).map(|_| r.byte()));
            }
            GgmlDType::Q4_1 => {
                w.extend(r.f16(0.001, 0.05));
                w.extend(r.f16(-0.5, 0.5));
                w.extend((0..16).map(|_| r.byte()));
            }
            GgmlDType::Q4K => {
                w.extend(r.f16(0.0001, 0.01));
                w.extend(r.f16(0.0001, 0.01));
                w.extend((0..140).map(|_| r.byte()));
            }
            GgmlDType::Q6K => {
                w.extend((0..208).map(|_| r.byte()));
                w.extend(r.f16(0.0001, 0.01));
            }
            _ => unreachable!(),
        }
    }
    w
}

fn main() {
    let dotprod = std::arch::is_aarch64_feature_detected!("dotprod");
    println!(
        "dotprod: {dotprod} (NEON path: {})",
        if dotprod {
            "sdot"
        } else {
            "widening multiplies"
        }
    );
    let mut r = Rng(0x9E3779B97F4A7C15);
    let k = 2048;
    let (mut checked, mut failed) = (0, 0);
    for seed in 0..50 {
        let x: Vec<f32> = (0..k)
            .map(|i| {
                if i % 97 == seed % 97 {
                    r.unit() * 20.0
                } else {
                    r.unit()
                }
            })
            .collect();
        let mut a8_0 = vec![BlockQ8_0::default(); k / 32];
        let mut a8_1 = vec![BlockQ8_1::default(); k / 32];
        let mut a8k = vec![BlockQ8K::default(); k / 256];
        quantize_q8_0(&x, &mut a8_0);
        quantize_q8_1(&x, &mut a8_1);
        quantize_q8_k(&x, &mut a8k);
        for dt in [
            GgmlDType::Q8_0,
            GgmlDType::Q4_0,
            GgmlDType::Q5_0,
            GgmlDType::Q4_1,
            GgmlDType::Q4K,
            GgmlDType::Q6K,
        ] {
            let blocks = if matches!(dt, GgmlDType::Q4K | GgmlDType::Q6K) {
                k / 256
            } else {
                k / 32
            };
            let w = row(dt, blocks, &mut r);
            let want = match dt {
                GgmlDType::Q8_0 => dot::q8_0_scalar(&w, &a8_0),
                GgmlDType::Q4_0 => dot::q4_0_scalar(&w, &a8_0),
                GgmlDType::Q5_0 => dot::q5_0_scalar(&w, &a8_0),
                GgmlDType::Q4_1 => dot::q4_1_scalar(&w, &a8_1),
                GgmlDType::Q4K => dot::q4_k_scalar(&w, &a8k),
                _ => dot::q6_k_scalar(&w, &a8k),
            };
            let got = match neon::kernel(dt).expect("a NEON kernel") {
                Kernel::Q8_0(k) => unsafe { (k.one)(&w, &a8_0) },
                Kernel::Q8_1(k) => unsafe { (k.one)(&w, &a8_1) },
                Kernel::Q8K(k) => unsafe { (k.one)(&w, &a8k) },
            };
            if seed == 0 {
                println!("{dt:?}: scalar {want}, neon {got}");
            }
            checked += 1;
            if got.to_bits() != want.to_bits() {
                failed += 1;
                println!("MISMATCH {dt:?} seed {seed}: neon {got} scalar {want}");
            }
        }
    }
    assert!(neon::kernel(GgmlDType::Q5K).is_none());
    println!("{} passed, {} failed", checked - failed, failed);
    std::process::exit(if failed == 0 { 0 } else { 1 });
}
