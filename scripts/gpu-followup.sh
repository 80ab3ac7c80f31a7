#!/usr/bin/env bash
# A short second call on a lent GPU machine, after scripts/gpu-bench.sh in the same session: the test
# suite on CUDA (without cpu:kernels), then the rows the session's kernel changes touch, the previous
# kernels' choices (--split-k off --thin-tiles off) against the new defaults and the PyTorch peer, all in
# this one call, then one Nsight Compute profile of the implicit-GEMM forward kernel (resnet_28: stall
# reasons and throughputs for the next session). Same packing as gpu-bench.sh. Logs go to $OUT.
set -uo pipefail
out=${OUT:-gpu-logs}; mkdir -p "$out"
reps=${REPS:-10}
export DOTNET_ROOT=/tmp/dotnet DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/nvidia/lib64:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu
[ -x /tmp/dotnet/dotnet ] || { mkdir -p /tmp/dotnet && tar -C /tmp/dotnet -xJf .gpu/dotnet-*.tar.xz; }
cli() { /tmp/dotnet/dotnet .gpu/GpuBackprop.Tests/gpubackprop.dll "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$out/nvidia-smi.log"
for f in .gpu/ptx/*.ptx; do
  echo "== $f"; ptxas -arch=sm_90 -v "$f" -o /dev/null 2>&1 | grep -E "registers|spill|stack|error" | head -6
done > "$out/ptxas.log" 2>&1; cat "$out/ptxas.log"
t0=$(date +%s)
GPUBACKPROP_DEVICE=cuda GPUBACKPROP_REQUIRE_DEVICES=cuda:0 GPUBACKPROP_TEST_KERNELS_ON_CPU=0 \
  timeout ${TEST_TIMEOUT:-100} /tmp/dotnet/dotnet .gpu/GpuBackprop.Tests/GpuBackprop.Tests.dll > "$out/tests.log" 2>&1
echo "tests exit $? after $(( $(date +%s) - t0 )) s"; grep -E "Total:" "$out/tests.log" | tail -1
grep "\[FAIL\]" "$out/tests.log" | head -20

b="$out/bench.jsonl"; : > "$b"
tag() { sed "s/^{/{\"variant\":\"$1\",/"; }
bench() { local v=$1; shift; cli bench --device cuda --json --reps "$reps" --shapes "${shapes:-bench/shapes.json}" "$@" | tag "$v" >> "$b"; }
peer() { local v=$1; shift; python3 bench/torch_peer.py --device cuda --reps "$reps" --shapes "${shapes:-bench/shapes.json}" "$@" | tag "$v" >> "$b"; }
t0=$(date +%s)
for only in conv gemm train; do
  bench before --only $only --split-k off --thin-tiles off
  bench auto --only $only
  peer torch --only $only
done
shapes=bench/resnet14-layers.json
bench before --split-k off --thin-tiles off
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
cols = ["before", "auto", "torch"]
print(f"{'row (ms)':26}" + "".join(f"{c:>12}" for c in cols) + f"{'auto/torch':>11}{'before/torch':>13}")
for name, d in rows.items():
    cells = "".join(f"{d[c]:12.4f}" if c in d else f"{'':>12}" for c in cols)
    sp = f"{d['torch'] / d['auto']:11.2f}" if "auto" in d and "torch" in d else f"{'':>11}"
    sb = f"{d['torch'] / d['before']:13.2f}" if "before" in d and "torch" in d else ""
    print(f"{name:26}" + cells + sp + sb)
PY
# One profile of the gathered forward kernel (resnet_28: 196 tiles of 128x128, K = 1152).
timeout ${NCU_TIMEOUT:-90} ncu --clock-control none --section SpeedOfLight --section Occupancy --section WarpStateStats \
  --section SchedulerStats --section MemoryWorkloadAnalysis -k regex:Pipelined --launch-skip 5 --launch-count 1 \
  /tmp/dotnet/dotnet .gpu/GpuBackprop.Tests/gpubackprop.dll bench --device cuda --only conv.resnet_28.fwd --reps 1 > "$out/ncu.log" 2>&1
echo "ncu exit $?"; grep -E "Duration|Throughput|Stall|Warp Cycles|Issued|Occupancy|Registers|Eligible|No Eligible|L1/TEX Hit|L2 Hit" "$out/ncu.log" | head -40
