"""Work done after a request was answered, off its path: shadow scoring and canary agreement checks.

Each model name gets a bounded queue and one background task. The request that was just answered puts a
job there without waiting (a full queue drops the job and counts it); the task takes every job waiting
(up to ``batch_jobs``), submits them all to the target version's micro-batcher at once, so they share
model calls, and then:

* **shadow** jobs: the shadow version's answer goes to the prediction log with route ``"shadow"`` and the
  primary's request id; it is never returned to anyone;
* **compare** jobs: the canary's incumbent scores the rows the candidate answered, and the number of equal
  labels is counted for the candidate (the ``min_agreement`` guard).

A slow shadow therefore costs the primary nothing but the queueing of a reference: the model call runs
on the shadow version's own batcher thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from shipyard.rollouts.stats import ReplicaStats
from shipyard.scoring.batcher import Scores

if TYPE_CHECKING:
    from shipyard.monitoring.predlog import PredictionLogger
    from shipyard.serving.repository import ServedModel

log = logging.getLogger("shipyard.serving")


@dataclass(frozen=True)
class Job:
    """Rows answered by the primary, to be scored again by ``target``."""

    kind: Literal["shadow", "compare"]
    target: ServedModel
    data: Any
    request_id: str
    allow_extra: bool = False
    features: Any = None
    """The rows as the primary validated them, when ``target`` has the same inputs (``None``: validate ``data``)."""
    revision: int = 0
    """compare: the deployment revision whose counters the result belongs to."""
    answered_by: int = 0
    """compare: the candidate version that answered."""
    predictions: Any = None
    """compare: the candidate's labels."""


class _Lane:
    """The queue and worker of one model name."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=size)
        self.task: asyncio.Task[None] | None = None


class Background:
    """Bounded queues of after-the-answer work, one per model name, each drained by its own task.

    ``input_columns(served)`` names the logged columns of a version (as the data plane logs them); drops
    go to ``on_drop(model)``.
    """

    def __init__(
        self,
        *,
        queue_size: int,
        timeout_s: float,
        stats: ReplicaStats,
        input_columns: Callable[[ServedModel], tuple[list[str], list[str] | None]],
        on_drop: Callable[[str], None] | None = None,
        batch_jobs: int = 64,
    ) -> None:
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.stats = stats
        self.input_columns = input_columns
        self.on_drop = on_drop
        self.batch_jobs = batch_jobs
        self.prediction_log: PredictionLogger | None = None
        self.dropped: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.failed: dict[str, int] = {}
        self._lanes: dict[str, _Lane] = {}
        self._closing = False

    def offer(self, name: str, job: Job) -> bool:
        """Queue ``job`` for model ``name`` without waiting; ``False`` (and counted) when the queue is full."""
        lane = self._lanes.get(name)
        if lane is None:
            if self._closing:
                return False
            lane = self._lanes[name] = _Lane(self.queue_size)
            lane.task = asyncio.get_running_loop().create_task(self._drain(name, lane.queue))
        try:
            lane.queue.put_nowait(job)
        except asyncio.QueueFull:
            self.dropped[name] = self.dropped.get(name, 0) + 1
            if self.on_drop is not None:
                self.on_drop(name)
            return False
        return True

    async def _drain(self, name: str, queue: asyncio.Queue[Job]) -> None:
        while True:
            jobs = [await queue.get()]
            while len(jobs) < self.batch_jobs and not queue.empty():
                jobs.append(queue.get_nowait())
            started = time.perf_counter()
            futures: list[asyncio.Future[Scores] | None] = []
            for job in jobs:
                try:
                    if job.features is not None:
                        futures.append(job.target.batcher.submit(job.features, self.timeout_s))
                    else:
                        futures.append(job.target.score(job.data, allow_extra=job.allow_extra, timeout=self.timeout_s))
                except Exception as exc:  # the rows do not fit the target's signature
                    self._failed(name, job, exc)
                    futures.append(None)
            finished: dict[int, float] = {}  # each job's own latency: submit to its scores, as the primary's
            for index, future in enumerate(futures):
                if future is not None:
                    future.add_done_callback(functools.partial(_mark_done, finished, index))
            results = await asyncio.gather(*(f for f in futures if f is not None), return_exceptions=True)
            answers = iter(results)
            for index, (job, future) in enumerate(zip(jobs, futures, strict=True)):
                if future is None:
                    continue
                result = next(answers)
                if isinstance(result, BaseException):
                    self._failed(name, job, result)
                    continue
                seconds = finished.get(index, time.perf_counter()) - started
                try:
                    self._finish(name, job, result, seconds)
                except Exception as exc:
                    self._failed(name, job, exc)

    def _finish(self, name: str, job: Job, scores: Scores, seconds: float) -> None:
        self.done[name] = self.done.get(name, 0) + 1
        if job.kind == "compare":
            theirs = np.asarray(job.predictions)
            ours = np.asarray(scores.predictions)
            if theirs.shape != ours.shape:
                return
            agree = int(np.sum(theirs == ours))
            self.stats.compare(name, job.revision, job.answered_by, agree=agree, compared=len(ours))
            return
        logger = self.prediction_log
        if logger is None:
            return
        target = job.target
        names, dtypes = self.input_columns(target)
        logger.record(
            target.name,
            target.version,
            "shadow",
            job.request_id,
            job.data,
            names,
            scores.predictions,
            scores.probabilities,
            seconds,
            input_types=dtypes,
            features=job.features,
        )

    def _failed(self, name: str, job: Job, exc: BaseException) -> None:
        count = self.failed[name] = self.failed.get(name, 0) + 1
        if count == 1 or count % 1000 == 0:
            log.warning(
                "%s: %s scoring with version %d failed (%d so far): %s: %s",
                name,
                job.kind,
                job.target.version,
                count,
                type(exc).__name__,
                exc,
            )

    async def close(self) -> None:
        """Stop the workers (jobs still queued are dropped: the answers they copy were given long ago)."""
        self._closing = True
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
        self._lanes.clear()


def _mark_done(finished: dict[int, float], index: int, _: asyncio.Future[Scores]) -> None:
    """Note when job ``index``'s scores arrived (a future's done callback)."""
    finished[index] = time.perf_counter()
