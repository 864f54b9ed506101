#!/usr/bin/env bash
# Issue 13's task-sequence targets on the test split: replay, der, lifelong and lifelong
# without its slow weights (ll-no-slow, the agent before them) at --memory-size 200, seeds
# 0,1,2, on the five streams of issue 4 (benchmarks/issue4_streams.sh), one job at a time so
# that wall times compare. Tables in benchmarks/results/sequence_memory200/. About 15 minutes
# on 2 CPU cores. Every setting was chosen on held-out training data before this ran.
#
#   bash benchmarks/sequence_memory200.sh [OUT]      # OUT defaults to runs/sequence_memory200
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
OUT=${1:-runs/sequence_memory200}
source benchmarks/issue4_streams.sh
RESULTS=benchmarks/results/sequence_memory200
mkdir -p "$RESULTS"
for spec in "${ISSUE4_STREAMS[@]}"; do
  read -r stream root epochs <<< "$spec"
  .venv/bin/python run_stream.py --stream "$stream" --data-root "$root" --agents replay,der \
    --epochs "$epochs" --memory-size 200 --seeds 0,1,2 --out "$OUT/${stream}__baselines" --quiet
  .venv/bin/python benchmarks/agent_ablation.py --variants ll-no-slow --stream "$stream" \
    --data-root "$root" --epochs "$epochs" --memory-size 200 --seeds 0,1,2 \
    --out "$OUT/${stream}__lifelong" --quiet
  .venv/bin/python benchmarks/merge_results.py "$OUT/${stream}__baselines" \
    "$OUT/${stream}__lifelong" --out "$RESULTS/$stream.md"
done
