//! The pre-norm decoder-only transformer shared by the llama family: embedding → blocks
//! (RMSNorm → GQA attention → residual, RMSNorm → SwiGLU → residual) → RMSNorm → output.
//! An architecture file describes its differences in a `DecoderSpec` (metadata prefix, rope
//! style, Q/K/V bias) and this module reads the GGUF by llama.cpp's tensor names.
//! Must not depend on tokenizers, the engine or the server.

use super::kv_cache::{KvCache, KvShape};
use super::layers::{
    causal_mask, Attention, Bias, Embedding, LoadOptions, Loader, Mlp, QLinear, RmsNorm, Rope,
    RopeStyle,
};
use super::trace::record;
use super::{Model, ModelError, ModelInfo};
use crate::gguf::Gguf;
use candle_core::{DType, Device, Tensor};

/// What distinguishes one architecture of the family.
pub(crate) struct DecoderSpec {
    /// `general.architecture`, also the metadata key prefix (`qwen2.block_count`).
    pub arch: &'static str,
    pub rope: RopeStyle,
    pub qkv_bias: Bias,
    pub default_rope_base: f64,
}

/// Hyperparameters read from `<arch>.*` metadata.
#[derive(Debug, Clone)]
pub(crate) struct HParams {
    pub layers: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub rms_eps: f64,
    pub rope_base: f64,
    pub train_ctx: usize,
}

/// The rope table covers at most this many positions, whatever the model was trained for,
/// so a 1M-context GGUF does not cost hundreds of MB of cos/sin at load. A cache larger
/// than the table is refused in `new_cache`.
const MAX_ROPE_POSITIONS: usize = 131_072;

impl HParams {
    fn read(gguf: &Gguf, spec: &DecoderSpec) -> Result<Self, ModelError> {
        let key = |k: &str| format!("{}.{k}", spec.arch);
        let u = |k: &str| -> Result<usize, ModelError> { Ok(gguf.require_u64(&key(k))? as usize) };
        let n_head = u("attention.head_count")?;
        let hidden = u("embedding_length")?;
        let head_dim = match gguf.get_u64(&key("attention.key_length")) {
            Some(d) => d as usize,
            None if n_head > 0 => hidden / n_head,
            None => return Err(bad(spec, "attention.head_count is 0")),
        };
        let n_kv_head = gguf
            .get_u64(&key("attention.head_count_kv"))
            .map_or(n_head, |v| v as usize);
        if n_kv_head == 0 || n_head % n_kv_head != 0 || head_dim % 2 != 0 {
            return Err(bad(
                spec,
                &format!("{n_head} heads, {n_kv_head} KV heads, head dim {head_dim}"),
            ));
        }
        Ok(HParams {
            layers: u("block_count")?,
            n_head,
            n_kv_head,
            head_dim,
            rms_eps: gguf.require_f64(&key("attention.layer_norm_rms_epsilon"))?,
            rope_base: gguf
                .get_f64(&key("rope.freq_base"))
                .unwrap_or(spec.default_rope_base),
            train_ctx: u("context_length")?,
        })
    }
}

fn bad(spec: &DecoderSpec, what: &str) -> ModelError {
    ModelError::BadHyperparameters {
        arch: spec.arch.to_owned(),
        what: what.to_owned(),
    }
}

struct Block {
    attn_norm: RmsNorm,
    attn: Attention,
    ffn_norm: RmsNorm,
    mlp: Mlp,
}

pub(crate) struct Decoder {
    info: ModelInfo,
    hp: HParams,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: RmsNorm,
    output: QLinear,
    rope: Rope,
    device: Device,
}

