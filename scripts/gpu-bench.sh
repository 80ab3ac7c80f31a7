#!/usr/bin/env bash
# On a lent GPU machine, after ../shared/gpu/pack packed the test project and the CLI into .gpu/ and the
# PTX of the GEMM kernels was written to .gpu/ptx (GPUBACKPROP_PTX_OUT=.gpu/ptx, PtxTests):
# ptxas's register/spill report, the test suite on CUDA, verify on every device, our bench with every
# GEMM variant (TF32 too) and the PyTorch peer with and without TF32 on the same GPU, interleaved in one
# call. Logs and JSON lines go to $OUT; a short table is printed last.
set -uo pipefail
out=${OUT:-gpu-logs}; mkdir -p "$out"
# The CLI (gpubackprop.dll) is published inside the test project's folder (the tests reference it), so
# one packed folder serves both and the carried tree stays under the device tool's 64 MiB.
run() {
  DOTNET_ROOT=/tmp/dotnet DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 \
  LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/nvidia/lib64:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu \
  /tmp/dotnet/dotnet .gpu/GpuBackprop.Tests/gpubackprop.dll "$@"
}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$out/nvidia-smi.log"
for f in .gpu/ptx/*.ptx; do
  echo "== $f"; ptxas -arch=sm_90 -v "$f" -o /dev/null 2>&1 | grep -E "registers|spill|stack" | head -4
done > "$out/ptxas.log" 2>&1; cat "$out/ptxas.log"
GPUBACKPROP_DEVICE=cuda GPUBACKPROP_REQUIRE_DEVICES=cuda:0 timeout 240 bash .gpu/run GpuBackprop.Tests -noColor ${TEST_FILTER:-} > "$out/tests.log" 2>&1; echo "tests exit $?"
grep -E "\[FAIL\]|TEST EXECUTION SUMMARY|Total:" "$out/tests.log" | head -20
grep -A6 "\[FAIL\]" "$out/tests.log" | head -60
timeout 120 run verify --device all > "$out/verify.log" 2>&1; echo "verify exit $?"
grep -E "FAIL|cases passed|golden:" "$out/verify.log" | head
b="$out/bench.jsonl"; : > "$b"
# GEMM variants, interleaved with the peer; then every row with the automatic choice and the peer.
for round in 1 2; do
  for v in 64 128 pipelined; do run bench --device cuda --json --shapes bench/shapes.json --only gemm --gemm-tiles $v | sed "s/^{/{\"variant\":\"$v\",\"round\":$round,/" >> "$b"; done
  run bench --device cuda --json --shapes bench/shapes.json --only gemm --tf32 | sed "s/^{/{\"variant\":\"tf32\",\"round\":$round,/" >> "$b"
  python3 bench/torch_peer.py --device cuda --shapes bench/shapes.json --only gemm | sed "s/^{/{\"variant\":\"torch\",\"round\":$round,/" >> "$b"
  python3 bench/torch_peer.py --device cuda --shapes bench/shapes.json --only gemm --tf32 | sed "s/^{/{\"variant\":\"torch-tf32\",\"round\":$round,/" >> "$b"
done
for v in auto pipelined; do run bench --device cuda --json --shapes bench/shapes.json --gemm-tiles $v | sed "s/^{/{\"variant\":\"$v\",\"round\":1,/" >> "$b"; done
run bench --device cuda --json --shapes bench/shapes.json --tf32 | sed "s/^{/{\"variant\":\"tf32\",\"round\":1,/" >> "$b"
python3 bench/torch_peer.py --device cuda --shapes bench/shapes.json | sed "s/^{/{\"variant\":\"torch\",\"round\":1,/" >> "$b"
python3 bench/torch_peer.py --device cuda --shapes bench/shapes.json --tf32 | sed "s/^{/{\"variant\":\"torch-tf32\",\"round\":1,/" >> "$b"
python3 - "$b" <<'PY'
import json, sys, collections
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    try: r = json.loads(line)
    except Exception: continue
    if "name" not in r: continue
    k = (r["name"], r["variant"])
    rows[r["name"]].setdefault(r["variant"], []).append(r["ms"])
variants = ["64", "128", "pipelined", "auto", "tf32", "torch", "torch-tf32"]
print(f"{'row':28}" + "".join(f"{v:>11}" for v in variants) + "   (median ms over rounds)")
for name, d in rows.items():
    cells = []
    for v in variants:
        xs = sorted(d.get(v, []))
        cells.append(f"{xs[len(xs)//2]:11.4f}" if xs else f"{'':>11}")
    print(f"{name:28}" + "".join(cells))
PY
