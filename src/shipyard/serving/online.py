"""Online learning in the server: the feedback route, prediction recording, learners and their metrics.

* ``POST /v1/models/{name}/feedback`` takes labels of earlier predictions (joined by request id) or rows
  with their labels, and answers 202 only once :meth:`OnlineStore.append` has committed them.
* Predictions of online models are recorded as ``(request id, row)`` in a bounded buffer that a background
  task writes every ``record_interval_ms`` (or sooner, once ``record_rows`` are held), so a label sent to any
  worker can be joined with its prediction. A request of several rows records ``<request id>/<i>`` for row
  ``i``; a one-row request records its request id. Models that are not online pay one dict lookup.
* Every worker runs one :class:`~shipyard.online.Learner` per served online model in a daemon thread; the
  lease makes one of them learn. The learner moves the alias, and the repository's watcher swaps the snapshot in.
* ``/metrics`` gets the learners' status, read every ``status_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from shipyard.errors import Conflict, InvalidInput, PayloadTooLarge, ShipyardError, UnknownRequestIds
from shipyard.service import ModelService
from shipyard.serving.metrics import ServerMetrics
from shipyard.serving.native import rows_from_body
from shipyard.serving.openapi import json_body
from shipyard.serving.repository import ModelRepository
from shipyard.serving.settings import ServeSettings

if TYPE_CHECKING:
    from shipyard.monitoring.logs import PredictionLog
    from shipyard.monitoring.predlog import PredictionLogger
    from shipyard.online import FeedbackEvent, OnlineStatus, OnlineStore

log = logging.getLogger("shipyard.serving.online")
FEEDBACK_BODY = json_body(
    {
        "type": "object",
        "properties": {
            "request_id": {"type": "string", "description": "the request id of an earlier prediction"},
            "label": {"description": "its true label"},
            "labels": {"type": "array", "description": "[{request_id, label}, ...], or one label per row of instances"},
            "instances": {"type": "array", "items": {"type": "object"}, "description": "rows, as for predict"},
        },
    },
    {"request_id": "7f3c9a0c2b1d4e5f8a6b0c1d2e3f4a5b", "label": 1},
)
STOP_SECONDS = 10.0
LOG_WAIT_SECONDS = 5.0
"""Longest wait for another worker to write a prediction that a label names (its flush interval, at most this)."""


class RateLimited(ShipyardError):
    """Too many feedback events from one API key: answered with 429 and ``Retry-After``."""

    status = HTTPStatus.TOO_MANY_REQUESTS

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up.

    >>> bucket = TokenBucket(rate=10.0, burst=5, now=0.0)
    >>> bucket.take(5, now=0.0), bucket.take(1, now=0.0), bucket.take(1, now=0.1)
    (0.0, 0.1, 0.0)
    """

    def __init__(self, rate: float, burst: int, now: float | None = None) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic() if now is None else now

    def take(self, cost: float, now: float | None = None) -> float:
        """Take ``cost`` tokens: 0.0 if there were enough, else the seconds to wait (nothing is taken)."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if cost <= self.tokens:
            self.tokens -= cost
            return 0.0
        return (min(cost, self.burst) - self.tokens) / self.rate


class RateLimiter:
    """A :class:`TokenBucket` per API key id, in this worker."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, key: str, cost: int) -> None:
        """Raise :class:`RateLimited` unless ``key`` may send ``cost`` more events now."""
        if self.rate <= 0:
            return
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= 10_000:
                self._buckets.clear()
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        wait = bucket.take(cost)
        if wait > 0:
            raise RateLimited(
                f"too much feedback from this API key: at most {self.rate:g} events a second (bursts of "
                f"{self.burst}); retry in {wait:.2f} s or raise online.feedback_events_per_second",
                wait,
            )


