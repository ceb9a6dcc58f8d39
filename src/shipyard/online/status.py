"""What ``shipyard online status`` shows: the state of one model's online learning."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from shipyard.online.events import OnlineSettings


@dataclass(frozen=True)
class OnlineStatus:
    """A model's online-learning state as the database has it.

    ``committed_offset`` events are in ``last_snapshot_version``; the learner has applied
    ``applied_offset`` (its last heartbeat) and ``pending`` events wait, the oldest since
    ``oldest_pending_at``. ``metric`` is the rolling
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
    oldest_pending_at: datetime | None = None

    @property
    def lease_held(self) -> bool:
        """Whether a learner holds an unexpired lease."""
        from shipyard.registry.store import utcnow

        return self.lease_holder is not None and self.lease_expires_at is not None and self.lease_expires_at > utcnow()


def pending_reason(status: OnlineStatus, settings: OnlineSettings, now: datetime | None = None) -> str:
    """Why ``status.pending`` events are not learnt yet, as one line for ``online status``.

    A learner learns whole blocks of ``settings.batch`` events at once, and the rest once the oldest has
    waited ``settings.max_wait_seconds``.

    >>> from datetime import timezone
    >>> at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> s = OnlineStatus("m", 1, 260, 200, 60, 200, None, None, 2, 2, None, False, "h", None, 0, (), at)
    >>> pending_reason(s, OnlineSettings(), now=at.replace(second=2))
    '60 pending: no learner holds the lease (start the server or `shipyard online learn m`)'
    >>> later = at.replace(year=2100)
    >>> s = OnlineStatus("m", 1, 260, 200, 60, 200, None, None, 2, 2, None, False, "h", later, 0, (), at)
    >>> pending_reason(s, OnlineSettings(), now=at.replace(second=2))
    '60 pending: waiting for 40 more events or 3 s (batch of 100 or every 5 s)'
    """
    from shipyard.registry.store import utcnow

    if status.pending <= 0:
        return "none pending"
    head = f"{status.pending} pending"
    if status.paused:
        return f"{head}: learning is paused (`shipyard online resume {status.name}`)"
    now = now or utcnow()
    alive = status.lease_holder is not None and status.lease_expires_at is not None and status.lease_expires_at > now
    if not alive:
        return f"{head}: no learner holds the lease (start the server or `shipyard online learn {status.name}`)"
    rule = f"batch of {settings.batch} or every {settings.max_wait_seconds:g} s"
    waited = 0.0 if status.oldest_pending_at is None else (now - status.oldest_pending_at).total_seconds()
    left = settings.max_wait_seconds - waited
    if status.pending >= settings.batch or left <= 0:
        return f"{head}: due now, the learner applies them at its next step ({rule})"
    more = settings.batch - status.pending % settings.batch
    return f"{head}: waiting for {more} more events or {math.ceil(left):g} s ({rule})"
