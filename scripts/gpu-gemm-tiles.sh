#!/usr/bin/env bash
# On a lent GPU machine (CLI packed into .gpu/): the GEMM-heavy rows with each GPU tile variant forced,
# to check the automatic choice (in the full bench run) against measurements.
set -uo pipefail
out=${OUT:-gpu-logs}; mkdir -p "$out"
for tiles in 64 128; do
  for row in gemm. conv.resnet_28 conv.cnn_c2 train.cnn2; do
    bash .gpu/run GpuBackprop.Cli bench --device cuda --gemm-tiles "$tiles" --json --reps 10 --only "$row" --shapes bench/shapes.json | grep '"name"' | sed "s/^/{\"tiles\":\"$tiles\",\"row\":/; s/\$/}/"
  done
done 2>&1 | tee "$out/gemm-tiles.jsonl"
