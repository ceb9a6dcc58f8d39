"""Which serialised Python types shipyard agrees to rebuild when it loads a skops artifact.

skops lists every type in a file that it does not trust by default; shipyard then accepts those from
the scientific libraries it depends on and any name the user adds explicitly, and refuses the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
