#!/usr/bin/env bash
# Issue 10's `make run` timing: the README's main job from fresh clones of two commits, back
# to back, with this checkout's .venv (so only the code differs). Run it on an otherwise idle
# machine; this one's timings move by 10-20% between runs.
#
#   bash benchmarks/make_run_timing.sh [BEFORE] [AFTER] [REPEATS]
#       BEFORE defaults to edb7faf (the harness before the tensor evaluator), AFTER to HEAD.
#
# Each commit runs the main job as its own Makefile wrote it (`--executor process` from
# 33c72ca on). Prints one line per run; about 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:-edb7faf}
AFTER=${2:-HEAD}
REPEATS=${3:-2}
PYTHON=$PWD/.venv/bin/python
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for name in before after; do
  rev=$BEFORE; [ "$name" = after ] && rev=$AFTER
  git clone -q "$PWD" "$WORK/$name"
  git -C "$WORK/$name" checkout -q "$(git rev-parse "$rev")"
done
main_job() {  # the `run` target's flags, read from that commit's Makefile
  sed -n '/^run:/,/^$/p' "$WORK/$1/Makefile" | grep -v '^run:' | tr -d '\\\n\t' \
    | sed 's/^ *\$(BIN)\/python run_stream.py//'
}
for repeat in $(seq "$REPEATS"); do
  for name in before after; do
    flags=$(main_job "$name")
    # A folder with finished jobs would be resumed, not rerun.
    rm -rf "$WORK/$name/runs"
    start=$(date +%s.%N)
    (cd "$WORK/$name" && eval "$PYTHON" run_stream.py $flags --quiet > /dev/null)
    end=$(date +%s.%N)
    printf '%s (%s) run %s: %.1f s\n' "$name" "$(git -C "$WORK/$name" rev-parse --short HEAD)" \
      "$repeat" "$(echo "$end - $start" | bc)"
  done
done
