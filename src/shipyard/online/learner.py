"""The learner: one per model (by lease), applying feedback in offset order and snapshotting exactly once.

The learner starts from the model's last snapshot and its committed offset, scores each block of events
with the current model (progressive validation), then learns it. Every ``snapshot_every`` events or
``snapshot_seconds`` it registers the model as a new version: the artifact is written first, then ONE
transaction inserts the version row, records the new committed offset (only if this learner still holds
the lease and nobody reset the model meanwhile) and, if the guardrail allows, moves ``production``. After a
crash the next learner loads that snapshot and replays the events after its offset, and because events
are learnt in blocks aligned to offsets, the result equals a clean replay.

>>> import os, tempfile, shipyard
>>> os.environ["SHIPYARD_HOME"] = tempfile.mkdtemp()
>>> from sklearn.linear_model import SGDClassifier
>>> from shipyard.online import FeedbackEvent, OnlineStore
>>> X, y = [[0.0, 1.0], [1.0, 0.0]], [0, 1]
>>> mv = shipyard.register(SGDClassifier(random_state=0).fit(X, y), "doc-learn", X=X, y=y, online=True)
>>> store = OnlineStore(shipyard.connect())
>>> store.append("doc-learn", [FeedbackEvent([1.0, 0.0], 1), FeedbackEvent([0.0, 1.0], 0)] * 5)
(1, 10)
>>> learner = Learner(shipyard.connect(), "doc-learn", OnlineSettings(batch=5, snapshot_every=10))
>>> learner.step()
10
>>> status = store.status("doc-learn")
>>> status.committed_offset, status.last_snapshot_version, status.promoted_version
(10, 2, 2)
>>> shipyard.resolve("doc-learn@production").lineage["online"]["offset"]
10
>>> learner.release(); del os.environ["SHIPYARD_HOME"]
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, select, update

from shipyard.errors import Conflict, ShipyardError
from shipyard.online import adapt, guard, lease
from shipyard.online.events import OnlineSettings
from shipyard.online.store import OnlineStore, record_alert
from shipyard.registry.entities import ModelVersion
from shipyard.registry.store import utcnow
from shipyard.registry.tables import online_models
from shipyard.signature import Signature
from shipyard.types import DEFAULT_ALIAS

if TYPE_CHECKING:
    from shipyard.service import ModelService

log = logging.getLogger(__name__)
SNAPSHOT_TAG = "online"


class LeaseLost(Conflict):
    """The learner lost its lease (or the model was reset) before it could commit; its work is dropped."""


class Learner:
    """Learns one online model from its feedback log while it holds the model's lease."""

    def __init__(self, service: ModelService, name: str, settings: OnlineSettings | None = None,
                 *, holder: str | None = None) -> None:
        self.service = service
        self.name = name
        self.settings = settings or OnlineSettings()
        self.store = OnlineStore(service)
        self.holder = holder or lease.new_holder_id()
        self.model: Any = None  # the learner's own copy; see adapt.FeatureNames for the names it lacks while learning
        self.info: adapt.Learnable | None = None
        self.signature: Signature | None = None
        self.metric = guard.RollingMetric(None, self.settings.window)
        self.served: Any = None  # the promoted snapshot, scored on the same events to judge new snapshots
        self.served_metric = guard.RollingMetric(None, self.settings.window)
        self.generation = 0
        self.applied = 0
        self.committed = 0
        self.snapshot_version = 0
        self._model_id = self.store.model_id(name)
        self._held_until = 0.0  # monotonic time until which the lease is surely ours
        self._renewed_at = -1e9
        self._snapshot_at = time.monotonic()
        self._partial_at: float | None = None  # when the learner first saw events short of a whole block
        self._degraded = False
        self._reported = -1  # the applied offset the last heartbeat wrote
        self._names: adapt.FeatureNames | None = None  # taken off self.model (and self.served): blocks are arrays

    # ------------------------------------------------------------------ running
    def run(self, stop: threading.Event) -> None:
        """Compete for the lease, learn and snapshot until ``stop`` is set; then snapshot and give the lease up."""
        try:
            while not stop.is_set():
                try:
                    done = self.step()
                except ShipyardError as exc:  # database away, lease lost: try again after a pause
                    log.warning("online learner of %s: %s", self.name, exc)
                    done = 0
                if done == 0:
                    stop.wait(self.settings.poll_seconds)
        finally:
            with contextlib.suppress(ShipyardError):
                if self.model is not None and self.applied > self.committed and self._hold():
                    self.snapshot()  # a clean stop keeps what was learnt
                self.release()

    def step(self, max_events: int = 10_000) -> int:
        """If this learner holds (or can take) the lease, apply up to ``max_events`` pending events (whole
        blocks of ``settings.batch``, and the rest once it has waited ``settings.max_wait_seconds``), snapshot
        if due, and return how many events were applied.
        """
        if not self._hold():
            self.model = None
            return 0
        row = self.store.state(self.name)
        if self.model is None or int(row["generation"]) != self.generation:
            self._load(row)
        if row["paused"]:
            return 0
        batch = self.settings.batch
        limit = max(batch, max_events - max_events % batch)
        offsets, rows, labels = self.store.event_columns(self.name, self.applied, limit)
        whole = len(offsets) - len(offsets) % batch
        if whole:
            del rows[whole:], labels[whole:]
            rows, X = self._features(rows)  # converted once for every block
            served = self._served(X, rows)  # the served snapshot does not change during a pass
            for start in range(0, whole, batch):
                end = start + batch
                part = None if X is None else (X.iloc[start:end] if hasattr(X, "iloc") else X[start:end])
                self._apply(offsets[end - 1], part, rows[start:end], labels[start:end],
                            None if served is None else served[start:end])
                if not self._hold():
                    self.model = None
                    return end
        partial = len(offsets) - whole if len(offsets) < limit else 0
        flushed = 0
        if not partial:
            self._partial_at = None
        elif self._partial_at is None or whole:
            self._partial_at = time.monotonic()  # the wait starts when the learner first sees them
        elif time.monotonic() - self._partial_at >= self.settings.max_wait_seconds:
            flushed = self._flush(partial)
            if self.model is None:
                return whole
            whole += flushed
        since = self.applied - self.committed
        if since and (flushed or since >= self.settings.snapshot_every
                      or time.monotonic() - self._snapshot_at >= self.settings.snapshot_seconds):
            self.snapshot()
        elif len(offsets) < limit and self.applied != self._reported:
            # caught up: report the applied offset now (with the lease's renewal), not at the next heartbeat
            self._renewed_at = -1e9
            if not self._hold():
                self.model = None
                return whole
        self._check_floor()
        return whole

    def _flush(self, count: int) -> int:
        """Learn the ``count`` events short of a whole block that waited ``max_wait_seconds``, as one block."""
        offsets, rows, labels = self.store.event_columns(self.name, self.applied, count)
        if not offsets:
            return 0
        rows, X = self._features(rows)
        self._apply(offsets[-1], X, rows, labels, self._served(X, rows))
        self._partial_at = None
        if not self._hold():
            self.model = None
        return len(offsets)

    def release(self) -> None:
        """Give the lease up now, so that another learner can take over at once."""
        with self.service.store._write() as conn:
            lease.release(conn, self._model_id, self.holder)
        self._held_until = 0.0
        self.model = None

    # ------------------------------------------------------------------ lease
    def _hold(self) -> bool:
        now = time.monotonic()
        if now < self._held_until and now - self._renewed_at < self.settings.lease_seconds / 5:
            return True
        heartbeat: dict[str, Any] = {}
        if self.model is not None:
            heartbeat = {"applied_offset": self.applied, "live_metric": self.metric.value}
        with self.service.store._write() as conn:
            held = lease.acquire(conn, self._model_id, self.holder, self.settings.lease_seconds, **heartbeat)
        if held:
            self._reported = self.applied if self.model is not None else self._reported
            self._renewed_at = now
            self._held_until = now + self.settings.lease_seconds * 0.8  # margin for the database round trip
        else:
            self._held_until = 0.0
        return held

    # ------------------------------------------------------------------ learning
    def _load(self, row: Any) -> None:
        version = int(row["snapshot_version"])
        loaded = self.service.load(f"{self.name}:{version}")
        self.model = loaded.raw
        self.info = adapt.describe(self.model)
        self.signature = Signature.from_dict(loaded.info.signature) if loaded.info.signature else None
        windows = row["metric_window"] or {}
        if isinstance(windows, list):
            windows = {"learner": windows}
        self.metric = guard.RollingMetric(self.info.metric, self.settings.window, windows.get("learner", []))
        self.served_metric = guard.RollingMetric(self.info.metric, self.settings.window, windows.get("served", []))
        promoted = int(row["promoted_version"])
        self.served = copy.deepcopy(self.model) if promoted == version else (
            self.service.load(f"{self.name}:{promoted}").raw)
        self._names = None
        if not self.info.river and self.signature is not None and self.signature.inputs and all(
            spec.dtype in _FLOATS | _INTS for spec in self.signature.inputs
        ):
            self._names = adapt.take_feature_names(self.model, self.signature.column_names)
            self._hold_served_names()
        self.generation = int(row["generation"])
        self.applied = self.committed = int(row["committed_offset"])
        self.snapshot_version = version
        self._degraded = bool(row["degraded"])
        self._snapshot_at = time.monotonic()
        log.info("online learner of %s: version %d at offset %d", self.name, version, self.committed)

    def _hold_served_names(self) -> None:
        """Take the names off a newly loaded served snapshot too, or give them back to the model: both models
        see the same blocks, so either both take arrays or both take frames."""
        if self._names is None or self.info is None:
            return
        assert self.signature is not None
        if adapt.take_feature_names(self.served, self.signature.column_names) is None:
            self._names.put_back()
            self._names = None

    def _features(self, rows: list[Any]) -> tuple[list[Any], Any]:
        """The rows as River wants them (dicts) and as scikit-learn wants them (a frame or an array).

        The events were validated against the signature when they were appended, so plain records of numbers
        are converted column by column (to one float array when the models' names were taken off, see
        :class:`~shipyard.online.adapt.FeatureNames`); anything else goes through :meth:`Signature.validate`.
        """
        assert self.info is not None
        if self.info.river:
            if self.signature is not None and self.signature.inputs and rows and not isinstance(rows[0], dict):
                rows = [dict(zip(self.signature.column_names, r, strict=True)) for r in rows]
            return rows, None
        if self.signature is None:
            return rows, np.asarray(rows)
        if self._names is not None:
            columns = _numeric_columns(self.signature, rows)
            return rows, np.asarray(self.signature.validate(rows)) if columns is None else np.column_stack(columns)
        frame = _numeric_frame(self.signature, rows)
        return rows, frame if frame is not None else self.signature.validate(rows)

    def _served(self, X: Any, rows: list[Any]) -> list[Any] | None:
        """The served snapshot's predictions for a whole pass (scikit-learn predicts row by row)."""
        assert self.info is not None
        if self.info.metric is None or self.info.river:
            return None
        return adapt.predict(self.served, self.info, X, rows)

    def _apply(self, last_offset: int, X: Any, rows: list[Any], labels: list[Any], served: list[Any] | None) -> None:
        """Score a block with the current model (progressive validation), then learn it."""
        assert self.info is not None
        if self.info.metric is not None:
            predicted = adapt.predict(self.model, self.info, X, rows)
            self.metric.extend(adapt.scores(self.info, predicted, labels))
            if served is None:
                served = adapt.predict(self.served, self.info, X, rows)
            self.served_metric.extend(adapt.scores(self.info, served, labels))
        adapt.learn(self.model, self.info, X, rows, labels)
        self.applied = last_offset

    # ------------------------------------------------------------------ snapshots and guardrails
    def snapshot(self) -> ModelVersion:
        """Register the model as a new version and commit the offset with it (and maybe promote it)."""
        assert self.info is not None
        value = self.metric.value
        metric_name = self.info.metric
        offset, committed, generation = self.applied, self.committed, self.generation
        window = {"learner": list(self.metric.scores), "served": list(self.served_metric.scores)}
        settings = self.settings
        baseline = self.served_metric.value
        promoted: list[bool] = []

        def commit(conn: Connection, mv: ModelVersion) -> None:
            changes: dict[str, Any] = dict(
                committed_offset=offset, applied_offset=offset, snapshot_version=mv.version, metric_window=window,
                live_metric=value, updated_at=utcnow(),
            )
            if guard.may_promote(metric_name, value, baseline, tolerance=settings.tolerance, floor=settings.floor):
                promoted.append(True)
                self.service.store.point_alias(conn, self.name, DEFAULT_ALIAS, mv.version, self.service.user)
                changes.update(promoted_version=mv.version, promoted_metric=value, good_version=mv.version,
                               degraded=False)
            fenced = conn.execute(
                update(online_models)
                .where(online_models.c.model_id == self._model_id, online_models.c.holder == self.holder,
                       online_models.c.generation == generation, online_models.c.committed_offset == committed)
                .values(**changes)
            )
            if fenced.rowcount != 1:
                raise LeaseLost(f"the learner of {self.name!r} lost its lease or the model was reset; "
                                f"the snapshot at offset {offset} is dropped")

        metrics = {metric_name: value} if metric_name and value is not None else None
        names = self._names.restored() if self._names is not None else contextlib.nullcontext()
        try:
            with names:  # every version keeps its column names
                mv = self.service.register(
                    self.model, self.name, signature=self.signature, metrics=metrics,
                    tags={SNAPSHOT_TAG: "snapshot"}, description=f"online snapshot at offset {offset}",
                    parent=self.snapshot_version,
                    lineage={"online": {"offset": offset, "from_offset": committed, "events": offset - committed,
                                        "base_version": self.snapshot_version}},
                    on_commit=commit,
                )
        except LeaseLost:
            self.model = None
            raise
        self.committed = offset
        self.snapshot_version = mv.version
        if promoted:
            self.served = copy.deepcopy(self.model)
            self.served_metric = guard.RollingMetric(metric_name, settings.window, self.metric.scores)
        self._snapshot_at = time.monotonic()
        return mv

    def _check_floor(self) -> None:
        assert self.info is not None or self.model is None
        if self.model is None or self.info is None or self._degraded:
            return
        value = self.metric.value
        if len(self.metric.scores) < min(self.settings.window, self.settings.batch) or not guard.below_floor(
            self.info.metric, value, self.settings.floor
        ):
            return
        target = self._last_good(self.applied - len(self.metric.scores))
        with self.service.store._write() as conn:
            row = conn.execute(select(online_models).where(online_models.c.model_id == self._model_id)).mappings().one()
            if row["holder"] != self.holder or row["degraded"]:
                return
            good = target if target is not None else int(row["good_version"])
            served = int(row["promoted_version"])
            self.service.store.point_alias(conn, self.name, DEFAULT_ALIAS, good, self.service.user,
                                           action="online-guard")
            conn.execute(update(online_models).where(online_models.c.model_id == self._model_id).values(
                degraded=True, promoted_version=good, good_version=good, promoted_metric=None, live_metric=value))
            record_alert(conn, self._model_id, "rollback",
                         f"live {self.info.metric} {value:.4f} crossed the floor {self.settings.floor}: "
                         f"{DEFAULT_ALIAS} goes back from version {served} to version {good}, the last promoted "
                         f"snapshot that learnt none of the last {len(self.metric.scores)} events",
                         served, good, value)
        self._degraded = True
        self.served = self.service.load(f"{self.name}:{good}").raw
        self._hold_served_names()
        self.served_metric = guard.RollingMetric(self.info.metric, self.settings.window)

    def _last_good(self, before: int) -> int | None:
        """The newest version ``production`` pointed to that learnt no event after offset ``before``."""
        row = self.store.state(self.name)
        base = int(row["base_version"])
        moves = self.service.alias_history(self.name, DEFAULT_ALIAS)
        for version in dict.fromkeys(m.to_version for m in reversed(moves) if m.to_version is not None):
            if version == base:
                return base
            if version < base:
                continue
            online = self.service.store.get_version(self.name, version).lineage.get("online", {})
            if "offset" in online and int(online["offset"]) <= before:
                return version
        return base


