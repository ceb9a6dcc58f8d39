"""Scoring one chunk: validate its rows, predict, and build the output and rejects tables.

:func:`score_chunk` is the only code that touches rows, and it is the same function on every engine
(a thread of the local engine or a Dask worker), so the engines give identical output row for row.
It never raises for bad data: a row that does not fit the signature, or that the model cannot score,
is returned in the chunk's rejects table with the reason and its 0-based row number in the input.
With ``strict`` the chunk instead returns the first bad row's reason as a fatal error (an exception
would not survive the trip back from a Dask worker with its message intact).

Finding the bad rows costs nothing on a clean chunk: the whole chunk is validated at once, exactly as
:meth:`~shipyard.scoring.Model.prepare` does for ``shipyard predict``. Only when that fails are the
failing columns found one at a time, and then the failing rows by halving the chunk, so that each
reason is the signature's own message for that row.

Output columns, in order: the id column and kept columns (with the input's Arrow types), ``prediction``
(``prediction_<i>`` for multi-output models), ``proba_<class>`` per class for classifiers, ``model``,
``model_version`` and ``scored_at`` (one UTC timestamp per job).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from shipyard.data._arrow import table_to_frame
from shipyard.errors import SchemaError
from shipyard.signature import ColumnSpec, Signature

if TYPE_CHECKING:
    from shipyard.flavors.base import Features
    from shipyard.scoring import Model

PREDICTION = "prediction"
PROBA_PREFIX = "proba_"
MODEL = "model"
MODEL_VERSION = "model_version"
SCORED_AT = "scored_at"
REASON = "reason"
ROW = "row"
SCORED_AT_TYPE = pa.timestamp("us", tz="UTC")

Check = Callable[[pd.DataFrame, int], "str | None"]


@dataclass(frozen=True)
class ChunkPlan:
    """Everything a worker needs besides the model and the rows; small and picklable.

    ``columns`` are the columns read from the input with their Arrow types; ``passthrough`` the id and
    kept columns copied into the output; ``features`` the columns given to the model.
    """

    columns: tuple[tuple[str, pa.DataType], ...]
    passthrough: tuple[str, ...]
    features: tuple[str, ...]
    classes: tuple[Any, ...] | None
    model: str
    version: int
    scored_at: datetime
    strict: bool = False
    row_numbers: bool = False
    parsed: tuple[tuple[str, str], ...] = ()

    @property
    def types(self) -> dict[str, pa.DataType]:
        """Arrow type of each column after parsing: a ``parsed`` column has its signature's type."""
        types = dict(self.columns)
        for name, dtype in self.parsed:
            types[name] = parsed_type(dtype)
        return types

    def proba_names(self) -> list[str]:
        """``proba_<class>`` for each class, in ``predict_proba`` column order."""
        return [f"{PROBA_PREFIX}{label}" for label in self.classes or ()]

    def leading(self) -> list[str]:
        """The columns before the scores: ``row`` (without an id column), then the id and kept columns."""
        return [*([ROW] if self.row_numbers else []), *self.passthrough]

    def output_names(self) -> list[str]:
        """The output's column names (single-output models)."""
        return [*self.leading(), PREDICTION, *self.proba_names(), MODEL, MODEL_VERSION, SCORED_AT]

    def empty_scores(self) -> pa.Table:
        """A zero-row output table, for a chunk whose rows were all rejected or an empty input.

        The prediction's type is the classes' type for classifiers, else ``float64``.
        """
        types = self.types
        prediction = pa.array(np.asarray(self.classes)).type if self.classes else pa.float64()
        fields = [pa.field(ROW, pa.int64())] if self.row_numbers else []
        fields += [pa.field(name, types[name]) for name in self.passthrough]
        fields.append(pa.field(PREDICTION, prediction))
        fields += [pa.field(name, pa.float64()) for name in self.proba_names()]
        fields += [pa.field(MODEL, pa.string()), pa.field(MODEL_VERSION, pa.int64())]
        fields.append(pa.field(SCORED_AT, SCORED_AT_TYPE))
        return pa.schema(fields).empty_table()

    def rejects_schema(self) -> pa.Schema:
        """The rejects table's columns: every column read (as read: text for ``parsed``), ``reason``, ``row``."""
        return pa.schema([*(pa.field(n, t) for n, t in self.columns), (REASON, pa.string()), (ROW, pa.int64())])


