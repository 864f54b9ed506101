"""Checks of a stream's ``StreamSpec`` and options, shared by the built-in streams.

Each helper names the stream, the option and the bad value in its one-line error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from streams.base import StreamError, StreamSpec

__all__ = ["boolean", "check_spec", "choice", "parse_options", "positive_int", "probability"]


def check_spec(name: str, spec: StreamSpec) -> None:
    """Refuse a spec whose ``n_tasks`` or ``seed`` is not a valid integer."""
    if not isinstance(spec, StreamSpec):
        raise StreamError(f"stream {name!r} got {type(spec).__name__}; pass a streams.StreamSpec")
    n_tasks = spec.n_tasks
    if n_tasks is not None and (isinstance(n_tasks, bool) or not isinstance(n_tasks, int)):
        raise StreamError(f"stream {name!r}: n_tasks is {n_tasks!r}; pass a positive integer")
    if n_tasks is not None and n_tasks < 1:
        raise StreamError(f"stream {name!r}: n_tasks is {n_tasks}; pass at least 1")
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, int) or spec.seed < 0:
        raise StreamError(f"stream {name!r}: seed is {spec.seed!r}; pass a non-negative integer")


def parse_options(name: str, spec: StreamSpec, defaults: Mapping[str, object]) -> dict[str, object]:
    """The stream's options: the defaults, overridden by ``spec.options``; unknown keys refused."""
    unknown = sorted(set(spec.options) - set(defaults))
    if unknown:
        raise StreamError(
            f"stream {name!r}: unknown option {unknown[0]!r}; valid options: "
            f"{', '.join(sorted(defaults))}"
        )
    return {**defaults, **spec.options}


def positive_int(name: str, options: Mapping[str, object], key: str) -> int:
    """``options[key]`` as a positive integer (digits in a string accepted)."""
    value = options[key]
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StreamError(f"stream {name!r}: option {key}={value!r}; pass a positive integer")
    return value


def boolean(name: str, options: Mapping[str, object], key: str) -> bool:
    """``options[key]`` as a boolean (true/false, yes/no, 1/0 accepted)."""
    value = options[key]
    if isinstance(value, bool):
        return value
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise StreamError(f"stream {name!r}: option {key}={value!r}; pass true or false")


def choice(name: str, options: Mapping[str, object], key: str, choices: Sequence[str]) -> str:
    """``options[key]``, which must be one of ``choices``."""
    value = options[key]
    if value not in choices:
        raise StreamError(
            f"stream {name!r}: option {key}={value!r}; choose one of "
            f"{', '.join(repr(c) for c in choices)}"
        )
    return str(value)


def probability(name: str, options: Mapping[str, object], key: str) -> float:
    """``options[key]`` as a probability strictly between 0 and 1 (a number or its text)."""
    value = options[key]
    try:
        p = float(str(value))
    except ValueError:
        p = float("nan")
    if not 0 < p < 1:
        raise StreamError(
            f"stream {name!r}: {key}={value!r}; pass a probability strictly between 0 and 1"
        )
    return p
