//! `logprobs` on Chat Completions and Completions: the log probability of each sampled
//! token under the model's raw distribution (the engine computes it in the sampler), in
//! each API's wire shape. Alternatives (`top_logprobs` > 0, completions `logprobs` > 0)
//! are refused by validation until the engine reports them.
//! Must not depend on axum.

use serde_json::{json, Value};

/// One sampled token and its logprob.
#[derive(Debug, Clone)]
pub struct TokenLogprob {
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

impl TokenLogprob {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Chat Completions: `{"content": [{"token","logprob","bytes","top_logprobs"}], "refusal"}`.
pub fn chat(tokens: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| json!({"token": t.text(), "logprob": t.logprob, "bytes": t.bytes, "top_logprobs": []}))
        .collect();
    json!({"content": content, "refusal": null})
}

/// Completions: `{"tokens","token_logprobs","top_logprobs","text_offset"}`; offsets count
/// from `offset` (the text already sent).
pub fn completion(tokens: &[TokenLogprob], offset: usize) -> Value {
    let mut at = offset;
    let mut offsets = Vec::with_capacity(tokens.len());
    for t in tokens {
        offsets.push(at);
        at += t.text().len();
    }
    json!({
        "tokens": tokens.iter().map(TokenLogprob::text).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": null,
        "text_offset": offsets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_both_apis() {
        let t = vec![
            TokenLogprob {
                bytes: b"Hi".to_vec(),
                logprob: -0.5,
            },
            TokenLogprob {
                bytes: b" there".to_vec(),
                logprob: -1.0,
            },
        ];
        let c = chat(&t);
        assert_eq!(c["content"][1]["token"], " there");
        assert_eq!(c["content"][0]["bytes"], json!([72, 105]));
        let c = completion(&t, 3);
        assert_eq!(c["text_offset"], json!([3, 5]));
        assert_eq!(c["token_logprobs"], json!([-0.5, -1.0]));
    }
}
