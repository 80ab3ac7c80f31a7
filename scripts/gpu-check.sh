#!/usr/bin/env bash
# The GPU check of the core issue, run on a lent GPU machine after ../shared/gpu/pack packed the
# test project and the CLI into .gpu/: the whole test suite on CUDA, then verify and compare on
# every device. Logs go to $OUT (or ./gpu-logs).
set -uo pipefail
out=${OUT:-gpu-logs}; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/nvidia-smi.log"
bash .gpu/run GpuBackprop.Cli devices 2>&1 | tee "$out/devices.log"
GPUBACKPROP_DEVICE=cuda bash .gpu/run GpuBackprop.Tests -noColor 2>&1 > "$out/tests.log"; echo "tests exit $?"
grep -E "Failed|\[FAIL\]|TEST EXECUTION SUMMARY|Total:" "$out/tests.log" | head -40
bash .gpu/run GpuBackprop.Cli verify --device all 2>&1 > "$out/verify.log"; echo "verify exit $?"
grep -E "FAIL|cases passed|golden:" "$out/verify.log"
bash .gpu/run GpuBackprop.Cli compare 2>&1 | tee "$out/compare.log"
