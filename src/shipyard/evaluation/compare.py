"""Model equivalence: do two registered versions give the same answers on the same rows?

:func:`compare` loads two model references (any flavors: a scikit-learn pipeline and its ONNX export, two
XGBoost versions, ...), scores the same data with both, chunk by chunk, and reports how far apart they are:

- ``agreement``: the fraction of rows where the labels are equal (regressors: where the predictions are
  within ``atol`` of each other);
- ``max_abs_diff`` / ``mean_abs_diff``: for classifiers the absolute difference of the probabilities,
  aligned by class label, over every (row, class) cell; for regressors the difference of the predictions;
- ``confusion``: how often model A said ``labels[i]`` while model B said ``labels[j]`` (classifiers);
- ``top``: the rows that disagree most (labels differ first, then the largest difference), with their
  features. A row disagrees when the labels differ or its difference exceeds ``atol``;
- ``unscored``: rows that one model or both could not score (a missing value in a column the model was
  trained without missing values, a category it refuses, ...), left out of every other figure and counted,
  with the first few and the reason (``unscored_rows``);
- a verdict: pass when ``agreement >= min_agreement``, ``max_abs_diff <= atol`` and no row is scored by one
  model but refused by the other; ``reasons`` says which condition failed.

The data is read with :mod:`shipyard.data` in chunks of ``chunk_rows`` rows, so memory stays bounded by a
few chunks whatever the number of rows: every figure is a running sum, count or maximum, and the
disagreeing rows are kept in a heap of at most ``top`` entries. The columns are checked against both
signatures once, before the first row is read.

>>> import shipyard, tempfile, pandas as pd
>>> from sklearn.linear_model import LogisticRegression
>>> service = shipyard.connect(shipyard.Settings(home=tempfile.mkdtemp()))
>>> X = pd.DataFrame({"amount": [1.0, 2.0, 8.0, 9.0], "items": [1, 1, 3, 4]})
>>> _ = service.register(LogisticRegression().fit(X, [0, 0, 1, 1]), "fraud", X=X)
>>> _ = service.register(LogisticRegression(C=0.01).fit(X, [0, 0, 1, 1]), "fraud", X=X)
>>> same = compare(service, "fraud:1", "fraud:1", X)
>>> same.passed, same.agreement, same.max_abs_diff
(True, 1.0, 0.0)
>>> other = compare(service, "fraud:1", "fraud:2", X)
>>> other.verdict, other.reasons[0].startswith("max absolute probability difference")
('fail', True)
"""

from __future__ import annotations

import heapq
import math
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from shipyard.errors import InvalidInput, PredictionFailed, SchemaError, ShipyardError

if TYPE_CHECKING:
    import pandas as pd

    from shipyard.data import Source
    from shipyard.scoring import Model
    from shipyard.service import ModelService

DEFAULT_CHUNK_ROWS = 100_000
UNSCORED_SHOWN = 5
Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class Disagreement:
    """One row on which the two models disagree.

    ``row`` is its 0-based position in the data; ``difference`` the largest absolute probability difference
    over the classes (regressors: the absolute difference of the predictions; ``None`` for classifiers
    compared without probabilities); ``features`` the row's input columns.
    """

    row: int
    prediction_a: Any
    prediction_b: Any
    difference: float | None
    features: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "row": self.row,
            "prediction_a": _json_value(self.prediction_a),
            "prediction_b": _json_value(self.prediction_b),
            "difference": _json_value(self.difference),
            "features": {k: _json_value(v) for k, v in self.features.items()},
        }


@dataclass(frozen=True)
class Unscored:
    """A row left out of the comparison: ``reason_a``/``reason_b`` say why each model refused it (``None``: it could
    score the row)."""

    row: int
    reason_a: str | None
    reason_b: str | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"row": self.row, "reason_a": self.reason_a, "reason_b": self.reason_b}


