"""Shadow comparison: did the shadow version answer like the primary on the same live requests?

A shadow deployment (``shipyard deploy fraud --shadow 4``) makes the server score a copy of each request with
the shadow version after the primary answered, and log those rows with route ``"shadow"`` and the primary's
request id. :func:`shadow_report` pairs every shadow row of the window with the primary row of the same row
id (``<request id>`` or ``<request id>/<row>``; when a request id was reused, the primary row logged closest
in time) and measures, like :func:`shipyard.evaluation.compare.compare` does for two versions on a file:

- ``agreement``: the share of rows with the same label (regressors: predictions within ``atol``);
- ``max_abs_diff`` / ``mean_abs_diff``: the absolute probability difference over every (row, class) cell,
  position by position (both versions log probabilities in their class order); regressors: prediction
  difference;
- the confusion between the primary's and the shadow's labels, and the rows that disagree most;
- request latency p50/p95/p99 of the primary and of the shadow on the same requests;
- the versions paired, the shadow rows without a primary row, and the primary rows of the window;
- a verdict: pass when ``agreement >= min_agreement`` and ``max_abs_diff <= atol``.

The pairing runs in DuckDB over the log; the figures are computed with NumPy on the paired rows.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from shipyard.errors import InvalidInput
from shipyard.evaluation.abtest import SHADOW_ROUTE, Task, task_from_log
from shipyard.evaluation.compare import (
    Comparison,
    Disagreement,
    _abs_diff,
    _equal,
    _json_value,
    _key,
    _plain,
    _plain_list,
    _sorted,
)

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.monitoring.logs import PredictionLog

__all__ = ["ShadowReport", "shadow_report"]

_PAIRS_SQL = f"""
WITH shadow AS (SELECT * FROM predictions WHERE route = '{SHADOW_ROUTE}'),
primary_rows AS (SELECT * FROM predictions WHERE route <> '{SHADOW_ROUTE}')
SELECT s.request_id, p.version AS primary_version, s.version AS shadow_version, p.route AS primary_route,
       p.latency_ms AS primary_latency_ms, s.latency_ms AS shadow_latency_ms,
       p.prediction AS primary_prediction, s.prediction AS shadow_prediction,
       p.probabilities AS primary_probabilities, s.probabilities AS shadow_probabilities
FROM shadow s JOIN primary_rows p USING (request_id)
QUALIFY row_number() OVER (PARTITION BY s.request_id, s.ts ORDER BY abs(epoch(s.ts) - epoch(p.ts)), p.ts) = 1
ORDER BY s.ts, s.request_id
"""
_COUNTS_SQL = f"""
WITH started AS (
    SELECT min(p.ts) AS ts FROM predictions p JOIN predictions s USING (request_id)
    WHERE s.route = '{SHADOW_ROUTE}' AND p.route <> '{SHADOW_ROUTE}'
)
SELECT count_if(route = '{SHADOW_ROUTE}') AS shadow_rows, count_if(route <> '{SHADOW_ROUTE}') AS primary_rows,
       count_if(route <> '{SHADOW_ROUTE}' AND ts >= (SELECT ts FROM started)) AS served_rows
FROM predictions
"""
DEFAULT_ATOL = 1e-6
"""The tolerance of a regressor's predictions when none is given."""


