"""The training data: which columns, which rows are new, the holdout split, and what was consumed.

Rows are always read through :func:`shipyard.data.open_source` in chunks. Incremental training finds
its rows one of two ways, recorded in each version's lineage so the next run knows where to start:

* **new files**: the files of the folder or glob that the parent version's ``lineage["files"]`` does
  not list. Only those files are opened; the older ones are never read (not even their headers).
* **watermark**: rows whose watermark column is greater than the parent's ``lineage["watermark"]["max"]``.
  Databases get a ``WHERE column > value`` query; files are read chunk by chunk and filtered.

The holdout is a seeded random fraction of the rows read, drawn row by row as the chunks stream by
(the same rows whatever ``chunk_rows`` is), or a separate ``validation.holdout_source``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shipyard.data import open_source
from shipyard.training.errors import InvalidSpec

if TYPE_CHECKING:
    from shipyard.data import Source
    from shipyard.training.spec import TrainSpec

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_url(location: str) -> bool:
    """Whether ``location`` is a database URL rather than a path.

    >>> is_url("sqlite:///tx.db?table=tx"), is_url("data/*.parquet")
    (True, False)
    """
    return bool(_URL.match(location)) and not location.lower().startswith("file://")


def shown_location(location: str) -> str:
    """``location`` as recorded and printed: a database URL without its password.

    >>> shown_location("postgresql+psycopg://me:secret@db/prod?table=tx")
    'postgresql+psycopg://me:***@db/prod?table=tx'
    """
    if not is_url(location):
        return location
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(location).render_as_string(hide_password=True)
    except ArgumentError:
        return location


def open_training_source(spec: TrainSpec, location: str | None = None) -> Source:
    """The spec's data source (or another location of the spec), relative paths taken from the spec's folder."""
    resolved = spec.resolve(location or spec.data.source)
    query = spec.data.query if location is None else None
    if query is not None and not is_url(resolved) and not resolved.lower().endswith((".duckdb", ".ddb")):
        raise InvalidSpec(f"data.query: {resolved} is not a database; a query applies to database URLs and "
                          "DuckDB files, leave it out for files")
    return open_source(resolved, query=query)


def training_columns(spec: TrainSpec, available: Sequence[str], what: str, inherited: Sequence[str] = ()) -> list[str]:
    """The feature columns: the spec's, else ``inherited`` (a parent's inputs), else every column but the
    target and the watermark; every one of them, the target and the watermark must be in ``available``.

    >>> from shipyard.training.spec import TrainSpec
    >>> spec = TrainSpec.model_validate({"name": "m", "data": {"source": "x"}, "target": "y",
    ...                                  "estimator": {"class": "sklearn.linear_model.Ridge"}})
    >>> training_columns(spec, ["a", "y", "b"], "x")
    ['a', 'b']
    >>> training_columns(spec, ["a", "b"], "x.csv")
    Traceback (most recent call last):
    ...
    shipyard.training.errors.InvalidSpec: target: 'y' is not a column of x.csv; its columns are: a, b
    """
    names = list(available)
    listing = f"its columns are: {', '.join(names)}"
    if spec.target not in names:
        raise InvalidSpec(f"target: {spec.target!r} is not a column of {what}; {listing}")
    if spec.watermark is not None and spec.watermark not in names:
        raise InvalidSpec(f"data.incremental.watermark: {spec.watermark!r} is not a column of {what}; {listing}")
    if spec.features is not None:
        features = list(spec.features)
        field = "features"
    elif inherited:
        features = list(inherited)
        field = "the parent version's inputs"
    else:
        features = [n for n in names if n not in (spec.target, spec.watermark)]
        field = "features"
    missing = [f for f in features if f not in names]
    if missing:
        raise InvalidSpec(f"{field}: {', '.join(map(repr, missing))} not a column of {what}; {listing}")
    if not features:
        raise InvalidSpec(f"features: {what} has no column besides the target {spec.target!r}")
    return features


# ---------------------------------------------------------------------- the holdout split
class Splitter:
    """Sends each row to the holdout with probability ``fraction``, from one seeded stream of draws.

    The draws follow the rows, not the chunks, so the split is the same for any chunk size.

    >>> frame = pd.DataFrame({"x": range(10)})
    >>> a = Splitter(0.3, seed=1); parts = [a.split(frame[:4]), a.split(frame[4:])]
    >>> b = Splitter(0.3, seed=1); whole = b.split(frame)
    >>> pd.concat([p[1] for p in parts])["x"].tolist() == whole[1]["x"].tolist()
    True
    """

    def __init__(self, fraction: float, seed: int) -> None:
        self.fraction = fraction
        self._rng = np.random.default_rng(seed)

    def split(self, chunk: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(train, holdout)`` rows of one chunk."""
        held = self._rng.random(len(chunk)) < self.fraction
        return chunk[~held], chunk[held]


