#!/usr/bin/env python3
"""Writes tiny GGUFs with random weights, one per architecture wick runs, so that wick can be
checked against llama.cpp on architectures without a small real model.

    synthetic-models.py TOKENIZER_GGUF OUT_DIR

TOKENIZER_GGUF is the SmolLM2 test model (smollm2-135m-instruct-q4_1.gguf): its tokenizer
metadata (byte-level BPE, 49,152 tokens, pre-tokenizer `smollm`) is copied into every file.
OUT_DIR gets synthetic-{llama,qwen3,qwen3moe,gemma3,starcoder2}.gguf. Needs the `gguf` (0.19.0)
and `numpy` (2.x) packages; the output is a function of the seed and those versions only,
and its sha256 is checked by `scripts/fetch-test-models` against tests/reference/synthetic/.

Each file carries the real tensor names and metadata keys llama.cpp's loader reads for the
architecture (llama with Llama-3 `rope_freqs.weight`; qwen3 with per-head Q/K norms and a head
size that is not n_embd/n_head; qwen3moe with 3-D expert tensors; gemma3 with post-norms and
interleaved sliding-window layers whose window is smaller than the prompts; starcoder2 with
LayerNorm and biases). Sizes: 2 blocks, n_embd 128, FFN 256; the 49,152-token embedding
dominates each file (6.7 MB as Q8_0, 12.6 MB as F16).

How the weights keep the comparison meaningful. Random weights give flat output
distributions where the top-1/top-2 logit gap is often smaller than the rounding noise of
8-bit activation quantization (every Q8_0/K-quant matmul rounds its input to 8 bits, and a
1-ulp difference upstream flips some of those roundings). So:
  * most matrices are F16 (their matmuls round activations to f16, 2^-11, not 8 bits);
    each quantized format appears where it matters: Q8_0, Q5_0, Q4_K, Q6_K;
  * the output projection is scaled so logits have a standard deviation of about 6, which
    makes the expected top-1/top-2 gap about 1.3 nats;
  * the reference (scripts/llama-reference.py) keeps a prompt's greedy tokens only up to
    the first step where llama.cpp's own top-1/top-2 gap is below 0.3 nats. Random weights
    amplify rounding: one activation that rounds to the other 8-bit step moves the logits
    of these files by up to 0.15 nats (measured: wick's batched and single-row decode,
    which differ only in the f32 summation order of F16 matmuls, differ by up to 0.15),
    so a gap can shrink by up to 2 x 0.15; 0.3 keeps every compared step decided (see
    tests/synthetic_reference.rs for the per-architecture numbers).
"""

import math
import sys

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader, GGUFValueType, GGUFWriter
from gguf.quants import quantize

SEED = 20261206
N_EMBD = 128
N_FF = 256
N_LAYER = 2
CTX = 4096


def copy_tokenizer(reader: GGUFReader, w: GGUFWriter) -> int:
    """Copies every tokenizer.* key; returns the vocabulary size."""
    n_vocab = 0
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        vtype = field.types[0]
        value = field.contents()
        if vtype == GGUFValueType.ARRAY:
            w.add_key_value(name, value, vtype, sub_type=field.types[-1])
            if name == "tokenizer.ggml.tokens":
                n_vocab = len(value)
        else:
            w.add_key_value(name, value, vtype)
    return n_vocab


class Tensors:
    """Random tensors, written in the requested GGML type."""

    def __init__(self, w: GGUFWriter, rng: np.random.Generator):
        self.w, self.rng = w, rng

    def normal(self, shape, std):
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    def add(self, name, data: np.ndarray, qtype=Q.F32):
        if qtype == Q.F32:
            self.w.add_tensor(name, data.astype(np.float32))
        elif qtype == Q.F16:
            self.w.add_tensor(name, data.astype(np.float16))
        elif qtype in (Q.Q8_0, Q.Q5_0):
            self.w.add_tensor(name, quantize(data, qtype), raw_dtype=qtype)
        elif qtype in (Q.Q4_K, Q.Q6_K):
            self.w.add_tensor(name, kquant_bytes(self.rng, data.shape, qtype), raw_dtype=qtype)
        else:
            raise ValueError(qtype)

    def matrix(self, name, rows, cols, qtype, std=None):
        """A `[rows, cols]` weight (ggml ne = [cols, rows]), std 1/sqrt(cols) by default."""
        std = std if std is not None else 1.0 / math.sqrt(cols)
        self.add(name, self.normal((rows, cols), std), qtype)

    def norm(self, name, n):
        self.add(name, 1.0 + self.normal((n,), 0.1))

    def bias(self, name, n):
        self.add(name, self.normal((n,), 0.05))


