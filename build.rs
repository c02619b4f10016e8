//! One name for a set of target features the CPU kernels select on: `vnni_tiles` where the
//! build targets AVX-512 VNNI (with VL and BW) or AVX-VNNI, the builds whose repacked Q8_0
//! family tiles use `vpdpbusd` (`src/model/cpu/q8_x8.rs`), and `vnni512_tiles` where it
//! targets AVX-512 VNNI and BW, whose 512-bit tiles take sixteen rows (`q8_x16.rs`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vnni_tiles)");
    println!("cargo::rustc-check-cfg=cfg(vnni512_tiles)");
    println!("cargo::rerun-if-changed=build.rs");
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let has = |f: &str| features.split(',').any(|x| x == f);
    let x86 = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64");
    if x86 && (has("avxvnni") || (has("avx512vnni") && has("avx512vl") && has("avx512bw"))) {
        println!("cargo::rustc-cfg=vnni_tiles");
    }
    if x86 && has("avx512vnni") && has("avx512bw") && has("avx512f") {
        println!("cargo::rustc-cfg=vnni512_tiles");
    }
}
