"""The PostgreSQL backend of the prediction log: two tables the writer creates, filled with ``COPY``.

``shipyard_predictions`` (input and prediction as JSONB, probabilities as ``double precision[]``) and
``shipyard_labels``, both indexed by model and time. The reader loads the rows it needs with SQLAlchemy
into Arrow and queries them with DuckDB like the Parquet files (no DuckDB extension is needed).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.engine import Engine

PREDICTIONS = "shipyard_predictions"
LABELS = "shipyard_labels"
_LOCK_KEY = 0x5359504C4F47  # pg_advisory_xact_lock key: one schema creation at a time
_DDL = (
    f"CREATE TABLE IF NOT EXISTS {PREDICTIONS} (request_id text NOT NULL, ts timestamptz NOT NULL, "
    "model text NOT NULL, version integer NOT NULL, route text NOT NULL, latency_ms double precision, "
    "input jsonb, prediction jsonb, probabilities double precision[])",
    f"CREATE INDEX IF NOT EXISTS {PREDICTIONS}_model_ts ON {PREDICTIONS} (model, ts)",
    f"CREATE TABLE IF NOT EXISTS {LABELS} (request_id text NOT NULL, ts timestamptz NOT NULL, "
    "model text NOT NULL, label jsonb)",
    f"CREATE INDEX IF NOT EXISTS {LABELS}_model_ts ON {LABELS} (model, ts)",
)
PREDICTION_COLUMNS = (
    "request_id",
    "ts",
    "model",
    "version",
    "route",
    "latency_ms",
    "input",
    "prediction",
    "probabilities",
)
LABEL_COLUMNS = ("request_id", "ts", "model", "label")


def engine(url: str, *, pooled: bool = True) -> Engine:
    """A SQLAlchemy engine on the log's database (``pooled=False``: a connection per use, nothing held open)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    if not pooled:
        return create_engine(url, poolclass=NullPool)
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


def create_tables(db: Engine) -> None:
    """Create the log's tables and indexes if they are missing (safe from many processes at once)."""
    from sqlalchemy import text

    with db.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        for statement in _DDL:
            conn.execute(text(statement))


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities made null (JSONB has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(value, allow_nan=False, default=str)
    except ValueError:
        return json.dumps(_finite(value), default=str)


class PostgresSink:
    """Writes log rows to PostgreSQL with ``COPY``; expiry deletes rows past the age limit."""

    def __init__(self, url: str, *, max_age_hours: float) -> None:
        self.db = engine(url)
        self.max_age_hours = max_age_hours
        create_tables(self.db)

    def write(
        self, kind: str, model: str, table: pa.Table, *, version: int | None = None, durable: bool = False
    ) -> None:
        """Append the rows of ``table`` (a prediction or label table) in one transaction."""
        del model, version, durable  # the rows say which; a committed transaction is durable
        rows = table.to_pylist()
        if kind == "labels":
            self._copy(LABELS, LABEL_COLUMNS, ((r["request_id"], r["ts"], r["model"], _json(r["label"])) for r in rows))
            return
        self._copy(
            PREDICTIONS,
            PREDICTION_COLUMNS,
            (
                (
                    r["request_id"],
                    r["ts"],
                    r["model"],
                    r["version"],
                    r["route"],
                    r["latency_ms"],
                    _json(r.get("input")),
                    _json(r["prediction"]),
                    r["probabilities"],
                )
                for r in rows
            ),
        )

    def _copy(self, table: str, columns: Sequence[str], rows: Any) -> None:
        raw = self.db.raw_connection()
        try:
            cursor = raw.cursor()
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        finally:
            raw.close()

    def compact(self, now: float | None = None, *, everything: bool = False) -> int:
        """Nothing to merge in a table."""
        return 0

    def expire(self, now: float | None = None) -> int:
        """Delete rows older than the age limit."""
        from sqlalchemy import text

        cutoff = dt.datetime.fromtimestamp((time.time() if now is None else now) - self.max_age_hours * 3600, dt.UTC)
        deleted = 0
        with self.db.begin() as conn:
            for table in (PREDICTIONS, LABELS):
                deleted += conn.execute(text(f"DELETE FROM {table} WHERE ts < :cutoff"), {"cutoff": cutoff}).rowcount
        return deleted

    def close(self) -> None:
        """Close the pool's connections."""
        self.db.dispose()
