//! Tool-call ids: `call_` plus 24 alphanumerics, random per generation (seeded from the
//! standard library's randomly keyed hasher, so no extra dependency).

pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish()
}

/// `call_` plus 24 alphanumerics derived from the per-generation seed and the index.
pub(crate) fn call_id(seed: u64, index: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut x = seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut id = String::with_capacity(29);
    id.push_str("call_");
    for _ in 0..24 {
        // splitmix64 step
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        id.push(ALPHABET[(z % 62) as usize] as char);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_are_distinct_and_openai_shaped() {
        let a = call_id(7, 0);
        let b = call_id(7, 1);
        assert_ne!(a, b);
        assert!(a.starts_with("call_") && a.len() == 29);
    }
}
