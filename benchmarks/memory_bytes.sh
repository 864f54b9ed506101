#!/usr/bin/env bash
# Regenerates issue 12's evidence (memory counted in bytes) in benchmarks/results/memory_bytes/:
#   1. validation.md: how lifelong keeps its samples under a byte budget (codec x policy), on
#      held-out training data, which chose LifelongConfig.bytes_codec and memory_policy;
#   2. <stream>__bytes.md and <stream>__samples.md: replay, der, replay-coded and lifelong on
#      GEM-protocol rotated and permuted MNIST, test split, seeds 0,1,2, at --memory-bytes 627200
#      (what 200 float32 MNIST samples occupy) and at --memory-size 200.
# About 10 minutes on 2 CPU cores.
#
#   bash benchmarks/memory_bytes.sh [OUT]        # OUT defaults to runs/memory_bytes
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
OUT=${1:-runs/memory_bytes}
MNIST=${MNIST_ROOT:-../shared/data/mnist}
BUDGET=627200
AGENTS=replay,der,replay-coded,lifelong
RESULTS=benchmarks/results/memory_bytes
mkdir -p "$RESULTS"
for stream in rotated-mnist permuted-mnist; do
  .venv/bin/python benchmarks/memory_bytes_variants.py --stream "$stream" --data-root "$MNIST" \
    --memory-bytes "$BUDGET" --validation-fraction 0.2 --seeds 0,1,2 \
    --out "$OUT/${stream}__validation" --quiet
  .venv/bin/python benchmarks/merge_results.py "$OUT/${stream}__validation" \
    --out "$RESULTS/${stream}__validation.md"
  .venv/bin/python run_stream.py --stream "$stream" --data-root "$MNIST" --agents "$AGENTS" \
    --memory-bytes "$BUDGET" --seeds 0,1,2 --out "$OUT/${stream}__bytes" --quiet
  .venv/bin/python benchmarks/merge_results.py "$OUT/${stream}__bytes" \
    --out "$RESULTS/${stream}__bytes.md"
  .venv/bin/python run_stream.py --stream "$stream" --data-root "$MNIST" --agents "$AGENTS" \
    --memory-size 200 --seeds 0,1,2 --out "$OUT/${stream}__samples" --quiet
  .venv/bin/python benchmarks/merge_results.py "$OUT/${stream}__samples" \
    --out "$RESULTS/${stream}__samples.md"
done
.venv/bin/python benchmarks/memory_bytes_table.py "$RESULTS" --out "$RESULTS/summary.md"
