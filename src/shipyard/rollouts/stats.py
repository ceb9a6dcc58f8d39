"""Per-replica rollout counters: requests, errors, latency and agreement per model version, flushed to the registry.

Every server process counts in memory, per model and deployment revision (a new revision starts from
zero, so a canary step is judged on its own traffic), and upserts its cumulative counters once a second
through :meth:`~shipyard.service.ModelService.record_rollout_stats`; the canary controller reads their
sum over replicas with :meth:`~shipyard.service.ModelService.rollout_stats`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field

from shipyard.rollouts.spec import RolloutCounters
from shipyard.service import ModelService

log = logging.getLogger("shipyard.rollouts")


def replica_id() -> str:
    """A name for this server process, unique across machines and restarts: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class _ModelCounts:
    revision: int
    versions: dict[int, RolloutCounters] = field(default_factory=dict)
    dirty: bool = False

    def of(self, version: int) -> RolloutCounters:
        counts = self.versions.get(version)
        if counts is None:
            counts = self.versions[version] = RolloutCounters()
        self.dirty = True
        return counts


class ReplicaStats:
    """The counters of one server process (used from the event loop only).

    >>> stats = ReplicaStats("test")
    >>> stats.hit("fraud", 3, 4, 0.002, error=False)
    >>> stats.compare("fraud", 3, 4, agree=9, compared=10)
    >>> [(name, rev, c[4].requests, c[4].agreement()) for name, rev, c in stats.take()]
    [('fraud', 3, 1, 0.9)]
    >>> stats.take()
    []
    """

    def __init__(self, replica: str | None = None) -> None:
        self.replica = replica or replica_id()
        self._models: dict[str, _ModelCounts] = {}

    def _model(self, name: str, revision: int) -> _ModelCounts | None:
        counts = self._models.get(name)
        if counts is None or counts.revision < revision:
            counts = self._models[name] = _ModelCounts(revision)
        elif counts.revision > revision:
            return None  # a late report about an older revision: its counters are closed
        return counts

    def hit(self, name: str, revision: int, version: int, seconds: float, *, error: bool) -> None:
        """Count one request answered (or failed) by ``version`` under deployment ``revision``."""
        model = self._model(name, revision)
        if model is None:
            return
        model.of(version).observe(seconds * 1000.0, error=error)

    def compare(self, name: str, revision: int, version: int, *, agree: int, compared: int) -> None:
        """Count rows of ``version``'s answers that the incumbent scored too, and how many labels were equal."""
        model = self._model(name, revision)
        if model is None:
            return
        counts = model.of(version)
        counts.agree += agree
        counts.compared += compared

    def take(self) -> list[tuple[str, int, dict[int, RolloutCounters]]]:
        """The cumulative counters of every model that changed since the last call: ``(name, revision, counters)``."""
        changed = []
        for name, model in self._models.items():
            if model.dirty:
                model.dirty = False
                changed.append((name, model.revision, {v: c + RolloutCounters() for v, c in model.versions.items()}))
        return changed

    async def flush(self, service: ModelService) -> None:
        """Upsert what changed into the registry (off the event loop)."""
        for name, revision, counters in self.take():
            await asyncio.to_thread(service.record_rollout_stats, name, revision, self.replica, counters)

    async def run(self, service: ModelService, interval_s: float) -> None:
        """Flush every ``interval_s`` seconds, forever; errors are logged, never fatal."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush(service)
            except Exception:
                log.exception("could not record rollout counters; will retry")
