"""``path/to/file.py:name`` and ``package.module:name`` references, for every plug-in kind.

Streams (``streams.registry``) and agents (``lifelong.agents``) reach a user's factory the
same way; this is the one loader both use.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path


def import_reference(reference: str, *, kind: str, error: type[Exception], hint: str) -> object:
    """The object a reference ``path/to/file.py:name`` or ``package.module:name`` names.

    A file is imported once per process, as a module named by its resolved path, so two
    files with one stem stay apart and a file that registers something on import is not run
    twice.

    Args:
        reference: The reference, with the object's name after the last ``:``.
        kind: What is referred to (``"stream"``, ``"agent"``), for messages.
        error: The exception to raise, with one line naming the reference and the fix.
        hint: What the named object must be, said when it is missing.

    Raises:
        error: If the file or module is missing or fails to import, or lacks the name.
    """
    module_part, _, attribute = reference.rpartition(":")
    try:
        if module_part.endswith(".py"):
            module = _import_file(Path(module_part), reference, kind, error)
        else:
            module = importlib.import_module(module_part)
    except ImportError as failure:
        raise error(
            f"{kind} {reference!r}: cannot import module {module_part!r} ({failure}); "
            "check the module path or pass path/to/file.py:function"
        ) from failure
    if not hasattr(module, attribute):
        raise error(f"{kind} {reference!r}: {module_part!r} has no attribute {attribute!r}; {hint}")
    return getattr(module, attribute)


def _import_file(path: Path, reference: str, kind: str, error: type[Exception]) -> object:
    if not path.is_file():
        raise error(f"{kind} {reference!r}: file {str(path)!r} does not exist; check the path")
    module_name = f"_lifelong_user_{kind}_{abs(hash(path.resolve()))}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise error(f"{kind} {reference!r}: cannot load {str(path)!r} as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module
