"""Which serialised Python types shipyard agrees to rebuild when it loads a skops artifact.

skops lists every type in a file that it does not trust by default; shipyard then accepts those from
the scientific libraries it depends on and any name the user adds explicitly, and refuses the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

TRUSTED_MODULES: tuple[str, ...] = ("sklearn", "numpy", "scipy")
"""Top-level packages whose classes and functions may appear in a stored model."""


def untrusted(types: Iterable[str], extra: Sequence[str] = ()) -> list[str]:
    """Return the type names that are neither from a trusted package nor explicitly trusted.

    >>> untrusted(["sklearn.tree._tree.Tree", "mylib.Custom", "os.system"], extra=["mylib.Custom"])
    ['os.system']
    """
    allowed = set(extra)
    refused = []
    for name in types:
        root = name.split(".", 1)[0]
        if name in allowed or root in TRUSTED_MODULES:
            continue
        refused.append(name)
    return sorted(set(refused))


_PLAIN = (str, bytes, int, float, complex, bool, type(None))


def declared_types(model: Any) -> set[str]:
    """Names of the classes and callables a scikit-learn model is built from, read from its parameters.

    A cheap look before serialising, which catches custom estimators and functions such as
    ``FunctionTransformer(func=os.system)``; it does not replace skops' audit of the stored bytes.

    >>> import os
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> sorted(declared_types(FunctionTransformer(func=os.system)))
    ['posix.system', 'sklearn.preprocessing._function_transformer.FunctionTransformer']
    """
    found: set[str] = set()
    _collect(model, found, set())
    return found


def _collect(value: Any, found: set[str], seen: set[int]) -> None:
    if isinstance(value, _PLAIN) or id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _collect(item, found, seen)
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, found, seen)
    elif isinstance(value, type):
        if value.__module__ != "builtins":  # plain types such as float are safe for skops
            found.add(f"{value.__module__}.{value.__qualname__}")
    elif callable(value) and hasattr(value, "__qualname__") and not hasattr(value, "get_params"):
        module = getattr(value, "__module__", None) or type(value).__module__
        found.add(f"{module}.{value.__qualname__}")
    else:
        cls = type(value)
        found.add(f"{cls.__module__}.{cls.__qualname__}")
        get_params = getattr(value, "get_params", None)
        if callable(get_params):
            try:
                params = get_params(deep=False)
            except Exception:  # a broken third-party estimator: skops' audit still runs on load
                return
            for item in params.values():
                _collect(item, found, seen)
