"""Every place this project works around Avalanche 0.6, in one module.

Each fix was checked on this stack (avalanche-lib 0.6.0; see ../shared/AVALANCHE_NOTES.md):

- ``Quiet*Buffer``: Avalanche's storage policies minus the deprecated ``update`` path, whose
  decorator resets the process's warning filters and prints a ``DeprecationWarning`` on
  every experience. Behaviour is unchanged (``update`` only calls ``post_adapt``).
- ``MIRPluginAllPast``: Avalanche's MIR never replays the task learned last.
- ``SynapticIntelligencePenalty``: Avalanche's SI plugin does nothing on CPU; written from
  the paper.
- ``QuietGDumbPlugin``: the same deprecated path in Avalanche's GDumb plugin.
- ``ICaRLPluginOwnClasses``: Avalanche's iCaRL needs its classic benchmarks and overfills
  its memory.
- ``NCMClassifierBeforeMeans``: iCaRL's classifier cannot answer before its first means.
- ``IgnoreTaskLabels``: ``lamaml_v2`` calls a single-head network with task labels.
- ``quiet_library_warnings``: keeps Avalanche's notices about its own calls off the terminal.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from avalanche.models import NCMClassifier
from avalanche.training.plugins import GDumbPlugin, MIRPlugin
from avalanche.training.storage_policy import (
    ClassBalancedBuffer,
    ExperienceBalancedBuffer,
    ReservoirSamplingBuffer,
)
from avalanche.training.supervised.icarl import _ICaRLPlugin
from avalanche.training.templates.base import PositionalArgumentsDeprecatedWarning
from avalanche.training.utils import cycle
from torch import nn
from torch.utils.data import DataLoader

from streams import dataset_tensors

# --- Quiet buffers: Avalanche's own policies, minus the deprecated ``update`` path. ---------
# ``ExemplarsBuffer.update`` only calls ``post_adapt``; its ``@deprecated`` decorator also
# calls ``warnings.simplefilter("once", DeprecationWarning)``, which overrides every filter a
# user set. Overriding ``update`` keeps the behaviour and drops the side effect.


class QuietExperienceBalancedBuffer(ExperienceBalancedBuffer):
    """Avalanche's ``ExperienceBalancedBuffer``, updated without the deprecated path."""

    def update(self, strategy: Any, **kwargs: Any) -> None:
        """Add the experience just learned (``post_adapt``), as Avalanche's ``update`` does."""
        self.post_adapt(strategy, strategy.experience)


class QuietClassBalancedBuffer(ClassBalancedBuffer):
    """Avalanche's ``ClassBalancedBuffer``, updated without the deprecated path."""

    def update(self, strategy: Any, **kwargs: Any) -> None:
        """Add the experience just learned (``post_adapt``), as Avalanche's ``update`` does."""
        self.post_adapt(strategy, strategy.experience)


class QuietReservoirSamplingBuffer(ReservoirSamplingBuffer):
    """Avalanche's ``ReservoirSamplingBuffer``, updated without the deprecated path."""

    def update(self, strategy: Any, **kwargs: Any) -> None:
        """Add the experience just learned (``post_adapt``), as Avalanche's ``update`` does."""
        self.post_adapt(strategy, strategy.experience)