@dataclass(frozen=True)
class ShadowReport:
    """What :func:`shadow_report` found: the comparison (A = primary, B = shadow) and the live-traffic figures.

    ``pairs`` counts the compared rows per (primary version, shadow version); ``latency`` has one summary
    (``requests``, ``p50_ms``, ``p95_ms``, ``p99_ms``) for ``"primary"`` and for ``"shadow"`` over the same
    requests; ``unmatched`` is the shadow rows of the window with no primary row (e.g. the primary row was
    logged before the window began, or dropped by a full log buffer). ``primary_rows`` counts every primary
    row of the window, ``served_rows`` those served while the shadow ran (from the first request it copied
    on: the rows it could sample), ``shadow_rows`` the rows the shadow scored. ``atol_source`` says where
    the tolerance came from (``"default"``, ``"--atol"``...), ``None`` when no tolerance was checked (a
    classifier's verdict is its label agreement unless a probability tolerance is given).
    """

    model: str
    window: str
    comparison: Comparison
    pairs: tuple[tuple[int, int, int], ...]
    primary_rows: int
    shadow_rows: int
    unmatched: int
    latency: dict[str, dict[str, float]]
    served_rows: int = 0
    atol_source: str | None = "default"

    @property
    def passed(self) -> bool:
        """The verdict: the comparison passed."""
        return self.comparison.passed

    @property
    def coverage(self) -> float:
        """Compared rows per row served while the shadow ran (about its sample rate, minus drops)."""
        return self.comparison.rows / self.served_rows if self.served_rows else 0.0

    @property
    def sampled(self) -> float:
        """Rows the shadow scored per row served while it ran (its sample rate as logged)."""
        return self.shadow_rows / self.served_rows if self.served_rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the comparison's fields plus the shadow's own."""
        return {
            "model": self.model,
            "window": self.window,
            **self.comparison.to_dict(),
            "atol": self.comparison.atol if self.atol_source is not None else None,
            "pairs": [{"primary": p, "shadow": s, "rows": n} for p, s, n in self.pairs],
            "primary_rows": self.primary_rows,
            "shadow_rows": self.shadow_rows,
            "served_rows": self.served_rows,
            "unmatched": self.unmatched,
            "coverage": self.coverage,
            "sampled": self.sampled,
            "atol_source": self.atol_source,
            "latency": {
                side: {k: _json_value(v) for k, v in figures.items()} for side, figures in self.latency.items()
            },
        }


def shadow_report(
    log: PredictionLog,
    model: str,
    *,
    since: dt.datetime | None = None,
    atol: float | None = None,
    min_agreement: float = 1.0,
    top: int = 10,
    task: Task | None = None,
    window: str | None = None,
    atol_source: str = "argument",
) -> ShadowReport:
    """Compare ``model``'s shadow rows since ``since`` with the primary rows of the same requests.

    The verdict of a classifier is its label agreement (at least ``min_agreement``); its probabilities are
    held to ``atol`` only when one is given (a shadow of another version is expected to differ in them).
    A regressor's predictions agree within ``atol`` (default :data:`DEFAULT_ATOL`). ``atol_source`` names
    where a given ``atol`` came from, for the report.

    Raises :class:`~shipyard.errors.NotFound` when the model has no log or no shadow row pairs with a primary
    row in the window, :class:`~shipyard.errors.InvalidInput` for options out of range.
    """
    from shipyard.monitoring.monitor import NoPredictions

    _check(DEFAULT_ATOL if atol is None else atol, min_agreement, top)
    started = time.perf_counter()
    described = window or ("since " + since.isoformat(timespec="seconds") if since is not None else "everything logged")
    counts = log.query(model, _COUNTS_SQL, since=since).to_pylist()[0]
    primary_rows, shadow_rows = int(counts["primary_rows"] or 0), int(counts["shadow_rows"] or 0)
    served_rows = int(counts["served_rows"] or 0)
    if shadow_rows == 0:
        raise NoPredictions(
            f"no shadow predictions of {model!r} in the prediction log ({described}); deploy a shadow version "
            f"first (shipyard deploy {model} --shadow VERSION) and send it traffic, or widen --since"
        )
    paired = log.query(model, _PAIRS_SQL, since=since)
    if paired.num_rows == 0:
        raise NoPredictions(
            f"none of the {shadow_rows:,} shadow predictions of {model!r} ({described}) has a primary prediction "
            "with the same request id in the log"
        )
    frame = paired.to_pandas()
    task = task or task_from_log(log, model, since, f"route = '{SHADOW_ROUTE}'")
    checked = atol is not None or task == "regression"
    source: str | None = (atol_source if atol is not None else "default") if checked else None
    if atol is None:
        atol = DEFAULT_ATOL if task == "regression" else math.inf
    tally = _tally(frame, task, atol, paired)
    reasons = []
    if tally.agreement < min_agreement:
        what = "label agreement" if task == "classification" else f"share of predictions within {atol:g}"
        reasons.append(f"{what} {tally.agreement:.6g} is below the minimum {min_agreement:g}")
    if tally.max_diff is not None and not tally.max_diff <= atol:
        what = "probability" if task == "classification" else "prediction"
        reasons.append(f"max absolute {what} difference {tally.max_diff:.6g} is above atol {atol:g}")
    worst = _worst(log, model, since, frame, tally, top, atol)
    primary_versions = sorted({int(v) for v in frame["primary_version"]})
    shadow_versions = sorted({int(v) for v in frame["shadow_version"]})
    routes = sorted({str(r) for r in frame["primary_route"]})
    comparison = Comparison(
        ref_a=f"{model}:{','.join(map(str, primary_versions))}",
        ref_b=f"{model}:{','.join(map(str, shadow_versions))}",
        flavor_a=f"primary, route {', '.join(routes)}",
        flavor_b="shadow",
        data=f"prediction log, {described}",
        task=task,
        rows=len(frame),
        agreement=tally.agreement,
        disagreements=len(frame) - tally.agreeing,
        max_abs_diff=tally.max_diff,
        mean_abs_diff=tally.mean_diff,
        classes=None,
        labels=tuple(tally.labels),
        confusion=tally.confusion,
        top=worst,
        atol=float(atol),
        min_agreement=float(min_agreement),
        passed=not reasons,
        reasons=tuple(reasons),
        notes=tuple(tally.notes),
        chunks=1,
        seconds=time.perf_counter() - started,
    )
    pairs = frame.groupby(["primary_version", "shadow_version"]).size()
    return ShadowReport(
        model=model,
        window=described,
        comparison=comparison,
        pairs=tuple((int(p), int(s), int(n)) for (p, s), n in pairs.items()),
        primary_rows=primary_rows,
        shadow_rows=shadow_rows,
        unmatched=shadow_rows - len(frame),
        latency=_latency(frame),
        served_rows=served_rows,
        atol_source=source,
    )


# ---------------------------------------------------------------------- figures
@dataclass
class _Tally:
    agreement: float
    agreeing: int
    differs: np.ndarray[Any, Any]
    row_diff: np.ndarray[Any, Any] | None
    max_diff: float | None
    mean_diff: float | None
    labels: list[Any]
    confusion: tuple[tuple[int, ...], ...]
    notes: list[str]


def _tally(frame: pd.DataFrame, task: Task, atol: float, paired: Any) -> _Tally:
    notes: list[str] = []
    a = frame["primary_prediction"].to_numpy()
    b = frame["shadow_prediction"].to_numpy()
    labels: list[Any] = []
    confusion: tuple[tuple[int, ...], ...] = ()
    if task == "regression":
        try:
            diff = _abs_diff(a.astype(np.float64), b.astype(np.float64))
        except (TypeError, ValueError):
            raise InvalidInput(
                "the logged predictions are not numbers, so they cannot be compared as a regressor's"
            ) from None
        same = diff <= atol
        return _Tally(float(same.mean()), int(same.sum()), ~same, diff, float(diff.max()), float(diff.mean()), [], (),
                      notes)  # fmt: skip
    same = _equal(a, b)
    counts = Counter(zip(_plain_list(a), _plain_list(b), strict=True))
    seen = {_key(label): label for pair in counts for label in pair}
    labels = _sorted(list(seen.values()))
    index = {_key(label): i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for (left, right), count in counts.items():
        matrix[index[_key(left)]][index[_key(right)]] += count
    confusion = tuple(tuple(row) for row in matrix)
    cells, row_diff = _probability_diff(paired, notes)
    max_diff = float(cells.max()) if cells is not None and cells.size else None
    mean_diff = float(cells.mean()) if cells is not None and cells.size else None
    return _Tally(float(same.mean()), int(same.sum()), ~same, row_diff, max_diff, mean_diff, labels, confusion, notes)


def _probability_diff(paired: Any, notes: list[str]) -> tuple[np.ndarray[Any, Any] | None, np.ndarray[Any, Any] | None]:
    """Per (row, class) absolute differences of rows whose two probability lists have the same length, and the
    largest difference per row (NaN for rows not compared)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    a, b = paired.column("primary_probabilities"), paired.column("shadow_probabilities")
    if not pa.types.is_list(a.type) or not pa.types.is_list(b.type):
        notes.append("the logged rows have no probabilities: only the labels are compared")
        return None, None
    a, b = a.combine_chunks(), b.combine_chunks()
    len_a = pc.fill_null(pc.list_value_length(a), -1).to_numpy(zero_copy_only=False)
    len_b = pc.fill_null(pc.list_value_length(b), -2).to_numpy(zero_copy_only=False)
    usable = (len_a == len_b) & (len_a > 0)
    if not usable.any():
        notes.append("no compared row has probabilities from both versions: only the labels are compared")
        return None, None
    widths = np.unique(len_a[usable])
    width = int(widths[np.argmax([(len_a[usable] == w).sum() for w in widths])])
    usable &= len_a == width
    if not usable.all():
        notes.append(
            f"{int((~usable).sum()):,} of {len(usable):,} rows lack probabilities from one version (or give a "
            "different number of classes): their probabilities are not compared"
        )
    mask = pa.array(usable)
    matrix_a = np.asarray(pc.list_flatten(a.filter(mask)).to_numpy(zero_copy_only=False), dtype=np.float64)
    matrix_b = np.asarray(pc.list_flatten(b.filter(mask)).to_numpy(zero_copy_only=False), dtype=np.float64)
    cells = _abs_diff(matrix_a.reshape(-1, width), matrix_b.reshape(-1, width))
    row_diff = np.full(len(usable), np.nan)
    row_diff[usable] = cells.max(axis=1)
    return cells, row_diff