_FLOATS = {"float16", "float32", "float64"}
_INTS = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}


def _numeric_columns(signature: Signature, rows: list[Any]) -> list[np.ndarray[Any, Any]] | None:
    """The columns :meth:`Signature.validate` gives for records of numbers (dicts, or lists in column order)
    fitting a columnar signature of numeric columns, converted column by column; ``None`` for anything else.
    """
    specs = signature.inputs
    if not specs or not rows:
        return None
    if all(type(r) is dict for r in rows):
        keys = set(signature.column_names)
        if not all(r.keys() == keys for r in rows):
            return None
        columns = [[r[spec.name] for r in rows] for spec in specs]
    elif all(type(r) is list and len(r) == len(specs) for r in rows):
        columns = [list(c) for c in zip(*rows, strict=True)]
    else:
        return None
    out: list[np.ndarray[Any, Any]] = []
    for spec, values in zip(specs, columns, strict=True):
        kinds = set(map(type, values))
        if spec.dtype in _FLOATS and kinds <= {float, int}:
            out.append(np.asarray(values, dtype=np.float64).astype(spec.dtype, copy=False))
        elif spec.dtype in _INTS and kinds <= {int}:
            info = np.iinfo(np.dtype(spec.dtype))
            if min(values) < info.min or max(values) > info.max:
                return None
            out.append(np.asarray(values, dtype=spec.dtype))
        else:
            return None
    return out


def _numeric_frame(signature: Signature, rows: list[Any]) -> pd.DataFrame | None:
    """:func:`_numeric_columns` as the frame :meth:`Signature.validate` gives; ``None`` for anything else."""
    columns = _numeric_columns(signature, rows)
    if columns is None:
        return None
    return signature.frame(dict(zip(signature.column_names, columns, strict=True)), len(rows))
