#!/usr/bin/env bash
# The validation runs that `adapt`'s settings are chosen on: the default `lifelong` agent on a
# stream of benchmarks/validation_stream.py (STREAM, default held_out_and_negated: Latin held
# out of pre-training; turned_held_out_and_negated adds Latin turned a quarter turn), labels
# fixed and shuffled, p 0.9 and 0.98, stream seeds 100 and 101: 8 runs, two at a time on one
# thread each, saved agents under OUT (default runs/slow_adapt_validation).
# 18.5 minutes on 2 cores with the pre-training of both seeds, 6.7 once it is cached
# (2026-12-07). Then, for instance:
#
#   bash benchmarks/adapt_validation_runs.sh [OUT] [STREAM] [RUN_STREAM_FLAGS...]
#   python benchmarks/adapt_after_stream.py --runs runs/slow_adapt_validation/* --ways 20 \
#       --episodes 100 --characters stream --learner-setting vote_scale=8
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/slow_adapt_validation}
STREAM=${2:-held_out_and_negated}
shift $(( $# < 2 ? $# : 2 ))  # the rest goes to run_stream.py (--agent-option ...)
for setting in fixed_0.9 fixed_0.98 shuffled_0.9 shuffled_0.98; do
  labels=${setting%_*}; p=${setting#*_}
  for seed in 100 101; do
    .venv/bin/python run_stream.py --stream benchmarks/validation_stream.py:"$STREAM" \
      --data-root ../shared/data/omniglot --stream-option labels="$labels" \
      --stream-option p="$p" --agents lifelong --seeds "$seed" --threads 1 \
      --out "$OUT/${labels}_p${p}_seed$seed" --quiet "$@" &
  done
  wait
done
