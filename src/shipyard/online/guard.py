"""Progressive validation and the promotion guardrails.

Every event is scored by the model before it learns it; the rolling mean of the scores (1/0 correct for
classifiers, absolute error for regressors) over the last ``window`` events is the model's live metric.

>>> m = RollingMetric("accuracy", window=3)
>>> m.extend([1.0, 0.0, 1.0, 1.0]); round(m.value or 0, 3)
0.667
>>> may_promote("accuracy", 0.89, 0.9, tolerance=0.02, floor=None)
True
>>> may_promote("mae", 1.5, 1.0, tolerance=0.02, floor=None)
False
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

HIGHER_IS_BETTER = {"accuracy": True, "mae": False}


class RollingMetric:
    """The mean of the last ``window`` per-event scores."""

    def __init__(self, name: str | None, window: int, values: Iterable[float] = ()) -> None:
        self.name = name
        self.scores: deque[float] = deque(values, maxlen=window)

    def extend(self, values: Iterable[float]) -> None:
        """Add scores, dropping the oldest beyond the window."""
        self.scores.extend(values)

    @property
    def value(self) -> float | None:
        """The rolling mean, ``None`` before any event."""
        if not self.scores or self.name is None:
            return None
        return math.fsum(self.scores) / len(self.scores)


def below_floor(name: str | None, value: float | None, floor: float | None) -> bool:
    """Whether a metric is on the bad side of the floor (accuracy below it, MAE above it).

    >>> below_floor("accuracy", 0.4, 0.5), below_floor("mae", 0.4, 0.5), below_floor("accuracy", 0.4, None)
    (True, False, False)
    """
    if floor is None or value is None or name is None:
        return False
    return value < floor if HIGHER_IS_BETTER[name] else value > floor


def may_promote(name: str | None, value: float | None, promoted: float | None, *, tolerance: float,
                floor: float | None) -> bool:
    """Whether a snapshot with ``value`` may replace one promoted at ``promoted``.

    Accuracy may be at most ``tolerance`` lower; MAE at most ``tolerance`` (relative) higher. A snapshot
    on the bad side of ``floor`` is never promoted. Without a metric (clustering) snapshots are promoted.
    """
    if name is None or value is None:
        return True
    if below_floor(name, value, floor):
        return False
    if promoted is None:
        return True
    if HIGHER_IS_BETTER[name]:
        return value >= promoted - tolerance
    return value <= promoted * (1 + tolerance) + 1e-12
