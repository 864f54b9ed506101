"""Trained task-switching agents on disk: ``save_agent`` after a run, ``load_agent`` to use one.

A saved agent is a folder (a run writes ``agents/<agent>__seed<s>/``)::

    agent.json     format and version, the learner's class, its settings, the encoder's
                   architecture, the input preprocessing, and every file's sha256
    encoder.pt     the encoder's weights
    state.pt       the learner's own tensors (prototypes, fast weights, meta-parameters)
    task_memory/   the lifelong agent's FAISS task memory (``memory``'s own format)
    samples/       its episodic memory

Loading unpickles nothing: tensors are read with ``torch.load(weights_only=True)``, the rest
is JSON, and each file is checked against its checksum first. The whole folder is written
atomically (``lifelong.io.atomic_folder``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image
from torch import nn

from lifelong.agent.switching import SwitchingLearner
from lifelong.io import atomic_folder
from lifelong.methods.cmaml import CMAMLLearner
from lifelong.methods.finetune import FinetuneLearner
from lifelong.methods.maml import MAMLLearner
from lifelong.methods.online import Predictor
from lifelong.methods.protonet import ProtoNetLearner
from lifelong.pretraining import conv4
from memory.persistence import sha256_of
from streams.data.omniglot import drawing_array

__all__ = [
    "AgentLoadError",
    "Preprocessing",
    "SavableLearner",
    "SavedAgent",
    "load_agent",
    "save_agent",
]

FORMAT = "lifelong-agent"
FORMAT_VERSION = 1
AGENT_FILE = "agent.json"


class AgentLoadError(ValueError):
    """A folder that is not a loadable saved agent: missing, corrupt or of another format."""


class SavableLearner(Protocol):
    """What ``save_agent`` asks of a learner."""

    encoder: nn.Module

    def save_state(self, folder: Path) -> dict[str, Any]:
        """Write the learner's own files to ``folder``; return its JSON-ready settings."""
        ...

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a batch."""
        ...

    def observe(self, x: torch.Tensor, y: torch.Tensor, new_segment: bool | None) -> None:
        """Learn a labelled batch."""
        ...

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor) -> Predictor:
        """A predictor for a support set's labels."""
        ...


_LEARNERS: Mapping[str, Any] = {
    cls.__name__: cls
    for cls in (FinetuneLearner, ProtoNetLearner, SwitchingLearner, MAMLLearner, CMAMLLearner)
}


@dataclass(frozen=True)
class Preprocessing:
    """How an image file becomes the tensor the agent expects (as the stream read its data).

    Attributes:
        image_size: Side of the square image.
        invert: Strokes dark on a light background (Omniglot's files) become 1 on 0.
    """

    image_size: int = 28
    invert: bool = True


@dataclass
class SavedAgent:
    """A loaded agent: its learner, and the preprocessing of the inputs it was trained on.

    Attributes:
        name: The agent's registered name.
        seed: The seed of the run that trained it.
        learner: The learner, ready to ``predict``, ``observe`` and ``adapt``.
        preprocessing: How ``preprocess`` turns an image into an input.
    """

    name: str
    seed: int
    learner: SavableLearner
    preprocessing: Preprocessing

    def preprocess(self, image: Image.Image | str | os.PathLike[str]) -> torch.Tensor:
        """The ``(1, H, W)`` input tensor of a PIL image or an image file."""
        if isinstance(image, Image.Image):
            array = drawing_array(image, self.preprocessing.image_size)
        else:
            with Image.open(image) as opened:
                array = drawing_array(opened, self.preprocessing.image_size)
        tensor = torch.from_numpy(array).unsqueeze(0)
        return 1.0 - tensor if self.preprocessing.invert else tensor

    def adapt(self, support_x: torch.Tensor, support_y: torch.Tensor) -> Predictor:
        """``learner.adapt``: a predictor over the support's labels; the agent is unchanged."""
        return self.learner.adapt(support_x, support_y)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """``learner.predict``."""
        return self.learner.predict(x)


