#!/usr/bin/env python3
"""Runs our `gpubackprop bench` and the PyTorch peer (torch_peer.py) interleaved, group by group, on the
same machine and prints a ratio table (speedup = PyTorch ms / our ms; above 1 we are faster).

usage:
  python3 bench/compare.py [--device cpu|cuda] [--reps N] [--markdown]      run both, then the table
  python3 bench/compare.py --from OURS.jsonl TORCH.jsonl [--markdown]       table of two saved runs

On the CPU use Debian's python3-torch with libopenblas0-openmp (apt-get install python3-torch
libopenblas0-openmp) so that PyTorch has an optimised BLAS; our side is the Release build of src/Cli.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GROUPS = ["conv.", "maxpool.", "avgpool.", "gemm.", "train."]


def rows(lines):
    out, device = {}, None
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if "peer" in r:
            device = r.get("device")
        elif "name" in r:
            out[r["name"]] = r
    return out, device


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return p.stdout.splitlines()


def ours_command():
    dll = os.path.join(ROOT, "src", "Cli", "bin", "Release", "net10.0", "gpubackprop.dll")
    if not os.path.exists(dll):
        subprocess.run(["dotnet", "build", "-c", "Release", os.path.join(ROOT, "src", "Cli")], check=True, capture_output=True)
    return ["dotnet", dll]


def rate(r):
    for key, unit in (("gflops", "GFLOP/s"), ("gbps", "GB/s"), ("img_per_s", "img/s")):
        if key in r:
            return f"{r[key]:,} {unit}"
    return ""


def table(ours, torch, markdown):
    names = [n for n in ours if n in torch] + [n for n in ours if n not in torch]
    head = ["benchmark", "GpuBackprop ms", "PyTorch ms", "speedup", "GpuBackprop", "PyTorch"]
    lines = []
    for n in names:
        o, t = ours[n], torch.get(n)
        speed = f"{t['ms'] / o['ms']:.2f}x" if t else "-"
        lines.append([n, f"{o['ms']:.3f}", f"{t['ms']:.3f}" if t else "-", speed, rate(o), rate(t) if t else ""])
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for l in lines:
            print("| " + " | ".join(l) + " |")
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *lines)]
        for l in [head] + lines:
            print("  ".join(x.ljust(w) for x, w in zip(l, widths)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--shapes", default=os.path.join(HERE, "shapes.json"), help="the benchmark set (default: the shared one; bench/offset-shapes.json holds rows off it)")
    p.add_argument("--from", dest="files", nargs=2)
    p.add_argument("--python", default="/usr/bin/python3", help="the Python that has torch (Debian's python3-torch)")
    a = p.parse_args()
    if a.files:
        ours, od = rows(open(a.files[0]))
        torch, td = rows(open(a.files[1]))
    else:
        ours, torch, od, td = {}, {}, None, None
        shapes = a.shapes
        for g in GROUPS:
            o, od = rows(run(ours_command() + ["bench", "--device", a.device, "--json", "--only", g, "--reps", str(a.reps), "--shapes", shapes]))
            t, td = rows(run([a.python, os.path.join(HERE, "torch_peer.py"), "--device", a.device, "--only", g, "--reps", str(a.reps), "--shapes", shapes]))
            ours.update(o)
            torch.update(t)
    print(f"GpuBackprop on {od}; PyTorch on {td}")
    table(ours, torch, a.markdown)


if __name__ == "__main__":
    main()
