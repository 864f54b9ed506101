"""One registry of streams, by name, plus the two ways to reach streams from outside.

A name resolves, in order, to:
1. a stream registered with ``@register_stream`` (the built-ins, and any module a user
   imported before the call);
2. a stream advertised by an installed package in the entry-point group
   ``lifelong.streams`` (``name = "package.module:function"``);
3. a reference ``path/to/file.py:function`` or ``package.module:function`` to a factory.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from streams.base import StreamFactory, StreamSpec, TaskStream
from streams.references import import_reference
from streams.switching import SwitchingStream

ENTRY_POINT_GROUP = "lifelong.streams"


class UnknownStreamError(ValueError):
    """The name is not a registered stream, an entry point, or a ``module:function``."""


@dataclass(frozen=True)
class _Entry:
    factory: StreamFactory
    description: str


_REGISTRY: dict[str, _Entry] = {}


def register_stream(
    name: str, *, description: str | None = None
) -> Callable[[StreamFactory], StreamFactory]:
    """Register a stream factory under ``name``.

    Args:
        name: The name users pass to ``--stream``; lower-case words joined by dashes.
        description: One line for ``--list``; defaults to the docstring's first line.

    Returns:
        A decorator that registers the factory and returns it unchanged.

    Raises:
        ValueError: If ``name`` is already registered.
    """

    def decorator(factory: StreamFactory) -> StreamFactory:
        if name in _REGISTRY:
            raise ValueError(
                f"stream {name!r} is already registered; pick another name for {factory!r}"
            )
        _REGISTRY[name] = _Entry(factory, description or _first_line(factory))
        return factory

    return decorator


def available_streams() -> dict[str, str]:
    """Map every registered and entry-point stream name to its one-line description."""
    names = {name: entry.description for name, entry in _REGISTRY.items()}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        names.setdefault(point.name, f"(entry point {point.value})")
    return dict(sorted(names.items()))


def resolve_stream(name: str) -> StreamFactory:
    """Find the factory a stream name refers to.

    Raises:
        UnknownStreamError: If nothing matches; the message lists the valid names.
    """
    if name in _REGISTRY:
        return _REGISTRY[name].factory
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name == name:
            return _as_factory(point.load(), name)
    if ":" in name:
        return _load_reference(name)
    valid = ", ".join(available_streams())
    raise UnknownStreamError(
        f"unknown stream {name!r}; choose one of: {valid}, "
        "or pass path/to/file.py:function or package.module:function"
    )


def make_stream(name: str, spec: StreamSpec | None = None) -> TaskStream | SwitchingStream:
    """Build the stream called ``name``.

    Args:
        name: A registered name, an entry-point name, or a ``module:function`` reference.
        spec: Options for the stream; defaults to ``StreamSpec()``.

    Returns:
        The built stream.
    """
    stream = resolve_stream(name)(spec or StreamSpec())
    if not isinstance(stream, TaskStream | SwitchingStream):
        raise TypeError(
            f"stream {name!r} returned {type(stream).__name__}; a stream factory must "
            "return a streams.TaskStream or a streams.switching.SwitchingStream"
        )
    return stream


def _load_reference(reference: str) -> StreamFactory:
    factory = import_reference(
        reference,
        kind="stream",
        error=UnknownStreamError,
        hint="name a function that takes a StreamSpec and returns a TaskStream",
    )
    return _as_factory(factory, reference)


def _as_factory(candidate: object, name: str) -> StreamFactory:
    if not callable(candidate):
        raise UnknownStreamError(f"stream {name!r} is not callable; it must be a function")
    return candidate


def _first_line(factory: object) -> str:
    doc = inspect.getdoc(factory) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
