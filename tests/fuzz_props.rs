//! Property tests over hostile input, the CI counterpart of the `cargo fuzz` targets under
//! fuzz/ (scripts/fuzz runs those for longer): request validation and normalization, the
//! JSON-object constraint, and GGUF header parsing. Each must answer every input with a
//! result or an error, never a panic or a huge allocation. Bounded for CI: a fixed number
//! of cases of bounded size.

use candle_core::quantized::gguf_file::{self, Value as GgufValue};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::io::Cursor;
use wick::api::{ChatRequest, CompletionRequest};
use wick::server::extract::parse_body;
use wick::server::json_constraint::JsonObjectMachine;
use wick::server::validate;

/// Any JSON value, a few levels deep, with strings drawn from names the server knows (so
/// that random requests reach past the first check).
fn any_json() -> impl Strategy<Value = Value> {
    let word = prop_oneof![
        Just("role".to_owned()),
        Just("content".to_owned()),
        Just("user".to_owned()),
        Just("assistant".to_owned()),
        Just("tool".to_owned()),
        Just("function".to_owned()),
        Just("type".to_owned()),
        Just("text".to_owned()),
        Just("name".to_owned()),
        Just("tool_calls".to_owned()),
        Just("<|im_end|>".to_owned()),
        "[a-z_]{0,8}",
        ".{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        word.clone().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((word.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A valid chat request with random values put at random top-level and message keys.
fn chat_body() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("messages"),
        Just("tools"),
        Just("tool_choice"),
        Just("stop"),
        Just("response_format"),
        Just("max_tokens"),
        Just("n"),
        Just("stream_options"),
        Just("temperature"),
    ];
    (
        prop::collection::vec((keys, any_json()), 0..3),
        any_json(),
        any_json(),
    )
        .prop_map(|(fields, message_extra, content)| {
            let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
            for (k, v) in fields {
                body[k] = v;
            }
            if let Some(m) = body["messages"].get_mut(0).filter(|m| m.is_object()) {
                m["content"] = content;
                if let Value::Object(extra) = message_extra {
                    for (k, v) in extra {
                        m[k] = v;
                    }
                }
            }
            body
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn chat_validation_never_panics(body in chat_body()) {
        let text = body.to_string();
        if let Ok(req) = parse_body::<ChatRequest>(text.as_bytes()) {
            let sampling = validate::openai_sampling();
            if validate::chat(&req, "m", &sampling).is_ok() {
                // Whatever validation lets through, the template's normalization takes
                // (or refuses with an error).
                let conv = wick::template::Conventions::detect("");
                let _ = wick::template::normalize::normalize(&body, conv);
            }
        }
    }

    #[test]
    fn completion_validation_never_panics(fields in prop::collection::vec(("[a-z_]{1,10}", any_json()), 0..6)) {
        let mut body = json!({"model": "m", "prompt": "x"});
        for (k, v) in fields {
            body[k] = v;
        }
        if let Ok(req) = parse_body::<CompletionRequest>(body.to_string().as_bytes()) {
            let _ = validate::completion(&req, "m", &validate::openai_sampling());
        }
    }

    #[test]
    fn json_constraint_accepts_only_json_objects(bytes in prop::collection::vec(
        prop_oneof![
            Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(b'"'), Just(b':'),
            Just(b','), Just(b' '), Just(b'\\'), Just(b'1'), Just(b'-'), Just(b'e'),
            Just(b't'), Just(b'n'), any::<u8>()
        ],
        0..64,
    )) {
        let mut m = JsonObjectMachine::new();
        let mut taken = 0;
        for &b in &bytes {
            if !m.feed(b) {
                break;
            }
            taken += 1;
            if m.is_complete() {
                break;
            }
        }
        if m.is_complete() {
            let text = std::str::from_utf8(&bytes[..taken]);
            prop_assert!(text.is_ok());
            let parsed: Result<Value, _> = serde_json::from_str(text.unwrap_or_default());
            prop_assert!(matches!(parsed, Ok(Value::Object(_))), "{:?}", text);
        }
    }

    #[test]
    fn gguf_headers_never_panic(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
                                cut in any::<prop::sample::Index>(), truncate in any::<bool>()) {
        let mut bytes = small_gguf();
        for (at, b) in edits {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        let len = bytes.len() as u64;
        let _ = wick::gguf::read_content(&mut Cursor::new(bytes), len);
    }
}

/// A small GGUF as candle writes it: a few metadata kinds and one tensor.
fn small_gguf() -> Vec<u8> {
    let tensor = candle_core::quantized::QTensor::quantize(
        &candle_core::Tensor::zeros((2, 32), candle_core::DType::F32, &candle_core::Device::Cpu)
            .expect("tensor"),
        candle_core::quantized::GgmlDType::Q8_0,
    )
    .expect("quantize");
    let arch = GgufValue::String("llama".into());
    let tokens = GgufValue::Array(vec![
        GgufValue::String("a".into()),
        GgufValue::String("<|im_end|>".into()),
    ]);
    let n = GgufValue::U32(7);
    let align = GgufValue::U32(32);
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(
        &mut out,
        &[
            ("general.architecture", &arch),
            ("tokenizer.ggml.tokens", &tokens),
            ("llama.block_count", &n),
            ("general.alignment", &align),
        ],
        &[("w", &tensor)],
    )
    .expect("write gguf");
    out.into_inner()
}

#[test]
fn hostile_gguf_headers_are_errors() {
    let good = small_gguf();
    let len = good.len() as u64;
    assert!(wick::gguf::read_content(&mut Cursor::new(good.clone()), len).is_ok());
    // Each of these made candle panic, overflow or try a huge allocation before.
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut huge_count = good.clone();
    huge_count[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // tensor count
    cases.push(("huge tensor count", huge_count));
    let mut zero_align = Vec::new();
    {
        let arch = GgufValue::String("llama".into());
        let zero = GgufValue::U32(0);
        let mut out = Cursor::new(Vec::new());
        gguf_file::write(
            &mut out,
            &[
                ("general.architecture", &arch),
                ("general.alignment", &zero),
            ],
            &[],
        )
        .expect("write");
        zero_align.extend(out.into_inner());
    }
    cases.push(("general.alignment = 0", zero_align));
    cases.push(("not gguf", b"GGML\x03\x00\x00\x00".to_vec()));
    cases.push(("empty", Vec::new()));
    for (what, bytes) in cases {
        let len = bytes.len() as u64;
        let got =
            std::panic::catch_unwind(|| wick::gguf::read_content(&mut Cursor::new(bytes), len));
        match got {
            Ok(Err(_)) => {}
            Ok(Ok(_)) => panic!("{what}: accepted"),
            Err(_) => panic!("{what}: panicked"),
        }
    }
}
