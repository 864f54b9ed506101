#!/usr/bin/env bash
# Variants of the lifelong agent's task-switching settings, judged without the test streams:
# both validation streams of benchmarks/validation_stream.py (held_out_and_negated, and the
# loose one whose held-out alphabet fragments into many records), labels fixed and shuffled,
# p 0.9 and 0.98, stream seeds 100 and 101: 16 runs, each of the default agent (`off`) and
# every variant given. Two runs at a time, one thread each (about 10 minutes for two
# variants); then one table of OCA, records made and hard batches kept per run.
#
#   bash benchmarks/keep_validation.sh OUT TABLE NAME=FIELD=VALUE[,FIELD=VALUE...] ...
#
# SEEDS="102 103" runs other stream seeds (fresh validation streams, same alphabets);
# STREAMS="few_negated" other streams of validation_stream.py.
#
# It was written for keeping hard batches in their task. Its first use (2026-12-06) tried
# two fields of a patch that was then reverted (benchmarks/results/block_validation/README.md,
# "Keeping that resumes"):
#   bash benchmarks/keep_validation.sh runs/resume_keep_validation \
#     benchmarks/results/block_validation/resume_keep/summary.md \
#     resume=resume_keeping=true resume-early3=resume_keeping=true,early_keep_fits=3
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$1
TABLE=$2
shift 2
agents=off
variants=(--agent-variant off=lifelong)
for spec in "$@"; do
  name=${spec%%=*}
  agents+=",$name"
  variants+=(--agent-variant "$name=lifelong")
  IFS=, read -r -a settings <<< "${spec#*=}"
  for setting in "${settings[@]}"; do
    variants+=(--agent-option "$name.$setting")
  done
done
for stream in ${STREAMS:-held_out_and_negated loose_held_out_and_negated}; do
  for setting in fixed_0.9 fixed_0.98 shuffled_0.9 shuffled_0.98; do
    labels=${setting%_*}; p=${setting#*_}
    for seed in ${SEEDS:-100 101}; do
      .venv/bin/python run_stream.py --stream "benchmarks/validation_stream.py:$stream" \
        --data-root ../shared/data/omniglot --stream-option labels=$labels \
        --stream-option p=$p --agents "$agents" "${variants[@]}" --seeds $seed --threads 1 \
        --out "$OUT/$stream/${labels}_p${p}_seed$seed" --quiet &
    done
    wait
  done
done
.venv/bin/python benchmarks/keep_validation_table.py "$OUT" --out "$TABLE"
