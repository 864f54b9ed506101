"""Task streams: the contract, the registry and the built-in streams.

Importing this package registers the built-in streams (``streams.builtin``); their
loaders live in ``streams.data`` and their pure helpers in ``streams.transforms``.
``tensor_stream`` turns per-task tensors into a ``TaskStream`` for a new stream.
"""

from streams import builtin as _builtin  # registers the built-in streams
from streams import omniglot_switching as _omniglot_switching  # registers omniglot-switching
from streams.base import Scenario, StreamError, StreamFactory, StreamSpec, TaskStream
from streams.registry import (
    ENTRY_POINT_GROUP,
    UnknownStreamError,
    available_streams,
    make_stream,
    register_stream,
    resolve_stream,
)
from streams.tensors import TaskData, attach_tensors, dataset_tensors, tensor_stream
from streams.transforms import recurring_schedule
from streams.validation import with_validation_split

__all__ = [
    "ENTRY_POINT_GROUP",
    "Scenario",
    "StreamError",
    "StreamFactory",
    "StreamSpec",
    "TaskData",
    "TaskStream",
    "UnknownStreamError",
    "attach_tensors",
    "available_streams",
    "dataset_tensors",
    "make_stream",
    "recurring_schedule",
    "register_stream",
    "resolve_stream",
    "tensor_stream",
    "with_validation_split",
]

del _builtin, _omniglot_switching
