//! A stand-in for the `half` crate (only what src/model/cpu uses), so the NEON check builds
//! with plain rustc for aarch64 without wick's dependency tree. The scalar and the NEON
//! kernels see the same conversions, which is all the check needs; they are exact for the
//! values it makes (normal f16 scales, round to nearest even).

#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct f16(u16);

impl f16 {
    pub fn from_bits(b: u16) -> f16 {
        f16(b)
    }
    pub fn to_bits(self) -> u16 {
        self.0
    }
    /// Normal numbers and zero (the check makes no subnormal, infinite or NaN scales).
    pub fn to_f32(self) -> f32 {
        let sign = ((self.0 as u32) & 0x8000) << 16;
        let exp = ((self.0 >> 10) & 0x1f) as u32;
        let man = (self.0 & 0x3ff) as u32;
        if exp == 0 && man == 0 {
            return f32::from_bits(sign);
        }
        f32::from_bits(sign | ((exp + 112) << 23) | (man << 13))
    }
    /// Round to nearest even, in the normal range (saturating at the largest f16).
    pub fn from_f32(v: f32) -> f16 {
        let bits = v.to_bits();
        let sign = ((bits >> 16) & 0x8000) as u16;
        let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
        if v == 0.0 || exp <= 0 {
            return f16(sign);
        }
        if exp >= 31 {
            return f16(sign | 0x7bff);
        }
        let man = bits & 0x7f_ffff;
        let mut h = ((exp as u32) << 10) | (man >> 13);
        let rest = man & 0x1fff;
        if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
            h += 1;
        }
        f16(sign | h.min(0x7bff) as u16)
    }
}
