#!/usr/bin/env bash
# Issue 4's wall-time target (lifelong at most 2x replay's wall time), measured alone: replay
# and lifelong, one job at a time, on the five streams of agent_vs_baselines.sh with the same
# settings (benchmarks/issue4_streams.sh; test split, seeds 0,1,2, --memory-size 500). Run it
# on an otherwise idle machine: another process's load moves each agent's time by up to about
# 20%, and the committed agent_vs_baselines tables were made two streams at a time. About 10
# minutes on 2 CPU cores.
#
#   bash benchmarks/wall_vs_replay.sh [OUT]        # OUT defaults to runs/wall_vs_replay
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
OUT=${1:-runs/wall_vs_replay}
source benchmarks/issue4_streams.sh
RESULTS=benchmarks/results/wall_vs_replay
mkdir -p "$RESULTS"
for spec in "${ISSUE4_STREAMS[@]}"; do
  read -r stream root epochs <<< "$spec"
  .venv/bin/python run_stream.py --stream "$stream" --data-root "$root" \
    --agents replay,lifelong --epochs "$epochs" --seeds 0,1,2 --out "$OUT/$stream" --quiet
  .venv/bin/python benchmarks/merge_results.py "$OUT/$stream" --out "$RESULTS/$stream.md"
done
