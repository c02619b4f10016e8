//! Any bytes as a GGUF file: an error or a header, never a panic or a huge allocation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let len = data.len() as u64;
    let _ = wick::gguf::read_content(&mut std::io::Cursor::new(data), len);
});
