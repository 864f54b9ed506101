#!/usr/bin/env bash
# Choosing the lifelong agent's task-switching settings without the test streams: the
# validation streams of benchmarks/results/task_switching/README.md, built from seed 0's
# pre-training alphabets alone (weights 1,0,0; stream seeds 100 and 101, each with a
# ProtoNet encoder pre-trained on those alphabets), never from the new alphabets or the
# digits that the test streams hold; and the same with Latin held out of pre-training and
# met in the stream as a new alphabet (benchmarks/validation_stream.py). Runs lifelong with
# every projection_decay of the grid as a variant of its own, with labels shuffled and fixed
# at p = 0.9, then 20-way 1-shot through every saved agent's adapt on test drawings of the
# pre-training characters (of Latin, on the held-out streams). About 25 minutes on 2 CPU
# cores once the four encoders are cached (about 8 minutes each before).
#
#   bash benchmarks/switching_validation.sh [OUT]   # OUT defaults to runs/switching_validation
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/switching_validation}
GRID=(0 0.0003 0.001 0.003 0.01 0.03 0.1)
variants=()
for decay in "${GRID[@]}"; do
  variants+=(--agent-variant "decay-$decay=lifelong" --agent-option "decay-$decay.projection_decay=$decay")
done
agents=$(printf 'decay-%s,' "${GRID[@]}")
PRETRAINING_ONLY=(--stream omniglot-switching --stream-option weights=1,0,0
  --stream-option pretrain_alphabets=Early_Aramaic+Korean+Latin)
HELD_OUT=(--stream benchmarks/validation_stream.py:held_out_alphabet)
for stream in pretraining_only held_out; do
  if [[ $stream == pretraining_only ]]; then spec=("${PRETRAINING_ONLY[@]}"); prefix=""
  else spec=("${HELD_OUT[@]}"); prefix="held_out_"; fi
  for labels in shuffled fixed; do
    for seed in 100 101; do
      .venv/bin/python run_stream.py "${spec[@]}" --data-root ../shared/data/omniglot \
        --stream-option labels=$labels --stream-option p=0.9 \
        --agents "${agents%,}" "${variants[@]}" --seeds $seed --threads 1 \
        --out "$OUT/${prefix}${labels}_p0.9_seed$seed" --quiet &
    done
    wait
  done
done
RESULTS=benchmarks/results/task_switching_validation
for labels in shuffled fixed; do
  .venv/bin/python benchmarks/adapt_after_stream.py --runs "$OUT/${labels}_p0.9_seed100" \
    "$OUT/${labels}_p0.9_seed101" --ways 20 --episodes 100 --characters pretrain \
    --out "$RESULTS/adapt_$labels" > /dev/null &
  .venv/bin/python benchmarks/adapt_after_stream.py --runs "$OUT/held_out_${labels}_p0.9_seed100" \
    "$OUT/held_out_${labels}_p0.9_seed101" --ways 20 --episodes 100 --alphabets Latin \
    --out "$RESULTS/adapt_held_out_$labels" > /dev/null &
  wait
done
.venv/bin/python benchmarks/switching_validation_table.py "$OUT"/*_p0.9_seed* \
  --out "$RESULTS/summary.md"
