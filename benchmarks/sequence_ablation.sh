#!/usr/bin/env bash
# The lifelong agent's task memory and learned look-ahead learning rates on task sequences:
# each switched off, on held-out training data (--validation-fraction 0.2), memory 200, seeds
# 0,1,2, four streams; tables in benchmarks/results/sequence_ablation/. About 5 minutes.
#
#   bash benchmarks/sequence_ablation.sh [OUT]        # OUT defaults to runs/seq_ablation
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
OUT=${1:-runs/seq_ablation}
MNIST=${MNIST_ROOT:-../shared/data/mnist}
RESULTS=benchmarks/results/sequence_ablation
mkdir -p "$RESULTS"
for stream in rotated-mnist permuted-mnist recurring-rotated-mnist split-mnist; do
  .venv/bin/python benchmarks/agent_ablation.py \
    --variants ll-no-slow,ll-no-meta,ll-no-retrieval,ll-no-retrieval-replay,ll-no-meta-no-retrieval \
    --stream "$stream" --data-root "$MNIST" --memory-size 200 --validation-fraction 0.2 \
    --seeds 0,1,2 --out "$OUT/$stream" --quiet
  .venv/bin/python benchmarks/merge_results.py "$OUT/$stream" --out "$RESULTS/$stream.md"
done