# ---------------------------------------------------------------------- watermarks
def watermark_value(value: Any) -> Any:
    """A column maximum as stored in lineage JSON: numbers stay numbers, times become ISO text.

    >>> watermark_value(pd.Timestamp("2024-05-01 12:00")), watermark_value(np.int64(7))
    ('2024-05-01 12:00:00', 7)
    """
    if isinstance(value, pd.Timestamp):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return str(value)


def after(series: pd.Series, mark: Any) -> pd.Series:
    """A mask of the values strictly greater than the watermark ``mark`` (missing values are not).

    >>> after(pd.Series(pd.to_datetime(["2024-01-01", "2024-03-01"])), "2024-02-01 00:00:00").tolist()
    [False, True]
    >>> after(pd.Series([1, 5, None]), 3).tolist()
    [False, True, False]
    """
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        stamp = pd.Timestamp(mark)
        tz = getattr(series.dtype, "tz", None)
        if tz is not None and stamp.tzinfo is None:
            stamp = stamp.tz_localize(tz)
        elif tz is None and stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        mask = series > stamp
    elif pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        mask = series > float(mark)
    else:
        present = series.notna()
        as_times = _as_times(series[present]) if isinstance(mark, str) else None
        if as_times is not None and _as_times(pd.Series([mark])) is not None:
            return after(_as_times(series), mark)  # type: ignore[arg-type]
        mask = series.where(present, "").astype(str) > str(mark)
        mask &= present
    return mask.fillna(False).astype(bool)


