#!/usr/bin/env python3
"""Dump llama.cpp's intermediate tensors for one prompt of a reference file into an .npz.

Runs the GGUF through llama-cpp-python with the reference settings (2 threads, n_batch 512,
f16 KV cache, no flash attention) and a ggml eval callback that copies every f32/f16 tensor
the graph computes, under ggml's own names (`attn_norm-3`, `Qcur-3`, `kq_soft_max-3`, ...;
a name seen again within one call gets `#2`, `#3`, ...). The prefill is stored as
`p:<name>`, then each teacher-forced decode step of the reference continuation as
`d<i>:<name>`. `examples/trace_dump.rs` writes wick's side; `scripts/trace-compare.py`
lines them up. Views into the KV cache are skipped (they are the whole cache).

Needs a venv with llama-cpp-python (0.3.36 made the reference) and numpy:
  scripts/llama-cpp-trace.py MODEL.gguf REFERENCE.json PROMPT OUT.npz [STEPS]
"""
import ctypes
import json
import sys

import numpy as np
import llama_cpp.llama_cpp as lc
from llama_cpp import Llama


class GgmlTensor(ctypes.Structure):
    # struct ggml_tensor from ggml.h (GGML_MAX_DIMS 4, GGML_MAX_OP_PARAMS 64,
    # GGML_MAX_SRC 10, GGML_MAX_NAME 64) of the ggml that llama-cpp-python 0.3.36 bundles.
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p),
                ("ne", ctypes.c_int64 * 4), ("nb", ctypes.c_size_t * 4),
                ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16),
                ("flags", ctypes.c_int32), ("src", ctypes.c_void_p * 10),
                ("view_src", ctypes.c_void_p), ("view_offs", ctypes.c_size_t),
                ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64),
                ("extra", ctypes.c_void_p), ("padding", ctypes.c_char * 8)]


CAPTURED = {}


def on_tensor(ptr, ask, _user):
    if ask:
        return True  # yes, show us every tensor once computed
    t = GgmlTensor.from_address(ptr)
    name = t.name.decode()
    if t.type not in (0, 1) or name.startswith("cache_"):
        return True
    dtype = np.float32 if t.type == 0 else np.float16
    ne, nb = list(t.ne), list(t.nb)
    size = sum((ne[i] - 1) * nb[i] for i in range(4)) + np.dtype(dtype).itemsize
    raw = (ctypes.c_char * size).from_address(t.data)
    arr = np.ndarray(tuple(reversed(ne)), dtype, raw, strides=tuple(reversed(nb)))
    key, k = name, 2
    while key in CAPTURED:
        key, k = f"{name}#{k}", k + 1
    CAPTURED[key] = arr.astype(np.float32)
    return True


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    model, reference, prompt_name, out = sys.argv[1:5]
    steps = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    callback = lc.ggml_backend_sched_eval_callback(on_tensor)
    default_params = lc.llama_context_default_params

    def with_callback():
        p = default_params()
        p.cb_eval = callback
        return p

    lc.llama_context_default_params = with_callback  # Llama() reads its params from here
    ref = json.load(open(reference))
    prompt = next(p for p in ref["prompts"] if p["name"] == prompt_name)
    llm = Llama(model, n_ctx=4096, n_batch=512, n_ubatch=512, n_threads=2,
                n_threads_batch=2, logits_all=True, flash_attn=False, verbose=False)
    saved = {}
    llm.eval(prompt["prompt_ids"])
    saved.update({f"p:{k}": v for k, v in CAPTURED.items()})
    for i, tok in enumerate(prompt["generated_ids"][:steps]):
        CAPTURED.clear()
        llm.eval([tok])
        saved.update({f"d{i}:{k}": v for k, v in CAPTURED.items()})
    np.savez(out, **saved)
    print(f"{len(saved)} tensors -> {out}")


if __name__ == "__main__":
    main()
