# The five test streams of issue 4's evidence, one "name data-root epochs" per entry, shared
# by agent_vs_baselines.sh and wall_vs_replay.sh so that both measure the same protocol.
# Sourced (not run) from the repository root; MNIST_ROOT and OMNIGLOT_ROOT move the data.
MNIST=${MNIST_ROOT:-../shared/data/mnist}
OMNIGLOT=${OMNIGLOT_ROOT:-../shared/data/omniglot}
# split-omniglot gets 10 epochs for every agent: with 15 drawings per character, one epoch
# leaves even the upper bound (cumulative) at chance on held-out training data (1.2% of 136
# classes); 10 epochs reached 34.1% and 20 epochs 32.5% (seed 0, --validation-fraction 0.2).
# shellcheck disable=SC2034  # read by the scripts that source this file
ISSUE4_STREAMS=("split-mnist $MNIST 1" "rotated-mnist $MNIST 1" "permuted-mnist $MNIST 1"
                "recurring-rotated-mnist $MNIST 1" "split-omniglot $OMNIGLOT 10")
