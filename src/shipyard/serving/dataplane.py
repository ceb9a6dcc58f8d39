"""The one data plane every protocol adapter delegates to: find the model, check limits, score, time out.

A request that names no version or alias of a model with a registry deployment is routed by it: one dict
lookup and one random draw (or a hash of the sticky key) choose the version; after the answer, a copy may
go to the shadow or to the canary's incumbent (off the request's path), and the per-version counters of
the rollout are bumped. A model without a deployment costs nothing extra.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shipyard.errors import PayloadTooLarge, PredictionFailed, RequestTimeout, ShipyardError
from shipyard.rollouts.stats import ReplicaStats
from shipyard.scoring.batcher import Scores
from shipyard.serving.repository import ModelRepository, Route, ServedModel
from shipyard.serving.routing import KEY_HEADER, sticky_value, without_field
from shipyard.serving.settings import ServeSettings
from shipyard.serving.shadow import Background, Job

_log = logging.getLogger("shipyard.serving")
CELLS_IN_THREAD = 50_000
"""Inputs with more values (rows x columns) than this are checked against the signature off the event loop."""

if TYPE_CHECKING:
    from shipyard.monitoring.predlog import PredictionLogger
    from shipyard.serving.online import PredictionRecorder


@dataclass(frozen=True)
class Prediction:
    """The model version that answered and its scores."""

    served: ServedModel
    scores: Scores

    @property
    def name(self) -> str:
        return self.served.name

    @property
    def version(self) -> int:
        return self.served.version

    @property
    def classes(self) -> list[Any] | None:
        return self.served.model.classes


def count_rows(data: Any) -> int:
    """Rows in caller data (records, a dict of columns, rows of values, a frame or an array).

    >>> count_rows({"a": [1, 2, 3]}), count_rows([{"a": 1}]), count_rows([[1, 2], [3, 4]])
    (3, 1, 2)
    """
    if isinstance(data, (pd.DataFrame, np.ndarray)):
        return len(data)
    if isinstance(data, Mapping):
        for column in data.values():
            return len(column) if isinstance(column, Sequence) and not isinstance(column, str) else 1
        return 0
    if isinstance(data, Sequence) and not isinstance(data, str):
        return len(data)
    return 1


def count_columns(data: Any) -> int:
    """Columns in caller data: a frame's, a mapping's keys, or the widest record or row (0 for an array).

    >>> count_columns({"a": [1], "b": [2]}), count_columns([{"a": 1}, {"a": 1, "b": 2}]), count_columns([[1, 2, 3]])
    (2, 2, 3)
    """
    if isinstance(data, pd.DataFrame):
        return int(data.shape[1])
    if isinstance(data, Mapping):
        return len(data)
    if isinstance(data, Sequence) and not isinstance(data, str):
        return max(
            (len(row) for row in data if isinstance(row, (Mapping, Sequence)) and not isinstance(row, str)),
            default=0,
        )
    return 0  # a typed array (or a single value) costs little per column


def check_columns(count: int, limit: int, what: str) -> None:
    """Refuse (413) input with more than ``limit`` columns, before any table is built from it.

    Building and checking a table costs time per column, on the event loop: a small body with tens of
    thousands of columns would otherwise hold every other request (``/healthz`` too) for seconds.
    """
    if count > limit:
        raise PayloadTooLarge(
            f"{what} has {count} columns, more than the limit of {limit} (max_columns in the serve config, or "
            "the model's input count if larger); send only the model's input columns"
        )


class DataPlane:
    """Protocol-free prediction: ``predict(name, data, version=..., alias=...)``."""

    def __init__(self, repository: ModelRepository, settings: ServeSettings) -> None:
        self.repository = repository
        self.settings = settings
        self.recorders: dict[str, PredictionRecorder] = {}
        """Served online models and where their predictions are recorded (filled in at start-up)."""
        self.prediction_log: PredictionLogger | None = None
        """Where every answered prediction is logged (``None``: logging is off)."""
        self._inputs: dict[tuple[str, int], tuple[list[str], list[str] | None]] = {}
        self.stats = ReplicaStats()
        """This process's rollout counters per model version (flushed to the registry by a background task)."""
        self.background = Background(
            queue_size=settings.shadow_queue_size,
            timeout_s=settings.timeout_s,
            stats=self.stats,
            input_columns=self._input_columns,
        )
        """Shadow scoring and canary agreement checks, after the answer."""

    async def predict(
        self,
        name: str,
        data: Any,
        *,
        version: int | None = None,
        alias: str | None = None,
        allow_extra: bool = False,
        route: str | None = None,
        request_id: str | None = None,
        headers: Sequence[tuple[bytes, bytes]] | None = None,
    ) -> Prediction:
        """Score ``data`` with the model version the request names, within the server's limits.

        With neither ``version`` nor ``alias``, a model with a registry deployment is routed by it (a sticky
        deployment reads its key from the rows, else from the ``X-Shipyard-Key`` header in ``headers``).
        With a ``route`` and a ``request_id`` the answered prediction goes to the prediction log (if on).
        """
        rows = count_rows(data)
        if rows > self.settings.max_rows:
            raise PayloadTooLarge(
                f"the request has {rows} rows, the limit is {self.settings.max_rows}; split it into smaller requests"
            )
        routing: Route | None = None
        deployment = self.repository.deployments.get(name)
        if version is None and alias is None and deployment is not None:
            routing = deployment.route
        if routing is None:
            served = await self.repository.get(name, version=version, alias=alias)
        else:
            served, data = self._routed(routing, data, headers)
        if deployment is not None and deployment.sticky_fields:
            data = _without_foreign_fields(data, deployment.sticky_fields, served)
        columns = count_columns(data)
        check_columns(columns, self.max_columns(served), "the input")
        started = time.perf_counter()
        features = None
        try:
            # the validated rows are kept: a shadow or incumbent with the same inputs and the log reuse them
            if rows * max(columns, 1) > CELLS_IN_THREAD:  # building a large table would hold every other request
                features = await asyncio.to_thread(served.model.features, data, allow_extra=allow_extra)
            else:
                features = served.model.features(data, allow_extra=allow_extra)
            scores = await served.batcher.submit(features, self.settings.timeout_s)
        except TimeoutError:
            if routing is not None:
                self.stats.hit(name, routing.revision, served.version, time.perf_counter() - started, error=True)
            raise RequestTimeout(
                f"the prediction took longer than {self.settings.timeout_s:g} s; send fewer rows or raise --timeout"
            ) from None
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            if isinstance(exc, ShipyardError):
                raise  # the rows do not fit the signature: the caller's fault, not the version's
            if routing is not None:
                self.stats.hit(name, routing.revision, served.version, time.perf_counter() - started, error=True)
            raise PredictionFailed(
                f"model {served.info.ref} could not score these rows: {type(exc).__name__}: {exc}"
            ) from None
        except Exception:
            if routing is not None:
                self.stats.hit(name, routing.revision, served.version, time.perf_counter() - started, error=True)
            raise
        if routing is not None:
            seconds = time.perf_counter() - started
            self._after(routing, served, data, features, scores, allow_extra, request_id, seconds)
        log = self.prediction_log
        if log is not None and route is not None and request_id is not None:
            try:
                names, dtypes = self._input_columns(served)
                log.record(
                    served.name,
                    served.version,
                    route,
                    request_id,
                    data,
                    names,
                    scores.predictions,
                    scores.probabilities,
                    time.perf_counter() - started,
                    input_types=dtypes,
                    features=features,
                )
            except Exception:  # the answer is ready: logging it must never fail the request
                _log.exception("could not log request %s of %s", request_id, served.info.ref)
        return Prediction(served, scores)

    def max_columns(self, served: ServedModel) -> int:
        """The most columns a request to ``served`` may have: ``max_columns``, or its input width if larger.

        A tensor signature's width is the product of its dimensions after the batch (no limit if one is free).
        """
        signature = served.model.signature
        width = 0
        if signature is not None and signature.tensor is not None:
            dims = signature.tensor.shape[1:]
            width = sys.maxsize if any(d is None for d in dims) else math.prod(d or 1 for d in dims)
        elif signature is not None:
            width = len(signature.inputs)
        return max(self.settings.max_columns, width)

    def _routed(
        self, routing: Route, data: Any, headers: Sequence[tuple[bytes, bytes]] | None
    ) -> tuple[ServedModel, Any]:
        """The version a deployment sends this request to, and the rows it scores (sticky field dropped if foreign)."""
        sticky = routing.table.sticky
        if sticky is None:
            return routing.served[routing.table.pick()], data
        key = sticky_value(data, sticky)
        if key is None and headers is not None:
            for header, value in headers:
                if header == KEY_HEADER:
                    key = value.decode("latin-1")
                    break
        version = routing.table.pick(key)
        if version in routing.strip:
            data = without_field(data, sticky)
        return routing.served[version], data

    def _after(
        self,
        routing: Route,
        served: ServedModel,
        data: Any,
        features: Any,
        scores: Scores,
        allow_extra: bool,
        request_id: str | None,
        seconds: float,
    ) -> None:
        """Count the answer for the rollout; copy it to the shadow or the canary's incumbent (never waits)."""
        name = served.name
        self.stats.hit(name, routing.revision, served.version, seconds, error=False)
        reuse = features if served.version in routing.shares_inputs else None
        shadow = routing.shadow
        if shadow is not None and (routing.sample >= 1.0 or random.random() < routing.sample):
            job = Job("shadow", shadow, data, request_id or "", allow_extra, features=reuse)
            self.background.offer(name, job)
        incumbent = routing.incumbent
        if incumbent is not None and incumbent is not served:
            job = Job(
                "compare",
                incumbent,
                data,
                request_id or "",
                allow_extra,
                features=reuse,
                revision=routing.revision,
                answered_by=served.version,
                predictions=scores.predictions,
            )
            self.background.offer(name, job)

    def _input_columns(self, served: ServedModel) -> tuple[list[str], list[str] | None]:
        """The logged input columns of a served version (from its signature; cached)."""
        key = (served.name, served.version)
        columns = self._inputs.get(key)
        if columns is None:
            from shipyard.monitoring.predlog import input_columns

            columns = self._inputs[key] = input_columns(served.info.signature)
        return columns


def _without_foreign_fields(data: Any, fields: frozenset[str], served: ServedModel) -> Any:
    """``data`` without the sticky ``fields`` that ``served``'s signature does not take (as sent if none is there)."""
    signature = served.model.signature
    taken = {column.name for column in signature.inputs} if signature is not None else set()
    for field in fields:
        if field not in taken and sticky_value(data, field) is not None:
            data = without_field(data, field)
    return data
