"""The values online learning passes around: a feedback event and the learner's settings.

>>> FeedbackEvent({"amount": 12.5}, 1, request_id="r-1").label
1
>>> OnlineSettings(snapshot_every=500).window
1000
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shipyard.errors import InvalidInput


@dataclass(frozen=True)
class FeedbackEvent:
    """One labelled example: the input row (a JSON-able dict or list), its true label, and the prediction it answers."""

    features: Any
    label: Any
    request_id: str | None = None


@dataclass(frozen=True)
class OnlineSettings:
    """How a :class:`~shipyard.online.Learner` works.

    ``snapshot_every`` events or ``snapshot_seconds`` (whichever comes first, if any event was applied)
    make a snapshot version. ``lease_seconds`` is how long a learner's lease lasts without renewal (it
    is renewed every ``lease_seconds / 5``). ``tolerance`` is how much worse than the promoted snapshot a
    new one may be and still be promoted (both are scored on the same last ``window`` events: the learner
    scores each event with the served snapshot too); ``floor`` the live metric below which the served
    alias goes back to the last good snapshot (accuracy below it, or MAE above it). ``window`` events
    make the rolling metric. Events are learnt in blocks of ``batch`` offsets (aligned from the last
    reset), so the learnt model is the same whatever the timing, crashes or takeovers; ``batch=1``
    learns every event as soon as it arrives. Events short of a whole block are learnt once they have
    waited ``max_wait_seconds`` (as one smaller block, snapshotted at once so that a replay after a crash
    starts from that boundary and still equals the live model).
    """

    snapshot_every: int = 1000
    snapshot_seconds: float = 30.0
    lease_seconds: float = 5.0
    tolerance: float = 0.02
    floor: float | None = None
    window: int = 1000
    poll_seconds: float = 0.2
    batch: int = 100
    max_wait_seconds: float = 5.0

    def __post_init__(self) -> None:
        for name in ("snapshot_every", "window", "batch"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"online setting {name} must be at least 1, got {getattr(self, name)}")
        for name in ("snapshot_seconds", "lease_seconds", "poll_seconds", "max_wait_seconds"):
            if getattr(self, name) <= 0:
                raise InvalidInput(f"online setting {name} must be positive, got {getattr(self, name)}")
        if self.tolerance < 0:
            raise InvalidInput(f"online setting tolerance must not be negative, got {self.tolerance}")
