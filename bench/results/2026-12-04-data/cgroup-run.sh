#!/bin/bash
# Runs the CLI inside a memory cgroup of LIMIT bytes; prints peak usage and the kernel's OOM counts.
LIMIT=$1; shift
CG=/sys/fs/cgroup/memory/gbpbig
mkdir -p $CG
echo 0 > $CG/memory.max_usage_in_bytes 2>/dev/null
echo $LIMIT > $CG/memory.limit_in_bytes
echo $$ > $CG/cgroup.procs
/usr/bin/time -v dotnet /work/main/src/Cli/bin/Release/net10.0/gpubackprop.dll "$@" 2> /tmp/big/time.txt
rc=$?
echo "rc=$rc peak_cgroup=$(cat $CG/memory.max_usage_in_bytes) failcnt=$(cat $CG/memory.failcnt) oom=$(grep oom_kill $CG/memory.oom_control)"
grep -E "Maximum resident|Elapsed" /tmp/big/time.txt
