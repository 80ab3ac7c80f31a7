# Sourced by the GPU-machine scripts (gpu-bench.sh, gpu-followup.sh): the packed .NET runtime, the
# environment, the card's name, ptxas's register and spill report of the written PTX, the test suite on
# CUDA without cpu:kernels (its simulated threads dominate a run there), and the bench/peer helpers that
# tag each JSON line with its variant. Sets out, reps and b (the JSON lines file).
out=${OUT:-gpu-logs}; mkdir -p "$out"
reps=${REPS:-10}
export DOTNET_ROOT=/tmp/dotnet DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}:/usr/local/nvidia/lib64:/usr/local/cuda/lib64:/usr/lib/x86_64-linux-gnu
[ -x /tmp/dotnet/dotnet ] || { mkdir -p /tmp/dotnet && tar -C /tmp/dotnet -xJf .gpu/dotnet-*.tar.xz; }
# The CLI (gpubackprop.dll) is published inside the test project's folder (the tests reference it), so
# one packed folder serves both and the carried tree stays under the device tool's 64 MiB.
cli() { /tmp/dotnet/dotnet .gpu/GpuBackprop.Tests/gpubackprop.dll "$@"; }

card_and_ptxas() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$out/nvidia-smi.log"
  for f in .gpu/ptx/*.ptx; do
    echo "== $f"; ptxas -arch=sm_90 -v "$f" -o /dev/null 2>&1 | grep -E "registers|spill|stack|error" | head -6
  done > "$out/ptxas.log" 2>&1; cat "$out/ptxas.log"
}

# run_tests SECONDS: the suite on cuda:0 and cpu, its summary and failures.
run_tests() {
  local t0; t0=$(date +%s)
  GPUBACKPROP_DEVICE=cuda GPUBACKPROP_REQUIRE_DEVICES=cuda:0 GPUBACKPROP_TEST_KERNELS_ON_CPU=0 \
    timeout "$1" /tmp/dotnet/dotnet .gpu/GpuBackprop.Tests/GpuBackprop.Tests.dll > "$out/tests.log" 2>&1
  echo "tests exit $? after $(( $(date +%s) - t0 )) s"; grep -E "Total:" "$out/tests.log" | tail -1
  grep -A3 "\[FAIL\]" "$out/tests.log" | grep -vE "^\s*$" | head -40
}

b="$out/bench.jsonl"; : > "$b"
tag() { sed "s/^{/{\"variant\":\"$1\",/"; }
# bench VARIANT ARGS / peer VARIANT ARGS: one run of our bench or the PyTorch peer on $shapes (default the shared set).
bench() { local v=$1; shift; cli bench --device cuda --json --reps "$reps" --shapes "${shapes:-bench/shapes.json}" "$@" | tag "$v" >> "$b"; }
peer() { local v=$1; shift; python3 bench/torch_peer.py --device cuda --reps "$reps" --shapes "${shapes:-bench/shapes.json}" "$@" | tag "$v" >> "$b"; }

# table "VARIANT ..." "OURS:PEER ..." : each row's milliseconds for the variants and the speedups PEER/OURS.
table() {
  python3 - "$b" "$1" "$2" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    try: r = json.loads(line)
    except Exception: continue
    if "name" in r: rows.setdefault(r["name"], {})[r["variant"]] = r["ms"]
cols, pairs = sys.argv[2].split(), [p.split(":") for p in sys.argv[3].split()]
print(f"{'row (ms)':26}" + "".join(f"{c:>15}" for c in cols) + "".join(f"{p + '/' + o:>20}" for o, p in pairs))
for name, d in rows.items():
    cells = "".join(f"{d[c]:15.4f}" if c in d else f"{'':>15}" for c in cols)
    ratios = "".join(f"{d[p] / d[o]:20.2f}" if o in d and p in d else f"{'':>20}" for o, p in pairs)
    print(f"{name:26}" + cells + ratios)
PY
}
