//! The pre-norm decoder-only transformer shared by the llama family: embedding → blocks
//! (norm → GQA attention → residual, norm → FFN → residual, `block.rs`) → norm → output.
//! An architecture file describes its differences in a `DecoderSpec` (metadata prefix, rope
//! style, biases, norms, FFN kind, ...) and this module reads the GGUF by llama.cpp's tensor
//! names. Metadata keys and tensors the spec does not implement are refused (`check.rs`).
//! Must not depend on tokenizers, the engine or the server.

use super::block::{load_block, Block};
use super::check;
use super::kv_cache::{KvCache, KvShape};
use super::layers::{causal_mask, Bias, Embedding, LoadOptions, Loader, QLinear, Rope, RopeStyle};
use super::norm::{Norm, NormKind};
use super::rope_scaling::{self, RopeFreqs};
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
    /// LayerNorm with bias (`attention.layer_norm_epsilon`) instead of RMSNorm.
    pub layer_norm: bool,
    /// Per-head RMS norms of Q and K (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: bool,
    /// Gemma 3's `post_attention_norm` and `post_ffw_norm`.
    pub post_norms: bool,
    pub ffn: FfnKind,
    /// Embeddings times sqrt(n_embd) (Gemma).
    pub embed_scale: bool,
    /// Gemma 3's interleaved sliding-window layers (`attention.sliding_window`).
    pub sliding_window: bool,
    /// `<arch>.*` metadata keys this architecture implements beyond `check::COMMON_KEYS`.
    pub keys: &'static [&'static str],
}

/// The feed-forward network of every block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FfnKind {
    SwiGlu,
    GeGlu,
    Gelu,
    Moe,
}

impl DecoderSpec {
    /// The llama layout: RMSNorm, SwiGLU, no extra norms. Architecture files start here.
    pub const LLAMA: DecoderSpec = DecoderSpec {
        arch: "llama",
        rope: RopeStyle::Normal,
        qkv_bias: Bias::IfPresent,
        default_rope_base: 10_000.0,
        layer_norm: false,
        qk_norm: false,
        post_norms: false,
        ffn: FfnKind::SwiGlu,
        embed_scale: false,
        sliding_window: false,
        keys: &[],
    };
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
    pub n_embd: usize,
    /// The norm of blocks and output (RMS, or LayerNorm with its own epsilon).
    pub norm: NormKind,
    pub freq_scale: f32,
    pub n_expert: usize,
    pub n_expert_used: usize,
    /// Window of the sliding-window layers, and which layers those are.
    pub sliding_window: Option<usize>,
    pub swa_layers: Vec<bool>,
    /// Rope base of the sliding-window layers.
    pub rope_base_swa: f64,
    /// `final_logit_softcapping`: logits become `cap * tanh(logits / cap)`.
    pub final_softcap: Option<f32>,
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
        // One head size for K, V and rope: partial rope or a different V size would be a
        // different model.
        for k in ["attention.value_length", "rope.dimension_count"] {
            if let Some(v) = gguf.get_u64(&key(k)) {
                if v as usize != head_dim {
                    return Err(check::unsupported(
                        spec.arch,
                        &key(k),
                        &format!("{v}, not the head size {head_dim}"),
                    ));
                }
            }
        }
        let layers = u("block_count")?;
        let norm = if spec.layer_norm {
            NormKind::Layer(gguf.require_f64(&key("attention.layer_norm_epsilon"))?)
        } else {
            NormKind::Rms(gguf.require_f64(&key("attention.layer_norm_rms_epsilon"))?)
        };
        let (sliding_window, swa_layers) = read_sliding_window(gguf, spec, layers)?;
        let opt_u = |k: &str| gguf.get_u64(&key(k)).map_or(0, |v| v as usize);
        let (n_expert, n_expert_used) = (opt_u("expert_count"), opt_u("expert_used_count"));
        if spec.ffn == FfnKind::Moe && (n_expert_used == 0 || n_expert_used > n_expert) {
            return Err(bad(
                spec,
                &format!("{n_expert_used} of {n_expert} experts used per token"),
            ));
        }
        Ok(HParams {
            n_embd: hidden,
            norm,
            freq_scale: rope_scaling::freq_scale(gguf, spec.arch)?,
            n_expert,
            n_expert_used,
            sliding_window,
            swa_layers,
            rope_base_swa: gguf.get_f64(&key("rope.freq_base_swa")).unwrap_or(10_000.0),
            final_softcap: gguf
                .get_f64(&key("final_logit_softcapping"))
                .filter(|&c| c != 0.0)
                .map(|c| c as f32),
            layers,
            n_head,
            n_kv_head,
            head_dim,
            rms_eps: gguf
                .get_f64(&key("attention.layer_norm_rms_epsilon"))
                .unwrap_or(1e-6),
            rope_base: gguf
                .get_f64(&key("rope.freq_base"))
                .unwrap_or(spec.default_rope_base),
            train_ctx: u("context_length")?,
        })
    }
}

/// Gemma 3's layout as llama.cpp reads it: with a window, layer `i` slides unless
/// `i % pattern == pattern - 1` (pattern `attention.sliding_window_pattern`, default 6).
fn read_sliding_window(
    gguf: &Gguf,
    spec: &DecoderSpec,
    layers: usize,
) -> Result<(Option<usize>, Vec<bool>), ModelError> {
    let key = |k: &str| format!("{}.{k}", spec.arch);
    let window = gguf
        .get_u64(&key("attention.sliding_window"))
        .filter(|&w| w > 0)
        .map(|w| w as usize);
    let Some(window) = window.filter(|_| spec.sliding_window) else {
        return Ok((None, vec![false; layers]));
    };
    if gguf
        .get_array(&key("attention.sliding_window_pattern"))
        .is_some()
    {
        return Err(check::unsupported(
            spec.arch,
            &key("attention.sliding_window_pattern"),
            "per-layer sliding-window pattern array",
        ));
    }
    let pattern = gguf
        .get_u64(&key("attention.sliding_window_pattern"))
        .map_or(6, |p| p as usize);
    let swa = (0..layers)
        .map(|i| pattern == 0 || i % pattern < pattern - 1)
        .collect();
    Ok((Some(window), swa))
}

