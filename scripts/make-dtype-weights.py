#!/usr/bin/python3
"""Writes tests/weights/dtypes.safetensors: tensors that PyTorch holds in float16, bfloat16 and float64 (the dtypes of
published weights), each beside PyTorch's own conversion to float32 ("NAME.expected"), which GpuBackprop's reader
must give bit for bit. The safetensors format is written here by hand (Debian's PyTorch 1.13 has no safetensors
module): an 8-byte little-endian header length, the JSON header, the raw little-endian data.

    /usr/bin/python3 scripts/make-dtype-weights.py [OUT]
"""
import json, os, struct, sys

import torch

DTYPES = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64", torch.float32: "F32"}


def raw(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "weights", "dtypes.safetensors")
    g = torch.Generator().manual_seed(0)
    base = torch.randn(4, 6, generator=g, dtype=torch.float64) * 3
    # Values at the edges: tiny (subnormal in half), large, exact ties for float64 -> float32 rounding.
    edges = torch.tensor([6.1e-5, 5.96e-8, 65504.0, -2.5, 1 + 2 ** -24, 1 + 3 * 2 ** -24, 3.0e38, -1e-40], dtype=torch.float64)
    tensors = {}
    for dtype, name in [(torch.float16, "f16"), (torch.bfloat16, "bf16"), (torch.float64, "f64")]:
        values = base.to(dtype) if dtype != torch.float64 else base
        tensors[name] = values
        tensors[name + ".expected"] = values.to(torch.float32)
        edge = edges.to(dtype)
        tensors[name + ".edges"] = edge
        tensors[name + ".edges.expected"] = edge.to(torch.float32)
    header, data = {}, b""
    for key in sorted(tensors):
        t = tensors[key]
        b = raw(t)
        header[key] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    h = json.dumps(header, separators=(",", ":")).encode()
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)
    print(out, len(tensors), "tensors")


if __name__ == "__main__":
    main()
