"""The one data plane every protocol adapter delegates to: find the model, check limits, score, time out."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shipyard.errors import PayloadTooLarge, PredictionFailed, RequestTimeout, ShipyardError
from shipyard.scoring.batcher import Scores
from shipyard.serving.repository import ModelRepository, ServedModel
from shipyard.serving.settings import ServeSettings

_log = logging.getLogger("shipyard.serving")

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
    ) -> Prediction:
        """Score ``data`` with the model version the request names, within the server's limits.

        With a ``route`` and a ``request_id`` the answered prediction goes to the prediction log (if on).
        """
        rows = count_rows(data)
        if rows > self.settings.max_rows:
            raise PayloadTooLarge(
                f"the request has {rows} rows, the limit is {self.settings.max_rows}; split it into smaller requests"
            )
        served = await self.repository.get(name, version=version, alias=alias)
        started = time.perf_counter()
        try:
            scores = await served.score(data, allow_extra=allow_extra, timeout=self.settings.timeout_s)
        except TimeoutError:
            raise RequestTimeout(
                f"the prediction took longer than {self.settings.timeout_s:g} s; send fewer rows or raise --timeout"
            ) from None
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            if isinstance(exc, ShipyardError):
                raise
            raise PredictionFailed(
                f"model {served.info.ref} could not score these rows: {type(exc).__name__}: {exc}"
            ) from None
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
                )
            except Exception:  # the answer is ready: logging it must never fail the request
                _log.exception("could not log request %s of %s", request_id, served.info.ref)
        return Prediction(served, scores)

    def _input_columns(self, served: ServedModel) -> tuple[list[str], list[str] | None]:
        """The logged input columns of a served version (from its signature; cached)."""
        key = (served.name, served.version)
        columns = self._inputs.get(key)
        if columns is None:
            from shipyard.monitoring.predlog import input_columns

            columns = self._inputs[key] = input_columns(served.info.signature)
        return columns