@dataclass(frozen=True)
class Comparison:
    """What :func:`compare` found. ``passed`` is the verdict; ``reasons`` says why it failed (empty on a pass).

    ``confusion[i][j]`` counts the rows where model A answered ``labels[i]`` and model B ``labels[j]``
    (classifiers only; empty for regressors). ``notes`` records what could not be compared (e.g. a model
    that gives no probabilities). ``unscored`` counts the rows left out because a model could not score them
    (``rows`` does not include them); ``unscored_rows`` lists the first :data:`UNSCORED_SHOWN` of them.
    """

    ref_a: str
    ref_b: str
    flavor_a: str
    flavor_b: str
    data: str
    task: Task
    rows: int
    agreement: float
    disagreements: int
    max_abs_diff: float | None
    mean_abs_diff: float | None
    classes: tuple[Any, ...] | None
    labels: tuple[Any, ...]
    confusion: tuple[tuple[int, ...], ...]
    top: tuple[Disagreement, ...]
    atol: float
    min_agreement: float
    passed: bool
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    chunks: int = 0
    seconds: float = 0.0
    unscored: int = 0
    unscored_rows: tuple[Unscored, ...] = ()

    @property
    def verdict(self) -> Literal["pass", "fail"]:
        """``"pass"`` or ``"fail"``."""
        return "pass" if self.passed else "fail"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (strict JSON: no NaN or infinity, which become ``None``)."""
        return {
            "ref_a": self.ref_a,
            "ref_b": self.ref_b,
            "flavor_a": self.flavor_a,
            "flavor_b": self.flavor_b,
            "data": self.data,
            "task": self.task,
            "rows": self.rows,
            "agreement": self.agreement,
            "disagreements": self.disagreements,
            "max_abs_diff": _json_value(self.max_abs_diff),
            "mean_abs_diff": _json_value(self.mean_abs_diff),
            "classes": None if self.classes is None else [_json_value(c) for c in self.classes],
            "labels": [_json_value(label) for label in self.labels],
            "confusion": [list(row) for row in self.confusion],
            "top": [row.to_dict() for row in self.top],
            "atol": self.atol,
            "min_agreement": self.min_agreement,
            "verdict": self.verdict,
            "passed": self.passed,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "chunks": self.chunks,
            "seconds": self.seconds,
            "unscored": self.unscored,
            "unscored_rows": [row.to_dict() for row in self.unscored_rows],
        }


def compare(
    service: ModelService,
    ref_a: str,
    ref_b: str,
    data: str | os.PathLike[str] | pd.DataFrame | Source,
    *,
    atol: float = 1e-6,
    min_agreement: float = 1.0,
    top: int = 10,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    columns: Sequence[str] | None = None,
) -> Comparison:
    """Score ``data`` with the models ``ref_a`` and ``ref_b`` and measure how far apart their answers are.

    ``data`` is anything :func:`shipyard.data.open_source` opens (a CSV or Parquet path, folder or glob, a
    database URL with ``?table=``, a DataFrame) or a :class:`~shipyard.data.Source`. ``columns`` names the
    feature columns, in training order, for a model trained on an array; by default such a model takes the
    other model's named columns when their number fits, else the data's numeric columns.

    Raises :class:`~shipyard.errors.InvalidInput` for options out of range, data without rows, or classifiers
    whose class sets differ; :class:`~shipyard.errors.SchemaError` when the data does not fit a signature;
    the registry's ``NotFound`` errors for unknown references.
    """
    _check_options(atol, min_agreement, top, chunk_rows)
    source = _open(data)
    model_a = service.load(ref_a)
    model_b = service.load(ref_b)
    features_a, features_b = _feature_columns(source, model_a, model_b, columns)
    wanted = set(features_a) | set(features_b)
    read = [name for name in source.column_names if name in wanted]

    started = time.perf_counter()
    tally = _Tally(model_a, model_b, atol, top)
    first = 0
    for chunk in source.iter_batches(chunk_rows, read):
        chunk = chunk.reset_index(drop=True)
        if len(chunk):
            _score_chunk(tally, chunk, first, features_a, features_b)
        first += len(chunk)
    if tally.rows == 0:
        if tally.unscored:
            example = tally.unscored_rows[0]
            raise PredictionFailed(
                f"no row of {source.uri} could be scored by both models ({tally.unscored:,} rows refused); "
                f"row {example.row}: {example.reason_a or example.reason_b}"
            )
        raise InvalidInput(f"{source.uri} has no rows; there is nothing to compare")
    return tally.result(source.uri, min_agreement, time.perf_counter() - started)


# ---------------------------------------------------------------------- preparing
def _check_options(atol: float, min_agreement: float, top: int, chunk_rows: int) -> None:
    if not (isinstance(atol, (int, float)) and math.isfinite(atol) and atol >= 0):
        raise InvalidInput(f"atol must be a number of at least 0, got {atol!r}")
    if not (isinstance(min_agreement, (int, float)) and 0 <= min_agreement <= 1):
        raise InvalidInput(f"min_agreement must be between 0 and 1, got {min_agreement!r}")
    for name, value, least in (("top", top, 0), ("chunk_rows", chunk_rows, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InvalidInput(f"{name} must be a whole number of at least {least}, got {value!r}")


def _open(data: Any) -> Source:
    from shipyard.data import Source, open_source

    return data if isinstance(data, Source) else open_source(data)


def _feature_columns(
    source: Source, model_a: Model, model_b: Model, columns: Sequence[str] | None
) -> tuple[list[str], list[str]]:
    """The input columns each model takes, in its order, checked against the data's schema once."""
    named = {
        id(model): model.signature.column_names
        for model in (model_a, model_b)
        if model.signature is not None and model.signature.tensor is None
    }
    found: list[list[str]] = []
    problems: dict[str, list[str]] = {}
    for model, other in ((model_a, model_b), (model_b, model_a)):
        try:
            found.append(_columns_for(source, model, named.get(id(other)), columns))
        except SchemaError as exc:
            problems[model.info.ref] = exc.problems
    if problems:
        refs = list(problems)
        if len(refs) == 2 and problems[refs[0]] == problems[refs[1]]:
            problems = {f"{refs[0]} and {refs[1]}": problems[refs[0]]}
        raise SchemaError([f"{ref}: {problem}" for ref, listed in problems.items() for problem in listed])
    return found[0], found[1]


