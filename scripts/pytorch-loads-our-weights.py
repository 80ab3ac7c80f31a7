#!/usr/bin/env python3
"""Checks that PyTorch loads weights we save: builds the network of a model description (our JSON
layer format) with bench/torch_peer.py's builder, reads our safetensors file without the safetensors
package (8-byte header length, JSON header, raw little-endian data), and calls load_state_dict(strict=True).

usage: python3 scripts/pytorch-loads-our-weights.py MODEL.json WEIGHTS.safetensors
"""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from torch_peer import build  # noqa: E402


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        begin, end = e["data_offsets"]
        dtype = {"F32": torch.float32, "I64": torch.int64}[e["dtype"]]
        out[name] = torch.frombuffer(bytearray(body[begin:end]), dtype=dtype).reshape(e["shape"]).clone()
    return out


def main():
    model_file, weights = sys.argv[1], sys.argv[2]
    with open(model_file) as f:
        spec = json.load(f)
    net = build(spec["layers"] if isinstance(spec, dict) else spec)
    state = read_safetensors(weights)
    net.load_state_dict(state, strict=True)
    print(f"PyTorch loaded {len(state)} tensors into {type(net).__name__} with {sum(p.numel() for p in net.parameters())} parameters (strict)")


if __name__ == "__main__":
    main()