fn bad(spec: &DecoderSpec, what: &str) -> ModelError {
    ModelError::BadHyperparameters {
        arch: spec.arch.to_owned(),
        what: what.to_owned(),
    }
}

pub(crate) struct Decoder {
    info: ModelInfo,
    hp: HParams,
    embed: Embedding,
    blocks: Vec<Block>,
    norm: Norm,
    output: QLinear,
    /// Rope tables: [0] for global layers, [1] for sliding-window layers when there are any.
    ropes: Vec<Rope>,
    embed_scale: Option<f32>,
    device: Device,
}

impl Decoder {
    pub fn load(
        gguf: &mut Gguf,
        device: &Device,
        options: &LoadOptions,
        spec: &DecoderSpec,
    ) -> Result<Self, ModelError> {
        check::metadata(gguf, spec.arch, spec.keys)?;
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
        let norm = hp.norm.load(&mut ld, "output_norm")?;
        // Tied embeddings (SmolLM2 and others): the output projection is the embedding
        // table itself, shared through the Arc rather than copied (unless requantized).
        let output = if ld.has("output.weight") {
            ld.linear("output", Bias::IfPresent)?
        } else {
            QLinear::new(ld.to_matmul(table.clone())?, None, options).stored_as(table.dtype())
        };
        let rope_len = hp.train_ctx.clamp(1, MAX_ROPE_POSITIONS);
        let factors = rope_scaling::factors(ld.gguf, spec.arch, hp.head_dim / 2)?;
        let global = RopeFreqs {
            base: hp.rope_base as f32,
            freq_scale: hp.freq_scale,
            factors,
        };
        let mut ropes = vec![Rope::scaled(
            hp.head_dim,
            &global,
            rope_len,
            spec.rope,
            device,
        )?];
        if hp.swa_layers.contains(&true) {
            // llama.cpp's sliding-window layers: their own base, no scaling or factors.
            let base = hp.rope_base_swa;
            ropes.push(Rope::new(hp.head_dim, base, rope_len, spec.rope, device)?);
        }
        check::all_tensors_read(ld.gguf, spec.arch)?;
        let embed_scale = spec.embed_scale.then(|| (hp.n_embd as f32).sqrt());
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
            ropes,
            embed_scale,
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
    /// `as_decode`: each row's attention summed as a one-token decode step would sum it.
    fn hidden(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        as_decode: bool,
    ) -> Result<Tensor, ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::EmptyInput);
        }
        cache.check_room(tokens.len())?;
        self.check_ids(tokens)?;
        let mask = self.mask(tokens.len(), cache.len())?;
        let mut x = self.embed(tokens)?;
        record(|| "embd".to_owned(), &x);
        for (i, b) in self.blocks.iter().enumerate() {
            x = b.forward(x, i, &self.ropes[b.rope], cache, mask.as_ref(), as_decode)?;
        }
        cache.advance(tokens.len());
        Ok(x)
    }

    /// Token embeddings, times sqrt(n_embd) where the architecture scales them (ggml_scale
    /// by `sqrtf(n_embd)` in f32).
    fn embed(&self, tokens: &[u32]) -> Result<Tensor, ModelError> {
        let x = self.embed.forward(tokens)?;
        match self.embed_scale {
            Some(s) => Ok(x.affine(f64::from(s), 0.0)?),
            None => Ok(x),
        }
    }

    /// The output projection of normalized hidden states, soft-capped where the file says.
    fn logits(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        let logits = self.output.forward(&self.norm.forward(x)?)?;
        let Some(cap) = self.hp.final_softcap else {
            return Ok(logits);
        };
        let v: Vec<f32> = logits.flatten_all()?.to_vec1()?;
        let v: Vec<f32> = v.iter().map(|&l| (l * (1.0 / cap)).tanh() * cap).collect();
        Ok(Tensor::from_vec(v, logits.shape(), logits.device())?)
    }
}

impl Model for Decoder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn new_cache(&self, capacity: usize) -> Result<KvCache, ModelError> {
        if capacity > self.ropes[0].max_pos() {
            return Err(ModelError::CacheTooLarge {
                requested: capacity,
                max: self.ropes[0].max_pos(),
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
        let x = self.hidden(tokens, cache, false)?;
        let last = x.narrow(0, tokens.len() - 1, 1)?;
        let logits = self.logits(&last)?;
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
        let mut x = self.embed(&flat)?;
        for (i, b) in self.blocks.iter().enumerate() {
            x = b.forward_segments(x, i, &self.ropes[b.rope], caches, &lens, &masks)?;
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
        let logits = self.logits(&x)?;
        Ok(logits.to_dtype(DType::F32)?.contiguous()?)
    }

    fn forward_all(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, ModelError> {
        let x = self.hidden(tokens, cache, false)?;
        let logits = self.logits(&x)?;
        Ok(logits.to_dtype(DType::F32)?.contiguous()?)
    }

    fn forward_verify(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, ModelError> {
        if !self.device.is_cpu() {
            // Only the CPU attention sums in an order that depends on the row count.
            return self.forward_all(tokens, cache);
        }
        let x = self.hidden(tokens, cache, true)?;
        let logits = self.logits(&x)?;
        Ok(logits.to_dtype(DType::F32)?.contiguous()?)
    }
}