def _columns_for(source: Source, model: Model, others: list[str] | None, columns: Sequence[str] | None) -> list[str]:
    from shipyard.data import check_schema

    signature = model.signature
    if signature is None:
        return list(source.column_names)
    if signature.tensor is None:
        return check_schema(source, signature)
    if columns is None and others is not None:
        width = signature.tensor.shape[-1] if len(signature.tensor.shape) == 2 else None
        if width is None or width == len(others):
            columns = others
    return check_schema(source, signature, columns=columns)


# ---------------------------------------------------------------------- scoring a chunk
@dataclass(frozen=True)
class _Scored:
    predictions: np.ndarray[Any, Any]
    proba: np.ndarray[Any, Any] | None


def _score(model: Model, chunk: pd.DataFrame, features: list[str], first_row: int) -> _Scored | str:
    """Both models' answers to ``chunk``, or why ``model`` could not score it (a line naming the rows)."""
    try:
        prepared = model.prepare(chunk[features], first_row=first_row)
    except SchemaError as exc:
        return "; ".join(exc.problems)
    try:
        predictions, proba = model.loaded.predict_with_proba(prepared)
    except InvalidInput as exc:  # e.g. PredictionFailed from a flavor
        return str(exc)
    except ShipyardError:
        raise
    except Exception as exc:  # the model refused rows that fit its signature (e.g. an unknown category)
        text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        return f"{type(exc).__name__}: {text[:200]}"
    predictions = np.asarray(predictions)
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        predictions = predictions.ravel()
    if predictions.ndim != 1 or len(predictions) != len(chunk):
        raise InvalidInput(
            f"{model.info.ref} gives {predictions.shape} predictions for {len(chunk)} rows; only models with one "
            "prediction per row can be compared"
        )
    return _Scored(predictions, None if proba is None else np.asarray(proba, dtype=np.float64))


