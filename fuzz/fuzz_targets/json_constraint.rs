//! Any bytes through the JSON-object constraint: what it lets complete is a JSON object.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wick::server::json_constraint::JsonObjectMachine;

fuzz_target!(|data: &[u8]| {
    let mut m = JsonObjectMachine::new();
    let mut taken = 0;
    for &b in data {
        if !m.feed(b) {
            break;
        }
        taken += 1;
        if m.is_complete() {
            break;
        }
    }
    if m.is_complete() {
        let text = std::str::from_utf8(&data[..taken]).expect("complete JSON is UTF-8");
        let v: serde_json::Value = serde_json::from_str(text).expect("complete JSON parses");
        assert!(v.is_object());
    }
});
