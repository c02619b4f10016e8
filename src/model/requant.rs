//! Lossless conversion of Q4_0 and Q5_0 weights to Q8_0 at load. Q8_0's dot product is the
//! cheapest per weight on CPU, and these two formats are symmetric integers times one f16
//! scale per 32 values, so Q8_0 with the same scale holds exactly the same numbers (a
//! generic dequantize + quantize would pick a new scale and round every weight again).
//! Input: raw GGUF block bytes. Output: Q8_0 block bytes. Pure byte work, no candle ops.

use candle_core::quantized::GgmlDType;

const QK: usize = 32;
const Q8_0_BYTES: usize = 2 + QK;

/// Whether `convert_to_q8_0` handles `dtype`.
pub(crate) fn is_exact_to_q8_0(dtype: GgmlDType) -> bool {
    matches!(dtype, GgmlDType::Q4_0 | GgmlDType::Q5_0)
}

/// Converts every block of `src` (in `dtype`) to Q8_0. `None` for other types or a byte
/// count that is not a whole number of blocks.
pub(crate) fn convert_to_q8_0(dtype: GgmlDType, src: &[u8]) -> Option<Vec<u8>> {
    let in_bytes = dtype.type_size();
    if !is_exact_to_q8_0(dtype) || !src.len().is_multiple_of(in_bytes) {
        return None;
    }
    let mut out = Vec::with_capacity(src.len() / in_bytes * Q8_0_BYTES);
    for block in src.chunks_exact(in_bytes) {
        // Both formats start with the f16 scale, kept bit for bit.
        out.extend_from_slice(&block[..2]);
        let mut q = [0i8; QK];
        match dtype {
            GgmlDType::Q4_0 => {
                let qs = &block[2..18];
                for j in 0..QK / 2 {
                    q[j] = (qs[j] & 0x0F) as i8 - 8;
                    q[j + QK / 2] = (qs[j] >> 4) as i8 - 8;
                }
            }
            _ => {
                // Q5_0: 32 high bits in a little-endian u32, then the low nibbles.
                let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
                let qs = &block[6..22];
                for j in 0..QK / 2 {
                    let h0 = (((qh >> j) << 4) & 0x10) as u8;
                    let h1 = ((qh >> (j + 12)) & 0x10) as u8;
                    q[j] = ((qs[j] & 0x0F) | h0) as i8 - 16;
                    q[j + QK / 2] = ((qs[j] >> 4) | h1) as i8 - 16;
                }
            }
        }
        out.extend(q.iter().map(|&v| v as u8));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{QStorage, QTensor};
    use candle_core::{Device, Tensor};
    use std::borrow::Cow;

    fn roundtrip(dtype: GgmlDType) {
        let values: Vec<f32> = (0..256)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let dense = Tensor::from_vec(values, (4, 64), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&dense, dtype).unwrap();
        let want: Vec<f32> = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let bytes = convert_to_q8_0(dtype, &q.data().unwrap()).unwrap();
        let storage =
            QStorage::from_data(Cow::Owned(bytes), &Device::Cpu, GgmlDType::Q8_0).unwrap();
        let q8 = QTensor::new(storage, (4, 64)).unwrap();
        let got: Vec<f32> = q8
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(got, want, "{dtype:?} → Q8_0 must be exact");
    }

    #[test]
    fn converts_q4_0_exactly() {
        roundtrip(GgmlDType::Q4_0);
    }

    #[test]
    fn converts_q5_0_exactly() {
        roundtrip(GgmlDType::Q5_0);
    }

    #[test]
    fn refuses_other_types_and_partial_blocks() {
        assert!(convert_to_q8_0(GgmlDType::Q4_1, &[0; 20]).is_none());
        assert!(convert_to_q8_0(GgmlDType::Q5_0, &[0; 21]).is_none());
    }
}
