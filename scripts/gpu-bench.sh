#!/usr/bin/env bash
# On a lent GPU machine, after ../shared/gpu/pack packed the test project into .gpu/ (the CLI,
# gpubackprop.dll, is published inside it) and the PTX of the GEMM kernels was written to .gpu/ptx
# (GPUBACKPROP_PTX_OUT, PtxTests): ptxas's register/spill report, the test suite on CUDA, verify on CUDA,
# our bench with split K off and on, the implicit input gradient forced, TF32 and the PyTorch peer with and without
# TF32, all on the same GPU in one call. Logs and JSON lines go to $OUT; a table is printed last.
set -uo pipefail
source "$(dirname "$0")/gpu-common.sh"
card_and_ptxas
# The whole suite on CUDA first (2026-11-26, H100: 794 tests in 65 s without cpu:kernels).
run_tests "${TEST_TIMEOUT:-170}"
grep -E "Tf32|tanh" "$out/tests.log" | head -5
# (timeout runs programs, not shell functions: the CLI is named in full here.)
timeout 60 /tmp/dotnet/dotnet .gpu/GpuBackprop.Tests/gpubackprop.dll verify --device cuda > "$out/verify.log" 2>&1; echo "verify exit $?"
tail -4 "$out/verify.log"

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
table "split-off implicit auto tf32 torch torch-tf32" "auto:torch tf32:torch-tf32"