def _worst(
    log: PredictionLog, model: str, since: dt.datetime | None, frame: pd.DataFrame, tally: _Tally, top: int, atol: float
) -> tuple[Disagreement, ...]:
    """The ``top`` rows that disagree most (labels differ first, then the largest difference), with their inputs."""
    if top == 0:
        return ()
    row_diff = tally.row_diff if tally.row_diff is not None else np.zeros(len(frame))
    size = np.nan_to_num(row_diff, nan=0.0)
    bad = np.flatnonzero(tally.differs | (size > atol))
    if not len(bad):
        return ()
    order = np.lexsort((bad, -size[bad], -tally.differs[bad].astype(np.int8)))[:top]
    chosen = bad[order]
    ids = [str(frame["request_id"].iat[int(i)]) for i in chosen]
    inputs = _inputs(log, model, since, ids)
    return tuple(
        Disagreement(
            row=int(i),
            prediction_a=_plain(frame["primary_prediction"].iat[int(i)]),
            prediction_b=_plain(frame["shadow_prediction"].iat[int(i)]),
            difference=None if tally.row_diff is None or math.isnan(row_diff[i]) else float(row_diff[i]),
            features={"request_id": rid, **inputs.get(rid, {})},
        )
        for i, rid in zip(chosen, ids, strict=True)
    )


