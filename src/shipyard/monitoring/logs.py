"""The prediction log's reader: logged predictions and labels as pandas frames, or DuckDB SQL over them.

The Parquet log is read in place by DuckDB (``read_parquet`` over exactly the files that hold each row
once, see :mod:`shipyard.monitoring._files`); the PostgreSQL log is loaded with SQLAlchemy into Arrow and
handed to DuckDB, so both answer the same SQL and no DuckDB extension is ever downloaded.

Two views per model: ``predictions`` (``request_id, ts, model, version, route, latency_ms, input,
prediction, probabilities``; ``input`` a struct of the input columns) and ``labels`` (``request_id, ts,
model, label``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from shipyard.errors import InvalidInput, NotFound
from shipyard.monitoring import _files

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    import pyarrow as pa

    from shipyard.config import Settings

__all__ = ["PredictionLog", "parse_since"]

BASE_COLUMNS = ["request_id", "ts", "model", "version", "route", "latency_ms", "prediction", "probabilities"]
_EMPTY_PREDICTIONS = (
    "CREATE TABLE {name} (request_id VARCHAR, ts TIMESTAMPTZ, model VARCHAR, version INTEGER, route VARCHAR, "
    "latency_ms DOUBLE, prediction VARCHAR, probabilities DOUBLE[])"
)
_EMPTY_LABELS = "CREATE TABLE {name} (request_id VARCHAR, ts TIMESTAMPTZ, model VARCHAR, label VARCHAR)"
_RETRIES = 5
T = TypeVar("T")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """A point in time from ``30m``, ``1h``, ``7d`` (that long ago) or an ISO date/time (UTC unless it says).

    >>> now = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)
    >>> parse_since("90m", now).isoformat(), parse_since("2026-01-01", now).isoformat()
    ('2026-01-02T10:30:00+00:00', '2026-01-01T00:00:00+00:00')
    """
    text = text.strip()
    now = now or dt.datetime.now(dt.UTC)
    unit = _UNITS.get(text[-1:].lower())
    if unit is not None:
        try:
            amount = float(text[:-1])
        except ValueError:
            amount = -1.0
        if amount >= 0:
            return now - dt.timedelta(**{unit: amount})
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"cannot read {text!r} as a time: give a duration such as 30m, 1h, 7d or an ISO time such as "
            "2026-01-01T12:00"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _utc(when: dt.datetime | None) -> dt.datetime | None:
    if when is None or when.tzinfo is not None:
        return when
    return when.replace(tzinfo=dt.UTC)


class PredictionLog:
    """Read the prediction log under ``root`` (Parquet) or in the database at ``postgres_url``.

    >>> import tempfile, pathlib
    >>> PredictionLog(pathlib.Path(tempfile.mkdtemp())).models()
    []
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        postgres_url: str | None = None,
        sensitive: Mapping[str, Mapping[str, str]] | None = None,
        hash_personal: bool = True,
    ) -> None:
        self.sensitive: dict[str, dict[str, str]] = {m: dict(c) for m, c in (sensitive or {}).items()}
        """The deployment's sensitive columns, ``{model: {column: "hash" | "drop" | "raw"}}``: hashed or dropped
        ones are not comparable with a reference profile (a hashed value never matches a training value), so
        drift skips them."""
        self.hash_personal = hash_personal
        """Whether the writer hashed columns whose names look personal (``logging.hash_personal_columns``)."""
        if root is None and postgres_url is None:
            from shipyard.config import Settings

            root = Settings().resolved_home() / "logs"
        self.root = root.expanduser() if root is not None else None
        self.postgres_url = postgres_url
        self._engine: Any = None

    @classmethod
    def from_settings(cls, settings: Settings, serve_config: Path | None = None) -> PredictionLog:
        """The log a server with ``settings`` (and ``serve.yaml`` ``serve_config``) writes."""
        section: dict[str, Any] = {}
        if serve_config is not None:
            section = _logging_section(serve_config)
        sensitive = section.get("sensitive") or {}
        if not isinstance(sensitive, dict) or not all(isinstance(c, dict) for c in sensitive.values()):
            raise InvalidInput(f"{serve_config}: logging.sensitive must map models to {{column: hash|drop|raw}}")
        hash_personal = section.get("hash_personal_columns", True)
        if not isinstance(hash_personal, bool):
            raise InvalidInput(f"{serve_config}: logging.hash_personal_columns must be true or false")
        if section.get("backend", "parquet") == "postgres":
            url = section.get("postgres_url")
            if not isinstance(url, str) or not url:
                raise InvalidInput(f"{serve_config}: logging.backend is postgres but logging.postgres_url is not set")
            return cls(postgres_url=url, sensitive=sensitive, hash_personal=hash_personal)
        path = section.get("path")
        root = Path(path) if path else settings.resolved_home() / "logs"
        return cls(root, sensitive=sensitive, hash_personal=hash_personal)

    def unmonitored(self, model: str, columns: Iterable[str] = ()) -> set[str]:
        """Input columns of ``model`` that are hashed or dropped in the log, so not checked for drift: those
        listed under ``sensitive`` and, among ``columns``, those whose names look personal (unless ``raw``).

        >>> log = PredictionLog(Path("."), sensitive={"fraud": {"channel": "hash", "ip": "raw"}})
        >>> sorted(log.unmonitored("fraud", ["amount", "email", "ip"]))
        ['channel', 'email']
        """
        from shipyard.monitoring.privacy import ColumnRules

        return ColumnRules(self.sensitive.get(model), hash_personal=self.hash_personal).hidden(columns)

    def __repr__(self) -> str:
        where = self.root if self.root is not None else "postgresql"
        return f"PredictionLog({where})"

    # ------------------------------------------------------------------ listing
    def models(self) -> list[str]:
        """Models with logged predictions or labels."""
        if self.root is not None:
            return _files.models(self.root)
        from sqlalchemy import text

        from shipyard.monitoring._postgres import LABELS, PREDICTIONS

        with self._db().connect() as conn:
            rows = conn.execute(text(f"SELECT model FROM {PREDICTIONS} UNION SELECT model FROM {LABELS}")).all()
        return sorted(r[0] for r in rows)

    # ------------------------------------------------------------------ frames
    def predictions(
        self,
        model: str,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        last: int | None = None,
        version: int | None = None,
        inputs: bool = True,
        shadow: bool = True,
    ) -> pd.DataFrame:
        """Logged predictions of ``model`` sorted by time, one column per input feature after the base columns.

        ``last`` keeps the newest rows (after the other filters); an empty frame when nothing matches.
        ``inputs=False`` reads the base columns only (much less to read); ``shadow=False`` leaves out the
        predictions of shadow versions (route ``shadow``), which no caller received.
        """
        since, until = _utc(since), _utc(until)
        if last is not None and last < 1:
            raise InvalidInput(f"last must be at least 1, got {last}")
        where, params = _filters(since, until, version)
        if not shadow:
            where = f"{where} AND route <> 'shadow'" if where else " WHERE route <> 'shadow'"

        def run(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
            columns = {row[0] for row in con.execute("DESCRIBE predictions").fetchall()}
            select = ", ".join(BASE_COLUMNS) + (", UNNEST(input)" if inputs and "input" in columns else "")
            sql = f"SELECT {select} FROM predictions{where} ORDER BY ts DESC, request_id DESC"
            if last is not None:
                sql += f" LIMIT {int(last)}"
            return _frame(con, f"SELECT * FROM ({sql}) ORDER BY ts, request_id", params)

        return self._with_views(model, since, run).reset_index(drop=True)

    def labels(self, model: str, *, since: dt.datetime | None = None) -> pd.DataFrame:
        """Logged feedback labels of ``model``: ``request_id, ts, label``, sorted by time."""
        since = _utc(since)
        where, params = _filters(since, None, None)
        sql = f"SELECT request_id, ts, label FROM labels{where} ORDER BY ts"
        frame = self._with_views(model, since, lambda con: _frame(con, sql, params))
        return frame.reset_index(drop=True)

    def joined(
        self,
        model: str,
        *,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        last: int | None = None,
        version: int | None = None,
        inputs: bool = True,
        shadow: bool = True,
    ) -> pd.DataFrame:
        """Predictions that have a label, with a ``label`` column (the newest label of each request id wins).

        ``inputs`` and ``shadow`` as for :meth:`predictions`.
        """
        predictions = self.predictions(
            model, since=since, until=until, last=last, version=version, inputs=inputs, shadow=shadow
        )
        labels = self.labels(model, since=since)
        newest = labels.drop_duplicates("request_id", keep="last")[["request_id", "label"]]
        return (
            predictions.merge(newest, on="request_id", how="inner")
            .sort_values("ts", kind="stable")
            .reset_index(drop=True)
        )

    def logged_request_ids(self, model: str, request_ids: Collection[str]) -> set[str]:
        """Which of ``request_ids`` name a logged prediction of ``model`` (served, not shadow rows).

        Only the ``request_id`` and ``route`` columns are read (with PostgreSQL, only the matching rows).
        """
        wanted = sorted(set(request_ids))
        if not wanted:
            return set()
        if self.root is None:
            from sqlalchemy import bindparam, text

            from shipyard.monitoring._postgres import PREDICTIONS

            sql = text(
                f"SELECT DISTINCT request_id FROM {PREDICTIONS} WHERE model = :model AND route <> 'shadow' "
                "AND request_id IN :ids"
            ).bindparams(bindparam("ids", expanding=True))
            with self._db().connect() as conn:
                return {row[0] for row in conn.execute(sql, {"model": model, "ids": wanted})}

        def run(con: duckdb.DuckDBPyConnection) -> set[str]:
            import pyarrow as pa

            con.register("_wanted", pa.table({"request_id": pa.array(wanted, type=pa.string())}))
            sql = (
                "SELECT DISTINCT p.request_id FROM predictions p JOIN _wanted w USING (request_id) "
                "WHERE p.route <> 'shadow'"
            )
            return {str(row[0]) for row in con.execute(sql).fetchall()}

        return self._with_views(model, None, run)

    # ------------------------------------------------------------------ SQL
    def query(self, model: str, sql: str, *, since: dt.datetime | None = None) -> pa.Table:
        """Run DuckDB ``sql`` over the views ``predictions`` and ``labels`` of ``model`` (rows since ``since``)."""
        import duckdb

        since = _utc(since)
        if model not in self.models():
            known = ", ".join(self.models()) or "none yet"
            raise NotFound(f"no prediction log for model {model!r} in {self}; models with logs: {known}")
        try:
            return self._with_views(model, since, lambda con: _arrow(con, sql))
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0]
            raise InvalidInput(f"the SQL query failed: {message}") from None

    # ------------------------------------------------------------------ plumbing
    def _db(self) -> Any:
        if self._engine is None:
            from shipyard.monitoring._postgres import engine

            assert self.postgres_url is not None
            self._engine = engine(self.postgres_url, pooled=False)
        return self._engine

    def _with_views(self, model: str, since: dt.datetime | None, run: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """``run(con)`` on a DuckDB connection with the ``predictions`` and ``labels`` views of ``model``.

        A file merged or expired between listing and reading makes DuckDB fail: the files are listed again.
        """
        import duckdb

        for attempt in range(_RETRIES):
            con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
            try:
                con.execute("SET TimeZone = 'UTC'")
                if self.root is not None:
                    self._parquet_views(con, model, since)
                else:
                    self._postgres_views(con, model, since)
                return run(con)
            except duckdb.IOException:
                if attempt == _RETRIES - 1:
                    raise
            finally:
                con.close()
        raise AssertionError("unreachable")

    def _parquet_views(self, con: duckdb.DuckDBPyConnection, model: str, since: dt.datetime | None) -> None:
        assert self.root is not None
        for kind, empty in (("predictions", _EMPTY_PREDICTIONS), ("labels", _EMPTY_LABELS)):
            files = _files.visible_files(self.root, kind, model, since)
            if not files:
                con.execute(empty.format(name=kind))
                continue
            listing = ", ".join("'" + str(path).replace("'", "''") + "'" for path in files)
            where = ""
            if since is not None:
                where = f" WHERE ts >= '{since.isoformat()}'::TIMESTAMPTZ"
            con.execute(f"CREATE VIEW {kind} AS SELECT * FROM read_parquet([{listing}], union_by_name = true){where}")

    def _postgres_views(self, con: duckdb.DuckDBPyConnection, model: str, since: dt.datetime | None) -> None:
        from sqlalchemy import text

        from shipyard.monitoring._postgres import LABEL_COLUMNS, LABELS, PREDICTION_COLUMNS, PREDICTIONS

        for kind, table, columns, empty in (
            ("predictions", PREDICTIONS, PREDICTION_COLUMNS, _EMPTY_PREDICTIONS),
            ("labels", LABELS, LABEL_COLUMNS, _EMPTY_LABELS),
        ):
            sql = f"SELECT {', '.join(columns)} FROM {table} WHERE model = :model"
            params: dict[str, Any] = {"model": model}
            if since is not None:
                sql += " AND ts >= :since"
                params["since"] = since
            with self._db().connect() as conn:
                rows = [dict(row._mapping) for row in conn.execute(text(sql + " ORDER BY ts"), params)]
            if not rows:
                con.execute(empty.format(name=kind))
                continue
            arrow = _arrow_rows(rows)
            con.register(f"_{kind}_rows", arrow)
            con.execute(f"CREATE VIEW {kind} AS SELECT * FROM _{kind}_rows")


def _arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> pa.Table:
    """The result of ``sql`` as Arrow (an empty table for statements that give no rows)."""
    import pyarrow as pa

    relation = con.sql(sql, params=params)
    return pa.table({}) if relation is None else relation.to_arrow_table()


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> pd.DataFrame:
    frame: pd.DataFrame = _arrow(con, sql, params).to_pandas()
    return frame


def _arrow_rows(rows: list[dict[str, Any]]) -> pa.Table:
    """Rows read from PostgreSQL as an Arrow table typed like the Parquet log."""
    import pyarrow as pa

    for row in rows:
        row["ts"] = row["ts"].astimezone(dt.UTC)
    table = pa.Table.from_pylist(rows)
    ts = table.schema.get_field_index("ts")
    table = table.set_column(ts, "ts", table.column("ts").cast(pa.timestamp("us", tz="UTC")))
    if "version" in table.column_names:
        table = table.set_column(
            table.schema.get_field_index("version"), "version", table.column("version").cast(pa.int32())
        )
    return table


def _filters(since: dt.datetime | None, until: dt.datetime | None, version: int | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if since is not None:
        clauses.append("ts >= ?")
        params.append(since)
    if until is not None:
        clauses.append("ts < ?")
        params.append(until)
    if version is not None:
        clauses.append("version = ?")
        params.append(int(version))
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _logging_section(path: Path) -> dict[str, Any]:
    """The ``logging:`` mapping of a ``serve.yaml``."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise InvalidInput(f"cannot read the serve config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InvalidInput(f"the serve config {path} is not valid YAML: {exc}") from None
    section = data.get("logging", {}) if isinstance(data, dict) else {}
    if not isinstance(section, dict):
        raise InvalidInput(f"{path}: logging must be a mapping of settings, such as 'path: /var/log/shipyard'")
    return section
