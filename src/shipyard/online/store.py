"""The feedback log and the online-learning state, in the registry database (SQLite or PostgreSQL).

Offsets are handed out per model from a counter on the model's ``online_models`` row, bumped with
``UPDATE ... RETURNING`` in the transaction that inserts the events: the row lock orders appends, so
offsets are gap-free and become visible in order, which is what lets a learner read "everything after
offset N" and never miss an event.

>>> import os, tempfile, shipyard
>>> os.environ["SHIPYARD_HOME"] = tempfile.mkdtemp()
>>> from sklearn.linear_model import SGDClassifier
>>> X, y = [[0.0, 1.0], [1.0, 0.0]], [0, 1]
>>> mv = shipyard.register(SGDClassifier(random_state=0).fit(X, y), "doc-online", X=X, y=y, online=True)
>>> store = OnlineStore(shipyard.connect())
>>> store.is_online("doc-online")
True
>>> store.append("doc-online", [FeedbackEvent([0.5, 0.5], 1), FeedbackEvent([0.1, 0.9], 0)])
(1, 2)
>>> store.append("doc-online", [FeedbackEvent([0.5, 0.5], 7)])
Traceback (most recent call last):
...
shipyard.errors.InvalidInput: event 0 has label 7, which model 'doc-online' does not know; its classes are 0, 1
>>> store.record_predictions("doc-online", mv.version, [("req-1", [0.2, 0.3])])
>>> store.join("doc-online", [("req-1", 1)])
[FeedbackEvent(features=[0.2, 0.3], label=1, request_id='req-1')]
>>> store.status("doc-online").pending
2
>>> del os.environ["SHIPYARD_HOME"]
"""

from __future__ import annotations

import json
import math
import threading
import time
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from sqlalchemy import Connection, RowMapping, Text, bindparam, cast, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from shipyard.errors import InvalidInput, ModelNotFound, NotOnline, UnknownRequestIds
from shipyard.online.adapt import Learnable
from shipyard.online.events import FeedbackEvent
from shipyard.online.status import OnlineStatus
from shipyard.registry.entities import ModelVersion
from shipyard.registry.store import _aware, utcnow
from shipyard.registry.tables import models, online_alerts, online_events, online_models, online_predictions
from shipyard.signature import Signature
from shipyard.types import DEFAULT_ALIAS, validate_name

if TYPE_CHECKING:
    from shipyard.service import ModelService

CACHE_SECONDS = 2.0
"""How long :meth:`OnlineStore.is_online` and the per-model validation facts are cached."""
_JOIN_CHUNK = 500
_COPY_EVENTS = 'COPY online_events (model_id, "offset", request_id, features, label, created_at) FROM STDIN'
_INSERT_EVENTS = insert(online_events).values(
    features=bindparam("features", type_=Text), label=bindparam("label", type_=Text))
"""Inserts features and labels already serialised as JSON text."""


@dataclass(frozen=True)
class _Facts:
    """What validating feedback needs, fixed at registration: the model id, signature, task and classes."""

    model_id: int
    signature: Signature | None
    task: str
    classes: list[Any] | None


@dataclass(frozen=True)
class Alert:
    """A guardrail action (``rollback``, ``reset``...) recorded for a model."""

    kind: str
    message: str
    from_version: int | None
    to_version: int | None
    metric: float | None
    at: Any


