"""Is ``icarl``'s low Split-MNIST accuracy ours or Avalanche's? Both on the same benchmark.

``lifelong.methods.icarl`` replaces Avalanche 0.6's iCaRL plugin, which needs a classic
Avalanche benchmark (``n_classes_per_exp``, ``classes_order``) that this project's streams do
not have. This script rebuilds the project's split-MNIST (test split) as such a benchmark with
``nc_benchmark`` (same images, same class order) and trains Avalanche's unmodified ``ICaRL``
and the project's ``icarl`` on it at memory 200, seeds 0, 1, 2, printing ACC (the mean of
the last row of R) for each:

    .venv/bin/python benchmarks/icarl_check.py --data-root ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch
from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark
from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
from avalanche.training.supervised import ICaRL

import lifelong  # noqa: F401  (registers the agents)
from lifelong.agents import AgentContext, StreamFacts, make_agent
from lifelong.config import TrainConfig
from lifelong.evaluation import accuracy_matrix_from_evaluator, make_evaluator
from lifelong.models import build_model
from streams import Scenario, StreamSpec, dataset_tensors, make_stream

N_TASKS = 5


def classic_split_mnist(data_root: Path) -> tuple[object, tuple[int, ...]]:
    """The project's split-MNIST as an ``nc_benchmark``, and its input shape."""
    stream = make_stream("split-mnist", StreamSpec(data_root=data_root))

    def joined(experiences: object) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*(dataset_tensors(e.dataset) for e in experiences), strict=True)
        return torch.cat(xs), torch.cat(ys)

    (x_train, y_train), (x_test, y_test) = (
        joined(stream.benchmark.train_stream),
        joined(stream.benchmark.test_stream),
    )
    order = [
        int(c) for e in stream.benchmark.train_stream for c in sorted(e.classes_in_this_experience)
    ]

    def dataset(x: torch.Tensor, y: torch.Tensor) -> object:
        return _make_taskaware_tensor_classification_dataset(
            x, y, task_labels=0, targets=y.tolist()
        )

    benchmark = nc_benchmark(
        dataset(x_train, y_train),
        dataset(x_test, y_test),
        n_experiences=N_TASKS,
        task_labels=False,
        fixed_class_order=order,
    )
    return benchmark, tuple(x_train.shape[1:])


def acc(which: str, seed: int, data_root: Path) -> float:
    """ACC (%) of one implementation at one seed."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    benchmark, shape = classic_split_mnist(data_root)
    train = TrainConfig(memory_size=200)
    model = build_model(Scenario.CLASS_INCREMENTAL, shape, 10, train.hidden)
    evaluator = make_evaluator(ram_interval_s=None)
    if which == "avalanche":
        strategy = ICaRL(
            feature_extractor=model.features,
            classifier=model.classifier,
            optimizer=torch.optim.SGD(model.parameters(), lr=train.lr),
            memory_size=train.memory_size,
            buffer_transform=None,
            fixed_memory=True,
            train_mb_size=train.batch_size,
            train_epochs=train.epochs,
            eval_mb_size=train.eval_batch_size,
            evaluator=evaluator,
            eval_every=0,
        )
    else:
        facts = StreamFacts(Scenario.CLASS_INCREMENTAL, N_TASKS, 10, shape)
        context = AgentContext(
            model=model,
            train=train,
            stream=facts,
            device=torch.device("cpu"),
            evaluator=evaluator,
            plugins=(),
            seed=seed,
        )
        strategy = make_agent("icarl", context)
    strategy.train(benchmark.train_stream, eval_streams=[benchmark.test_stream])
    matrix = accuracy_matrix_from_evaluator(evaluator, N_TASKS)
    return 100 * float(matrix[-1].mean())


def main() -> None:
    """Print ACC per seed and the mean for both implementations."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data/mnist"))
    args = parser.parse_args()
    for which in ("avalanche", "lifelong"):
        values = [acc(which, seed, args.data_root) for seed in (0, 1, 2)]
        cells = " ".join(f"{v:.1f}" for v in values)
        print(f"{which:9s} seeds 0,1,2: {cells}  mean {np.mean(values):.1f}")


if __name__ == "__main__":
    main()
