"""What ``shipyard online status`` shows: the state of one model's online learning."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class OnlineStatus:
    """A model's online-learning state as the database has it.

    ``committed_offset`` events are in ``last_snapshot_version``; the learner has applied
    ``applied_offset`` (its last heartbeat) and ``pending`` events wait. ``metric`` is the rolling
    progressive metric (``accuracy`` for classifiers, ``mae`` for regressors, ``None`` for clustering).

    >>> s = OnlineStatus("m", 1, 10, 10, 0, 10, "accuracy", 0.9, 2, 2, 0.9, False, None, None, 0, ())
    >>> s.lease_held
    False
    """

    name: str
    base_version: int
    last_offset: int
    committed_offset: int
    pending: int
    applied_offset: int
    metric_name: str | None
    metric: float | None
    last_snapshot_version: int
    promoted_version: int
    promoted_metric: float | None
    paused: bool
    lease_holder: str | None
    lease_expires_at: datetime | None
    alerts: int
    frozen_steps: tuple[str, ...]

    @property
    def lease_held(self) -> bool:
        """Whether a learner holds an unexpired lease."""
        from shipyard.registry.store import utcnow

        return self.lease_holder is not None and self.lease_expires_at is not None and self.lease_expires_at > utcnow()
