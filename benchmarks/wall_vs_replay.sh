#!/usr/bin/env bash
# Issue 4's wall-time target (lifelong at most 2x replay's wall time), measured alone: replay
# and lifelong, one job at a time, on the five streams of agent_vs_baselines.sh with the same
# settings (test split, seeds 0,1,2, --memory-size 500, split-omniglot 10 epochs). Run it on
# an otherwise idle machine: agent_vs_baselines.sh runs two jobs side by side, and the other
# job's load moves each agent's time by up to about 20%. About 10 minutes on 2 CPU cores.
#
#   bash benchmarks/wall_vs_replay.sh [OUT]        # OUT defaults to runs/wall_vs_replay
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
OUT=${1:-runs/wall_vs_replay}
MNIST=${MNIST_ROOT:-../shared/data/mnist}
OMNIGLOT=${OMNIGLOT_ROOT:-../shared/data/omniglot}
RESULTS=benchmarks/results/wall_vs_replay
mkdir -p "$RESULTS"
for spec in "split-mnist $MNIST 1" "rotated-mnist $MNIST 1" "permuted-mnist $MNIST 1" \
            "recurring-rotated-mnist $MNIST 1" "split-omniglot $OMNIGLOT 10"; do
  read -r stream root epochs <<< "$spec"
  .venv/bin/python run_stream.py --stream "$stream" --data-root "$root" \
    --agents replay,lifelong --epochs "$epochs" --seeds 0,1,2 --out "$OUT/$stream" --quiet
  .venv/bin/python benchmarks/merge_results.py "$OUT/$stream" --out "$RESULTS/$stream.md"
done