def kquant_bytes(rng, shape, qtype):
    """Random but valid K-quant blocks for a `[.., cols]` weight whose values have a standard
    deviation near 1/sqrt(cols). gguf-py has no K-quant quantizer; any block bytes are a
    valid tensor, and random weights are what this file wants anyway."""
    *lead, cols = shape
    assert cols % 256 == 0
    n_blocks = int(np.prod(lead)) * cols // 256
    std = 1.0 / math.sqrt(cols)
    if qtype == Q.Q4_K:
        # d (f16), dmin (f16), 12 bytes of 6-bit scales/mins, 128 bytes of 4-bit quants:
        # value = d * sc * q - dmin * m with q in 0..15. Scales in 32..63 and mins chosen
        # so that d*sc*7.5 ~ dmin*m keeps the values roughly centred.
        blocks = np.zeros((n_blocks, 144), dtype=np.uint8)
        d = np.float16(std / (48 * 4.6))
        dmin = np.float16(float(d) * 7.5)
        blocks[:, 0:2] = np.frombuffer(np.array([d], np.float16).tobytes(), np.uint8)
        blocks[:, 2:4] = np.frombuffer(np.array([dmin], np.float16).tobytes(), np.uint8)
        sc = rng.integers(32, 64, size=(n_blocks, 8))
        mn = np.full((n_blocks, 8), 48)
        packed = np.zeros((n_blocks, 12), dtype=np.uint8)
        for j in range(4):
            packed[:, j] = (sc[:, j] & 63) | ((sc[:, j + 4] >> 4) << 6)
            packed[:, j + 4] = (mn[:, j] & 63) | ((mn[:, j + 4] >> 4) << 6)
            packed[:, j + 8] = (sc[:, j + 4] & 15) | ((mn[:, j + 4] & 15) << 4)
        blocks[:, 4:16] = packed
        blocks[:, 16:] = rng.integers(0, 256, size=(n_blocks, 128), dtype=np.uint8)
        per_row = 144
    else:
        # ql[128], qh[64], int8 scales[16], d (f16): value = d * sc * (q - 32), q in 0..63.
        blocks = np.zeros((n_blocks, 210), dtype=np.uint8)
        blocks[:, :192] = rng.integers(0, 256, size=(n_blocks, 192), dtype=np.uint8)
        blocks[:, 192:208] = rng.integers(8, 24, size=(n_blocks, 16)).astype(np.int8).view(np.uint8)
        d = np.float16(std / (16 * 18.5))
        blocks[:, 208:210] = np.frombuffer(np.array([d], np.float16).tobytes(), np.uint8)
        per_row = 210
    return blocks.reshape(*lead, cols // 256 * per_row)


def header(w: GGUFWriter, arch: str, n_head: int, n_kv: int, head_dim: int, rope_base: float):
    w.add_name(f"wick synthetic {arch}")
    w.add_context_length(CTX)
    w.add_embedding_length(N_EMBD)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(N_FF)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(rope_base)


def attention(t: Tensors, i: int, n_head: int, n_kv: int, hd: int, types, bias=False, qk_norm=False):
    p = f"blk.{i}"
    qt, kt, vt, ot = types
    t.matrix(f"{p}.attn_q.weight", n_head * hd, N_EMBD, qt)
    t.matrix(f"{p}.attn_k.weight", n_kv * hd, N_EMBD, kt)
    t.matrix(f"{p}.attn_v.weight", n_kv * hd, N_EMBD, vt)
    t.matrix(f"{p}.attn_output.weight", N_EMBD, n_head * hd, ot)
    if bias:
        t.bias(f"{p}.attn_q.bias", n_head * hd)
        t.bias(f"{p}.attn_k.bias", n_kv * hd)
        t.bias(f"{p}.attn_v.bias", n_kv * hd)
        t.bias(f"{p}.attn_output.bias", N_EMBD)
    if qk_norm:
        t.norm(f"{p}.attn_q_norm.weight", hd)
        t.norm(f"{p}.attn_k_norm.weight", hd)


def swiglu(t: Tensors, i: int, types):
    p = f"blk.{i}"
    gt, ut, dt = types
    t.matrix(f"{p}.ffn_gate.weight", N_FF, N_EMBD, gt)
    t.matrix(f"{p}.ffn_up.weight", N_FF, N_EMBD, ut)
    t.matrix(f"{p}.ffn_down.weight", N_EMBD, N_FF, dt)


def embeddings(t: Tensors, n_vocab: int, embd_type, output_type=None):
    """Token embeddings (std 1) and, unless tied, an output projection whose logits have a
    standard deviation of about 6 for unit-RMS hidden states."""
    t.matrix("token_embd.weight", n_vocab, N_EMBD, embd_type, std=1.0)
    t.norm("output_norm.weight", N_EMBD)
    if output_type is not None:
        t.matrix("output.weight", n_vocab, N_EMBD, output_type, std=6.0 / math.sqrt(N_EMBD))


def llama3_rope_factors(head_dim: int, base: float) -> np.ndarray:
    """convert_hf_to_gguf.py's "llama3" rope factors, with a small original context (64) so
    that they change the angles at the positions of short prompts."""
    factor, low, high, old_ctx = 8.0, 1.0, 4.0, 64
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < old_ctx / high:
            out.append(1.0)
        elif wavelen > old_ctx / low:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def build(arch: str, reader: GGUFReader, path: str, rng: np.random.Generator):
    w = GGUFWriter(path, arch)
    n_vocab = copy_tokenizer(reader, w)
    t = Tensors(w, rng)
    if arch == "llama":
        n_head, n_kv, hd = 4, 2, 32
        header(w, arch, n_head, n_kv, hd, 500000.0)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_vocab_size(n_vocab)
        embeddings(t, n_vocab, Q.F16, Q.F16)
        t.add("rope_freqs.weight", llama3_rope_factors(hd, 500000.0))
        for i in range(N_LAYER):
            t.norm(f"blk.{i}.attn_norm.weight", N_EMBD)
            attention(t, i, n_head, n_kv, hd, (Q.F16, Q.F16, Q.Q8_0, Q.F16))
            t.norm(f"blk.{i}.ffn_norm.weight", N_EMBD)
            swiglu(t, i, (Q.F16, Q.F16, Q.Q4_K))
    elif arch == "qwen3":
        n_head, n_kv, hd = 4, 2, 64  # n_head * hd = 256 != n_embd
        header(w, arch, n_head, n_kv, hd, 1000000.0)
        w.add_layer_norm_rms_eps(1e-6)
        embeddings(t, n_vocab, Q.F16, Q.Q8_0)
        for i in range(N_LAYER):
            t.norm(f"blk.{i}.attn_norm.weight", N_EMBD)
            attention(t, i, n_head, n_kv, hd, (Q.F16, Q.F16, Q.F16, Q.Q5_0), qk_norm=True)
            t.norm(f"blk.{i}.ffn_norm.weight", N_EMBD)
            swiglu(t, i, (Q.F16, Q.F16, Q.Q6_K))
    elif arch == "qwen3moe":
        n_head, n_kv, hd = 4, 2, 32
        n_expert, n_used = 8, 2
        header(w, arch, n_head, n_kv, hd, 1000000.0)
        w.add_layer_norm_rms_eps(1e-6)
        w.add_expert_count(n_expert)
        w.add_expert_used_count(n_used)
        w.add_expert_feed_forward_length(N_FF)
        embeddings(t, n_vocab, Q.F16, Q.F16)
        for i in range(N_LAYER):
            p = f"blk.{i}"
            t.norm(f"{p}.attn_norm.weight", N_EMBD)
            attention(t, i, n_head, n_kv, hd, (Q.F16, Q.F16, Q.F16, Q.F16), qk_norm=True)
            t.norm(f"{p}.ffn_norm.weight", N_EMBD)
            # The router is F32, as llama.cpp's quantizer leaves it; its logits spread by
            # ~2 so that the top-2 choice is decided well above rounding noise.
            t.matrix(f"{p}.ffn_gate_inp.weight", n_expert, N_EMBD, Q.F32, std=2.0 / math.sqrt(N_EMBD))
            s = 1.0 / math.sqrt(N_EMBD)
            t.add(f"{p}.ffn_gate_exps.weight", t.normal((n_expert, N_FF, N_EMBD), s), Q.Q8_0)
            t.add(f"{p}.ffn_up_exps.weight", t.normal((n_expert, N_FF, N_EMBD), s), Q.F16)
            # (Only the shape is used: K-quant blocks are drawn directly.)
            t.add(f"{p}.ffn_down_exps.weight", np.zeros((n_expert, N_EMBD, N_FF)), Q.Q4_K)
    elif arch == "gemma3":
        n_head, n_kv, hd = 4, 1, 64  # n_head * hd = 256 != n_embd; head_dim 64: scale 1/8
        header(w, arch, n_head, n_kv, hd, 1000000.0)
        w.add_layer_norm_rms_eps(1e-6)
        # Window 8 with pattern 2: block 0 slides, block 1 is global; prompts are longer
        # than the window, so the mask and the two rope bases are both exercised.
        w.add_sliding_window(8)
        w.add_uint32("gemma3.attention.sliding_window_pattern", 2)
        w.add_float32("gemma3.rope.freq_base_swa", 10000.0)
        # Tied output (as the real Gemma 3 files). Embeddings of std 0.5/sqrt(n_embd) enter
        # the residual at std 0.5 (after the sqrt(n_embd) scale), below the post-normed block
        # outputs, so the output is not just the input token again; an output norm weight
        # of ~12 then gives logits of std ~6.
        t.matrix("token_embd.weight", n_vocab, N_EMBD, Q.Q8_0, std=0.5 / math.sqrt(N_EMBD))
        t.add("output_norm.weight", 12.0 + t.normal((N_EMBD,), 1.2))
        for i in range(N_LAYER):
            p = f"blk.{i}"
            t.norm(f"{p}.attn_norm.weight", N_EMBD)
            attention(t, i, n_head, n_kv, hd, (Q.F16, Q.F16, Q.F16, Q.F16), qk_norm=True)
            t.norm(f"{p}.post_attention_norm.weight", N_EMBD)
            t.norm(f"{p}.ffn_norm.weight", N_EMBD)
            swiglu(t, i, (Q.F16, Q.Q5_0, Q.F16))
            t.norm(f"{p}.post_ffw_norm.weight", N_EMBD)
    elif arch == "starcoder2":
        n_head, n_kv, hd = 4, 2, 32
        header(w, arch, n_head, n_kv, hd, 100000.0)
        w.add_layer_norm_eps(1e-5)
        embeddings(t, n_vocab, Q.F16, Q.F16)
        t.bias("output_norm.bias", N_EMBD)
        for i in range(N_LAYER):
            p = f"blk.{i}"
            t.norm(f"{p}.attn_norm.weight", N_EMBD)
            t.bias(f"{p}.attn_norm.bias", N_EMBD)
            attention(t, i, n_head, n_kv, hd, (Q.F16, Q.F16, Q.F16, Q.F16), bias=True)
            t.norm(f"{p}.ffn_norm.weight", N_EMBD)
            t.bias(f"{p}.ffn_norm.bias", N_EMBD)
            t.matrix(f"{p}.ffn_up.weight", N_FF, N_EMBD, Q.Q8_0)
            t.bias(f"{p}.ffn_up.bias", N_FF)
            t.matrix(f"{p}.ffn_down.weight", N_EMBD, N_FF, Q.Q6_K)
            t.bias(f"{p}.ffn_down.bias", N_EMBD)
    else:
        raise ValueError(arch)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


ARCHES = ["llama", "qwen3", "qwen3moe", "gemma3", "starcoder2"]


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: synthetic-models.py TOKENIZER_GGUF OUT_DIR")
    reader = GGUFReader(sys.argv[1])
    for k, arch in enumerate(ARCHES):
        rng = np.random.default_rng(SEED + k)
        build(arch, reader, f"{sys.argv[2]}/synthetic-{arch}.gguf", rng)


if __name__ == "__main__":
    main()