@dataclass(frozen=True)
class ChunkResult:
    """What scoring one chunk gives: its output rows, its rejected rows, or a fatal error (strict mode)."""

    index: int
    first_row: int
    rows: int
    scores: pa.Table | None
    rejects: pa.Table | None = None
    error: str | None = None
    error_kind: Literal["schema", "prediction"] | None = None

    @property
    def rejected(self) -> int:
        """How many of the chunk's rows were rejected."""
        return 0 if self.rejects is None else self.rejects.num_rows


def score_chunk(
    model: Model, plan: ChunkPlan, index: int, first_row: int, frame: pd.DataFrame | pa.Table
) -> ChunkResult:
    """Validate and score one chunk of input rows (``first_row`` is the input row number of its first row).

    A chunk given as an Arrow table (:meth:`~shipyard.data.Source.iter_tables`) whose feature columns
    need no per-row checks is scored straight from Arrow (:func:`score_arrow`); any other chunk is
    converted to pandas first and validated row by row, with the same output either way.

    >>> import shipyard, tempfile, os, pandas as pd
    >>> from datetime import datetime, UTC
    >>> from sklearn.linear_model import LogisticRegression
    >>> service = shipyard.connect(shipyard.Settings(home=tempfile.mkdtemp()))
    >>> X = pd.DataFrame({"x": [0, 1, 2, 3]})
    >>> _ = service.register(LogisticRegression().fit(X, [0, 0, 1, 1]), "toy", X=X)
    >>> plan = ChunkPlan(columns=(("x", pa.int64()),), passthrough=("x",), features=("x",), classes=(0, 1),
    ...                  model="toy", version=1, scored_at=datetime(2024, 5, 1, tzinfo=UTC))
    >>> result = score_chunk(service.load("toy"), plan, 0, 100, pd.DataFrame({"x": [0, None, 3]}))
    >>> result.scores.select(["x", "prediction"]).to_pylist()
    [{'x': 0, 'prediction': 0}, {'x': 3, 'prediction': 1}]
    >>> result.rejects.select(["reason", "row"]).to_pylist()
    [{'reason': "column 'x': expected int64, got null (row 101)", 'row': 101}]
    """
    raw: pd.DataFrame | None = None  # the cells as read, for the rejects, when text columns were parsed
    if isinstance(frame, pa.Table) and plan.parsed:
        typed = cast_text_columns(frame, plan.parsed)
        if typed is None:
            raw = table_to_frame(frame)
        else:
            frame = typed
    elif isinstance(frame, pd.DataFrame) and plan.parsed:
        raw = frame
    if raw is not None:
        raw = raw.reset_index(drop=True)
        frame = parse_text_columns(raw.copy(), plan.parsed)
    if isinstance(frame, pa.Table):
        fast = score_arrow(model, plan, index, first_row, frame)
        if fast is not None:
            return fast
        frame = table_to_frame(frame)
    frame = frame.reset_index(drop=True)
    rows = len(frame)
    if rows == 0:
        return ChunkResult(index, first_row, 0, plan.empty_scores())
    features_frame = frame if list(frame.columns) == list(plan.features) else frame[list(plan.features)]

    bad: dict[int, str] = {}
    features: Features | None = None
    try:
        features = model.prepare(features_frame, allow_extra=True, first_row=first_row)
    except SchemaError:
        bad = _bad_rows(features_frame, _validation_check(model, features_frame), first_row, plan.strict)
        if plan.strict:
            return _fatal(index, first_row, rows, bad, "schema")

    kept = _without(np.arange(rows), bad)
    good = frame if not bad else frame.iloc[kept].reset_index(drop=True)
    predictions: Any = None
    proba: Any = None
    if len(good):
        try:
            if features is None:
                predictions, proba = _prepare_and_predict(model, plan, good, first_row)
            else:
                predictions, proba = _predict(model, plan, features)
        except Exception:  # the model refused rows that fit the signature: find which ones
            found = _bad_rows(good, _prediction_check(model, plan), 0, plan.strict)
            failed = {int(kept[i]): _renumber(reason, first_row + int(kept[i])) for i, reason in found.items()}
            if plan.strict:
                return _fatal(index, first_row, rows, failed, "prediction")
            if len(failed) == len(good) > 1:
                return _fatal(index, first_row, rows, failed, "prediction", every_row=True)
            bad.update(failed)
            kept = _without(kept, failed)
            good = frame.iloc[kept].reset_index(drop=True)
            if len(good):
                predictions, proba = _prepare_and_predict(model, plan, good, first_row)

    scores = _scores_table(plan, good, predictions, proba, first_row + kept) if len(good) else plan.empty_scores()
    rejects = _rejects_table(plan, frame if raw is None else raw, bad, first_row)
    return ChunkResult(index, first_row, rows, scores, rejects)