def _as_times(series: pd.Series) -> pd.Series | None:
    """Text or date objects as datetimes, if every present value is one (else ``None``)."""
    present = series.dropna()
    if present.empty:
        return None
    try:
        parsed = pd.to_datetime(series, format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        try:
            parsed = pd.to_datetime(series, format="ISO8601", utc=True)
        except (ValueError, TypeError, OverflowError):
            return None
    return parsed


def _max(series: pd.Series) -> Any:
    present = series.dropna()
    if present.empty:
        return None
    return present.max()


def above_watermark(source: Source, column: str, mark: Any) -> Source:
    """``source`` narrowed in the database to rows with ``column > mark`` (ordered by it); files as they are.

    Databases compare in SQL (an index on the column keeps it fast); every row is still checked in
    pandas, so a database's looser text comparison (SQLite dates) cannot let an old row through.
    """
    from shipyard.data.duck import DuckDBSource
    from shipyard.data.sql import SqlSource

    if isinstance(source, SqlSource):
        import sqlalchemy as sa

        if source.query is not None:
            inner: Any = sa.text(source.query).columns(*[sa.column(n) for n in source.column_names])
            inner = inner.subquery("shipyard_source")
        else:
            assert source.table_name is not None
            schema, _, table = source.table_name.rpartition(".")
            inner = sa.table(table, schema=schema or None)
        stmt: Any = (
            sa.select(sa.literal_column("*"))
            .select_from(inner)
            .where(sa.column(column) > sa.literal(mark))
            .order_by(sa.column(column))
        )
        dialect = sa.create_engine(source.url).dialect
        sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        return SqlSource(source.url, query=sql, uri=source.uri)
    if isinstance(source, DuckDBSource):
        from shipyard.data.duck import quote

        if source.query is not None:
            inner_sql = f"({source.query})"
        else:
            assert source.table_name is not None
            inner_sql = ".".join(quote(part) for part in source.table_name.split("."))
        literal = repr(mark) if isinstance(mark, (int, float)) else "'" + str(mark).replace("'", "''") + "'"
        sql = (f"SELECT * FROM {inner_sql} AS shipyard_source WHERE {quote(column)} > {literal} "
               f"ORDER BY {quote(column)}")
        return DuckDBSource(source.path, query=sql, uri=source.uri)
    return source


# ---------------------------------------------------------------------- new files
@dataclass(frozen=True)
class FileSelection:
    """The files of a folder or glob split into those a parent version consumed and the new ones."""

    all_files: tuple[Path, ...]
    new_files: tuple[Path, ...]
    consumed: tuple[str, ...]

    @property
    def kind(self) -> str:
        """``csv`` or ``parquet``."""
        from shipyard.data.files import suffix_kind

        return suffix_kind(self.all_files[0]) or "parquet"

    def fingerprint(self) -> str:
        """The fingerprint of the whole source, from the files' names, sizes and times (none is opened)."""
        from shipyard.data.files import files_fingerprint

        return files_fingerprint(self.kind, list(self.all_files))

    def lineage_files(self) -> list[str]:
        """Every file consumed so far: the parent's and the new ones, in order, once each."""
        return list(dict.fromkeys([*self.consumed, *(str(p) for p in self.new_files)]))


def select_new_files(location: str, consumed: Sequence[str]) -> FileSelection:
    """The files at ``location`` not listed in ``consumed`` (found by name; none of them is opened).

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a.csv", "b.csv"):
    ...     _ = (folder / name).write_text("x,y\\n1,0\\n")
    >>> chosen = select_new_files(str(folder), [str((folder / "a.csv").resolve())])
    >>> [p.name for p in chosen.new_files]
    ['b.csv']
    """
    from shipyard.data.files import expand_paths

    files = tuple(expand_paths(location))
    seen = set(consumed)
    return FileSelection(files, tuple(p for p in files if str(p) not in seen), tuple(consumed))


def source_files(source: Source) -> list[str]:
    """The files a file source reads (resolved paths), or ``[]`` for a database or a DataFrame."""
    files = getattr(source, "files", None)
    if isinstance(files, list) and all(isinstance(p, Path) for p in files):
        return [str(p) for p in files]
    return []


# ---------------------------------------------------------------------- streaming
class TrainingStream:
    """Iterate a source's training rows chunk by chunk, keeping only the holdout and a few counters.

    Each chunk is filtered to rows above ``mark`` (when given), its watermark maximum is noted, and
    the ``splitter`` (when given) takes its holdout rows out; the rest is yielded for training.

    >>> stream = TrainingStream(open_source(pd.DataFrame({"x": range(10), "y": [0, 1] * 5})), ["x", "y"],
    ...                         chunk_rows=4, splitter=Splitter(0.2, seed=0))
    >>> sum(len(part) for part in stream) + len(stream.holdout()) == stream.rows == 10
    True
    """

    def __init__(
        self,
        source: Source,
        columns: Sequence[str],
        *,
        chunk_rows: int,
        splitter: Splitter | None = None,
        watermark: str | None = None,
        mark: Any = None,
    ) -> None:
        self.source = source
        self.columns = list(columns)
        self.chunk_rows = chunk_rows
        self.splitter = splitter
        self.watermark = watermark
        self.mark = mark
        self.rows = 0
        self.max_seen: Any = None
        self._holdout: list[pd.DataFrame] = []

    def __iter__(self) -> Iterator[pd.DataFrame]:
        for chunk in self.source.iter_batches(self.chunk_rows, self.columns):
            if self.watermark is not None:
                chunk = self._typed_watermark(chunk)
                if self.mark is not None:
                    chunk = chunk[after(chunk[self.watermark], self.mark)]
                highest = _max(chunk[self.watermark])
                if highest is not None and (self.max_seen is None or highest > self.max_seen):
                    self.max_seen = highest
            if chunk.empty:
                continue
            self.rows += len(chunk)
            if self.splitter is not None:
                chunk, held = self.splitter.split(chunk)
                if not held.empty:
                    self._holdout.append(held)
            if not chunk.empty:
                yield chunk.reset_index(drop=True)

    def _typed_watermark(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """A query's text timestamps (SQLite has no time type) as datetimes, so that the maximum is a time."""
        assert self.watermark is not None
        column = chunk[self.watermark]
        if pd.api.types.is_datetime64_any_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
            return chunk
        parsed = _as_times(column)
        if parsed is None:
            return chunk
        return chunk.assign(**{self.watermark: parsed})

    def holdout(self) -> pd.DataFrame:
        """The rows the splitter held out, in reading order."""
        if not self._holdout:
            return pd.DataFrame(columns=self.columns)
        return pd.concat(self._holdout, ignore_index=True)


def read_holdout(spec: TrainSpec, columns: Sequence[str]) -> pd.DataFrame:
    """The whole ``validation.holdout_source``, checked to have the training columns."""
    assert spec.validation.holdout_source is not None
    location = spec.validation.holdout_source
    source = open_training_source(spec, location)
    names = source.column_names
    missing = [c for c in columns if c not in names]
    if missing:
        raise InvalidSpec(
            f"validation.holdout_source: {location} has no column {', '.join(map(repr, missing))}; "
            f"its columns are: {', '.join(names)}"
        )
    return source.read(list(columns))

