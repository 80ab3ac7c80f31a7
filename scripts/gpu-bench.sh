#!/usr/bin/env bash
# On a lent GPU machine, after ../shared/gpu/pack packed the test project and the CLI into .gpu/:
# the test suite on CUDA, verify on every device, then our bench and the PyTorch peer (TF32 off)
# on the same GPU. Logs and JSON lines go to $OUT.
set -uo pipefail
out=${OUT:-gpu-logs}; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$out/nvidia-smi.log"
GPUBACKPROP_DEVICE=cuda bash .gpu/run GpuBackprop.Tests -noColor > "$out/tests.log" 2>&1; echo "tests exit $?"
grep -E "\[FAIL\]|TEST EXECUTION SUMMARY|Total:" "$out/tests.log" | head -20
bash .gpu/run GpuBackprop.Cli verify --device all > "$out/verify.log" 2>&1; echo "verify exit $?"
grep -E "FAIL|cases passed|golden:" "$out/verify.log"
bash .gpu/run GpuBackprop.Cli bench --device cuda --json --shapes bench/shapes.json 2>&1 | tee "$out/bench-ours.jsonl"
python3 bench/torch_peer.py --device cuda --shapes bench/shapes.json 2>&1 | tee "$out/bench-torch.jsonl"
