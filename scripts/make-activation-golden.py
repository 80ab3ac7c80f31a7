#!/usr/bin/python3
"""Writes PyTorch reference ("golden") cases for the `hardswish` and `mish` activations, in the
format of tests/golden/ (see tests/golden/README.md):

    OUT_DIR/cases/hardswish_edges/{case.json,x.npy,y.npy,dy.npy,dx.npy}
    OUT_DIR/cases/mish_edges/{case.json,x.npy,y.npy,dy.npy,dx.npy}
    OUT_DIR/index.json   (created, or the two case names added to the one already there)

Only those two case folders are replaced and index.json merged; nothing else under OUT_DIR is touched.
Run from the repository root with Debian's PyTorch (1.13):

    /usr/bin/python3 scripts/make-activation-golden.py [OUT_DIR]      (default: tests/golden-local)

Inputs are float32 (fixed edge values plus uniform random ones from a fixed seed); y and dx are
computed by PyTorch in float64 (y = f(x64); dx = autograd gradient of sum(y * dy64) w.r.t. x64) and
stored rounded to float32. The script asserts PyTorch's backward convention for hardswish at the
piece boundaries (dx = -0.5*dy at x = -3, 1.5*dy at x = 3) and that mish's outputs are finite.
hardswish is evaluated one element at a time: in PyTorch 1.13 the CPU backward's SIMD loop gives
dx = dy at exactly x = 3 while its scalar loop gives 1.5*dy, and which loop an element takes depends
on its position in the tensor (see hardswish_case). Newer PyTorch (2025, pull request #148049)
changed the convention to dx = 0 at -3 and dx = dy at 3; the asserts fail there on purpose.
"""
import json, os, shutil, sys

import numpy as np
import torch
import torch.nn.functional as F

SEED = 20240613
TOLERANCE = {"atol": 1e-06, "rtol": 1e-05}
f32 = np.float32


def nextafter32(a, toward):
    return np.nextafter(f32(a), f32(toward), dtype=np.float32)


def build_x(fixed, shape, low, high, rng):
    fixed = np.array(fixed, dtype=np.float32)
    n = int(np.prod(shape))
    assert len(fixed) <= n
    rest = rng.uniform(low, high, n - len(fixed)).astype(np.float32)
    return np.concatenate([fixed, rest]).reshape(shape)


def run_torch(fn, x, dy):
    x64 = torch.from_numpy(x.astype(np.float64)).requires_grad_(True)
    dy64 = torch.from_numpy(dy.astype(np.float64))
    y64 = fn(x64)
    (y64 * dy64).sum().backward()
    return y64.detach().numpy(), x64.grad.numpy()


def run_torch_per_element(fn, x, dy):
    """Same as run_torch, one element at a time: a 1-element tensor always takes ATen's scalar loop."""
    y, dx = np.empty(x.shape), np.empty(x.shape)
    for i in np.ndindex(x.shape):
        yi, dxi = run_torch(fn, x[i].reshape(1), dy[i].reshape(1))
        y[i], dx[i] = yi[0], dxi[0]
    return y, dx


