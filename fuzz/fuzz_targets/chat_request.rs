//! Any bytes as a chat-completions body: parsing, validation and the template's
//! normalization answer with a plan or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wick::api::ChatRequest;
use wick::server::extract::parse_body;
use wick::server::validate;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = parse_body::<ChatRequest>(data) else {
        return;
    };
    if validate::chat(&req, "m", &validate::openai_sampling()).is_ok() {
        if let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) {
            let conv = wick::template::Conventions::detect("");
            let _ = wick::template::normalize::normalize(&body, conv);
        }
    }
});
