#!/usr/bin/env python3
"""Line up a llama.cpp tensor dump (scripts/llama-cpp-trace.py) with wick's
(examples/trace_dump.rs) and print, per wick tensor in forward order, the largest and the
RMS difference relative to llama.cpp's, and how many values differ at all. The first
tensor that stops being 0 is where the two implementations part.

  scripts/trace-compare.py LLAMA.npz WICK.npz [PREFIX p:|d0:|...] [LAYERS]
"""
import re
import sys

import numpy as np


def llama_view(L, pre, name, w):
    """llama.cpp's tensor for wick's `name`, shaped like wick's `w`, or None."""
    get = lambda n: L[pre + n] if pre + n in L.files else None
    m = re.match(r"(.*)-(\d+)$", name)
    base, layer = (m.group(1), m.group(2)) if m else (name, None)
    if base in ("Qrope", "Krope"):
        # After rope: the last tensor of that name in the layer ([t, heads, hd] in ggml).
        cur = "Qcur" if base == "Qrope" else "Kcur"
        keys = [k for k in L.files if k.startswith(f"{pre}{cur}-{layer}")
                and "(" not in k]
        l = L[sorted(keys, key=len)[-1]][0]
        return l.transpose(1, 0, 2)[None]
    if base == "result_output":
        l = get("result_output")
        return l.reshape(-1, l.shape[-1])[-1].reshape(w.shape)
    if base == "result_norm":
        l = get("result_norm")
        return l.reshape(-1, l.shape[-1])[-w.shape[0]:].reshape(w.shape)
    # Several ggml tensors can share a name (Qwen2's Qcur-0 is the matmul, Qcur-0#2 the
    # same plus bias, Qcur-0#3 the per-head reshape): take the last one laid out as wick's.
    same = [k for k in L.files if (k == pre + name or k.startswith(f"{pre}{name}#"))
            and L[k].size == w.size and L[k].shape[-1] == w.shape[-1]]
    return L[sorted(same, key=len)[-1]].reshape(w.shape) if same else None


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    L, W = np.load(sys.argv[1]), np.load(sys.argv[2])
    pre = sys.argv[3] if len(sys.argv) > 3 else "p:"
    layers = int(sys.argv[4]) if len(sys.argv) > 4 else 1 << 30
    for key in W.files:
        if not key.startswith(pre):
            continue
        name = key[len(pre):]
        m = re.match(r".*-(\d+)$", name)
        if m and int(m.group(1)) >= layers:
            continue
        w = W[key]
        l = llama_view(L, pre, name, w)
        if l is None:
            print(f"{name:22} (no llama.cpp tensor)")
            continue
        d = np.abs(w - l)
        scale = np.abs(l).max() or 1.0
        rms = np.sqrt((d ** 2).mean()) / (np.sqrt((l ** 2).mean()) or 1.0)
        print(f"{name:22} max_rel {d.max() / scale:.2e}  rms_rel {rms:.2e}  "
              f"differ {int((w != l).sum())}/{w.size}")


if __name__ == "__main__":
    main()
