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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from shipyard.rollouts.stats import ReplicaStats
from shipyard.scoring.batcher import Scores, concat_features

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
            await self._score_jobs(name, jobs)

    async def _score_jobs(self, name: str, jobs: list[Job]) -> None:
        """Score ``jobs`` with as few model calls as possible and finish each one.

        Jobs that carry the primary's validated rows are stacked into one submission per target (one
        future, one batcher entry); the others are validated and submitted one by one. If a stacked call
        fails, its jobs are scored again one by one, so one bad row costs only its own job.
        """
        started = time.perf_counter()
        calls: list[tuple[list[int], asyncio.Future[Scores]]] = []  # the jobs (indexes) each call scores
        stacked: dict[int, list[int]] = {}
        for index, job in enumerate(jobs):
            if job.features is not None:
                stacked.setdefault(id(job.target), []).append(index)
                continue
            try:
                calls.append(([index], job.target.score(job.data, allow_extra=job.allow_extra, timeout=self.timeout_s)))
            except Exception as exc:  # the rows do not fit the target's signature
                self._failed(name, job, exc)
        for indexes in stacked.values():
            features = concat_features([jobs[i].features for i in indexes])
            calls.append((indexes, jobs[indexes[0]].target.batcher.submit(features, self.timeout_s)))
        finished: dict[int, float] = {}  # each call's latency: submit to its scores, as the primary's
        for number, (_, future) in enumerate(calls):
            future.add_done_callback(functools.partial(_mark_done, finished, number))
        results = await asyncio.gather(*(future for _, future in calls), return_exceptions=True)
        retry: list[Job] = []
        for number, ((indexes, _), result) in enumerate(zip(calls, results, strict=True)):
            if isinstance(result, BaseException):
                if len(indexes) > 1 and not isinstance(result, TimeoutError):
                    retry.extend(replace(jobs[i], features=None) for i in indexes)
                else:
                    self._failed(name, jobs[indexes[0]], result)
                continue
            seconds = finished.get(number, time.perf_counter()) - started
            start = 0
            for i in indexes:
                job = jobs[i]
                rows = len(job.features) if len(indexes) > 1 else len(result.predictions)
                try:
                    self._finish(name, job, result.slice(start, start + rows) if len(indexes) > 1 else result, seconds)
                except Exception as exc:
                    self._failed(name, job, exc)
                start += rows
        if retry:
            await self._score_jobs(name, retry)

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