class OnlineStore:
    """Feedback events, recorded predictions and online-learning state of the models of one registry."""

    def __init__(self, service: ModelService) -> None:
        self.service = service
        self.meta = service.store
        self._facts: dict[str, tuple[float, _Facts | None]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ registration (inside register's transaction)
    @staticmethod
    def enable(conn: Connection, service: ModelService, mv: ModelVersion, info: Learnable) -> None:
        """Make ``mv`` the base of its model's online learning and point ``production`` at it.

        Runs inside the transaction that records ``mv``. Registering again with ``online=True`` starts over
        from the new version; the feedback log and its offsets are kept, and learning starts after them.
        """
        model_id = int(conn.execute(select(models.c.id).where(models.c.name == mv.name)).scalar_one())
        now = utcnow()
        fresh: dict[str, Any] = dict(
            base_version=mv.version, task=info.task, classes=info.classes, frozen=list(info.frozen), paused=False,
            snapshot_version=mv.version, promoted_version=mv.version, promoted_metric=None, good_version=mv.version,
            degraded=False, metric_window=[], live_metric=None, updated_at=now,
        )
        row = conn.execute(select(online_models).where(online_models.c.model_id == model_id)).mappings().first()
        if row is None:
            conn.execute(insert(online_models).values(
                model_id=model_id, generation=1, next_offset=0, committed_offset=0, applied_offset=0, holder=None,
                expires_at=None, created_at=now, **fresh))
        else:
            last = int(row["next_offset"])
            conn.execute(update(online_models).where(online_models.c.model_id == model_id).values(
                generation=online_models.c.generation + 1, committed_offset=last, applied_offset=last, **fresh))
        service.store.point_alias(conn, mv.name, DEFAULT_ALIAS, mv.version, service.user)

    # ------------------------------------------------------------------ lookups
    def is_online(self, name: str) -> bool:
        """Whether ``name`` was registered with ``online=True`` (cached for :data:`CACHE_SECONDS`)."""
        return self._facts_for(name) is not None

    def _facts_for(self, name: str) -> _Facts | None:
        now = time.monotonic()
        cached = self._facts.get(name)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        with self.meta._read() as conn:
            row = conn.execute(
                select(online_models.c.model_id, online_models.c.base_version, online_models.c.task,
                       online_models.c.classes)
                .join(models, models.c.id == online_models.c.model_id)
                .where(models.c.name == name)
            ).first()
        facts = None
        if row is not None:
            info = self.meta.get_version(name, int(row.base_version))
            signature = Signature.from_dict(info.signature) if info.signature else None
            facts = _Facts(int(row.model_id), signature, str(row.task), row.classes)
        with self._lock:
            self._facts[name] = (now, facts)
        return facts

    def _require(self, name: str) -> _Facts:
        validate_name(name, "model")
        facts = self._facts_for(name)
        if facts is None:
            self.meta.get_model(name)  # ModelNotFound first
            raise NotOnline(name)
        return facts

    # ------------------------------------------------------------------ predictions and feedback
    def record_predictions(self, name: str, version: int, rows: list[tuple[str, Any]]) -> None:
        """Keep the input of each prediction of an online model, so that a later label can be joined to it.

        A request id already recorded for this model keeps its first row.
        """
        if not rows:
            return
        facts = self._require(name)
        now = utcnow()
        values = [
            {"model_id": facts.model_id, "request_id": str(rid), "version": int(version),
             "features": _jsonable(features), "created_at": now}
            for rid, features in rows
        ]
        dialect = postgresql if self.meta.dialect == "postgresql" else sqlite
        statement = dialect.insert(online_predictions).on_conflict_do_nothing(
            index_elements=["model_id", "request_id"])
        with self.meta._write() as conn:
            conn.execute(statement, values)

    def join(self, name: str, labels: Sequence[tuple[str, Any]]) -> list[FeedbackEvent]:
        """Feedback events from ``(request_id, label)`` pairs, with the features of the recorded predictions.

        Raises :class:`~shipyard.errors.UnknownRequestIds` naming every request id that was never recorded.
        """
        facts = self._require(name)
        wanted = [str(rid) for rid, _ in labels]
        found: dict[str, Any] = {}
        with self.meta._read() as conn:
            for start in range(0, len(wanted), _JOIN_CHUNK):
                chunk = wanted[start:start + _JOIN_CHUNK]
                found.update(conn.execute(
                    select(online_predictions.c.request_id, online_predictions.c.features).where(
                        online_predictions.c.model_id == facts.model_id,
                        online_predictions.c.request_id.in_(chunk),
                    )
                ).all())
        missing = [rid for rid in dict.fromkeys(wanted) if rid not in found]
        if missing:
            raise UnknownRequestIds(name, missing)
        return [FeedbackEvent(found[rid], label, rid) for rid, (_, label) in zip(wanted, labels, strict=True)]

    def append(self, name: str, events: Sequence[FeedbackEvent]) -> tuple[int, int]:
        """Validate ``events`` and commit them to the feedback log in one transaction: ``(first, last)`` offsets.

        Labels must be among a classifier's classes (numbers for a regressor); features must fit the
        signature of the model's base version. Nothing is written unless every event is valid.
        """
        facts = self._require(name)
        if not events:
            raise InvalidInput("no feedback events to record")
        labels = _labels(facts, name, [e.label for e in events])
        features, finite = _valid_features(facts.signature, [e.features for e in events])
        # everything but the offsets is ready before the transaction: the counter's row lock is held briefly
        texts = _dumps(features, finite)
        label_texts = _dumps(labels, all(type(y) is not float or math.isfinite(y) for y in labels))
        request_ids = [e.request_id for e in events]
        model_id, now = facts.model_id, utcnow()
        with self.meta._write() as conn:
            last = int(conn.execute(
                update(online_models)
                .where(online_models.c.model_id == model_id)
                .values(next_offset=online_models.c.next_offset + len(events))
                .returning(online_models.c.next_offset)
            ).scalar_one())
            first = last - len(events) + 1
            if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
                driver = conn.connection.driver_connection
                assert driver is not None
                with driver.cursor() as cursor, cursor.copy(_COPY_EVENTS) as copy:
                    for i, (rid, f, y) in enumerate(zip(request_ids, texts, label_texts, strict=True)):
                        copy.write_row((model_id, first + i, rid, f, y, now))
            else:
                conn.execute(_INSERT_EVENTS, [
                    {"model_id": model_id, "offset": first + i, "request_id": rid, "features": f, "label": y,
                     "created_at": now}
                    for i, (rid, f, y) in enumerate(zip(request_ids, texts, label_texts, strict=True))
                ])
        return first, last

    def events(self, name: str, after: int, limit: int) -> list[tuple[int, Any, Any]]:
        """Up to ``limit`` events after offset ``after``, in offset order: ``(offset, features, label)``."""
        offsets, features, labels = self.event_columns(name, after, limit)
        return list(zip(offsets, features, labels, strict=True))

    def event_columns(self, name: str, after: int, limit: int) -> tuple[list[int], list[Any], list[Any]]:
        """:meth:`events` as three lists: the offsets, the features and the labels (what the learner reads)."""
        facts = self._require(name)
        with self.meta._read() as conn:
            rows = conn.execute(
                select(online_events.c.offset, cast(online_events.c.features, Text),
                       cast(online_events.c.label, Text))
                .where(online_events.c.model_id == facts.model_id, online_events.c.offset > after,
                       online_events.c.offset <= after + limit)
                .order_by(online_events.c.offset)
            ).all()
        if not rows:
            return [], [], []
        offsets, features, labels = zip(*rows, strict=True)
        return list(map(int, offsets)), _loads(features), _loads(labels)

    # ------------------------------------------------------------------ state
    def state(self, name: str) -> RowMapping:
        """The model's ``online_models`` row (with ``name``)."""
        facts = self._require(name)
        with self.meta._read() as conn:
            return _row(conn, facts.model_id)

    def model_id(self, name: str) -> int:
        """The database id of an online model."""
        return self._require(name).model_id

    def status(self, name: str) -> OnlineStatus:
        """Offsets, the rolling metric, versions, pause flag, lease and alert count of an online model."""
        facts = self._require(name)
        with self.meta._read() as conn:
            row = _row(conn, facts.model_id)
            alerts = int(conn.execute(
                select(func.count()).select_from(online_alerts).where(online_alerts.c.model_id == facts.model_id)
            ).scalar_one())
            applied = max(int(row["applied_offset"]), int(row["committed_offset"]))
            oldest = conn.execute(
                select(online_events.c.created_at)
                .where(online_events.c.model_id == facts.model_id, online_events.c.offset == applied + 1)
            ).scalar()
        metric = {"classification": "accuracy", "regression": "mae"}.get(facts.task)
        return OnlineStatus(
            name=name,
            base_version=int(row["base_version"]),
            last_offset=int(row["next_offset"]),
            committed_offset=int(row["committed_offset"]),
            pending=int(row["next_offset"]) - applied,
            applied_offset=applied,
            metric_name=metric,
            metric=row["live_metric"],
            last_snapshot_version=int(row["snapshot_version"]),
            promoted_version=int(row["promoted_version"]),
            promoted_metric=row["promoted_metric"],
            paused=bool(row["paused"]),
            lease_holder=row["holder"],
            lease_expires_at=_aware(row["expires_at"]) if row["expires_at"] is not None else None,
            alerts=alerts,
            frozen_steps=tuple(row["frozen"] or ()),
            oldest_pending_at=_aware(oldest) if oldest is not None else None,
        )

    def alerts(self, name: str) -> list[Alert]:
        """The model's guardrail alerts, oldest first."""
        facts = self._require(name)
        with self.meta._read() as conn:
            rows = conn.execute(
                select(online_alerts).where(online_alerts.c.model_id == facts.model_id).order_by(online_alerts.c.id)
            ).mappings().all()
        return [Alert(r["kind"], r["message"], r["from_version"], r["to_version"], r["metric"], _aware(r["at"]))
                for r in rows]

    # ------------------------------------------------------------------ operator actions
    def pause(self, name: str) -> None:
        """Stop learning (feedback is still recorded; the learner keeps its lease and waits)."""
        self._set(name, paused=True)

    def resume(self, name: str) -> None:
        """Learn again after :meth:`pause`, from where the learner stopped."""
        self._set(name, paused=False)

    def reset(self, name: str) -> None:
        """Go back to the registered base version: ``production`` points at it and learning restarts from the
        events that arrive after now (earlier ones are kept in the log but never learnt).
        """
        facts = self._require(name)
        with self.meta._write() as conn:
            row = _row(conn, facts.model_id)
            base, last = int(row["base_version"]), int(row["next_offset"])
            conn.execute(update(online_models).where(online_models.c.model_id == facts.model_id).values(
                generation=online_models.c.generation + 1, committed_offset=last, applied_offset=last,
                snapshot_version=base, promoted_version=base, promoted_metric=None, good_version=base,
                degraded=False, metric_window=[], live_metric=None, updated_at=utcnow()))
            self.meta.point_alias(conn, name, DEFAULT_ALIAS, base, self.service.user)
            record_alert(conn, facts.model_id, "reset",
                         f"reset by {self.service.user}: back to version {base}, learning from offset {last}",
                         int(row["promoted_version"]), base, None)

    def _set(self, name: str, **values: Any) -> None:
        facts = self._require(name)
        with self.meta._write() as conn:
            conn.execute(update(online_models).where(online_models.c.model_id == facts.model_id)
                         .values(updated_at=utcnow(), **values))


def record_alert(conn: Connection, model_id: int, kind: str, message: str, from_version: int | None,
                 to_version: int | None, metric: float | None) -> None:
    """Insert one alert row inside the caller's transaction."""
    conn.execute(insert(online_alerts).values(model_id=model_id, kind=kind, message=message,
                                              from_version=from_version, to_version=to_version, metric=metric,
                                              at=utcnow()))


def _row(conn: Connection, model_id: int) -> RowMapping:
    row = conn.execute(select(online_models).where(online_models.c.model_id == model_id)).mappings().first()
    if row is None:
        raise ModelNotFound(str(model_id))
    return row


def _labels(facts: _Facts, name: str, labels: list[Any]) -> list[Any]:
    """Every label checked (see :func:`_label`), the common cases at once."""
    kinds = set(map(type, labels))
    if facts.task == "classification" and facts.classes is not None and kinds <= {int, str}:
        known = set(facts.classes)
        if set(labels) <= known and not any(type(c) is bool for c in facts.classes):
            return labels
    elif facts.task == "regression" and kinds <= {int, float} and (
        kinds == {int} or all(map(math.isfinite, labels))
    ):
        return labels
    return [_label(facts, name, i, y) for i, y in enumerate(labels)]


def _valid_features(signature: Signature | None, rows: list[Any]) -> tuple[list[Any], bool]:
    """The rows, JSON-able and checked against ``signature`` (:class:`SchemaError` if they do not fit), and
    whether they surely hold only finite numbers (no NaN or infinity, which only the standard JSON keeps).

    Plain records of finite numbers, the common case, are checked column by column with no copy; anything else
    goes through :meth:`Signature.validate`, which names every bad value.
    """
    if signature is not None and signature.tensor is None and _plain_records(signature, rows):
        return rows, True
    features = [_jsonable(f) for f in rows]
    finite = False
    if signature is not None:
        checked = signature.validate(features)
        if isinstance(checked, np.ndarray) and checked.dtype.kind in "iuf":
            finite = checked.dtype.kind != "f" or bool(np.isfinite(checked).all())
    return features, finite


def _dumps(values: list[Any], fast: bool) -> list[str]:
    """Each value as JSON text: with orjson when ``fast``, else as the standard library writes it (NaN kept)."""
    if fast:
        return [orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY).decode() for v in values]
    return [json.dumps(v) for v in values]


def _loads(texts: Sequence[str | None]) -> list[Any]:
    """The values of JSON texts (SQL NULL as ``None``), decoded in one call unless some need the standard library."""
    strings = ["null" if t is None else t for t in texts] if None in texts else typing.cast("Sequence[str]", texts)
    joined = "[" + ",".join(strings) + "]"
    try:
        return list(orjson.loads(joined))
    except orjson.JSONDecodeError:  # NaN or Infinity, written by json.dumps
        return list(json.loads(joined))


_NUMBER_TYPES: dict[str, set[type]] = {"float": {float, int}, "int": {int}}


def _plain_records(signature: Signature, rows: list[Any]) -> bool:
    """Whether ``rows`` are dicts with exactly the signature's columns, each value of a type its column takes
    with no conversion that could fail (numbers for float columns, in-range ints for int columns)."""
    names = signature.column_names
    if not names or not rows:
        return False
    keys = set(names)
    if len(keys) != len(names) or not all(type(r) is dict and r.keys() == keys for r in rows):
        return False
    for spec in signature.inputs:
        kind = "float" if spec.dtype in ("float16", "float32", "float64") else (
            "int" if spec.dtype in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
            else None)
        if kind is None:
            return False
        values = [r[spec.name] for r in rows]
        if not set(map(type, values)) <= _NUMBER_TYPES[kind]:
            return False
        if kind == "float" and not all(map(math.isfinite, values)):
            return False
        if kind == "int":
            info = np.iinfo(np.dtype(spec.dtype))
            if min(values) < info.min or max(values) > info.max:
                return False
    return True


def _label(facts: _Facts, name: str, index: int, label: Any) -> Any:
    value = _jsonable(label)
    if facts.task == "classification":
        known_bool = facts.classes is not None and any(type(c) is bool for c in facts.classes)
        if facts.classes is not None and (
            not isinstance(value, (str, int, float, bool))
            or value not in facts.classes
            or (type(value) is bool and not known_bool)
        ):
            known = ", ".join(map(repr, facts.classes))
            raise InvalidInput(f"event {index} has label {value!r}, which model {name!r} does not know; "
                               f"its classes are {known}")
        if value is None:
            raise InvalidInput(f"event {index} has no label")
    elif facts.task == "regression" and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    ):
        raise InvalidInput(
            f"event {index} has label {value!r}; model {name!r} is a regressor and needs a finite number"
        )
    return value


def _jsonable(value: Any) -> Any:
    """Numpy values and arrays as plain Python, recursively, so that they can be stored as JSON."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
