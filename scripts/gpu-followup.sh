#!/usr/bin/env bash
# A short second call on a lent GPU machine, after scripts/gpu-bench.sh in the same session: the test
# suite on CUDA (without cpu:kernels), then the rows the session's kernel changes touch, the previous
# kernels' choices (--split-k off --thin-tiles off) against the new defaults and the PyTorch peer, all in
# this one call, then one Nsight Compute profile of the implicit-GEMM forward kernel (resnet_28: stall
# reasons and throughputs for the next session). Same packing as gpu-bench.sh. Logs go to $OUT.
set -uo pipefail
source "$(dirname "$0")/gpu-common.sh"
card_and_ptxas
run_tests "${TEST_TIMEOUT:-100}"

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
table "before auto torch" "auto:torch before:torch"
# One profile of the gathered forward kernel (resnet_28: 196 tiles of 128x128, K = 1152).
# (2026-11-26: with -k regex:Pipelined ncu attached and profiled no kernel; the PTX entry is
# Kernel_PipelinedKernel. Without a filter the launches past the warm-up are the conv's GEMM and bias.)
timeout ${NCU_TIMEOUT:-90} ncu --clock-control none --section SpeedOfLight --section Occupancy --section WarpStateStats \
  --section SchedulerStats --section MemoryWorkloadAnalysis --launch-skip 50 --launch-count 3 \
  /tmp/dotnet/dotnet .gpu/GpuBackprop.Tests/gpubackprop.dll bench --device cuda --only conv.resnet_28.fwd --reps 1 > "$out/ncu.log" 2>&1
echo "ncu exit $?"; grep -E "Duration|Throughput|Stall|Warp Cycles|Issued|Occupancy|Registers|Eligible|No Eligible|L1/TEX Hit|L2 Hit" "$out/ncu.log" | head -40
