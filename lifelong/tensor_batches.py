"""Training mini-batches served from tensors, with Avalanche's own samplers.

Avalanche's training loaders (``MultiDatasetDataLoader`` and its task-balanced and replay
forms) build each mini-batch sample by sample: a ``ConcatDataset`` lookup, the
``AvalancheDataset`` index chain and its data attributes, then a collate. That costs about
20 us a sample, on the order of the model's own forward and backward pass on the streams
this project runs, and it is paid again at every epoch and every replay draw.

``TensorBatches`` reads the loader's data sets once, at the first epoch of an experience,
collates them into one batch of full length, and serves every mini-batch by
indexing those tensors. The samplers and the torch ``DataLoader`` stay Avalanche's, so the
same indices are drawn from the same random generators in the same order, and a batch is
the same tensors, bit for bit: the collate stacks what indexing gathers.

A loader is left as it is where that could change a batch: data sets with a transform,
Avalanche's or the wrapped data set's own (random augmentation would be frozen), loader
worker processes, or a collate whose result is not a list of tensors of one row per
sample.

DER, ER-ACE and MIR draw their replay batches the same way, through a torch ``DataLoader``
over the buffer; ``served_replay`` serves those too, where an experience draws more samples
than the buffer holds.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from typing import Any

import torch
from avalanche.benchmarks.utils import AvalancheDataset
from avalanche.benchmarks.utils.data_loader import (
    MultiDatasetDataLoader,
    _make_data_loader_with_batched_sampler,
)
from avalanche.core import SupervisedPlugin
from avalanche.training.utils import cycle
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

__all__ = ["TensorBatches", "collated_columns", "is_servable", "served_replay"]


class TensorBatches(SupervisedPlugin):
    """Serve the training loader's mini-batches from tensors read once per experience.

    Place it after every plugin that replaces the strategy's loader in
    ``before_training_exp`` (Avalanche's ``ReplayPlugin`` does): it serves the loader it
    finds there. A loader it cannot serve exactly (see :func:`is_servable`) is kept.
    """

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Switch the loaders just made for this experience to tensor-served batches."""
        loader = getattr(strategy, "dataloader", None)
        if isinstance(loader, MultiDatasetDataLoader) and is_servable(loader):
            # The one hook Avalanche offers between its batch sampler and torch's
            # DataLoader: every epoch, ``_get_loader`` hands it that epoch's sampler.
            loader._make_pytorch_loader = _ServedLoaders(
                loader.loader_kwargs, loader._make_pytorch_loader
            )
        epochs = getattr(strategy, "train_epochs", 1)
        iterations = len(loader) * epochs if isinstance(loader, Sized) else 0
        for owner in (strategy, *strategy.plugins):
            replay = getattr(owner, "replay_loader", None)
            served = served_replay(replay, iterations) if replay is not None else None
            if served is not None:
                owner.replay_loader = served


def served_replay(replay: Any, iterations: int) -> Iterator[list[torch.Tensor]] | None:
    """A buffer's replay batches served from tensors, or ``None`` to keep ``replay``.

    DER, ER-ACE and MIR draw replay batches from ``avalanche.training.utils.cycle`` over a
    torch ``DataLoader`` of their buffer, which builds every batch sample by sample. The
    same ``cycle`` over the buffer's collated tensors, with the loader's own batch sampler
    and generator, draws the same indices from the same random numbers.

    Args:
        replay: The owner's ``replay_loader``; only a ``cycle`` not started yet is served.
        iterations: Training iterations of the experience, each drawing one batch at most.
            Reading the buffer into tensors costs a read per stored sample, so a buffer
            larger than the experience's draws is left to sample-by-sample reads (an
            experience of a single iteration, say).
    """
    if not (
        inspect.isgenerator(replay)
        and replay.gi_code is cycle.__code__
        and inspect.getgeneratorstate(replay) == inspect.GEN_CREATED
    ):
        return None
    loader = replay.gi_frame.f_locals["loader"] if replay.gi_frame is not None else None
    if not isinstance(loader, DataLoader) or loader.batch_size is None:
        return None
    buffer = loader.dataset
    if not isinstance(buffer, Sized) or iterations * loader.batch_size <= len(buffer):
        return None
    if not _read_exactly_once([buffer], loader.num_workers):
        return None
    columns = collated_columns([buffer], loader.collate_fn)
    if columns is None:
        return None
    return cycle(
        DataLoader(
            _Columns(columns),
            batch_sampler=loader.batch_sampler,
            collate_fn=_already_collated,
            generator=loader.generator,
        )
    )


def is_servable(loader: MultiDatasetDataLoader) -> bool:
    """Whether tensors read once give exactly the batches ``loader`` would make.

    True when the loader makes its batches in this process (no worker processes) and no
    data set applies a transform, so every read of a sample gives the same tensors.
    """
    return _read_exactly_once(loader.datasets, loader.loader_kwargs.get("num_workers", 0))


def _read_exactly_once(datasets: Sequence[Any], num_workers: int) -> bool:
    """Whether one read of ``datasets`` in this process gives every later read's tensors."""
    return not num_workers and all(_without_transforms(dataset) for dataset in datasets)


def collated_columns(
    datasets: Sequence[Dataset[Any]], collate: Callable[[list[Any]], Any]
) -> list[torch.Tensor] | None:
    """The data sets, concatenated in order, as one collated batch of full length.

    Args:
        datasets: The loader's data sets; the sampler's indices run over their
            concatenation.
        collate: The loader's collate function.

    Returns:
        One tensor per field of a sample (inputs, labels, task labels, ...), row ``i``
        holding sample ``i``; ``None`` when the collate does not give such a list.
    """
    concatenated: ConcatDataset[Any] = ConcatDataset(datasets)
    samples = [concatenated[i] for i in range(len(concatenated))]
    if not samples:
        return None
    batch = collate(samples)
    if not isinstance(batch, list | tuple) or not all(
        isinstance(column, torch.Tensor) and column.ndim >= 1 and len(column) == len(samples)
        for column in batch
    ):
        return None
    return list(batch)


class _Columns(Dataset[Any]):
    """Collated tensors that hand out whole mini-batches (``__getitems__``)."""

    def __init__(self, columns: list[torch.Tensor]) -> None:
        self.columns = columns

    def __len__(self) -> int:
        return len(self.columns[0])

    def __getitem__(self, index: int) -> list[torch.Tensor]:
        return [column[index] for column in self.columns]

    def __getitems__(self, indices: Sequence[int]) -> list[torch.Tensor]:
        rows = torch.as_tensor(indices, dtype=torch.long)
        return [column[rows] for column in self.columns]


class _ServedLoaders:
    """``_make_pytorch_loader`` of one loader, serving its batches from tensors.

    The data sets are read at the loader's first epoch, not when it is made: a strategy
    that trains from its own tensors (``lifelong``) never iterates the loader it is given.
    """

    def __init__(
        self,
        loader_kwargs: dict[str, Any],
        avalanches: Callable[[Sequence[AvalancheDataset], Sampler[list[int]]], Iterable[Any]],
    ) -> None:
        self.loader_kwargs = loader_kwargs
        self.avalanches = avalanches
        self.columns: _Columns | None = None
        self.servable = True

    def __call__(
        self, datasets: Sequence[AvalancheDataset], batch_sampler: Sampler[list[int]]
    ) -> Iterable[Any]:
        if self.servable and self.columns is None:
            columns = collated_columns(datasets, self.loader_kwargs["collate_fn"])
            self.servable = columns is not None
            self.columns = None if columns is None else _Columns(columns)
        if self.columns is None:
            return self.avalanches(datasets, batch_sampler)
        # The DataLoader Avalanche makes, over the columns: iterating it draws its base seed
        # from torch's generator, so the run's random numbers stay the same.
        return _make_data_loader_with_batched_sampler(
            self.columns, batch_sampler, {**self.loader_kwargs, "collate_fn": _already_collated}
        )


def _already_collated(batch: list[torch.Tensor]) -> list[torch.Tensor]:
    return batch


# Where a data set wrapped by Avalanche keeps its own transforms (torchvision's convention).
_LEAF_TRANSFORMS = ("transform", "target_transform", "transforms")


def _without_transforms(node: Any) -> bool:
    """Whether no level of an Avalanche data set applies a transform to its samples."""
    for attribute in ("_transform_groups", "_frozen_transform_groups"):
        groups = getattr(node, attribute, None)
        if groups is not None and any(
            transform is not None for transform in groups.transform_groups.values()
        ):
            return False
    if any(getattr(node, attribute, None) is not None for attribute in _LEAF_TRANSFORMS):
        return False
    inner = getattr(node, "_flat_data", None)
    children = [inner] if inner is not None else getattr(node, "_datasets", [])
    return all(_without_transforms(child) for child in children)