impl Decoder {
    pub fn load(
        gguf: &mut Gguf,
        device: &Device,
        options: &LoadOptions,
        spec: &DecoderSpec,
    ) -> Result<Self, ModelError> {
        let hp = HParams::read(gguf, spec)?;
        let name = gguf.get_str("general.name").map(str::to_owned);
        let mut ld = Loader {
            gguf,
            device,
            options,
        };
        let table = ld.qtensor("token_embd.weight")?;
        let vocab_size = table.shape().dims().first().copied().unwrap_or(0);
        let mut blocks = Vec::with_capacity(hp.layers);
        for i in 0..hp.layers {
            blocks.push(load_block(&mut ld, &hp, spec, i)?);
        }
        let norm = ld.rms_norm("output_norm.weight", hp.rms_eps)?;
        // Tied embeddings (SmolLM2 and others): the output projection is the embedding
        // table itself, shared through the Arc rather than copied (unless requantized).
        let output = if ld.has("output.weight") {
            QLinear::new(ld.matmul_weight("output.weight")?, None, options)
        } else {
            QLinear::new(ld.to_matmul(table.clone())?, None, options)
        };
        let rope_len = hp.train_ctx.clamp(1, MAX_ROPE_POSITIONS);
        let rope = Rope::new(hp.head_dim, hp.rope_base, rope_len, spec.rope, device)?;
        Ok(Decoder {
            info: ModelInfo {
                architecture: spec.arch.to_owned(),
                name,
                train_ctx: hp.train_ctx,
                vocab_size,
            },
            hp,
            embed: Embedding::new(table),
            blocks,
            norm,
            output,
            rope,
            device: device.clone(),
        })
    }

    fn check_ids(&self, tokens: &[u32]) -> Result<(), ModelError> {
        match tokens.iter().find(|&&t| t as usize >= self.info.vocab_size) {
            Some(&bad) => Err(ModelError::TokenOutOfRange {
                id: bad,
                vocab_size: self.info.vocab_size,
            }),
            None => Ok(()),
        }
    }

    /// The causal mask for `t` new tokens after `offset` cached ones, only where the
    /// attention reads one: the CPU attention applies causality itself, and a `[t, t]` f32
    /// mask would make memory grow with the square of the prompt (560 MB at 4.8k tokens).
    fn mask(&self, t: usize, offset: usize) -> Result<Option<Tensor>, ModelError> {
        if self.device.is_cpu() {
            return Ok(None);
        }
        causal_mask(t, offset, &self.device)
    }

    /// `[t, hidden]` hidden states of `tokens` after the last block (before the final norm).
    fn hidden(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        cache.check_room(tokens.len())?;
        self.check_ids(tokens)?;
        let mask = self.mask(tokens.len(), cache.len())?;
        let mut x = self.embed.forward(tokens)?;
        record(|| "embd".to_owned(), &x);
        for (i, b) in self.blocks.iter().enumerate() {
            let h = b.attn_norm.forward(&x)?;
            record(|| format!("attn_norm-{i}"), &h);
            let h = b.attn.forward(&h, i, &self.rope, cache, mask.as_ref())?;
            record(|| format!("attn_out-{i}"), &h);
            x = (x + h)?;
            record(|| format!("ffn_inp-{i}"), &x);
            let h = b.ffn_norm.forward(&x)?;
            record(|| format!("ffn_norm-{i}"), &h);
            let h = b.mlp.forward(&h, i)?;
            record(|| format!("ffn_out-{i}"), &h);
            x = (x + h)?;
            record(|| format!("l_out-{i}"), &x);
        }
        cache.advance(tokens.len());
        Ok(x)
    }
}

fn load_block(
    ld: &mut Loader<'_>,
    hp: &HParams,
    spec: &DecoderSpec,
    i: usize,
) -> Result<Block, ModelError> {
    let p = format!("blk.{i}");
    Ok(Block {
        attn_norm: ld.rms_norm(&format!("{p}.attn_norm.weight"), hp.rms_eps)?,
        attn: Attention {
            q: ld.linear(&format!("{p}.attn_q"), spec.qkv_bias)?,
            k: ld.linear(&format!("{p}.attn_k"), spec.qkv_bias)?,
            v: ld.linear(&format!("{p}.attn_v"), spec.qkv_bias)?,
            o: ld.linear(&format!("{p}.attn_output"), Bias::IfPresent)?,
            n_head: hp.n_head,
            n_kv_head: hp.n_kv_head,
            head_dim: hp.head_dim,
        },
        ffn_norm: ld.rms_norm(&format!("{p}.ffn_norm.weight"), hp.rms_eps)?,
        mlp: Mlp {
            gate: ld.linear(&format!("{p}.ffn_gate"), Bias::IfPresent)?,
            up: ld.linear(&format!("{p}.ffn_up"), Bias::IfPresent)?,
            down: ld.linear(&format!("{p}.ffn_down"), Bias::IfPresent)?,
        },
    })
}