def records(data: Any) -> list[Any]:
    """The rows of a native body's ``instances`` (as they are) or ``inputs`` (columns made rows).

    >>> records({"a": [1, 2], "b": [3, 4]}), records([[1, 2]])
    ([{'a': 1, 'b': 3}, {'a': 2, 'b': 4}], [[1, 2]])
    """
    if isinstance(data, Mapping):
        columns = {str(k): (v if isinstance(v, list) else [v]) for k, v in data.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise InvalidInput(f'the columns of "inputs" have different lengths: {sorted(lengths)}')
        return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    return list(data)


def row_ids(request_id: str, count: int) -> list[str]:
    """The ids under which the rows of one prediction request are recorded.

    >>> row_ids("abc", 1), row_ids("abc", 2)
    (['abc'], ['abc/0', 'abc/1'])
    """
    return [request_id] if count == 1 else [f"{request_id}/{i}" for i in range(count)]


class PredictionRecorder:
    """Holds ``(request id, row)`` of online models' predictions and writes them in the background."""

    def __init__(self, store: OnlineStore, settings: ServeSettings) -> None:
        self.store = store
        self.interval = settings.online.record_interval_ms / 1000.0
        self.flush_rows = settings.online.record_rows
        self.max_rows = settings.online.record_buffer_rows
        self._held: dict[tuple[str, int], list[tuple[str, Any]]] = {}
        self._count = 0
        self._dropped = 0
        self._wake = asyncio.Event()
        self._writing = asyncio.Lock()

    def add(self, name: str, version: int, request_id: str, data: Any) -> None:
        """Hold the rows of one answered prediction (called on the event loop; never blocks)."""
        rows = records(data)
        if self._count + len(rows) > self.max_rows:
            self._dropped += len(rows)
            if self._dropped == len(rows) or self._dropped % 10_000 < len(rows):
                log.warning("%s: dropped %d recorded predictions: the registry is not keeping up", name, self._dropped)
            return
        self._held.setdefault((name, version), []).extend(zip(row_ids(request_id, len(rows)), rows, strict=True))
        self._count += len(rows)
        if self._count >= self.flush_rows:
            self._wake.set()

    async def run(self) -> None:
        """Write what is held every interval, or as soon as enough rows are; forever (errors are logged)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("recording predictions for feedback failed; their labels cannot be joined")

    async def flush(self) -> None:
        """Write every held prediction now; returns once they and any write already under way are stored."""
        async with self._writing:  # a flush that finds nothing held still waits for the one writing them
            if not self._held:
                return
            held, self._held, self._count = self._held, {}, 0
            await asyncio.to_thread(self._write, held)

    def _write(self, held: dict[tuple[str, int], list[tuple[str, Any]]]) -> None:
        for (name, version), rows in held.items():
            self.store.record_predictions(name, version, rows)


@dataclass(frozen=True)
class FeedbackRequest:
    """A parsed feedback body: either labels of earlier predictions or rows with their labels."""

    pairs: list[tuple[str, Any]] | None
    rows: list[Any] | None
    labels: list[Any]

    def __len__(self) -> int:
        return len(self.labels)


def _label(value: Any, where: str) -> Any:
    if isinstance(value, (dict, list)) or value is None:
        raise InvalidInput(f"{where} must be a single value (a class or a number), got {value!r}")
    return value


def _request_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{where} must be the request id (a string) of an earlier prediction, got {value!r}")
    return value


def parse_feedback(body: dict[str, Any]) -> FeedbackRequest:
    """The feedback in a request body, in any of its three forms, or :class:`InvalidInput` saying what is wrong.

    >>> parse_feedback({"request_id": "r1", "label": 1}).pairs
    [('r1', 1)]
    >>> parse_feedback({"instances": [[1.0, 2.0]], "labels": [0]}).rows
    [[1.0, 2.0]]
    """
    if "request_id" in body or "label" in body:
        if "request_id" not in body or "label" not in body:
            raise InvalidInput('feedback on one prediction needs both "request_id" and "label"')
        rid = _request_id(body["request_id"], '"request_id"')
        label = _label(body["label"], '"label"')
        return FeedbackRequest([(rid, label)], None, [label])
    labels = body.get("labels")
    if not isinstance(labels, list) or not labels:
        raise InvalidInput(
            'the feedback body needs {"request_id": ..., "label": ...}, {"labels": [{"request_id": ..., "label": '
            '...}, ...]} or {"instances": [...], "labels": [...]}'
        )
    if "instances" in body or "inputs" in body:
        rows = records(rows_from_body({k: v for k, v in body.items() if k in ("instances", "inputs")}))
        if len(rows) != len(labels):
            raise InvalidInput(f"the body has {len(rows)} rows but {len(labels)} labels; send one label per row")
        return FeedbackRequest(None, rows, [_label(v, f"labels[{i}]") for i, v in enumerate(labels)])
    pairs = []
    for i, item in enumerate(labels):
        if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
            raise InvalidInput(f'labels[{i}] must be {{"request_id": ..., "label": ...}}, got {item!r}')
        pairs.append(
            (_request_id(item["request_id"], f"labels[{i}].request_id"), _label(item["label"], f"labels[{i}].label"))
        )
    return FeedbackRequest(pairs, None, [label for _, label in pairs])


class OnlineServing:
    """Everything online learning adds to one worker; started and stopped by the app's lifespan."""

    def __init__(
        self,
        service: ModelService,
        repository: ModelRepository,
        settings: ServeSettings,
        metrics: ServerMetrics,
        recorders: dict[str, PredictionRecorder],
        prediction_log: PredictionLogger | None = None,
    ) -> None:
        self.service = service
        self.prediction_log = prediction_log
        """The prediction log: feedback labels of every served model are written there too (``None``: off)."""
        self.repository = repository
        self.settings = settings
        self.metrics = metrics
        self.recorders = recorders
        """Served online models (the data plane's dict, filled here at start-up): the prediction routes' one lookup."""
        self.limiter = RateLimiter(settings.online.feedback_events_per_second, settings.online.feedback_burst)
        self._store: OnlineStore | None = None
        self._recorder: PredictionRecorder | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._learners: list[tuple[threading.Thread, threading.Event]] = []
        self._snapshots: dict[str, tuple[int, int]] = {}
        self._available = False
        self._appenders: dict[str, Appender] = {}
        self._log_reader: PredictionLog | None = None

    @property
    def store(self) -> OnlineStore:
        if self._store is None:
            from shipyard.online import OnlineStore

            self._store = OnlineStore(self.service)
        return self._store

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Find the served online models, start recording their predictions, their learners and the status poll."""
        try:
            from shipyard.online import OnlineStore  # noqa: F401
        except ImportError:
            log.info("shipyard.online is not available: feedback and online learning are off")
            return
        self._available = True
        names = self.repository.served_names()
        online = await asyncio.to_thread(lambda: [n for n in names if self.store.is_online(n)])
        for name in online:
            self._enable(name)

    def _enable(self, name: str) -> None:
        """Record the predictions of ``name``, run its learner and report its status (on the event loop)."""
        if self._recorder is None:
            self._recorder = PredictionRecorder(self.store, self.settings)
            self._tasks.append(asyncio.create_task(self._recorder.run()))
            self._tasks.append(asyncio.create_task(self._poll_status()))
        self.recorders[name] = self._recorder
        if self.settings.online.learn:
            self._start_learner(name)

    def _start_learner(self, name: str) -> None:
        from shipyard.online import OnlineSettings

        try:
            from shipyard.online import Learner
        except ImportError:
            log.warning("the online learner is not available: %s takes feedback but does not learn here", name)
            return

        try:
            settings = OnlineSettings(**self.settings.online.learner)  # type: ignore[arg-type]
        except TypeError as exc:
            raise InvalidInput(f"invalid serve settings: online.learner: {exc}") from None
        learner = Learner(self.service, name, settings)
        stop = threading.Event()

        def run() -> None:
            try:
                learner.run(stop)
            except Exception:
                log.exception("the online learner of %s stopped", name)

        thread = threading.Thread(target=run, name=f"shipyard-learner-{name}", daemon=True)
        thread.start()
        self._learners.append((thread, stop))

    async def stop(self) -> None:
        """Stop the learners and the status poll, and write the predictions still held."""
        for _, stop in self._learners:
            stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._recorder is not None:
            try:
                await self._recorder.flush()
            except Exception:
                log.exception("could not write the last recorded predictions")
        deadline = time.monotonic() + STOP_SECONDS
        for thread, _ in self._learners:
            await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))

    async def _poll_status(self) -> None:
        while True:
            for name in list(self.recorders):
                try:
                    status = await asyncio.to_thread(self.store.status, name)
                except Exception as exc:
                    log.debug("cannot read the online status of %s: %s", name, exc)
                    continue
                self._observe(name, status)
            await asyncio.sleep(self.settings.online.status_interval_s)

    def _observe(self, name: str, status: OnlineStatus) -> None:
        if status.metric_name and status.metric is not None:
            self.metrics.online_metric.labels(name, status.metric_name).set(status.metric)
        self.metrics.online_pending.labels(name).set(status.pending)
        seen, count = self._snapshots.get(name, (status.last_snapshot_version, 0))
        if status.last_snapshot_version != seen:
            count += 1
        self._snapshots[name] = (status.last_snapshot_version, count)
        self.metrics.online_snapshots.labels(name).set(count)

    # ------------------------------------------------------------------ feedback
    async def feedback(self, name: str, body: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        """Validate, rate-limit and durably store one feedback request; the 202 answer's body.

        Labels go to the online store of an online model (by request id or with their rows) and, when the
        prediction log is on, to the log for any served model (by request id), durable before the answer.
        """
        self.repository.current(name)  # 404 for a model not served here
        state["model"] = name
        # a model registered with online=True since this server started (checked again after the wait)
        unknown = name not in self.recorders and self._available
        if unknown and await asyncio.to_thread(self.store.is_online, name) and name not in self.recorders:
            self._enable(name)
        online = name in self.recorders
        if not online and self.prediction_log is None:
            raise Conflict(
                f"model {name!r} does not learn online, so it takes no feedback; register it with online=True "
                f"(shipyard.register(model, {name!r}, ..., online=True)) and serve that version"
            )
        request = parse_feedback(body)
        if len(request) > self.settings.max_rows:
            raise PayloadTooLarge(
                f"the request has {len(request)} feedback events, the limit is {self.settings.max_rows}; "
                "split it into smaller requests"
            )
        if not online and request.pairs is None:
            raise InvalidInput(
                f"model {name!r} does not learn online, so its labels are only joined with logged predictions: "
                'send {"request_id": ..., "label": ...} or {"labels": [{"request_id": ..., "label": ...}, ...]}'
            )
        self.limiter.check(state.get("api_key_id", ""), len(request))
        if not online and request.pairs is not None:
            await self._check_logged(name, request.pairs)
        answer: dict[str, Any] = {"accepted": len(request)}
        if online:
            first, last = await self._learn(name, request)
            answer.update(first_offset=first, last_offset=last)
            self.metrics.online_events.labels(name).inc(len(request))
        if self.prediction_log is not None and request.pairs is not None:
            await asyncio.to_thread(self.prediction_log.record_labels, name, request.pairs)
        answer["request_id"] = state["request_id"]
        return answer

    async def _check_logged(self, name: str, pairs: Sequence[tuple[str, Any]]) -> None:
        """Refuse (404, naming them) labels whose request id names no logged prediction of ``name``.

        A label of a model that does not learn online only counts once joined with its logged prediction
        (live accuracy, ``monitor``, ``ab report``): one that joins nothing is refused, not stored. This
        worker's held predictions are written first; a prediction another worker still holds is written
        within its flush interval (and the writer's time), so unknown ids are looked up again for two flush
        intervals and a second more (at most :data:`LOG_WAIT_SECONDS`) before the 404.
        """
        assert self.prediction_log is not None
        logger = self.prediction_log
        if self._log_reader is None:
            from shipyard.monitoring.logs import PredictionLog

            postgres = logger.settings.backend == "postgres"
            self._log_reader = PredictionLog(
                None if postgres else logger.root, postgres_url=logger.settings.postgres_url if postgres else None
            )
        reader = self._log_reader
        wanted = {request_id for request_id, _ in pairs}
        await asyncio.to_thread(logger.flush)
        missing = wanted - await asyncio.to_thread(reader.logged_request_ids, name, wanted)
        interval = logger.settings.flush_interval_s
        deadline = time.monotonic() + min(2 * interval + 1.0, LOG_WAIT_SECONDS)
        while missing and time.monotonic() < deadline:
            await asyncio.sleep(min(interval, 0.25))
            missing -= await asyncio.to_thread(reader.logged_request_ids, name, missing)
        if missing:
            raise UnknownRequestIds(
                name,
                [request_id for request_id in dict.fromkeys(r for r, _ in pairs) if request_id in missing],
                hint="it does not learn online, so a label is kept only for a prediction in the prediction "
                "log: send the request_id of an answer of this model (a request of several rows: "
                "<request_id>/<row>); nothing of this request was stored",
            )

    async def _learn(self, name: str, request: FeedbackRequest) -> tuple[int, int]:
        """Commit the feedback of online model ``name`` to its store; the first and last offsets."""
        if request.pairs is not None and self._recorder is not None:
            await self._recorder.flush()  # a label sent right after its prediction, to the same worker, joins
        if request.pairs is not None:
            events = await asyncio.to_thread(self.store.join, name, request.pairs)
        else:
            from shipyard.online import FeedbackEvent

            assert request.rows is not None
            events = [FeedbackEvent(row, label) for row, label in zip(request.rows, request.labels, strict=True)]
        appender = self._appenders.get(name)
        if appender is None:
            appender = self._appenders[name] = Appender(self.store, name, max(self.settings.max_rows, 1_000))
        return await appender.append(events)


class Appender:
    """Commits the feedback of one model, coalescing requests that arrive while a commit runs into the next one.

    One :meth:`OnlineStore.append` gives consecutive offsets, so each request gets its own slice of them. If a
    coalesced commit is refused, its requests are committed one by one, so each gets its own answer.
    """

    def __init__(self, store: OnlineStore, name: str, max_events: int) -> None:
        self.store = store
        self.name = name
        self.max_events = max_events
        self._queue: list[tuple[Sequence[FeedbackEvent], asyncio.Future[tuple[int, int]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def append(self, events: Sequence[FeedbackEvent]) -> tuple[int, int]:
        """Commit ``events`` (alone or with others'); their first and last offsets once committed."""
        future: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._queue.append((events, future))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                taken, total = 1, len(self._queue[0][0])  # the first request always; more while they fit
                while taken < len(self._queue) and total + len(self._queue[taken][0]) <= self.max_events:
                    total += len(self._queue[taken][0])
                    taken += 1
                batch, self._queue = self._queue[:taken], self._queue[taken:]
                await self._commit(batch)
        finally:
            self._task = None

    async def _commit(self, batch: list[tuple[Sequence[FeedbackEvent], asyncio.Future[tuple[int, int]]]]) -> None:
        events = [event for part, _ in batch for event in part]
        try:
            first, _ = await asyncio.to_thread(self._append, events)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            for part, future in batch:  # someone's events were refused: commit each request on its own
                try:
                    _settle(future, await asyncio.to_thread(self._append, part))
                except Exception as each:
                    _settle(future, each)
            return
        for part, future in batch:
            _settle(future, (first, first + len(part) - 1))
            first += len(part)

    def _append(self, events: Sequence[FeedbackEvent]) -> tuple[int, int]:
        try:
            return self.store.append(self.name, events)
        except ShipyardError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidInput(f"the feedback cannot be stored: {type(exc).__name__}: {exc}") from None


def _settle(future: asyncio.Future[tuple[int, int]], outcome: tuple[int, int] | BaseException) -> None:
    """Answer a waiting request (unless it went away)."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
