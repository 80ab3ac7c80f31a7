#!/usr/bin/env bash
# On a lent GPU machine: the training runs of the training issue on CUDA with the full Fashion-MNIST
# (carried xz-compressed in .gpu/fashion). Logs and metrics go to $OUT.
set -uo pipefail
out=${OUT:-gpu-logs}; mkdir -p "$out" /tmp/fm
for f in .gpu/fashion/*.xz; do xz -dc "$f" > "/tmp/fm/$(basename "$f" .xz)"; done
cp .gpu/fashion/*.gz /tmp/fm/
nvidia-smi --query-gpu=name --format=csv,noheader
bash .gpu/run GpuBackprop.Cli train --model lenet5 --epochs 2 --batch 64 --optimizer sgd --lr 0.01 --momentum 0.9 --device cuda --data /tmp/fm --out /tmp/r-lenet5 > "$out/train-lenet5.log" 2>&1
echo "lenet5 exit $?"; grep -E "^epoch [0-9]+/[0-9]+:|device:|data:" "$out/train-lenet5.log"
bash .gpu/run GpuBackprop.Cli train --model cnn2 --epochs 10 --batch 128 --optimizer adam --lr 0.001 --device cuda --data /tmp/fm --out /tmp/r-cnn2 > "$out/train-cnn2.log" 2>&1
echo "cnn2 exit $?"; grep -E "^epoch [0-9]+/[0-9]+:|device:" "$out/train-cnn2.log"
cp /tmp/r-lenet5/metrics.json "$out/lenet5-cuda.metrics.json"; cp /tmp/r-cnn2/metrics.json "$out/cnn2-cuda.metrics.json"
