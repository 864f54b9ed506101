#!/usr/bin/env bash
# Regenerates issue 4's evidence: every baseline, the lifelong agent and its ablations on
# five streams (test split, seeds 0,1,2, --memory-size 500), then one table per stream in
# benchmarks/results/agent_vs_baselines/. About an hour on 2 CPU cores.
#
#   bash benchmarks/agent_vs_baselines.sh [OUT]        # OUT defaults to runs/agent_vs_baselines
#
# Hyperparameters were chosen on held-out training data (benchmarks/agent_search.py and
# benchmarks/agent_ablation.py with --validation-fraction 0.2), never on these test results.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=PASSIVE
OUT=${1:-runs/agent_vs_baselines}
source benchmarks/issue4_streams.sh
BASELINES=naive,replay,der,er-ace,agem,gem,mir,lamaml
VARIANTS=ll-no-lookahead,ll-no-distill,ll-no-replay,ll-two-steps
RESULTS=benchmarks/results/agent_vs_baselines
mkdir -p "$RESULTS"
for spec in "${ISSUE4_STREAMS[@]}"; do
  read -r stream root epochs <<< "$spec"
  agents=$BASELINES
  # The upper bound shows how far from learnable split-omniglot is at all.
  [[ $stream == split-omniglot ]] && agents=$BASELINES,cumulative
  .venv/bin/python run_stream.py --stream "$stream" --data-root "$root" --agents "$agents" \
    --epochs "$epochs" --seeds 0,1,2 --out "$OUT/${stream}__baselines" --quiet
  .venv/bin/python benchmarks/agent_ablation.py --variants "$VARIANTS" --stream "$stream" \
    --data-root "$root" --epochs "$epochs" --seeds 0,1,2 --out "$OUT/${stream}__lifelong" --quiet
  .venv/bin/python benchmarks/merge_results.py "$OUT/${stream}__baselines" \
    "$OUT/${stream}__lifelong" --out "$RESULTS/$stream.md"
done