# ---------------------------------------------------------------------- the Arrow fast path
def score_arrow(model: Model, plan: ChunkPlan, index: int, first_row: int, table: pa.Table) -> ChunkResult | None:
    """Score a chunk straight from Arrow, or ``None`` when it needs the checks of the pandas path.

    Taken only when validation could not fail: every feature column is an integer or float column with
    no nulls (``null_count``, known without looking at the rows) whose type converts to the signature's
    as :meth:`~shipyard.signature.Signature.validate` would convert it, and the id and kept columns
    come through pandas unchanged (no nulls, no NaN). The model then gets the same values in the same
    layout as on the pandas path (a column-major matrix), so the scores are identical. A chunk that
    fails any of these checks, or that the model refuses, is scored by the pandas path, which finds
    the bad rows and gives the same reasons as always.
    """
    rows = table.num_rows
    if rows == 0 or model.signature is None:
        return None
    passthrough: dict[str, pa.Array] = {}
    types = plan.types
    for name in plan.passthrough:
        column = table.column(name)
        if not _unchanged_by_pandas(column, types[name]):
            return None
        passthrough[name] = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    features = arrow_features(model.signature, [table.column(name) for name in plan.features], plan.features)
    if features is None:
        return None
    try:
        predictions, proba = _predict(model, plan, features)
    except Exception:  # the pandas path finds the rows the model refuses
        return None
    if len(predictions) != rows:
        return None
    numbers = np.arange(first_row, first_row + rows, dtype=np.int64)
    scores = _output_table(plan, passthrough, rows, predictions, proba, numbers)
    return ChunkResult(index, first_row, rows, scores, plan.rejects_schema().empty_table())


def arrow_features(signature: Signature, columns: Sequence[pa.ChunkedArray], names: Sequence[str]) -> Features | None:
    """What ``signature.validate`` gives for these columns, built from Arrow; ``None`` if it could fail.

    >>> sig = Signature(inputs=(ColumnSpec("a", "float64"), ColumnSpec("b", "float64")))
    >>> arrow_features(sig, [pa.chunked_array([[1, 2]]), pa.chunked_array([[0.5, 1.5]])], ["a", "b"])
         a    b
    0  1.0  0.5
    1  2.0  1.5
    >>> arrow_features(sig, [pa.chunked_array([[1, None]]), pa.chunked_array([[0.5, 1.5]])], ["a", "b"]) is None
    True
    """
    if not columns or not all(_plain_number(c) for c in columns):
        return None
    dtypes = [np.dtype(c.type.to_pandas_dtype()) for c in columns]
    if signature.tensor is not None:
        spec = signature.tensor
        if len(spec.shape) != 2 or spec.shape[1] not in (None, len(columns)):
            return None
        common = np.result_type(*dtypes)
        target = np.dtype(spec.dtype)
        if common != target and not (target.kind in "fiu" and np.can_cast(common, target, "same_kind")):
            return None
        matrix = _column_major(columns, common)
        return matrix if common == target else matrix.astype(target)
    if [spec.name for spec in signature.inputs] != list(names):  # validate orders columns as the signature does
        return None
    wanted = [spec.dtype for spec in signature.inputs]
    for column_spec, column, have in zip(signature.inputs, columns, dtypes, strict=True):
        dtype = column_spec.dtype
        if dtype in ("float32", "float64"):
            if not column_spec.nullable and have.kind == "f" and pc.any(pc.is_nan(column)).as_py():
                return None  # NaN is missing there: the pandas path rejects those rows
            continue
        if dtype not in _INT_KINDS or have.kind not in "iu" or not _fits(column, np.dtype(dtype)):
            return None
    if len(set(wanted)) == 1:
        matrix = _column_major(columns, np.dtype(wanted[0]))
        return pd.DataFrame(matrix, columns=list(names), index=pd.RangeIndex(len(matrix)), copy=False)
    out = {
        name: _column_major([column], np.dtype(dtype))[:, 0]
        for name, column, dtype in zip(names, columns, wanted, strict=True)
    }
    return pd.DataFrame(out, index=pd.RangeIndex(len(columns[0])))


