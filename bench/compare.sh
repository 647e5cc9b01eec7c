#!/usr/bin/env bash
# bench/compare.sh BEFORE_BUILD AFTER_BUILD: the CPU benchmarks of two builds
# of this tree (e.g. main before a change, in a git worktree, and after it),
# in one run, each benchmark alternating before/after ROUNDS times (default
# 2) so that a change in machine load hits both. Prints each program's
# output under a "== NAME before|after, round N" header; compare the lines.
# BENCHES="decode ipc" runs a subset.
#   qgemv        one thread, process CPU time (bench/qgemv 11 cpu)
#   quant_layer  GPTQ and RTN of 7B-sized layers
#   decode       tokens/s of the fixture model and a 7B-shaped layer
#   ipc          round trips to each build's own gptqd
set -uo pipefail
before=${1:?usage: bench/compare.sh BEFORE_BUILD AFTER_BUILD [ROUNDS]}
after=${2:?usage: bench/compare.sh BEFORE_BUILD AFTER_BUILD [ROUNDS]}
rounds=${3:-2}
cd "$(dirname "$0")/.."
run() { # name build args...
  local name=$1 build=$2
  shift 2
  case $name in
    qgemv) OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$build/bench/qgemv" 11 cpu ;;
    quant_layer) "$build/bench/quant_layer" ;;
    decode) "$build/bench/decode" models/tiny-llama ;;
    ipc) "$build/bench/ipc" "$build/daemon/gptqd" 2 ;;
  esac
}
for name in ${BENCHES:-qgemv quant_layer decode ipc}; do
  for ((r = 1; r <= rounds; r++)); do
    for side in before after; do
      build=$before
      [ "$side" = after ] && build=$after
      echo "== $name $side, round $r ($build)"
      run "$name" "$build" 2>&1
    done
  done
done