def save_agent(
    learner: SavableLearner,
    folder: str | os.PathLike[str],
    *,
    name: str,
    seed: int,
    encoder_width: int,
    input_shape: tuple[int, ...],
    preprocessing: Preprocessing | None = None,
) -> None:
    """Write a trained learner to ``folder`` atomically (replacing an earlier save).

    Args:
        learner: One of the savable learners (``FinetuneLearner``, ``ProtoNetLearner``,
            ``SwitchingLearner``, ``MAMLLearner``, ``CMAMLLearner``).
        folder: Where the agent goes.
        name: Its registered name.
        seed: The run's seed.
        encoder_width: Channels of its ``conv4`` encoder.
        input_shape: ``(channels, H, W)`` of its inputs.
        preprocessing: How image files become inputs; Omniglot's by default.

    Raises:
        TypeError: If the learner is of a kind that cannot be saved.
    """
    kind = type(learner).__name__
    if kind not in _LEARNERS:
        raise TypeError(f"cannot save a {kind}; savable learners: {', '.join(_LEARNERS)}")
    with atomic_folder(folder) as tmp:
        torch.save(learner.encoder.state_dict(), tmp / "encoder.pt")
        settings = learner.save_state(tmp)
        description = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "agent": name,
            "seed": seed,
            "learner": kind,
            "settings": settings,
            "encoder": {
                "kind": "conv4",
                "in_channels": input_shape[0],
                "width": encoder_width,
                "batch_statistics": _batch_statistics(learner.encoder),
            },
            "input_shape": list(input_shape),
            "preprocessing": vars(preprocessing or Preprocessing()),
            "files": {
                str(path.relative_to(tmp)): sha256_of(path)
                for path in sorted(tmp.rglob("*"))
                if path.is_file()
            },
        }
        (tmp / AGENT_FILE).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")


def load_agent(path: str | os.PathLike[str]) -> SavedAgent:
    """Load an agent that ``save_agent`` (or a task-switching run) wrote.

    Raises:
        AgentLoadError: If ``path`` is not a saved agent, is of another format or version,
            or a file is missing, altered or unreadable. The message names the file.
    """
    folder = Path(path)
    description = _description(folder)
    for name, digest in description["files"].items():
        file = folder / name
        if not file.is_file() or sha256_of(file) != digest:
            raise AgentLoadError(
                f"saved agent {folder} is corrupt: {name} is missing or does not match its "
                "checksum; save the agent again"
            )
    try:
        spec = description["encoder"]
        encoder = conv4(
            spec["in_channels"], spec["width"], batch_statistics=spec.get("batch_statistics", False)
        )
        encoder.load_state_dict(torch.load(folder / "encoder.pt", weights_only=True))
        learner = _LEARNERS[description["learner"]].load_state(
            folder, encoder.eval(), description["settings"]
        )
        preprocessing = Preprocessing(**description["preprocessing"])
    except (KeyError, TypeError, ValueError, RuntimeError, OSError) as error:
        raise AgentLoadError(f"saved agent {folder} cannot be read: {error}") from error
    return SavedAgent(description["agent"], description["seed"], learner, preprocessing)


def _batch_statistics(encoder: nn.Module) -> bool:
    """Whether the encoder's batch norms keep no running statistics (MAML's ``conv4``)."""
    return any(
        isinstance(m, nn.BatchNorm2d) and not m.track_running_stats for m in encoder.modules()
    )


def _description(folder: Path) -> dict[str, Any]:
    file = folder / AGENT_FILE
    if not file.is_file():
        raise AgentLoadError(
            f"{folder} is not a saved agent (no {AGENT_FILE}); pass a folder a task-switching "
            "run wrote, such as <run>/agents/<agent>__seed<s>"
        )
    try:
        description = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AgentLoadError(f"saved agent {folder} is corrupt: {AGENT_FILE}: {error}") from error
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise AgentLoadError(f"{file} is not a {FORMAT} description; pass a saved agent's folder")
    if description.get("format_version") != FORMAT_VERSION:
        raise AgentLoadError(
            f"saved agent {folder} has format version {description.get('format_version')!r}; "
            f"this version of lifelong reads version {FORMAT_VERSION}"
        )
    if description.get("learner") not in _LEARNERS or not isinstance(
        description.get("files"), dict
    ):
        raise AgentLoadError(f"saved agent {folder} is corrupt: {AGENT_FILE} is incomplete")
    return description
