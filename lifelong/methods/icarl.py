"""``icarl``: iCaRL, Avalanche's ``ICaRL`` (class-incremental streams only).

The run's network is split into its feature trunk and its linear classifier. Training uses
iCaRL's loss (binary cross-entropy on the new classes, distillation from the previous
network on the old ones) over the experience's data and the stored exemplars; prediction is
the nearest mean of exemplars in feature space. Exemplars are chosen by herding, and the
memory is one fixed total shared by the classes seen so far.
"""

from __future__ import annotations

from typing import Any

import torch
from avalanche.training.losses import ICaRLLossPlugin
from avalanche.training.supervised import ICaRL
from avalanche.training.supervised.icarl import _ICaRLPlugin
from avalanche.training.templates import SupervisedTemplate

from lifelong.agents import AgentContext, register_agent
from lifelong.budget import FLOAT32_BYTES, sample_bytes, tensor_bytes
from lifelong.methods.avalanche_fixes import ICaRLPluginOwnClasses, NCMClassifierBeforeMeans
from lifelong.methods.common import common_arguments, memory_size, parameter_bytes
from streams import Scenario

__all__ = ["ICaRLStrategy"]


class ICaRLStrategy(ICaRL):
    """Avalanche's ``ICaRL``, with its plugin replaced, put first, and its memory counted.

    Its plugin (``ICaRLPluginOwnClasses``: streams built here, within the budget) builds the
    exemplar sets and the class means at the end of each experience; it runs before the
    run's own plugins so the evaluation and the byte check that follow see this
    experience's means and exemplars, not the previous ones. Before the first means exist
    the linear classifier answers (``NCMClassifierBeforeMeans``).
    """

    plugins: list[Any]

    def __init__(self, *, facts_sample_bytes: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.model.eval_classifier = NCMClassifierBeforeMeans(kwargs["classifier"])
        self._sample_bytes = facts_sample_bytes
        plugins = list(self.plugins)
        self._icarl = ICaRLPluginOwnClasses(kwargs["memory_size"], None, fixed_memory=True)
        self._loss = next(p for p in plugins if isinstance(p, ICaRLLossPlugin))
        others = [p for p in plugins if not isinstance(p, _ICaRLPlugin) and p is not self._loss]
        self.plugins = [self._icarl, self._loss, *others]

    def stored_samples(self) -> int:
        """Exemplars held now, all classes together."""
        return sum(len(x) for x in self._icarl.x_memory)

    def memory_bytes_by_kind(self) -> dict[str, int]:
        """Exemplars as float32 samples; class means and the previous network as records."""
        means = tensor_bytes(self._icarl.class_means.values()) if self._icarl.class_means else 0
        old = getattr(self._loss, "old_model", None)
        previous = tensor_bytes(old.parameters()) if old is not None else 0
        return {
            "samples": self.stored_samples() * self._sample_bytes,
            "records": means + previous,
        }


@register_agent(
    "icarl",
    description="iCaRL (Rebuffi et al. 2017): herding exemplars, distillation, nearest mean.",
    scenarios=frozenset({Scenario.CLASS_INCREMENTAL}),
    uses_memory=True,
)
def icarl(context: AgentContext) -> SupervisedTemplate:
    """Learn features with distillation and exemplar replay; classify by the nearest mean.

    iCaRL has no setting of its own here: it trains at the run's SGD settings, which are
    Mammoth's best for ``icarl`` on Split-MNIST at buffers 200, 500 and 5120 (lr 0.1, batch
    10, one epoch, no weight decay; aimagelab/mammoth ``utils/best_args.py``), and its memory
    is the paper's fixed total K = ``memory_size``, split among the classes seen.

    References:
        Rebuffi, Kolesnikov, Sperl & Lampert, "iCaRL: Incremental Classifier and
        Representation Learning", CVPR 2017.
    """
    net = context.model
    features, classifier = getattr(net, "features", None), getattr(net, "classifier", None)
    if not isinstance(features, torch.nn.Module) or not isinstance(classifier, torch.nn.Module):
        raise ValueError(
            f"icarl needs a network with .features and .classifier, got {type(net).__name__}; "
            "use the run's built-in MLP"
        )
    # Beside the exemplars: a copy of the previous network and one mean per class.
    embedding = classifier.in_features if isinstance(classifier, torch.nn.Linear) else 0
    fixed = parameter_bytes(context) + context.stream.n_classes * embedding * FLOAT32_BYTES
    size = memory_size("icarl", context, fixed=fixed)
    common = common_arguments(context)
    del common["model"], common["criterion"]
    return ICaRLStrategy(
        facts_sample_bytes=sample_bytes(context.stream),
        feature_extractor=features,
        classifier=classifier,
        memory_size=size,
        buffer_transform=None,
        fixed_memory=True,
        **common,
    )
