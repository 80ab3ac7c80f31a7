#!/bin/bash
# Interleaved: ours (new build) vs PyTorch restricted to the same ISA; and AVX-512 new vs old build.
cd /work/main
for round in 1 2; do
  for lane in AVX2 SSE; do
    if [ $lane = AVX2 ]; then DN="DOTNET_EnableAVX512=0"; TE="ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell"; else DN="DOTNET_EnableAVX=0"; TE="ONEDNN_MAX_CPU_ISA=SSE41 OPENBLAS_CORETYPE=Nehalem"; fi
    for row in train.lenet5 train.cnn2 train.resnet14 gemm.sq_1024; do
      ours=$(env $DN /tmp/newcli/gpubackprop bench --device cpu --only $row --reps 5 --json 2>/dev/null | grep '"name"' | python3 -c "import sys,json; print(json.loads(sys.stdin.readline())['ms'])")
      torch=$(env $TE /usr/bin/python3 bench/torch_peer.py --device cpu --threads 2 --only $row --reps 5 2>/dev/null | grep '"name"' | python3 -c "import sys,json; l=sys.stdin.readline(); d=json.loads(l); d=d[0] if isinstance(d,list) else d; print(d['ms'])")
      echo "$round $lane $row ours=$ours torch=$torch"
    done
  done
  for row in train.resnet14 train.lenet5 train.cnn2; do
    old=$(/tmp/oldcli/gpubackprop bench --device cpu --only $row --reps 5 --json 2>/dev/null | grep '"name"' | python3 -c "import sys,json; print(json.loads(sys.stdin.readline())['ms'])")
    new=$(/tmp/newcli/gpubackprop bench --device cpu --only $row --reps 5 --json 2>/dev/null | grep '"name"' | python3 -c "import sys,json; print(json.loads(sys.stdin.readline())['ms'])")
    echo "$round AVX512 $row old=$old new=$new"
  done
done