def _refused(model: Model, chunk: pd.DataFrame, features: list[str], first_row: int) -> dict[int, str]:
    """The positions of the rows of ``chunk`` that ``model`` cannot score, with the reason.

    Only called for a chunk the model refused as a whole. Rows with a missing value where the signature allows
    none are found at once; the others by halving (:func:`_search`).
    """
    signature = model.signature
    missing = signature.missing(chunk, first_row) if signature is not None and signature.tensor is None else {}
    positions = np.arange(len(chunk))
    part = chunk
    if missing:
        positions = np.setdiff1d(positions, np.fromiter(missing, dtype=np.intp))
        part = chunk.iloc[positions].reset_index(drop=True)
        if not len(part) or not isinstance(_score(model, part, features, first_row), str):
            return missing
    found = _search(model, part, features, first_row + positions)
    return {**missing, **{int(positions[p]): reason for p, reason in found.items()}}


def _search(model: Model, part: pd.DataFrame, features: list[str], numbers: np.ndarray[Any, Any]) -> dict[int, str]:
    """The positions of the rows of ``part`` (the data's rows ``numbers``) that ``model`` refuses, by halving.

    ``part`` as a whole is known to be refused; if no single row is, every row is refused with the whole's reason.
    """
    refused: dict[int, str] = {}
    stack = [(0, len(part))]
    while stack:
        lo, hi = stack.pop()
        answer = _score(model, part.iloc[lo:hi], features, int(numbers[lo]))
        if not isinstance(answer, str):
            continue
        if hi - lo == 1:
            refused[lo] = answer
            continue
        mid = (lo + hi) // 2
        stack += [(mid, hi), (lo, mid)]
    if not refused:
        answer = _score(model, part, features, int(numbers[0]))
        refused = dict.fromkeys(range(len(part)), answer if isinstance(answer, str) else "refused with other rows")
    return refused


def _score_chunk(
    tally: _Tally, chunk: pd.DataFrame, first_row: int, features_a: list[str], features_b: list[str]
) -> None:
    """Score ``chunk`` with both models and add it to ``tally``; rows either model refuses are counted apart."""
    scored_a = _score(tally.model_a, chunk, features_a, first_row)
    scored_b = _score(tally.model_b, chunk, features_b, first_row)
    if not isinstance(scored_a, str) and not isinstance(scored_b, str):
        tally.add(chunk, np.arange(first_row, first_row + len(chunk)), scored_a, scored_b)
        return
    refused_a = _refused(tally.model_a, chunk, features_a, first_row) if isinstance(scored_a, str) else {}
    refused_b = _refused(tally.model_b, chunk, features_b, first_row) if isinstance(scored_b, str) else {}
    tally.add_unscored(first_row, refused_a, refused_b)
    kept = np.setdiff1d(np.arange(len(chunk)), np.fromiter({*refused_a, *refused_b}, dtype=np.intp))
    if not len(kept):
        return
    rest = chunk.iloc[kept].reset_index(drop=True)
    again_a = _score(tally.model_a, rest, features_a, first_row)
    again_b = _score(tally.model_b, rest, features_b, first_row)
    for model, answer in ((tally.model_a, again_a), (tally.model_b, again_b)):
        if isinstance(answer, str):  # rows each scorable alone but not together: never expected
            raise PredictionFailed(f"{model.info.ref} could not score rows of the data: {answer}")
    assert not isinstance(again_a, str) and not isinstance(again_b, str)
    tally.add(rest, first_row + kept, again_a, again_b)