def _inputs(log: PredictionLog, model: str, since: dt.datetime | None, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The logged inputs of the primary rows ``ids`` (empty when the log holds no inputs)."""
    columns = {row["column_name"] for row in log.query(model, "DESCRIBE predictions", since=since).to_pylist()}
    if "input" not in columns or not ids:
        return {}
    listing = ", ".join("'" + rid.replace("'", "''") + "'" for rid in ids)
    sql = (
        f"SELECT request_id, UNNEST(input) FROM predictions WHERE route <> '{SHADOW_ROUTE}' "
        f"AND request_id IN ({listing}) ORDER BY ts"
    )
    found: dict[str, dict[str, Any]] = {}
    for row in log.query(model, sql, since=since).to_pylist():
        found[str(row.pop("request_id"))] = {k: _plain(v) for k, v in row.items()}
    return found


def _latency(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Request latency of each side over the compared requests (the rows of a request share its latency)."""
    from shipyard.monitoring.monitor import latency_summary

    requests = frame.assign(_request=frame["request_id"].astype(str).str.replace(r"/\d+$", "", regex=True))
    requests = requests.drop_duplicates("_request")
    result: dict[str, dict[str, float]] = {}
    for side in ("primary", "shadow"):
        summary = latency_summary(requests[f"{side}_latency_ms"])
        result[side] = {"requests": summary.pop("count"), **summary}
    return result


def _check(atol: float, min_agreement: float, top: int) -> None:
    if not (isinstance(atol, (int, float)) and atol >= 0):
        raise InvalidInput(f"atol must be a number of at least 0, got {atol!r}")
    if not (isinstance(min_agreement, (int, float)) and 0 <= min_agreement <= 1):
        raise InvalidInput(f"min_agreement must be between 0 and 1, got {min_agreement!r}")
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise InvalidInput(f"top must be a whole number of at least 0, got {top!r}")
