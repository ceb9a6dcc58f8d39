"""Lazy package exports: names imported from their module on first use, so ``import shipyard`` stays cheap.

>>> import types
>>> namespace = {"__name__": "demo"}
>>> getattr_, dir_ = lazy_exports("demo", {"sqrt": "math"}, namespace, ["sqrt"])
>>> getattr_("sqrt")(9.0), "sqrt" in namespace, dir_()
(3.0, True, ['__name__', 'sqrt'])
>>> getattr_("nope")
Traceback (most recent call last):
    ...
AttributeError: module 'demo' has no attribute 'nope'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any], public: Sequence[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's ``__getattr__`` and ``__dir__`` for ``exports`` (name -> module that defines it).

    The first access imports the module and caches the value in ``namespace`` (the package's
    ``globals()``), so later accesses are plain attribute lookups.
    """

    def module_getattr(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def module_dir() -> list[str]:
        return sorted(set(namespace) | set(public))

    return module_getattr, module_dir