impl Model for Decoder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn new_cache(&self, capacity: usize) -> Result<KvCache, ModelError> {
        if capacity > self.rope.max_pos() {
            return Err(ModelError::CacheTooLarge {
                requested: capacity,
                max: self.rope.max_pos(),
            });
        }
        let shape = KvShape {
            layers: self.hp.layers,
            kv_heads: self.hp.n_kv_head,
            head_dim: self.hp.head_dim,
        };
        KvCache::new(shape, capacity, DType::F16, &self.device)
    }

    fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, ModelError> {
        let x = self.hidden(tokens, cache)?;
        let last = x.narrow(0, tokens.len() - 1, 1)?;
        let last = self.norm.forward(&last)?;
        record(|| "result_norm".to_owned(), &last);
        let logits = self.output.forward(&last)?;
        Ok(logits.squeeze(0)?.to_dtype(DType::F32)?)
    }

    /// All sequences' next tokens as the rows of one batch (see `forward_seqs`).
    fn forward_batch(
        &self,
        tokens: &[u32],
        caches: &mut [&mut KvCache],
    ) -> Result<Tensor, ModelError> {
        let seqs: Vec<&[u32]> = tokens.iter().map(std::slice::from_ref).collect();
        self.forward_seqs(&seqs, caches)
    }

    /// Every sequence's new tokens as the rows of one batch: every matmul reads its weight
    /// once for the whole step (decode rows ride along with a prefill chunk), and only
    /// attention runs per sequence, each against its own cache.
    fn forward_seqs(
        &self,
        tokens: &[&[u32]],
        caches: &mut [&mut KvCache],
    ) -> Result<Tensor, ModelError> {
        if tokens.is_empty() || tokens.len() != caches.len() || tokens.iter().any(|t| t.is_empty())
        {
            return Err(ModelError::EmptyInput);
        }
        if let ([t], [cache]) = (tokens, &mut *caches) {
            let logits = self.forward(t, cache)?;
            return Ok(logits.unsqueeze(0)?);
        }
        for (t, cache) in tokens.iter().zip(caches.iter_mut()) {
            cache.check_room(t.len())?;
        }
        let flat: Vec<u32> = tokens.concat();
        self.check_ids(&flat)?;
        let lens: Vec<usize> = tokens.iter().map(|t| t.len()).collect();
        let masks = lens
            .iter()
            .zip(caches.iter())
            .map(|(&t, c)| self.mask(t, c.len()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut x = self.embed.forward(&flat)?;
        for (i, b) in self.blocks.iter().enumerate() {
            let h = b.attn_norm.forward(&x)?;
            let h = b
                .attn
                .forward_segments(&h, i, &self.rope, caches, &lens, &masks)?;
            x = (x + h)?;
            let h = b.mlp.forward(&b.ffn_norm.forward(&x)?, i)?;
            x = (x + h)?;
        }
        for (cache, &n) in caches.iter_mut().zip(&lens) {
            cache.advance(n);
        }
        // Only each sequence's last row goes through the output projection.
        let last: Vec<u32> = lens
            .iter()
            .scan(0usize, |end, &n| {
                *end += n;
                Some((*end - 1) as u32)
            })
            .collect();
        let x = if flat.len() == last.len() {
            x
        } else {
            x.index_select(&Tensor::new(last.as_slice(), &self.device)?, 0)?
        };
        let logits = self.output.forward(&self.norm.forward(&x)?)?;
        Ok(logits.to_dtype(DType::F32)?.contiguous()?)
    }

    fn forward_all(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, ModelError> {
        let x = self.hidden(tokens, cache)?;
        let logits = self.output.forward(&self.norm.forward(&x)?)?;
        Ok(logits.to_dtype(DType::F32)?.contiguous()?)
    }
}