class MIRPluginAllPast(MIRPlugin):
    """Avalanche's MIR, retrieving from every past experience.

    Avalanche 0.6 builds the replay loader at the end of an experience from the buffer
    minus the classes of the experience's last mini-batch, meant to keep the current task
    out of retrieval as the paper does. At that point the last mini-batch belongs to the
    task just learned, so the most recent past task is never replayed (class-incremental),
    and on domain-incremental streams, where every task has every class, most of the memory
    is never replayed. The buffer is only updated at the end of an experience, so all of it
    is past data: this version retrieves from all of it. It also skips the deprecated
    buffer ``update``.
    """

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Store the experience just learned; replay from the whole buffer from now on."""
        self.storage_policy.post_adapt(strategy, strategy.experience)
        buffer = self.storage_policy.buffer
        if len(buffer) > self.batch_size_mem:
            loader = DataLoader(buffer, batch_size=self.subsample, shuffle=True)
            self.replay_loader = cycle(loader)
        else:
            self.replay_loader = None


class SynapticIntelligencePenalty(SupervisedPlugin):
    """Synaptic Intelligence as a plugin: a quadratic penalty weighted by path integrals.

    While a task is learned, every parameter accumulates ``omega -= g * delta`` over the
    optimiser steps (``g`` the gradient the step used, ``delta`` the change it made). At the
    end of the task its importance grows by ``omega / (Delta**2 + damping)``, ``Delta`` being
    its total change over the task, and the loss of later tasks adds
    ``strength * sum(importance * (theta - theta_end_of_previous_task)**2)``.

    Written here because Avalanche 0.6's ``SynapticIntelligencePlugin`` does nothing on CPU:
    it stores reference weights with ``param.detach().cpu().flatten()``, a view of the live
    parameter when the parameter is already on the CPU, so every recorded step is zero and
    the importances and the penalty stay zero (verified: it reproduces ``naive`` exactly at
    any lambda). It also clips importances at 1e-3 and halves the penalty, which Zenke et
    al. do not.

    Args:
        strength: The penalty weight ``c``.
        damping: The damping ``xi`` that keeps the importance finite for parameters that
            barely moved.

    References:
        Zenke, Poole & Ganguli, "Continual Learning Through Synaptic Intelligence", ICML 2017.
    """

    def __init__(self, strength: float, damping: float):
        super().__init__()
        self.strength = strength
        self.damping = damping
        self.importance: dict[str, torch.Tensor] = {}
        """Summed importance of each parameter over the finished tasks."""
        self.anchor: dict[str, torch.Tensor] = {}
        """Each parameter's value at the end of the previous task."""
        self._omega: dict[str, torch.Tensor] = {}
        self._task_start: dict[str, torch.Tensor] = {}
        self._step_start: dict[str, torch.Tensor] = {}
        self._step_grad: dict[str, torch.Tensor] = {}

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Start the task's path integrals from the current weights."""
        for name, param in strategy.model.named_parameters():
            self._task_start[name] = param.detach().clone()
            self._omega[name] = torch.zeros_like(param)
            if name in self.importance:
                # A head that grew keeps its importances; the new units have none.
                self.importance[name] = _grown(self.importance[name], param)
                self.anchor[name] = _grown(self.anchor[name], param)

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        """Add the penalty for moving away from the previous task's weights."""
        if not self.importance:
            return
        penalty = sum(
            (self.importance[name] * (param - self.anchor[name]).pow(2)).sum()
            for name, param in strategy.model.named_parameters()
            if name in self.importance
        )
        strategy.loss += self.strength * penalty

    def before_update(self, strategy: Any, **kwargs: Any) -> None:
        """Remember the weights and the gradient of the step about to be taken."""
        for name, param in strategy.model.named_parameters():
            if param.grad is not None:
                self._step_start[name] = param.detach().clone()
                self._step_grad[name] = param.grad.detach().clone()

    def after_update(self, strategy: Any, **kwargs: Any) -> None:
        """Add the step's contribution, gradient times change, to the path integrals."""
        params = dict(strategy.model.named_parameters())
        for name, grad in self._step_grad.items():
            self._omega[name] -= grad * (params[name].detach() - self._step_start[name])
        self._step_start.clear()
        self._step_grad.clear()

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Turn the task's path integrals into importances; anchor at the new weights."""
        for name, param in strategy.model.named_parameters():
            delta = param.detach() - self._task_start[name]
            gained = self._omega[name] / (delta.pow(2) + self.damping)
            previous = self.importance.get(name)
            self.importance[name] = gained if previous is None else previous + gained
            self.anchor[name] = param.detach().clone()


