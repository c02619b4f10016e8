//! Whether two GGUF files tokenize alike: a draft model (speculative decoding) proposes
//! token ids that the target model verifies, so both must map every id to the same text
//! and split text the same way.
//! Input: the two files' metadata. Output: `Ok` or a sentence naming the first difference.
//! Must not depend on the model or the engine.

use crate::gguf::Gguf;

/// Metadata that must match, besides the token list and the merges: how text is split
/// and which ids start and end a sequence.
const SAME_KEYS: &[&str] = &[
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
];

/// `Ok` when `draft` tokenizes exactly as `target`, else what differs first: the
/// tokenizer type or pre-tokenizer, the vocabulary size, the first token whose text
/// differs, the merges, or the special ids.
pub fn check_same_tokenizer(target: &Gguf, draft: &Gguf) -> Result<(), String> {
    let (t_tokens, d_tokens) = (
        target.get_str_array("tokenizer.ggml.tokens"),
        draft.get_str_array("tokenizer.ggml.tokens"),
    );
    let (Some(t_tokens), Some(d_tokens)) = (t_tokens, d_tokens) else {
        return Err("tokenizer.ggml.tokens is missing from one of the files".into());
    };
    let model = |g: &Gguf| {
        g.get_str("tokenizer.ggml.model")
            .unwrap_or("none")
            .to_owned()
    };
    if model(target) != model(draft) {
        return Err(format!(
            "the tokenizer type differs (tokenizer.ggml.model: target '{}', draft '{}')",
            model(target),
            model(draft)
        ));
    }
    if t_tokens.len() != d_tokens.len() {
        return Err(format!(
            "the vocabulary size differs (target {} tokens, draft {})",
            t_tokens.len(),
            d_tokens.len()
        ));
    }
    if let Some(i) = (0..t_tokens.len()).find(|&i| t_tokens[i] != d_tokens[i]) {
        return Err(format!(
            "token {i} differs (target {:?}, draft {:?})",
            t_tokens[i], d_tokens[i]
        ));
    }
    let t_merges = merges(target);
    let d_merges = merges(draft);
    if t_merges.len() != d_merges.len() {
        return Err(format!(
            "the BPE merges differ (target {} merges, draft {})",
            t_merges.len(),
            d_merges.len()
        ));
    }
    if let Some(i) = (0..t_merges.len()).find(|&i| t_merges[i] != d_merges[i]) {
        return Err(format!(
            "BPE merge {i} differs (target {:?}, draft {:?})",
            t_merges[i], d_merges[i]
        ));
    }
    for key in SAME_KEYS {
        let show = |g: &Gguf| {
            g.get_str(key)
                .map(str::to_owned)
                .or_else(|| g.get_u64(key).map(|v| v.to_string()))
                .unwrap_or_else(|| "absent".into())
        };
        if show(target) != show(draft) {
            return Err(format!(
                "{key} differs (target {}, draft {})",
                show(target),
                show(draft)
            ));
        }
    }
    Ok(())
}

fn merges(g: &Gguf) -> Vec<&str> {
    g.get_str_array("tokenizer.ggml.merges").unwrap_or_default()
}
