#!/usr/bin/env python3
"""Write tests/reference/ggml_ops.json, the llama.cpp values that src/model/ggml_ops.rs must
reproduce bit for bit, from two dumps of scripts/llama-cpp-trace.py:

  scripts/llama-cpp-trace.py SMOLLM2.gguf smollm2-135m-instruct.json raw_rust_parse smol.npz 2
  scripts/llama-cpp-trace.py QWEN05.gguf qwen2.5-coder-0.5b-instruct.json fim_is_prime qwen.npz 2
  scripts/ggml-ops-goldens.py smol.npz SMOLLM2.gguf qwen.npz tests/reference/ggml_ops.json

Needs numpy and gguf (gguf-py) for the SmolLM2 norm weight.
"""
import json, sys, numpy as np
from gguf import GGUFReader
f32 = np.float32
def bits(a): return np.asarray(a, f32).reshape(-1).view(np.uint32).tolist()
smol_npz, smol_gguf, qwen_npz = sys.argv[1:4]
S = np.load(smol_npz); Q = np.load(qwen_npz)
w = np.asarray({t.name: t for t in GGUFReader(smol_gguf).tensors}['blk.0.attn_norm.weight'].data, f32)
h16 = lambda a: np.asarray(a, f32).astype(np.float16).astype(f32)
out = {"source": "llama.cpp (llama-cpp-python 0.3.36, x86-64 AVX-512) tensor dumps: SmolLM2 raw_rust_parse, Qwen2.5-Coder-0.5B fim_is_prime; values are f32 bit patterns"}
out["rms_norm"] = {"eps": 1e-5, "x": bits(S['p:embd'].reshape(-1, 576)[5]), "w": bits(w),
                   "want": bits(S['p:attn_norm-0'].reshape(-1, 576)[5])}
out["rope_normal"] = {"base": 100000.0, "head_dim": 64, "pos": 7,
                      "x": bits(S['p:Qcur-0#2'][0][7]), "want": bits(S['p:Qcur-0#3'][0][7])}
out["rope_neox"] = {"base": 1000000.0, "head_dim": 64, "pos": 24,
                    "x": bits(Q['d0:Qcur-0#3'][0][0]), "want": bits(Q['d0:Qcur-0#4'][0][0])}
# Attention of Qwen layer 0, K/V head 0: head 3 at prefill query 20 (tiled dots) and head 5 at the
# first decode step (vec dots).
Kp = Q['p:Kcur-0#4'][0]; Kd = Q['d0:Kcur-0#4'][0]
K = h16(np.concatenate([Kp, Kd], 0)[:, 0])          # [25, 64]
out["kq_tiled"] = {"q": bits(h16(Q['p:Qcur-0#4'][0][20, 3])), "k": bits(K[:21]),
                   "want": bits(Q['p:kq-0'][0][3, 20, :21])}
out["kq_vec"] = {"q": bits(h16(Q["d0:Qcur-0#4"][0][0, 5])), "k": bits(K[:25]),
                 "want": bits(Q["d0:kq-0"][0][5, 0, :25])}
out["softmax"] = {"scale": 0.125, "x": bits(Q['p:kq-0'][0][3, 20, :21]),
                  "want": bits(Q['p:kq_soft_max-0'][0][3, 20, :21])}
g = S['p:ffn_gate-0'].reshape(-1)[:512]; u = S['p:ffn_up-0'].reshape(-1)[:512]
out["swiglu"] = {"g": bits(g), "u": bits(u), "want": bits(S['p:ffn_swiglu-0'].reshape(-1)[:512])}
json.dump(out, open(sys.argv[4], 'w'), separators=(',', ':'))