def _grown(values: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``values`` zero-padded to ``param``'s shape (dynamic heads only ever grow)."""
    if values.shape == param.shape:
        return values
    padded = torch.zeros_like(param)
    padded[tuple(slice(0, n) for n in values.shape)] = values
    return padded


_AVALANCHE_MODULES = r"avalanche(\.|$)"


@contextlib.contextmanager
def quiet_library_warnings() -> Iterator[None]:
    """Keep Avalanche's deprecation notices out of the terminal for the duration of a run.

    Hides ``DeprecationWarning``, ``PendingDeprecationWarning``, ``FutureWarning`` and
    Avalanche's ``PositionalArgumentsDeprecatedWarning`` when Avalanche's own code raises
    them: notices about Avalanche calling Avalanche, which a user cannot act on. Everything
    else still shows: warnings from torch, numpy or the user's code, ``UserWarning`` and
    ``RuntimeWarning`` from Avalanche, and a deprecation that the user's own code triggers.
    On exit the process's warning filters are restored, which also undoes the filter reset
    Avalanche's ``@deprecated`` decorator performs whenever it fires.

    Example:
        >>> with quiet_library_warnings():
        ...     strategy.train(bm.train_stream, eval_streams=[bm.test_stream])  # doctest: +SKIP
    """
    with warnings.catch_warnings():
        for category in (
            DeprecationWarning,
            PendingDeprecationWarning,
            FutureWarning,
            PositionalArgumentsDeprecatedWarning,
        ):
            warnings.filterwarnings("ignore", category=category, module=_AVALANCHE_MODULES)
        yield


class IgnoreTaskLabels(nn.Module):
    """Calls a single-head network as ``model(x, task_labels)``, ignoring the labels.

    ``lamaml_v2`` calls its model with task labels in its inner loop; a single-head network
    takes only ``x``.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``net(x)``."""
        return self.net(x)


class QuietGDumbPlugin(GDumbPlugin):
    """Avalanche's GDumb, updating its class-balanced memory without the deprecated path.

    Also reports the copy of the initial network it keeps to retrain from, as ``records``.
    """

    def __init__(self, mem_size: int):
        super().__init__(mem_size)
        self.storage_policy = QuietClassBalancedBuffer(max_size=mem_size, adaptive_size=True)

    def after_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        """Add the experience to the memory; train on the memory alone."""
        self.storage_policy.post_adapt(strategy, strategy.experience)
        strategy.adapted_dataset = self.storage_policy.buffer

    def memory_bytes_by_kind(self) -> dict[str, int]:
        """The initial network's copy (the samples are counted from ``storage_policy``)."""
        if self.init_model is None:
            return {}
        return {"records": sum(t.numel() * t.element_size() for t in self.init_model.parameters())}


class NCMClassifierBeforeMeans(NCMClassifier):
    """Avalanche's nearest-class-mean classifier, answering before it has any class mean.

    Avalanche's ``NCMClassifier`` raises until iCaRL computes its first means, at the end of
    the first experience, so the accuracy matrix's first row (the untrained network, which
    forward transfer is measured against) cannot be evaluated. Until then this one returns
    ``fallback``'s logits: the untrained network's own classifier, as every other agent's
    first row is.

    Args:
        fallback: The linear classifier trained beside the means.
        normalize: Passed to ``NCMClassifier``.
    """

    def __init__(self, fallback: nn.Module, normalize: bool = True):
        super().__init__(normalize=normalize)
        self._fallback = [fallback]  # a list, so it is not registered as a submodule twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits by distance to the class means, or ``fallback``'s before there are any."""
        if not self.class_means_dict:
            return self._fallback[0](x)
        return super().forward(x)


def herding_order(features: torch.Tensor, count: int) -> torch.Tensor:
    """Herding, as iCaRL chooses exemplars: ``count`` indices, in the order chosen.

    Features are normalised; the k-th choice minimises ``|mean - (f(x) + chosen sum) / k|``
    over the samples not yet chosen (Rebuffi et al. 2017, algorithm 4), so any prefix of the
    order is itself a herded set: shrinking a class's exemplars keeps their first ones.

    Args:
        features: One row per sample of the class.
        count: How many to choose; at most the number of samples.
    """
    normed = torch.nn.functional.normalize(features, dim=1)
    mean = normed.mean(dim=0)
    running = torch.zeros_like(mean)
    available = torch.ones(len(normed), dtype=torch.bool)
    chosen: list[int] = []
    for k in range(1, min(count, len(normed)) + 1):
        distance = (mean - (running + normed) / k).norm(dim=1)
        distance[~available] = torch.inf
        best = int(distance.argmin())
        chosen.append(best)
        available[best] = False
        running += normed[best]
    return torch.tensor(chosen, dtype=torch.long)


class ICaRLPluginOwnClasses(_ICaRLPlugin):
    """Avalanche's iCaRL plugin, on any class-incremental stream and within its budget.

    Avalanche 0.6's plugin reads each experience's classes from ``experience.benchmark``
    (``n_classes_per_exp``, ``classes_order``), which only its classic benchmarks have: on a
    stream built with ``benchmark_from_datasets`` it raises ``AttributeError``. It also keeps
    ``ceil(memory_size / classes seen)`` exemplars per class, which exceeds the budget
    whenever the division is not exact (200 over 6 classes keeps 204). This version takes the
    classes from ``experience.classes_in_this_experience``, keeps ``memory_size // classes
    seen`` per class, and herds with ``herding_order``; training, distillation and the class
    means are Avalanche's.
    """

    x_memory: list[torch.Tensor]
    y_memory: list[list[int]]

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Note the experience's new classes."""
        classes = sorted(int(c) for c in strategy.experience.classes_in_this_experience)
        self._new_classes = [c for c in classes if c not in self.observed_classes]
        self.observed_classes.extend(self._new_classes)

    def per_class(self) -> int:
        """Exemplars each class seen so far keeps."""
        return self.memory_size // max(len(self.observed_classes), 1)

    def construct_exemplar_set(self, strategy: Any) -> None:
        """Herd each new class's exemplars from the experience's data."""
        x, y = dataset_tensors(strategy.experience.dataset.eval())
        for label in self._new_classes:
            samples = x[y == label].to(strategy.device)
            with torch.no_grad():
                features = strategy.model.feature_extractor(samples)
            order = herding_order(features, self.per_class()).to(samples.device)
            self.x_memory.append(samples[order])
            self.y_memory.append([label] * len(order))

    def reduce_exemplar_set(self, strategy: Any) -> None:
        """Keep the first ``per_class()`` exemplars of each class, in herding order."""
        keep = self.per_class()
        self.x_memory = [x[:keep] for x in self.x_memory]
        self.y_memory = [y[:keep] for y in self.y_memory]

    def compute_class_means(self, strategy: Any) -> None:
        """Avalanche's class means; a class not seen yet keeps a zero mean, as there."""
        # One entry per output from the start: the previous network that distillation keeps
        # is refreshed with load_state_dict, which needs the means' shape never to change.
        for label in range(self.output_size):
            self.class_means.setdefault(
                label, torch.zeros(self.embedding_size, device=strategy.device)
            )
        super().compute_class_means(strategy)
