#!/usr/bin/env bash
# Issue 11's new baselines beside replay and der at --memory-size 200, test split, seeds
# 0,1,2, on split-MNIST and rotated MNIST; tables in benchmarks/results/new_baselines/.
# MER takes 100 single-sample SGD steps per incoming batch and GDumb retrains for 128 epochs
# after every experience: about 12 minutes on 2 CPU cores.
#
#   bash benchmarks/new_baselines.sh [OUT]        # OUT defaults to runs/new_baselines
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
OUT=${1:-runs/new_baselines}
MNIST=${MNIST_ROOT:-../shared/data/mnist}
RESULTS=benchmarks/results/new_baselines
mkdir -p "$RESULTS"
# icarl is class-incremental only, so it runs on split-MNIST alone.
declare -A AGENTS=(
  [split-mnist]=replay,der,mer,gdumb,icarl,expert-gate
  [rotated-mnist]=replay,der,mer,gdumb,expert-gate
)
for stream in split-mnist rotated-mnist; do
  .venv/bin/python run_stream.py --stream "$stream" --data-root "$MNIST" \
    --agents "${AGENTS[$stream]}" --memory-size 200 --seeds 0,1,2 --out "$OUT/$stream" --quiet
  .venv/bin/python benchmarks/merge_results.py "$OUT/$stream" --out "$RESULTS/$stream.md"
done