_INT_KINDS = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})


def _plain_number(column: pa.ChunkedArray) -> bool:
    dtype = column.type
    numeric = pa.types.is_integer(dtype) or (pa.types.is_floating(dtype) and not pa.types.is_float16(dtype))
    return bool(numeric and column.null_count == 0)


def _fits(column: pa.ChunkedArray, dtype: np.dtype[Any]) -> bool:
    if len(column) == 0:
        return True
    info = np.iinfo(dtype)
    bounds = pc.min_max(column)
    return bool(bounds["min"].as_py() >= info.min and bounds["max"].as_py() <= info.max)


def _column_major(columns: Sequence[pa.ChunkedArray], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """The columns side by side in one Fortran-ordered matrix of ``dtype``: one copy of each value.

    Column-major is the layout pandas gives a model from a frame of one dtype, so both paths hand the
    model identical arrays.
    """
    rows = len(columns[0])
    matrix = np.empty((rows, len(columns)), dtype=dtype, order="F")
    for j, column in enumerate(columns):
        start = 0
        for chunk in column.chunks:
            stop = start + len(chunk)
            matrix[start:stop, j] = chunk.to_numpy(zero_copy_only=False)
            start = stop
    return matrix


def _unchanged_by_pandas(column: pa.ChunkedArray, dtype: pa.DataType) -> bool:
    """Whether ``pa.array(column.to_pandas(), dtype, from_pandas=True)`` is ``column`` itself."""
    if column.type != dtype or column.null_count:
        return False
    if pa.types.is_integer(dtype) or pa.types.is_boolean(dtype) or pa.types.is_string(dtype):
        return True
    if pa.types.is_large_string(dtype):
        return True
    if pa.types.is_floating(dtype) and not pa.types.is_float16(dtype):
        return not pc.any(pc.is_nan(column)).as_py()
    return False


# ---------------------------------------------------------------------- predicting
def _prepare_and_predict(
    model: Model, plan: ChunkPlan, frame: pd.DataFrame, first_row: int
) -> tuple[np.ndarray[Any, Any], Any]:
    features_frame = frame if list(frame.columns) == list(plan.features) else frame[list(plan.features)]
    return _predict(model, plan, model.prepare(features_frame, allow_extra=True, first_row=first_row))


def _predict(model: Model, plan: ChunkPlan, features: Features) -> tuple[np.ndarray[Any, Any], Any]:
    if plan.classes is not None:
        predictions, proba = model.loaded.predict_with_proba(features)
    else:
        predictions, proba = model.loaded.predict(features), None
    predictions = np.asarray(predictions)
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        predictions = predictions.ravel()
    return predictions, None if proba is None else np.asarray(proba)


def _scores_table(
    plan: ChunkPlan, good: pd.DataFrame, predictions: np.ndarray[Any, Any], proba: Any, numbers: np.ndarray[Any, Any]
) -> pa.Table:
    types = plan.types
    parsed = dict(plan.parsed)
    passthrough = {
        name: pa.array(
            pd.to_numeric(good[name]) if parsed.get(name, "bool") != "bool" else good[name],
            type=types[name],
            from_pandas=True,
        )
        for name in plan.passthrough
    }
    return _output_table(plan, passthrough, len(good), predictions, proba, numbers)


def _output_table(
    plan: ChunkPlan,
    passthrough: dict[str, pa.Array],
    n: int,
    predictions: np.ndarray[Any, Any],
    proba: Any,
    numbers: np.ndarray[Any, Any],
) -> pa.Table:
    """The output rows; ``numbers`` are their 0-based input row numbers (the ``row`` column without an id)."""
    columns: dict[str, pa.Array] = {ROW: pa.array(numbers, pa.int64())} if plan.row_numbers else {}
    columns.update(passthrough)
    if predictions.ndim == 2:
        for i in range(predictions.shape[1]):
            columns[f"{PREDICTION}_{i}"] = pa.array(np.ascontiguousarray(predictions[:, i]))
    else:
        columns[PREDICTION] = pa.array(predictions)
    if proba is not None:
        for i, name in enumerate(plan.proba_names()):
            columns[name] = pa.array(np.ascontiguousarray(proba[:, i], dtype="float64"))
    columns[MODEL] = pa.repeat(pa.scalar(plan.model, pa.string()), n)
    columns[MODEL_VERSION] = pa.repeat(pa.scalar(plan.version, pa.int64()), n)
    columns[SCORED_AT] = pa.repeat(pa.scalar(plan.scored_at, SCORED_AT_TYPE), n)
    return pa.table(columns)


def _rejects_table(plan: ChunkPlan, frame: pd.DataFrame, bad: dict[int, str], first_row: int) -> pa.Table:
    schema = plan.rejects_schema()
    if not bad:
        return schema.empty_table()
    positions = sorted(bad)
    rows = frame.iloc[positions]
    parsed = dict(plan.parsed)
    arrays = [
        pa.array(rows[name], type=dtype, from_pandas=True)
        if name not in parsed
        else pa.array(rows[name].astype(object), from_pandas=True).cast(pa.string())
        for name, dtype in plan.columns
    ]
    arrays.append(pa.array([bad[p] for p in positions], pa.string()))
    arrays.append(pa.array([first_row + p for p in positions], pa.int64()))
    return pa.Table.from_arrays(arrays, schema=schema)


# ---------------------------------------------------------------------- finding bad rows
def _validation_check(model: Model, frame: pd.DataFrame) -> Check:
    """A check that validates rows against the signature, on the failing columns only when it has columns."""
    signature = model.signature
    if signature is None or signature.tensor is not None or not signature.inputs:
        return lambda part, first: _problem(lambda: model.prepare(part, allow_extra=True, first_row=first))
    failing = tuple(spec for spec in signature.inputs if _column_problem(frame, spec) is not None)
    narrow = Signature(inputs=failing or signature.inputs)
    names = [spec.name for spec in narrow.inputs]
    return lambda part, first: _problem(lambda: narrow.validate(part[names], allow_extra=True, first_row=first))


def _column_problem(frame: pd.DataFrame, spec: ColumnSpec) -> str | None:
    return _problem(lambda: Signature(inputs=(spec,)).validate(frame[[spec.name]]))


def _prediction_check(model: Model, plan: ChunkPlan) -> Check:
    """A check that scores rows; the reason names the row as ``(row ?)``, numbered by the caller."""

    def check(part: pd.DataFrame, first: int) -> str | None:
        try:
            _prepare_and_predict(model, plan, part, first)
        except Exception as exc:
            text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            return f"the model could not score this row: {text} (row ?)"
        return None

    return check


def _problem(action: Callable[[], object]) -> str | None:
    try:
        action()
    except SchemaError as exc:
        return "; ".join(exc.problems)
    return None


def _bad_rows(frame: pd.DataFrame, check: Check, first_row: int, first_only: bool) -> dict[int, str]:
    """Positions of the rows ``check`` fails, with its reason for each, found by halving the frame.

    The whole frame is known to fail. With ``first_only`` the search stops at the first failing row.
    A frame that fails as a whole while no single row fails (never expected) rejects every row.

    >>> frame = pd.DataFrame({"x": [1, -2, 3, -4, 5]})
    >>> check = lambda part, first: "negative" if (part["x"] < 0).any() else None
    >>> _bad_rows(frame, check, 0, first_only=False), _bad_rows(frame, check, 0, first_only=True)
    ({1: 'negative', 3: 'negative'}, {1: 'negative'})
    """
    bad: dict[int, str] = {}
    stack = [(0, len(frame))]
    while stack:
        lo, hi = stack.pop()
        reason = "" if (lo, hi) == (0, len(frame)) else check(frame.iloc[lo:hi], first_row + lo)
        if reason is None:
            continue
        if hi - lo == 1:
            bad[lo] = reason or check(frame.iloc[lo:hi], first_row + lo) or "the chunk as a whole does not fit"
            if first_only:
                break
            continue
        mid = (lo + hi) // 2
        stack += [(mid, hi), (lo, mid)]
    if not bad:  # the whole failed but no part did: keep every row out, with the whole's reason
        reason = check(frame, first_row) or "the chunk as a whole does not fit the model"
        bad = dict.fromkeys(range(1 if first_only else len(frame)), reason)
    return bad


def _without(positions: np.ndarray[Any, Any], drop: dict[int, str]) -> np.ndarray[Any, Any]:
    """``positions`` (sorted) without the keys of ``drop``."""
    if not drop:
        return positions
    return positions[~np.isin(positions, np.fromiter(drop, dtype=np.int64, count=len(drop)))]


def _renumber(reason: str, row: int) -> str:
    return reason.replace("(row ?)", f"(row {row})")


def _fatal(
    index: int,
    first_row: int,
    rows: int,
    bad: dict[int, str],
    kind: Literal["schema", "prediction"],
    *,
    every_row: bool = False,
) -> ChunkResult:
    position = min(bad)
    reason = _renumber(bad[position], first_row + position)
    if every_row:
        reason = f"the model failed on every row of rows {first_row}-{first_row + rows - 1}: {reason}"
    return ChunkResult(index, first_row, rows, None, error=reason, error_kind=kind)


# ---------------------------------------------------------------------- CSV text columns
_BOOLEAN_WORDS = {"true": True, "false": False, "1": True, "0": False}


def parsed_type(dtype: str) -> pa.DataType:
    """The Arrow type a text column becomes when parsed for the signature dtype ``dtype`` (numeric or bool)."""
    return pa.bool_() if dtype == "bool" else pa.from_numpy_dtype(np.dtype(dtype))


def cast_text_columns(table: pa.Table, parsed: Sequence[tuple[str, str]]) -> pa.Table | None:
    """``table`` with its text columns ``parsed`` cast to their types, or ``None`` if a cell does not convert.

    >>> table = pa.table({"x": ["1.5", None], "y": ["a", "b"]})
    >>> cast_text_columns(table, [("x", "float64")]).column("x").to_pylist()
    [1.5, None]
    >>> cast_text_columns(pa.table({"x": ["1.5", "oops"]}), [("x", "float64")]) is None
    True
    """
    for name, dtype in parsed:
        if name not in table.column_names:
            continue
        try:
            column = pc.cast(table.column(name), parsed_type(dtype))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        table = table.set_column(table.column_names.index(name), name, column)
    return table


def parse_text_columns(frame: pd.DataFrame, parsed: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """Parse each text column of ``parsed`` cell by cell, keeping the cells that do not convert as text.

    The signature then names exactly the bad cells (column, value and row) and only their rows are
    rejected.

    >>> frame = parse_text_columns(pd.DataFrame({"x": ["1.5", "oops", None]}), [("x", "float64")])
    >>> frame["x"].tolist()
    [1.5, 'oops', nan]
    """
    for name, dtype in parsed:
        if name not in frame.columns:
            continue
        column = frame[name]
        if dtype == "bool":
            words = column.map(lambda v: _BOOLEAN_WORDS.get(v.strip().lower()) if isinstance(v, str) else None)
            good = words.notna()
            parsed_values = words.astype(object)
        else:
            parsed_values = pd.to_numeric(column, errors="coerce")
            good = parsed_values.notna()
        bad = ~good & column.notna()
        if not bad.any():
            frame[name] = parsed_values
        else:
            mixed = parsed_values.astype(object)
            mixed[bad] = column[bad]
            frame[name] = mixed
    return frame


def column_types(schema: pa.Schema, names: Sequence[str]) -> tuple[tuple[str, pa.DataType], ...]:
    """``(name, type)`` of ``names`` in ``schema``, in the order given."""
    return tuple((name, schema.field(name).type) for name in names)