# ---------------------------------------------------------------------- running totals
@dataclass
class _Tally:
    """Running figures over the chunks seen so far; memory does not grow with the rows."""

    model_a: Model
    model_b: Model
    atol: float
    top: int
    rows: int = 0
    chunks: int = 0
    agreeing: int = 0
    diff_sum: float = 0.0
    diff_cells: int = 0
    diff_max: float | None = None
    task: Task | None = None
    classes: list[Any] | None = None
    align: np.ndarray[Any, Any] | None = None  # column order of B's probabilities matching A's classes
    compare_proba: bool = False
    notes: list[str] = field(default_factory=list)
    unscored: int = 0
    one_sided: dict[str, int] = field(default_factory=dict)  # rows only this model refused, by its reference
    unscored_rows: list[Unscored] = field(default_factory=list)
    confusion: Counter[tuple[Any, Any]] = field(default_factory=Counter)
    heap: list[tuple[int, float, int, Disagreement]] = field(default_factory=list)

    def add_unscored(self, first_row: int, refused_a: dict[int, str], refused_b: dict[int, str]) -> None:
        """Count the rows either model refused (positions in a chunk starting at ``first_row``)."""
        positions = sorted({*refused_a, *refused_b})
        self.unscored += len(positions)
        for model, refused, other in ((self.model_a, refused_a, refused_b), (self.model_b, refused_b, refused_a)):
            alone = sum(1 for position in refused if position not in other)
            if alone:
                self.one_sided[model.info.ref] = self.one_sided.get(model.info.ref, 0) + alone
        for position in positions[: max(0, UNSCORED_SHOWN - len(self.unscored_rows))]:
            self.unscored_rows.append(Unscored(first_row + position, refused_a.get(position), refused_b.get(position)))

    def add(self, chunk: pd.DataFrame, numbers: np.ndarray[Any, Any], a: _Scored, b: _Scored) -> None:
        """Add the answers to ``chunk``, whose rows are the data's rows ``numbers``."""
        if self.task is None:
            self._decide(a, b)
        n = len(chunk)
        if self.task == "regression":
            diff = _abs_diff(a.predictions.astype(np.float64), b.predictions.astype(np.float64))
            same = diff <= self.atol
            row_diff: np.ndarray[Any, Any] | None = diff
            self._add_diffs(diff)
        else:
            same = _equal(a.predictions, b.predictions)
            row_diff = None
            if self.compare_proba:
                cells = self._proba_diff(a, b)
                self._add_diffs(cells)
                row_diff = cells.max(axis=1) if cells.shape[1] else np.zeros(n)
            pairs = _plain_list(a.predictions), _plain_list(b.predictions)
            self.confusion.update(zip(*pairs, strict=True))
        self.rows += n
        self.chunks += 1
        self.agreeing += int(same.sum())
        self._keep_worst(chunk, numbers, a, b, ~same, row_diff)

    def _decide(self, a: _Scored, b: _Scored) -> None:
        """Classifier or regressor, and how to line up the probabilities (once, on the first chunk)."""
        ma, mb = self.model_a, self.model_b
        classifier = any(m.classes is not None or m.has_predict_proba for m in (ma, mb))
        if not classifier:
            floats = a.predictions.dtype.kind == "f" or b.predictions.dtype.kind == "f"
            self.task = "regression" if floats else "classification"
            return
        self.task = "classification"
        ca, cb = _plain_list(ma.classes), _plain_list(mb.classes)
        if ma.classes is not None and mb.classes is not None and not _same_set(ca, cb):
            raise InvalidInput(
                f"{ma.info.ref} and {mb.info.ref} do not predict the same classes ({_shown(ca)} vs {_shown(cb)}); "
                "only models with the same class labels can be compared"
            )
        self.classes = ca if ma.classes is not None else (cb if mb.classes is not None else None)
        for model, scored, classes in ((ma, a, ca), (mb, b, cb)):
            if scored.proba is None:
                self.notes.append(f"{model.info.ref} gives no probabilities: only the labels are compared")
                return
            if model.classes is None:
                self.notes.append(
                    f"{model.info.ref} does not name its classes, so its probabilities cannot be lined up: "
                    "only the labels are compared"
                )
                return
            if scored.proba.ndim != 2 or scored.proba.shape[1] != len(classes):
                self.notes.append(
                    f"{model.info.ref} gives {scored.proba.shape} probabilities for {len(classes)} classes: "
                    "only the labels are compared"
                )
                return
        position = {_key(label): i for i, label in enumerate(cb)}
        self.align = np.array([position[_key(label)] for label in ca], dtype=np.intp)
        self.compare_proba = True

    def _proba_diff(self, a: _Scored, b: _Scored) -> np.ndarray[Any, Any]:
        assert a.proba is not None and b.proba is not None and self.align is not None
        return _abs_diff(a.proba, b.proba[:, self.align])

    def _add_diffs(self, diff: np.ndarray[Any, Any]) -> None:
        if diff.size == 0:
            return
        self.diff_sum += float(diff.sum(dtype=np.float64))
        self.diff_cells += int(diff.size)
        biggest = float(diff.max())
        self.diff_max = biggest if self.diff_max is None else max(self.diff_max, biggest)

    def _keep_worst(
        self,
        chunk: pd.DataFrame,
        numbers: np.ndarray[Any, Any],
        a: _Scored,
        b: _Scored,
        differs: np.ndarray[Any, Any],
        row_diff: np.ndarray[Any, Any] | None,
    ) -> None:
        """Offer this chunk's worst rows to the bounded heap (labels differ first, then the largest difference)."""
        if self.top == 0:
            return
        bad = differs if row_diff is None else differs | (row_diff > self.atol)
        candidates = np.flatnonzero(bad)
        if not len(candidates):
            return
        size = np.zeros(len(candidates)) if row_diff is None else row_diff[candidates]
        order = np.lexsort((candidates, -size, -differs[candidates].astype(np.int8)))[: self.top]
        for i in candidates[order]:
            key = (int(differs[i]), float(0.0 if row_diff is None else row_diff[i]), -int(numbers[i]))
            if len(self.heap) == self.top and key <= self.heap[0][:3]:
                continue
            row = Disagreement(
                row=int(numbers[i]),
                prediction_a=_plain(a.predictions[i]),
                prediction_b=_plain(b.predictions[i]),
                difference=None if row_diff is None else float(row_diff[i]),
                features={str(name): _plain(chunk[name].iat[int(i)]) for name in chunk.columns},
            )
            entry = (*key, row)
            if len(self.heap) < self.top:
                heapq.heappush(self.heap, entry)
            else:
                heapq.heapreplace(self.heap, entry)

    def result(self, uri: str, min_agreement: float, seconds: float) -> Comparison:
        assert self.task is not None
        agreement = self.agreeing / self.rows
        mean = self.diff_sum / self.diff_cells if self.diff_cells else None
        reasons = []
        if agreement < min_agreement:
            what = "label agreement" if self.task == "classification" else f"share of predictions within {self.atol:g}"
            reasons.append(f"{what} {agreement:.6g} is below the minimum {min_agreement:g}")
        if self.diff_max is not None and not self.diff_max <= self.atol:
            what = "probability" if self.task == "classification" else "prediction"
            reasons.append(f"max absolute {what} difference {self.diff_max:.6g} is above atol {self.atol:g}")
        for ref, count in self.one_sided.items():
            rows = f"{count:,} row{'' if count == 1 else 's'}"
            reasons.append(f"{ref} could not score {rows} that the other model scored")
        labels = self._labels()
        index = {_key(label): i for i, label in enumerate(labels)}
        matrix = [[0] * len(labels) for _ in labels]
        for (left, right), count in self.confusion.items():
            matrix[index[_key(left)]][index[_key(right)]] += count
        ranked = sorted(self.heap, key=lambda entry: entry[:3], reverse=True)
        return Comparison(
            ref_a=self.model_a.info.ref,
            ref_b=self.model_b.info.ref,
            flavor_a=self.model_a.flavor,
            flavor_b=self.model_b.flavor,
            data=uri,
            task=self.task,
            rows=self.rows,
            agreement=agreement,
            disagreements=self.rows - self.agreeing,
            max_abs_diff=self.diff_max,
            mean_abs_diff=mean,
            classes=None if self.classes is None else tuple(self.classes),
            labels=tuple(labels),
            confusion=tuple(tuple(row) for row in matrix),
            top=tuple(entry[3] for entry in ranked),
            atol=float(self.atol),
            min_agreement=float(min_agreement),
            passed=not reasons,
            reasons=tuple(reasons),
            notes=tuple(self.notes),
            chunks=self.chunks,
            seconds=seconds,
            unscored=self.unscored,
            unscored_rows=tuple(self.unscored_rows),
        )

    def _labels(self) -> list[Any]:
        """The model's classes, then any other label either model answered (in sorted order)."""
        if self.task != "classification":
            return []
        known = list(self.classes or [])
        seen = {_key(label) for label in known}
        extra = {_key(label): label for pair in self.confusion for label in pair if _key(label) not in seen}
        return known + _sorted(list(extra.values()))


