#!/usr/bin/env bash
# On a lent GPU machine, after ../shared/gpu/pack packed the test project into .gpu/ (the CLI,
# gpubackprop.dll, is published inside it) and the PTX of the GEMM kernels was written to .gpu/ptx
# (GPUBACKPROP_PTX_OUT, PtxTests): ptxas's register/spill report, the test suite on CUDA, verify on CUDA,
# our bench with split K off and on, the implicit input gradient forced, TF32 and the PyTorch peer with and without
# TF32, all on the same GPU in one call. Logs and JSON lines go to $OUT; a table is printed last.
set -uo pipefail
out=${OUT:-gpu-logs}; mkdir -p "$out"
reps=${REPS:-10}
export DOTNET_ROOT=/tmp/dotnet DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/nvidia/lib64:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu
[ -x /tmp/dotnet/dotnet ] || { mkdir -p /tmp/dotnet && tar -C /tmp/dotnet -xJf .gpu/dotnet-*.tar.xz; }
# The CLI (gpubackprop.dll) is published inside the test project's folder (the tests reference it), so
# one packed folder serves both and the carried tree stays under the device tool's 64 MiB.
cli() { /tmp/dotnet/dotnet .gpu/GpuBackprop.Tests/gpubackprop.dll "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$out/nvidia-smi.log"
for f in .gpu/ptx/*.ptx; do
  echo "== $f"; ptxas -arch=sm_90 -v "$f" -o /dev/null 2>&1 | grep -E "registers|spill|stack|error" | head -6
done > "$out/ptxas.log" 2>&1; cat "$out/ptxas.log"

# The whole suite on CUDA (and cpu), without cpu:kernels, whose simulated threads dominate a run here
# (2026-11-26, H100: the suite with it did not finish in 150 s); its summary and failures.
t0=$(date +%s)
GPUBACKPROP_DEVICE=cuda GPUBACKPROP_REQUIRE_DEVICES=cuda:0 GPUBACKPROP_TEST_KERNELS_ON_CPU=0 \
  timeout ${TEST_TIMEOUT:-170} /tmp/dotnet/dotnet .gpu/GpuBackprop.Tests/GpuBackprop.Tests.dll > "$out/tests.log" 2>&1
echo "tests exit $? after $(( $(date +%s) - t0 )) s"; grep -E "Total:" "$out/tests.log" | tail -1
grep -A3 "\[FAIL\]" "$out/tests.log" | grep -vE "^\s*$" | head -40
grep -E "Tf32|tanh" "$out/tests.log" | head -5
# (timeout runs programs, not shell functions: the CLI is named in full here.)
timeout 60 /tmp/dotnet/dotnet .gpu/GpuBackprop.Tests/gpubackprop.dll verify --device cuda > "$out/verify.log" 2>&1; echo "verify exit $?"
tail -4 "$out/verify.log"

b="$out/bench.jsonl"; : > "$b"
tag() { sed "s/^{/{\"variant\":\"$1\",/"; }
bench() { local v=$1; shift; cli bench --device cuda --json --reps "$reps" --shapes "${shapes:-bench/shapes.json}" "$@" | tag "$v" >> "$b"; }
peer() { local v=$1; shift; python3 bench/torch_peer.py --device cuda --reps "$reps" --shapes "${shapes:-bench/shapes.json}" "$@" | tag "$v" >> "$b"; }
t0=$(date +%s)
# Split K off (the previous kernels' choices) against on, every row; the implicit input gradient forced
# (with split K) on the conv rows, to re-decide where it is chosen; TF32; the peer with and without TF32.
bench split-off --split-k off
bench auto
bench implicit --only conv --conv implicit
bench tf32 --tf32
peer torch
peer torch-tf32 --tf32
# resnet14's own convolutions, one row each (which of them keeps the training step behind).
shapes=bench/resnet14-layers.json
bench split-off --split-k off
bench auto
peer torch
unset shapes
echo "bench took $(( $(date +%s) - t0 )) s"
python3 - "$b" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    try: r = json.loads(line)
    except Exception: continue
    if "name" in r: rows.setdefault(r["name"], {})[r["variant"]] = r["ms"]
cols = ["split-off", "implicit", "auto", "tf32", "torch", "torch-tf32"]
print(f"{'row (ms)':26}" + "".join(f"{c:>15}" for c in cols) + f"{'auto/torch':>11}{'tf32/torch-tf32':>16}")
for name, d in rows.items():
    cells = "".join(f"{d[c]:15.4f}" if c in d else f"{'':>15}" for c in cols)
    sp = f"{d['torch'] / d['auto']:11.2f}" if "auto" in d and "torch" in d else f"{'':>11}"
    st = f"{d['torch-tf32'] / d['tf32']:16.2f}" if "tf32" in d and "torch-tf32" in d else ""
    print(f"{name:26}" + cells + sp + st)
PY