def hardswish_case(rng):
    fixed = [-3.0, 3.0,
             nextafter32(-3, -np.inf), nextafter32(-3, np.inf),   # just outside / inside -3
             nextafter32(3, -np.inf), nextafter32(3, np.inf),     # just inside / outside 3
             0.0, -0.0,
             -2.5, -1.5, -0.75, 0.5, 1.25, 2.75,                   # middle piece
             10.0, -10.0, 100.0, -100.0, 1e4, -1e4]
    x = build_x(fixed, (4, 9), -6.0, 6.0, rng)
    dy = rng.uniform(-1.0, 1.0, x.shape).astype(np.float32)
    # PyTorch 1.13's CPU hardswish_backward has two code paths that disagree at exactly x = 3:
    # the scalar loop returns dy*(x/3 + 0.5) = 1.5*dy (x <= 3), the SIMD loop returns dy (x >= 3).
    # Which one an element takes depends on its position in the tensor (full SIMD chunks first,
    # the remainder scalar), so the reference is computed element by element (scalar loop, the
    # documented-in-code convention); the whole-tensor result is only compared with it.
    y, dx = run_torch_per_element(F.hardswish, x, dy)
    y_whole, dx_whole = run_torch(F.hardswish, x, dy)
    assert np.array_equal(y, y_whole)
    differs = dx != dx_whole
    assert np.all(x[differs] == 3.0), "hardswish whole-tensor dx differs away from x == 3"
    for i in zip(*np.nonzero(differs)):
        print(f"  note: whole-tensor autograd gives dx = {dx_whole[i]!r} (= dy) at x = 3 {list(i)}, "
              f"per-element (scalar path) {dx[i]!r} (= 1.5*dy); the case stores the latter")

    # PyTorch's definition and backward convention, checked in float64.
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    y_ref = x64 * np.clip(x64 + 3.0, 0.0, 6.0) / 6.0
    dx_ref = np.where(x64 < -3.0, 0.0, np.where(x64 <= 3.0, dy64 * (x64 / 3.0 + 0.5), dy64))
    assert np.allclose(y, y_ref, rtol=1e-15, atol=0.0), "hardswish forward differs from x*relu6(x+3)/6"
    assert np.allclose(dx, dx_ref, rtol=1e-15, atol=0.0), "hardswish backward differs from the convention"
    at_m3, at_p3 = (x64 == -3.0), (x64 == 3.0)
    assert at_m3.sum() == 1 and at_p3.sum() == 1
    assert dx[at_m3][0] == -0.5 * dy64[at_m3][0], f"hardswish dx at -3: {dx[at_m3][0]} != -0.5*dy"
    assert dx[at_p3][0] == 1.5 * dy64[at_p3][0], f"hardswish dx at 3: {dx[at_p3][0]} != 1.5*dy"
    return "hardswish", x, y, dy, dx


def mish_case(rng):
    mags = [1e-3, 1.0, 5.0, 20.0, 30.0, 50.0, 88.0, 100.0]
    fixed = [0.0, -0.0] + [s * m for m in mags for s in (1.0, -1.0)]
    x = build_x(fixed, (5, 7), -8.0, 8.0, rng)
    dy = rng.uniform(-1.0, 1.0, x.shape).astype(np.float32)
    y, dx = run_torch(F.mish, x, dy)
    y_el, dx_el = run_torch_per_element(F.mish, x, dy)   # SIMD and scalar loops agree here
    assert np.allclose(y, y_el, rtol=1e-14, atol=0.0) and np.allclose(dx, dx_el, rtol=1e-14, atol=0.0)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx)), "mish produced NaN/inf"

    # Same values as x*tanh(log1p(exp(x))) and its derivative, in float64.
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    t = np.tanh(np.log1p(np.exp(x64)))
    s = 1.0 / (1.0 + np.exp(-x64))
    assert np.allclose(y, x64 * t, rtol=1e-14, atol=0.0), "mish forward differs"
    assert np.allclose(dx, dy64 * (t + x64 * s * (1.0 - t * t)), rtol=1e-12, atol=0.0), "mish backward differs"
    return "mish", x, y, dy, dx


CASES = [("hardswish_edges", hardswish_case), ("mish_edges", mish_case)]


def save_npy(path, a):
    a = np.ascontiguousarray(a, dtype="<f4")
    np.save(path, a, allow_pickle=False)


def write_case(out_dir, name, op, tensors):
    folder = os.path.join(out_dir, "cases", name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    meta = {"op": op, "params": {}, "tensors": {}, "tolerance": TOLERANCE}
    for tname, a in tensors.items():
        a32 = np.asarray(a).astype(np.float32)
        save_npy(os.path.join(folder, tname + ".npy"), a32)
        meta["tensors"][tname] = {"shape": list(a32.shape), "dtype": "float32"}
    with open(os.path.join(folder, "case.json"), "w") as f:
        json.dump(meta, f, indent=1)


def update_index(out_dir, names):
    path = os.path.join(out_dir, "index.json")
    index = {"generator": "PyTorch " + torch.__version__, "cases": []}
    if os.path.exists(path):
        with open(path) as f:
            index = json.load(f)
    index["cases"] += [n for n in names if n not in index["cases"]]
    with open(path, "w") as f:
        json.dump(index, f, indent=1)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "tests/golden-local"
    torch.set_grad_enabled(True)
    names = []
    for i, (name, make) in enumerate(CASES):
        rng = np.random.default_rng(SEED + i)
        op, x, y, dy, dx = make(rng)
        write_case(out_dir, name, op, {"x": x, "y": y, "dy": dy, "dx": dx})
        names.append(name)
        print(f"{name}: op {op}, shape {list(x.shape)}")
    update_index(out_dir, names)
    print(f"wrote {len(names)} cases under {os.path.join(out_dir, 'cases')}")


if __name__ == "__main__":
    main()