# ---------------------------------------------------------------------- small helpers
def _abs_diff(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``|a - b|`` where a NaN on both sides counts as equal and a NaN on one side as infinitely far.

    >>> _abs_diff(np.array([1.0, np.nan, np.nan]), np.array([0.5, np.nan, 2.0])).tolist()
    [0.5, 0.0, inf]
    """
    diff: np.ndarray[Any, Any] = np.abs(a - b)
    missing = np.isnan(diff)
    if missing.any():
        both = np.isnan(a) & np.isnan(b)
        diff[missing & both] = 0.0
        diff[missing & ~both] = np.inf
    return diff


def _equal(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Element-wise label equality, also between arrays of different kinds (int labels vs strings).

    >>> _equal(np.array([1, 2]), np.array([1.0, 3.0])).tolist(), _equal(np.array([1]), np.array(["1"])).tolist()
    ([True, False], [False])
    """
    if a.dtype.kind in "biuf" and b.dtype.kind in "biuf":
        same: np.ndarray[Any, Any] = np.asarray(a == b)
        return same
    return np.asarray(a.astype(object) == b.astype(object), dtype=bool)


def _plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds."""
    return value.item() if isinstance(value, np.generic) else value


def _plain_list(values: Any) -> list[Any]:
    """Labels as a list of Python values (``[]`` for ``None``)."""
    if values is None:
        return []
    return [_plain(v) for v in (values.tolist() if isinstance(values, np.ndarray) else values)]


def _key(label: Any) -> Any:
    """A hashable key under which 1, 1.0 and numpy's 1 are the same label, but "1" is another."""
    label = _plain(label)
    return (type(label) is str, label)


def _same_set(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and {_key(x) for x in a} == {_key(x) for x in b}


def _sorted(values: list[Any]) -> list[Any]:
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=repr)


def _shown(values: list[Any]) -> str:
    shown = ", ".join(repr(v) for v in values[:10])
    return shown + (", ..." if len(values) > 10 else "")


def _json_value(value: Any) -> Any:
    """``value`` as strict JSON allows it: Python scalars, non-finite floats as ``None``, times as ISO text.

    >>> _json_value(np.float32(0.5)), _json_value(float("nan")), _json_value(np.int64(3))
    (0.5, None, 3)
    """
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


__all__ = ["Comparison", "Disagreement", "compare"]
