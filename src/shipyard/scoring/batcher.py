"""Adaptive micro-batching: concurrent requests to one model version share one model call.

A request that arrives while the model is idle runs at once, so a lone client pays no waiting time.
Requests that arrive while a batch is computing queue up and go together in the next call, up to
``max_batch_size`` rows; ``max_wait_ms`` (default 0) can hold a batch open a little longer to fill it.
If a merged call fails, each request of the batch is retried alone, so a bad row fails only its own
request. Model calls run on a dedicated thread, except for models whose calls are measured to take
less than ``inline_below_ms``: handing those to a thread would cost more than the call itself.
Such a fast model, given a request that fills a batch on its own while nothing is queued, is called
right inside ``submit``: no other request could share that call, so queueing it would only add latency.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shipyard.flavors.base import Features


@dataclass(frozen=True)
class Scores:
    """What a model gives for a block of rows."""

    predictions: np.ndarray[Any, Any]
    probabilities: np.ndarray[Any, Any] | None = None

    def slice(self, start: int, stop: int) -> Scores:
        """The scores of rows ``start`` to ``stop``."""
        proba = None if self.probabilities is None else self.probabilities[start:stop]
        return Scores(self.predictions[start:stop], proba)


@dataclass(frozen=True)
class BatchStats:
    """Reported to an observer after every model call."""

    rows: int
    requests: int
    queue_wait_seconds: float
    compute_seconds: float


@dataclass
class _Pending:
    features: Features
    rows: int
    future: asyncio.Future[Scores]
    queued_at: float


def concat_features(parts: list[Features]) -> Features:
    """Validated rows of several requests (of one model) as one block, in order: what one model call scores."""
    if len(parts) == 1:
        return parts[0]
    frames = [p for p in parts if isinstance(p, pd.DataFrame)]
    if len(frames) == len(parts):
        return pd.concat(frames, ignore_index=True)
    arrays = [np.asarray(p) for p in parts]
    if all(a.ndim == 2 and a.flags.f_contiguous for a in arrays):  # validated float rows: keep their layout
        rows = sum(len(a) for a in arrays)
        out = np.empty((rows, arrays[0].shape[1]), dtype=np.result_type(*arrays), order="F")
        return np.concatenate(arrays, out=out)
    return np.concatenate(arrays)


def _expire(future: asyncio.Future[Scores]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class MicroBatcher:
    """Merges concurrent ``submit`` calls into model calls of at most ``max_batch_size`` rows.

    >>> import asyncio, numpy as np
    >>> batcher = MicroBatcher(lambda x: Scores(np.asarray(x).sum(axis=1)), max_batch_size=8)
    >>> async def main():
    ...     results = await asyncio.gather(*[batcher.submit(np.array([[i, i]])) for i in range(5)])
    ...     return [r.predictions.tolist() for r in results]
    >>> asyncio.run(main())
    [[0], [2], [4], [6], [8]]
    """

    def __init__(
        self,
        score: Callable[[Features], Scores],
        *,
        max_batch_size: int = 64,
        max_wait_ms: float = 0.0,
        inline_below_ms: float = 1.0,
        observer: Callable[[BatchStats], None] | None = None,
    ) -> None:
        self._score = score
        self.max_batch_size = max(1, max_batch_size)
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self._observer = observer
        self.inline_below = inline_below_ms / 1000.0
        self.typical_call: float | None = None  # moving average of a model call's duration, in seconds
        self._queue: deque[_Pending] = deque()
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shipyard-model")

    def submit(self, features: Features, timeout: float | None = None) -> asyncio.Future[Scores]:
        """Queue ``features`` (already validated); the future gets their scores, or ``TimeoutError``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Scores] = loop.create_future()
        rows = len(features)
        if rows >= self.max_batch_size and not self._running and self._inline():
            self._score_now(features, rows, future)
            return future
        self._queue.append(_Pending(features, len(features), future, time.perf_counter()))
        if timeout is not None:
            handle = loop.call_later(timeout, _expire, future)
            future.add_done_callback(lambda _: handle.cancel())
        if not self._running:
            self._running = True
            self._task = loop.create_task(self._drain())
        return future

    def _inline(self) -> bool:
        return self.typical_call is not None and self.typical_call < self.inline_below

    def _score_now(self, features: Features, rows: int, future: asyncio.Future[Scores]) -> None:
        started = time.perf_counter()
        try:
            future.set_result(self._score(features))
        except Exception as exc:
            future.set_exception(exc)
        finished = time.perf_counter()
        self.record_call(finished - started)
        if self._observer is not None:
            self._observer(BatchStats(rows=rows, requests=1, queue_wait_seconds=0.0,
                                      compute_seconds=finished - started))

    def record_call(self, seconds: float) -> None:
        """Fold one model call's duration into the moving average that decides inline or threaded calls."""
        self.typical_call = seconds if self.typical_call is None else 0.8 * self.typical_call + 0.2 * seconds

    def close(self) -> None:
        """Stop the model thread once the queued work is done."""
        self._executor.shutdown(wait=False)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                if self.max_wait and self._queued_rows() < self.max_batch_size:
                    await asyncio.sleep(self.max_wait)
                batch = self._take()
                started = time.perf_counter()
                try:
                    if self._inline():
                        scores = self._score_batch(batch)
                    else:
                        scores = await loop.run_in_executor(self._executor, self._score_batch, batch)
                except Exception as exc:
                    if len(batch) == 1:
                        if not batch[0].future.done():
                            batch[0].future.set_exception(exc)
                    else:
                        await self._score_one_by_one(batch)
                else:
                    offset = 0
                    for item in batch:
                        if not item.future.done():
                            item.future.set_result(scores.slice(offset, offset + item.rows))
                        offset += item.rows
                self.record_call(time.perf_counter() - started)
                if self._observer is not None:
                    self._observer(
                        BatchStats(
                            rows=sum(i.rows for i in batch),
                            requests=len(batch),
                            queue_wait_seconds=started - batch[0].queued_at,
                            compute_seconds=time.perf_counter() - started,
                        )
                    )
        finally:
            self._running = False
            if self._queue:  # something arrived between the last check and the flag reset
                self._running = True
                self._task = loop.create_task(self._drain())

    def _queued_rows(self) -> int:
        return sum(item.rows for item in self._queue)

    def _take(self) -> list[_Pending]:
        batch = [self._queue.popleft()]
        rows = batch[0].rows
        while self._queue and rows + self._queue[0].rows <= self.max_batch_size:
            item = self._queue.popleft()
            batch.append(item)
            rows += item.rows
        return batch

    def _score_batch(self, batch: list[_Pending]) -> Scores:
        return self._score(concat_features([item.features for item in batch]))

    async def _score_one_by_one(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        for item in batch:
            if item.future.done():
                continue
            try:
                result = await loop.run_in_executor(self._executor, self._score, item.features)
            except Exception as exc:
                item.future.set_exception(exc)
            else:
                item.future.set_result(result)
