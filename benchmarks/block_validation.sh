#!/usr/bin/env bash
# Choosing the lifelong agent's block settings (task-switching streams) without the test
# streams: benchmarks/validation_stream.py:held_out_and_negated (seed 0's pre-training
# alphabets only: two pre-train the encoder and recur, Latin is held out and comes as a new
# alphabet, and Latin with negated intensities as the out-of-distribution kind; no digit is
# read), labels shuffled and fixed, p = 0.9 and 0.98, stream seeds 100 and 101. Every value
# of the grid of one field runs as a variant of lifelong, beside fast_block off; then 20-way
# 1-shot through every saved agent's adapt on Latin's test drawings. About 15 minutes on 2
# CPU cores once the two encoders are cached.
#
#   bash benchmarks/block_validation.sh [OUT [FIELD GRID NAME RESULTS [FIXED]]]
#
# FIXED: more FIELD=VALUE settings, space-separated, for every variant of the grid (not for
# the head-only one).
#
# Defaults: runs/block_validation, block_lr, "0.01 0.03 0.1 0.3 1", block,
# benchmarks/results/block_validation. The retrieved offsets' share was chosen with
#   bash benchmarks/block_validation.sh runs/offsets_validation retrieved_offsets_share \
#     "0 0.5 1" share benchmarks/results/block_validation/retrieved_offsets
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/block_validation}
FIELD=${2:-block_lr}
read -r -a GRID <<< "${3:-0.01 0.03 0.1 0.3 1}"
NAME=${4:-block}
RESULTS=${5:-benchmarks/results/block_validation}
read -r -a FIXED <<< "${6:-}"
variants=(--agent-variant "head-only=lifelong" --agent-option "head-only.fast_block=false")
for value in "${GRID[@]}"; do
  variants+=(--agent-variant "$NAME-$value=lifelong" --agent-option "$NAME-$value.$FIELD=$value")
  for setting in "${FIXED[@]}"; do
    variants+=(--agent-option "$NAME-$value.$setting")
  done
done
agents="head-only,$(printf "$NAME-%s," "${GRID[@]}")"
for setting in shuffled_0.9 shuffled_0.98 fixed_0.9 fixed_0.98; do
  labels=${setting%_*}; p=${setting#*_}
  for seed in 100 101; do
    .venv/bin/python run_stream.py --stream benchmarks/validation_stream.py:held_out_and_negated \
      --data-root ../shared/data/omniglot --stream-option labels=$labels --stream-option p=$p \
      --agents "${agents%,}" "${variants[@]}" --seeds $seed --threads 1 \
      --out "$OUT/${labels}_p${p}_seed$seed" --quiet &
  done
  wait
done
for setting in shuffled_0.9 shuffled_0.98 fixed_0.9 fixed_0.98; do
  labels=${setting%_*}; p=${setting#*_}
  .venv/bin/python benchmarks/adapt_after_stream.py --runs "$OUT/${labels}_p${p}_seed100" \
    "$OUT/${labels}_p${p}_seed101" --ways 20 --episodes 100 --alphabets Latin \
    --out "$RESULTS/adapt_${labels}_p$p" > /dev/null
done
.venv/bin/python benchmarks/switching_validation_table.py "$OUT"/*_seed* --out "$RESULTS/summary.md"
