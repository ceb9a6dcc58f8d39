"""Choosing the version that answers a request, from a model's deployment (weights, sticky keys).

A :class:`RoutingTable` is compiled once per deployment revision; the hot path then costs one random
draw (or one blake2b hash of the sticky key) and a bisection over the cumulative weights.
The hash is stable across processes and machines (``hash()`` is salted per process), so every replica
sends a key to the same variant; with a canary, keys that reached the candidate stay on it as its share
grows, because the candidate's slice of ``[0, 100)`` only widens.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

KEY_HEADER = b"x-shipyard-key"
_SPAN = float(2**64)


def key_point(key: str) -> float:
    """Where ``key`` falls in ``[0, 100)``: the same on every process and machine.

    >>> key_point("customer-42") == key_point("customer-42")
    True
    >>> 0.0 <= key_point("") < 100.0
    True
    """
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SPAN * 100.0


def sticky_value(data: Any, field: str) -> str | None:
    """The value of ``field`` in the first row of ``data`` (records, an object of columns or a frame), as text.

    >>> sticky_value([{"customer_id": 7, "amount": 1.0}], "customer_id")
    '7'
    >>> sticky_value({"customer_id": ["a", "b"]}, "customer_id")
    'a'
    >>> sticky_value([[1, 2]], "customer_id") is None
    True
    """
    value: Any = None
    if isinstance(data, Sequence) and not isinstance(data, str):
        if data and isinstance(data[0], Mapping):
            value = data[0].get(field)
    elif isinstance(data, Mapping):
        column = data.get(field)
        if isinstance(column, Sequence) and not isinstance(column, str):
            value = column[0] if column else None
        else:
            value = column
    elif isinstance(data, pd.DataFrame) and field in data.columns and len(data):
        value = data[field].iloc[0]
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def without_field(data: Any, field: str) -> Any:
    """``data`` without column ``field`` (a copy; ``data`` itself is left as the caller sent it).

    >>> without_field([{"customer_id": 7, "amount": 1.0}], "customer_id")
    [{'amount': 1.0}]
    >>> without_field({"customer_id": [7], "amount": [1.0]}, "customer_id")
    {'amount': [1.0]}
    """
    if isinstance(data, Sequence) and not isinstance(data, str):
        if data and isinstance(data[0], Mapping):
            return [{k: v for k, v in row.items() if k != field} if isinstance(row, Mapping) else row for row in data]
        return data
    if isinstance(data, Mapping):
        return {k: v for k, v in data.items() if k != field}
    if isinstance(data, pd.DataFrame) and field in data.columns:
        return data.drop(columns=[field])
    return data


@dataclass(frozen=True)
class RoutingTable:
    """The primary versions of a deployment and their cumulative weights, ready for a draw.

    >>> table = RoutingTable.build({3: 90.0, 4: 10.0}, sticky="customer_id")
    >>> table.choose(5.0), table.choose(95.0)
    (3, 4)
    >>> table.pick_for_key("customer-42") == table.pick_for_key("customer-42")
    True
    """

    versions: tuple[int, ...]
    edges: tuple[float, ...]
    """Cumulative weights (percent), one per version; the last is the total (100)."""
    sticky: str | None = None

    @classmethod
    def build(cls, weights: Mapping[int, float], *, sticky: str | None = None) -> RoutingTable:
        """A table from ``version -> percent`` (versions with weight 0 get no traffic)."""
        versions: list[int] = []
        edges: list[float] = []
        total = 0.0
        for version, weight in weights.items():
            if weight <= 0:
                continue
            total += float(weight)
            versions.append(version)
            edges.append(total)
        if not versions:
            raise ValueError("a routing table needs at least one version with a positive weight")
        return cls(tuple(versions), tuple(edges), sticky)

    @property
    def single(self) -> int | None:
        """The one version that gets all the traffic, if there is only one."""
        return self.versions[0] if len(self.versions) == 1 else None

    def choose(self, point: float) -> int:
        """The version whose slice of ``[0, total)`` holds ``point``."""
        index = bisect.bisect_right(self.edges, point * self.edges[-1] / 100.0)
        return self.versions[min(index, len(self.versions) - 1)]

    def pick(self, key: str | None = None) -> int:
        """The version for one request: by the sticky ``key`` when there is one, else at random by weight."""
        if len(self.versions) == 1:
            return self.versions[0]
        return self.choose(key_point(key) if key is not None else random.random() * 100.0)

    def pick_for_key(self, key: str) -> int:
        """The version a sticky ``key`` always reaches."""
        return self.choose(key_point(key))
